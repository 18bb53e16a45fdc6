"""The simulation, end to end: on a private redis-server through the CLI (the default faults:
client connections cut, a replica killed, Redis restarted; and a short soak), on the
in-process fake when there is no redis-server, and with invariants broken on purpose.

Each run starts its own processes and stops them (the CLI runs in a process group of
its own; a run that outlives its time limit has that group SIGKILLed, which takes its
redis-server with it; its replicas and executors stop when their stdin closes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from rich.console import Console

from ponos_redis import TaskStatus, open_aggregator_store
from ponos_redis._redis_server import redis_server_available
from ponos_redis.cli import main
from ponos_redis.keys import Keys
from ponos_redis.simulate import INVARIANTS, RunContext, SimulationOptions, run_simulation
from ponos_redis.simulate._execlog import ExecutionLog
from ponos_redis.simulate._soak import FLAT

MAIN = "from ponos_redis.cli import main; main()"

needs_redis_server = pytest.mark.skipif(not redis_server_available(), reason="redis-server is not on PATH")


def run_cli(*args: str, env: dict[str, str] | None = None, limit_s: float = 90.0) -> tuple[int, str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", MAIN, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this test made: the CLI and its redis-server
        out, err = proc.communicate()
        pytest.fail(f"simulate did not finish within {limit_s} s:\n{err[-3000:]}")
    return proc.returncode, out, err


def invariant(report: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(i for i in report["invariants"] if i["name"] == name)
    return found


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--failover"], "--failover needs --topology sentinel"),
        (["--replicas", "0"], "replicas must be from 1 to 16"),
        (["--memory", "--topology", "cluster"], "--memory runs on the in-process fake"),
        (["--redis-url", "redis://127.0.0.1:1/0", "--topology", "sentinel"], "takes no --redis-url"),
        (["--metrics-linger", "5"], "--metrics-linger needs --metrics-port"),
        (["--metrics-port", "65534"], "metrics port must be from 0 to 65530"),
        (["--retention", "5"], "--retention needs --soak"),
        (["--duration", "2h"], "duration must be from 1 to 3600"),
        (["--soak", "--duration", "1m", "--retention", "1m"], "needs --duration of at least"),
    ],
)
def test_invalid_options_are_refused_before_anything_starts(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["simulate", *args])
    assert result.exit_code == 2
    assert result.output.startswith("error: InvalidInputError: ")
    assert message in result.output


@needs_redis_server
@pytest.mark.timeout(120)
def test_on_a_private_redis_server_with_the_default_faults_every_invariant_holds() -> None:
    """The default run, default store settings: every client connection cut twice (while the
    replicas claim, renew, complete and reap), a replica SIGKILLed, Redis SIGKILLed and
    restarted; every invariant holds, checked from the store (its status indexes included)
    and the replicas' own logs of acknowledged completions."""
    code, out, err = run_cli("simulate", "--duration", "15", "--seed", "4242", "--json")
    assert code == 0, f"exit {code}\n{out}\n{err[-3000:]}"
    report = json.loads(out)
    assert report["ok"] is True
    assert "private redis-server" in report["backend"]
    assert [i["name"] for i in report["invariants"]] == list(INVARIANTS)
    assert all(i["ok"] and i["checked"] > 0 for i in report["invariants"]), report["invariants"]
    assert [f["kind"] for f in report["faults"]] == [
        "client-kill",
        "kill-replica",
        "restart-redis",
        "client-kill",
    ]
    assert all(f["back_after_s"] is not None for f in report["faults"] if f["kind"] != "client-kill")
    figures = report["figures"]
    # Every connection of the replicas, executors and coordinator: a few dozen each time.
    assert len(figures["connections_cut"]) == 2
    assert all(n >= 10 for n in figures["connections_cut"]), figures["connections_cut"]
    assert invariant(report, "every task is on exactly one status index, its status's")["checked"] > 50
    once = invariant(report, "no task was completed twice")
    assert "acknowledgements in the replicas' logs" in once["note"]
    assert figures["tasks_created"] > 50
    assert figures["tasks_completed"] > 0
    assert figures["tasks_completed"] + sum(figures["tasks_failed"].values()) == figures["tasks_created"]
    (takeover,) = figures["takeovers"]
    assert takeover["chains_held"] >= 1  # the victim is a chain lease holder
    assert takeover["chain_takeover_s"] is not None
    assert takeover["tasks_taken_over"] == takeover["tasks_held"]
    (resumed,) = figures["writes_resumed_after_s"]
    assert resumed is not None
    assert resumed < 15
    assert figures["latency_p50_ms"] is not None
    assert figures["throughput_per_s"] > 0


