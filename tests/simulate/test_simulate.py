"""The simulation, end to end: on a private redis-server through the CLI, on the in-process
fake when there is no redis-server, and with invariants broken on purpose.

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

from ponos_redis import open_aggregator_store
from ponos_redis._redis_server import redis_server_available
from ponos_redis.cli import main
from ponos_redis.keys import Keys
from ponos_redis.simulate import INVARIANTS, RunContext, SimulationOptions, run_simulation
from ponos_redis.simulate._execlog import ExecutionLog

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
    ],
)
def test_invalid_options_are_refused_before_anything_starts(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["simulate", *args])
    assert result.exit_code == 2
    assert result.output.startswith("error: InvalidInputError: ")
    assert message in result.output


@needs_redis_server
@pytest.mark.timeout(120)
def test_on_a_private_redis_server_with_a_replica_kill_and_a_redis_restart_every_invariant_holds() -> None:
    code, out, err = run_cli("simulate", "--duration", "15", "--seed", "4242", "--json")
    assert code == 0, f"exit {code}\n{out}\n{err[-3000:]}"
    report = json.loads(out)
    assert report["ok"] is True
    assert "private redis-server" in report["backend"]
    assert [i["name"] for i in report["invariants"]] == list(INVARIANTS)
    assert all(i["ok"] and i["checked"] > 0 for i in report["invariants"]), report["invariants"]
    assert [f["kind"] for f in report["faults"]] == ["kill-replica", "restart-redis"]
    assert all(f["back_after_s"] is not None for f in report["faults"])
    figures = report["figures"]
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
    assert all(i["ok"] and i["checked"] > 0 for i in report["invariants"]), report["invariants"]
    assert report["figures"]["tasks_completed"] > 0


@pytest.mark.timeout(60)
async def test_the_verdict_catches_a_double_completion_and_a_double_execution(ponos_redis_url: str) -> None:
    """A task completed twice (a second task.completed event written raw into the stream, as
    a store without fencing would leave it) and executed twice (a second execution in an
    executor's log): the run fails, naming exactly those two invariants."""
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
        finally:
            client.close()
        log: ExecutionLog = ctx.execution_log
        executor_ns = ctx.executor_namespaces[0]
        (task_id, _), *_ = await log.read(executor_ns)
        await log.record(executor_ns, task_id, "a-second-execution")
        broken.update(completed=victim.subject, executed=task_id)

    report = await run_simulation(
        SimulationOptions(duration_s=4, seed=99, redis_url=ponos_redis_url, replicas=2, chains=1),
        live=False,
        before_verdict=break_two_invariants,
    )
    assert report.log_dir is not None  # a failed run keeps its processes' logs, and says where
    shutil.rmtree(report.log_dir)
    assert report.exit_code == 1
    assert not report.ok
    assert report.broken == ["no task was completed twice", "no task was executed twice by one executor"]
    (twice,) = [i for i in report.invariants if i.name == "no task was completed twice"]
    assert twice.violations == 1
    assert broken["completed"] in twice.examples[0]
    (executed,) = [i for i in report.invariants if i.name == "no task was executed twice by one executor"]
    assert executed.violations == 1
    assert broken["executed"] in executed.examples[0]

    console = Console(record=True, width=200)
    report.print(console)
    text = console.export_text()
    assert "BROKEN" in text
    assert "no task was completed twice" in text
    assert "FAIL" in text
