"""The inspection commands on a real redis-server, as a user runs them: status, tasks list,
pending, show, leases, chains, performers, deployments, events; tables and ``--json``."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import pytest
import redis
from _cli_support import (
    AVS,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    OTHER_AVS,
    assert_error,
    command,
    config,
    invoke,
    run,
    seed,
    user_env,
)

from ponos_redis import open_aggregator_store
from ponos_redis.keys import SCHEMA_VERSION, Keys
from ponos_redis.testing import make_task

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(90)]


@pytest.fixture
def ns(redis_url: str, redis_namespace: str) -> list[str]:
    """--store and --namespace of a seeded namespace."""
    seed(config(redis_url, redis_namespace), redis_namespace)
    return ["--store", redis_url, "--namespace", redis_namespace]


def test_status_table_and_json(ns: list[str], redis_namespace: str) -> None:
    table = invoke("status", *ns)
    assert table.code == EXIT_OK, table.where()
    for text in (redis_namespace, "pending", "processing", "oldest pending: t3", "r1", "17000", "events"):
        assert text in table.stdout, text
    report = invoke("status", *ns, "--json").json()
    assert report["namespace"] == redis_namespace
    assert report["backend"] == "redis"
    assert report["schema_version"] == SCHEMA_VERSION
    assert report["tasks"] == {"pending": 3, "processing": 2, "completed": 0, "failed": 1, "set_aside": 0}
    assert report["oldest_pending"]["task_id"] == "t3"
    assert report["oldest_pending"]["age_s"] >= 0
    assert report["leases"]["held"] == 2
    assert [h["owner"] for h in report["leases"]["holders"]] == ["r1"]
    [chain] = [c for c in report["chains"] if c["chain_id"] == 17000]
    assert chain["cursor"] == 100
    assert chain["lease"]["owner"] == "r1"
    assert not chain["lease"]["expired"]
    [events] = report["streams"]
    assert events["name"] == "events"
    assert events["length"] > 0
    server = report["server"]
    assert server["redis_version"].split(".")[0] >= "7"
    assert server["role"] == "master"
    assert isinstance(server["used_memory"], int)
    assert server["aof_enabled"] in (True, False)
    assert report["clock"] == "server"


def test_tasks_list_filters(ns: list[str]) -> None:
    every = invoke("tasks", "list", *ns, "--json").json()
    assert [t["task_id"] for t in every] == ["t3", "t4", "t-other", "t1", "t2", "t0"]
    failed = invoke("tasks", "list", *ns, "--status", "failed", "--json").json()
    assert [(t["task_id"], t["status"], t["last_error"]) for t in failed] == [
        ("t0", "failed", "upstream down")
    ]
    other = invoke("tasks", "list", *ns, "--avs", OTHER_AVS, "--json").json()
    assert [t["task_id"] for t in other] == ["t-other"]
    assert invoke("tasks", "list", *ns, "--limit", "2", "--json").json()[1]["task_id"] == "t4"
    assert invoke("tasks", "list", *ns, "--older-than", "1h", "--json").json() == []
    assert (
        len(invoke("tasks", "list", *ns, "--status", "processing", "--older-than", "0s", "--json").json())
        == 2
    )
    table = invoke("tasks", "list", *ns, "--status", "processing")
    assert "t1" in table.stdout
    assert "r1" in table.stdout
    assert "t3" not in table.stdout
    assert invoke("tasks", "list", *ns, "--status", "set-aside", "--json").json() == []


def test_tasks_list_refuses_bad_arguments(ns: list[str]) -> None:
    assert invoke("tasks", "list", *ns, "--status", "done").code == EXIT_USAGE
    assert invoke("tasks", "list", *ns, "--older-than", "soon").code == EXIT_USAGE
    assert_error(invoke("tasks", "list", *ns, "--avs", "0x12"), EXIT_USAGE, "InvalidInputError")
    assert_error(invoke("tasks", "list", *ns, "--limit", "-1"), EXIT_USAGE, "InvalidInputError")


def test_pending_is_kept(ns: list[str]) -> None:
    rows = invoke("pending", *ns, "--json").json()
    assert [t["task_id"] for t in rows] == ["t3", "t4", "t-other"]
    assert [t["task_id"] for t in invoke("pending", *ns, "--avs", AVS, "--json").json()] == ["t3", "t4"]
    table = invoke("pending", *ns, "--limit", "1")
    assert "t3" in table.stdout
    assert "t4" not in table.stdout


def test_show_gives_payload_as_hex_with_its_length(ns: list[str]) -> None:
    shown = invoke("show", *ns, "t3", "--json").json()
    assert shown["task"]["payload"] == {"length": 9, "hex": bytes(range(9)).hex()}
    assert shown["status"] == "pending"
    assert shown["problem"] is None
    table = invoke("show", *ns, "t-other")
    assert "2 bytes: 0x00ff" in table.stdout
    assert "b'" not in table.stdout  # never a Python repr
    processing = invoke("show", *ns, "t1", "--json").json()
    assert processing["owner"] == "r1"
    assert processing["attempts"] == 1


def test_show_of_an_unreadable_record_shows_its_fields(
    ns: list[str], redis_url: str, redis_namespace: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.hset(Keys(redis_namespace).task("t4"), "chain_id", "oops")
    finally:
        client.close()
    outcome = invoke("show", *ns, "t4")
    assert_error(outcome, EXIT_ERROR, "CorruptRecordError")
    assert "raw.chain_id" in outcome.stdout
    assert "oops" in outcome.stdout
    shown = invoke("show", *ns, "t4", "--json")
    assert shown.code == EXIT_ERROR
    assert shown.json()["raw"]["chain_id"] == "oops"
    assert "chain_id" in shown.json()["problem"]
    listed = {t["task_id"]: t for t in invoke("tasks", "list", *ns, "--json").json()}
    assert listed["t4"]["problem"] is not None


def test_show_missing_task_is_not_found(ns: list[str]) -> None:
    assert_error(invoke("show", *ns, "nope"), EXIT_NOT_FOUND, "NotFoundError")
    assert_error(invoke("show", *ns, "a b"), EXIT_USAGE, "InvalidInputError")


def test_leases(ns: list[str]) -> None:
    found = invoke("leases", *ns, "--json").json()
    assert [(t["task_id"], t["owner"], t["expired"]) for t in found["tasks"]] == [
        ("t1", "r1", False),
        ("t2", "r1", False),
    ]
    assert found["tasks_total"] == 2
    assert [(c["chain_id"], c["lease"]["owner"]) for c in found["chains"]] == [(17000, "r1")]
    assert [(r["name"], r["owner"]) for r in found["runners"]] == [("reaper", "r2")]
    assert invoke("leases", *ns, "--limit", "1", "--json").json()["truncated"] is True
    table = invoke("leases", *ns)
    assert "reaper" in table.stdout
    assert "task leases" in table.stdout


def test_chains(ns: list[str]) -> None:
    found = invoke("chains", *ns, "--json").json()
    assert found["truncated"] is False
    chains = {c["chain_id"]: c for c in found["chains"]}
    assert chains[17000]["cursor"] == 100
    assert chains[1]["tasks"] == 6  # the tasks' chain: no cursor yet
    assert chains[1]["cursor"] is None
    assert "17000" in invoke("chains", *ns).stdout


def test_performers_hide_environment_values(ns: list[str]) -> None:
    outcome = invoke("performers", *ns, "--json")
    [performer] = outcome.json()
    assert performer["performer_id"] == "perf-1"
    assert performer["environment_vars"][0]["name"] == "API_KEY"
    assert "s3cret-value" not in outcome.stdout
    table = invoke("performers", *ns)
    assert "perf-1" in table.stdout
    assert "API_KEY" in table.stdout
    assert "s3cret" not in table.stdout


def test_inflight(ns: list[str]) -> None:
    [task] = invoke("inflight", *ns, "--json").json()
    assert (task["task_id"], task["status"]) == ("inflight-1", "interrupted")
    assert "interrupted" in invoke("inflight", *ns).stdout


def test_tasks_list_by_owner(ns: list[str]) -> None:
    held = invoke("tasks", "list", *ns, "--owner", "r1", "--json").json()
    assert [t["task_id"] for t in held] == ["t1", "t2", "t0"]  # t0: r1 held it when it failed
    assert invoke("tasks", "list", *ns, "--owner", "nobody", "--json").json() == []


def test_deployments(ns: list[str]) -> None:
    listed = invoke("deployments", "list", *ns, "--json").json()
    assert [(d["deployment_id"], d["status"]) for d in listed] == [("dep-1", "deploying")]
    shown = invoke("deployments", "show", *ns, "dep-1", "--json").json()
    assert shown["deployment"]["status"] == "deploying"
    assert [h["status"] for h in shown["history"]] == ["pending", "deploying"]
    table = invoke("deployments", "show", *ns, "dep-1")
    assert "history" in table.stdout
    assert "deploying" in table.stdout
    assert_error(invoke("deployments", "show", *ns, "nope"), EXIT_NOT_FOUND, "NotFoundError")
    assert "list" in invoke("deployments").stdout  # the group alone shows its help


def test_events(ns: list[str]) -> None:
    lines = invoke("events", *ns, "--json").stdout.splitlines()
    events = [__import__("json").loads(line) for line in lines]
    assert events[0]["kind"] == "task.saved"
    assert {"id", "kind", "subject", "status", "owner", "token", "at"} <= set(events[0])
    after = invoke("events", *ns, "--after", events[-2]["id"], "--json").stdout.splitlines()
    assert len(after) == 1
    table = invoke("events", *ns)
    assert "task.claimed t1 processing owner=r1" in table.stdout
    assert_error(invoke("events", *ns, "--after", "garbage"), EXIT_USAGE, "InvalidInputError")


def test_events_follow_runs_until_interrupted(redis_url: str, redis_namespace: str) -> None:
    cfg = config(redis_url, redis_namespace)
    seed(cfg, redis_namespace)
    proc = subprocess.Popen(
        [*command(), "events", "--follow", "--json", "--store", redis_url, "--namespace", redis_namespace],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=user_env(),
    )
    try:
        time.sleep(3.0)  # silence: it keeps waiting (the old command stopped after 60 s of it)
        assert proc.poll() is None

        async def late() -> None:
            async with open_aggregator_store(cfg) as agg:
                await agg.save_task(make_task("late"))

        asyncio.run(late())
        time.sleep(1.5)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err
    assert '"subject":"late"' in out


def test_missing_namespace_is_not_found_and_not_created(redis_url: str, redis_namespace: str) -> None:
    store = ["--store", redis_url, "--namespace", redis_namespace]
    for args in (
        ["status"],
        ["tasks", "list"],
        ["pending"],
        ["show", "t1"],
        ["leases"],
        ["chains"],
        ["performers"],
        ["deployments", "list"],
        ["deployments", "show", "d"],
        ["inflight"],
        ["events"],
    ):
        assert_error(invoke(*args, *store), EXIT_NOT_FOUND, "namespace")
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.exists(Keys(redis_namespace).meta) == 0
    finally:
        client.close()


def test_subprocess_status_as_a_user_runs_it(ns: list[str], redis_namespace: str) -> None:
    outcome = run("status", *ns)
    assert outcome.code == EXIT_OK, outcome.where()
    assert redis_namespace in outcome.stdout
    env = user_env(PONOS_STORE=ns[1])
    by_env = run("tasks", "list", "--namespace", redis_namespace, "--json", env=env)
    assert by_env.code == EXIT_OK, by_env.where()
    assert len(by_env.json()) == 6


def test_memory_views_in_process() -> None:
    from ponos_redis.backends.memory import reset_memory_namespaces

    reset_memory_namespaces("cli-memory")
    try:
        seed("memory", "cli-memory")
        store = ["--store", "memory", "--namespace", "cli-memory"]
        report = invoke("status", *store, "--json").json()
        assert report["backend"] == "memory"
        assert report["tasks"]["pending"] == 3
        assert report["server"] is None
        assert [t["task_id"] for t in invoke("tasks", "list", *store, "--json").json()][:3] == [
            "t3",
            "t4",
            "t-other",
        ]
        assert invoke("show", *store, "t3", "--json").json()["task"]["payload"]["length"] == 9
        assert invoke("leases", *store, "--json").json()["runners"][0]["name"] == "reaper"
        assert {c["chain_id"] for c in invoke("chains", *store, "--json").json()["chains"]} == {17000}
        assert invoke("performers", *store, "--json").json()[0]["performer_id"] == "perf-1"
        assert [
            h["status"] for h in invoke("deployments", "show", *store, "dep-1", "--json").json()["history"]
        ] == [
            "pending",
            "deploying",
        ]
        assert invoke("events", *store).stdout.count("task.saved") == 6
        assert invoke("pending", *store, "--json").json()[0]["task_id"] == "t3"
    finally:
        reset_memory_namespaces("cli-memory")