@pytest.mark.timeout(60)
def test_without_redis_server_it_runs_on_the_fake_says_so_and_passes() -> None:
    bin_dir = str(Path(sys.executable).parent)  # the venv's bin: python, no redis-server
    code, out, err = run_cli(
        "simulate", "--duration", "5", "--seed", "7", "--json", env={**os.environ, "PATH": bin_dir}
    )
    assert code == 0, f"exit {code}\n{out}\n{err[-3000:]}"
    report = json.loads(out)
    assert "in-process fake" in report["backend"]
    assert any("redis-server is not on PATH" in note for note in report["notes"])
    assert any("Redis faults skipped" in note for note in report["notes"])
    assert [f["kind"] for f in report["faults"]] == ["kill-replica"]
    indexes = "every task is on exactly one status index, its status's"
    assert "not applicable" in invariant(report, indexes)["note"]  # the fake keeps no separate indexes
    assert all(i["ok"] and (i["checked"] > 0 or i["name"] == indexes) for i in report["invariants"]), report[
        "invariants"
    ]
    assert report["figures"]["tasks_completed"] > 0


@pytest.mark.timeout(60)
async def test_the_verdict_catches_a_double_completion_a_task_on_two_status_indexes_and_a_double_execution(
    ponos_redis_url: str,
) -> None:
    """A task completed twice (a second task.completed event written raw into the stream, as
    a store without fencing would leave it), another one put back on the pending index while
    its record says completed, and a task executed twice (a second execution in an
    executor's log): the run fails, naming exactly those three invariants."""
    broken: dict[str, str] = {}

    async def break_two_invariants(ctx: RunContext) -> None:
        namespace = ctx.namespaces[0]
        async with open_aggregator_store(ctx.storage, namespace=namespace) as store:
            completed = [e async for e in store.events() if e.kind == "task.completed"]
        victim = completed[0]
        client = redis.Redis.from_url(ponos_redis_url)
        try:
            client.xadd(
                Keys(namespace).events,
                {
                    "kind": "task.completed",
                    "subject": victim.subject,
                    "status": "completed",
                    "owner": "a-worker-that-ignored-its-token",
                    "token": str((victim.token or 0) + 1),
                    "at": str(int(victim.at.timestamp() * 1000) + 1),
                },
            )
            other = next(e.subject for e in completed if e.subject != victim.subject)
            client.zadd(Keys(namespace).tasks(TaskStatus.PENDING), {other: 1})
        finally:
            client.close()
        log: ExecutionLog = ctx.execution_log
        executor_ns = ctx.executor_namespaces[0]
        (task_id, _), *_ = await log.read(executor_ns)
        await log.record(executor_ns, task_id, "a-second-execution")
        broken.update(completed=victim.subject, executed=task_id, indexed=other)

    report = await run_simulation(
        SimulationOptions(duration_s=4, seed=99, redis_url=ponos_redis_url, replicas=2, chains=1),
        live=False,
        before_verdict=break_two_invariants,
    )
    assert report.log_dir is not None  # a failed run keeps its processes' logs, and says where
    shutil.rmtree(report.log_dir)
    assert report.exit_code == 1
    assert not report.ok
    assert report.broken == [
        "no task was completed twice",
        "every task is on exactly one status index, its status's",
        "no task was executed twice by one executor",
    ]
    (twice,) = [i for i in report.invariants if i.name == "no task was completed twice"]
    assert twice.violations == 1
    assert broken["completed"] in twice.examples[0]
    (indexes,) = [
        i for i in report.invariants if i.name == "every task is on exactly one status index, its status's"
    ]
    assert indexes.violations == 1
    assert f"task:{broken['indexed']}: also on " in indexes.examples[0]
    assert indexes.examples[0].endswith(":tasks:pending")
    (executed,) = [i for i in report.invariants if i.name == "no task was executed twice by one executor"]
    assert executed.violations == 1
    assert broken["executed"] in executed.examples[0]

    console = Console(record=True, width=200)
    report.print(console)
    text = console.export_text()
    assert "BROKEN" in text
    assert "no task was completed twice" in text
    assert "FAIL" in text


def soak_cli(tmp_path: Path, *args: str, limit_s: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    samples = tmp_path / "samples.jsonl"
    code, out, err = run_cli(
        "simulate", "--soak", "--soak-samples", str(samples), "--json", *args, limit_s=limit_s
    )
    assert code == 0, f"exit {code}\n{out}\n{err[-3000:]}"
    report: dict[str, Any] = json.loads(out)
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    return report, lines


def assert_soak_held(report: dict[str, Any], lines: list[dict[str, Any]], *, periods: int) -> None:
    assert report["ok"] is True
    assert [i["name"] for i in report["invariants"]] == [*INVARIANTS, FLAT]
    assert all(i["ok"] and i["checked"] > 0 for i in report["invariants"]), report["invariants"]
    kinds = [f["kind"] for f in report["faults"]]
    assert kinds == ["client-kill", "kill-replica", "restart-redis", "client-kill"] * periods
    assert all(n > 0 for n in report["figures"]["connections_cut"])
    soak = report["soak"]
    assert soak["samples"] == len(lines)
    series = soak["series"]
    # Sampled: Redis, the coordinator and every replica and executor (3 + 2), and judged.
    assert {"redis used_memory (bytes)", "redis keys (DBSIZE)", "RSS coordinator (KiB)"} <= set(series)
    assert sum(name.startswith("RSS ") for name in series) == 6
    assert invariant(report, FLAT)["checked"] == len(series)
    assert all(s["flat"] is True for s in series.values()), series
    # Retention kicked in: most finished tasks were trimmed (the verdict read them from the
    # events it followed).
    figures = report["figures"]
    assert figures["tasks_trimmed"] > figures["tasks_created"] / 2
    assert all(line["used_memory"] is None or line["used_memory"] > 0 for line in lines)


@needs_redis_server
@pytest.mark.timeout(120)
def test_a_short_soak_stays_flat_once_retention_kicks_in(tmp_path: Path) -> None:
    """45 s: the fault schedule every 15 s, a sample a second, finished tasks kept 5 s."""
    args = [
        "--duration",
        "45",
        "--fault-period",
        "15",
        "--sample-every",
        "1",
        "--retention",
        "5",
        "--seed",
        "4545",
    ]
    report, lines = soak_cli(tmp_path, *args, limit_s=110)
    assert_soak_held(report, lines, periods=3)
    assert report["soak"]["store_settings"] == {
        "tasks": {"retention_s": 5.0},
        "processed_ttl_s": 20.0,  # 5 attempts of a 3 s lease and a 1 s reaper pass
        "events_maxlen": 1000,
        "block_window": 100,
    }
    assert report["soak"]["warm_up_s"] == 21.0
    assert len(lines) >= 40


@needs_redis_server
@pytest.mark.soak
@pytest.mark.timeout(1200)
def test_a_ten_minute_soak_stays_flat(tmp_path: Path) -> None:
    """On demand (--soak): 10 minutes, the fault schedule every 2 minutes, the default
    retention of a soak (2 minutes)."""
    args = ["--duration", "10m", "--fault-period", "2m", "--seed", "1010"]
    report, lines = soak_cli(tmp_path, *args, limit_s=1100)
    assert_soak_held(report, lines, periods=5)
    assert len(lines) >= 100
    # Task records and markers live 2 minutes of a 10-minute run: far fewer keys than tasks.
    assert report["soak"]["series"]["redis keys (DBSIZE)"]["max"] < report["figures"]["tasks_created"]
