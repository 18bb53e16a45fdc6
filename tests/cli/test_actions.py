"""Operator actions as a user runs them: nothing changes without --yes, every change goes
through the transition table and into the event stream, bulk forms act in bounded batches,
and an action never creates a namespace."""

from __future__ import annotations

import asyncio

import pytest
import redis
from _cli_support import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    assert_error,
    config,
    invoke,
    run,
    seed,
)

from ponos_redis import ManualClock, StorageConfig, TaskStatus, open_aggregator_store
from ponos_redis.backends.memory import MemoryAggregatorStore, reset_memory_namespaces
from ponos_redis.keys import Keys
from ponos_redis.testing import make_task

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(90)]


@pytest.fixture
def ns(redis_url: str, redis_namespace: str) -> list[str]:
    seed(config(redis_url, redis_namespace), redis_namespace)
    return ["--store", redis_url, "--namespace", redis_namespace]


def _status(ns: list[str], task_id: str) -> dict[str, object]:
    shown: dict[str, object] = invoke("show", *ns, task_id, "--json").json()
    return shown


def _events(ns: list[str]) -> list[dict[str, object]]:
    import json

    return [json.loads(line) for line in invoke("events", *ns, "--json").stdout.splitlines()]


def test_without_yes_nothing_changes(ns: list[str]) -> None:
    before = _events(ns)
    for args in (
        ["tasks", "requeue", "t0"],
        ["tasks", "fail", "t3"],
        ["tasks", "complete", "t1"],
        ["tasks", "delete", "t4"],
        ["tasks", "requeue", "--status", "processing"],
        ["rewind", "17000", "50"],
    ):
        outcome = invoke(*args, *ns)
        assert_error(outcome, EXIT_USAGE, "add --yes")
        assert "would" in outcome.stdout, outcome.where()
    assert _events(ns) == before
    plan = invoke("tasks", "requeue", "--status", "processing", *ns, "--json")
    assert plan.json()["dry_run"] is True
    assert [(t["task_id"], t["result"]) for t in plan.json()["tasks"]] == [("t1", "would"), ("t2", "would")]


def test_requeue_a_failed_task(ns: list[str]) -> None:
    before = _status(ns, "t0")
    outcome = invoke("tasks", "requeue", "t0", "--yes", *ns)
    assert outcome.code == EXIT_OK, outcome.where()
    assert "requeued 1 task(s)" in outcome.stdout
    after = _status(ns, "t0")
    assert (after["status"], after["attempts"], after["last_error"]) == ("pending", 0, "upstream down")
    assert isinstance(after["token"], int)
    assert isinstance(before["token"], int)
    assert after["token"] > before["token"]
    event = _events(ns)[-1]
    assert (event["kind"], event["subject"], event["status"], event["owner"]) == (
        "task.released",
        "t0",
        "pending",
        "manual",
    )
    # Back at its place in the queue: saved first, so claimed first.
    assert invoke("pending", *ns, "--json").json()[0]["task_id"] == "t0"


def test_fail_complete_delete_by_id(ns: list[str]) -> None:
    assert invoke("tasks", "fail", "t3", "--yes", *ns).code == EXIT_OK
    assert _status(ns, "t3")["last_error"] == "set to failed by an operator"
    assert invoke("tasks", "complete", "t1", "--yes", *ns, "--json").json()["done"] == 1
    assert _status(ns, "t1")["status"] == "completed"
    assert invoke("tasks", "delete", "t4", "--yes", *ns).code == EXIT_OK
    assert_error(invoke("show", *ns, "t4"), EXIT_NOT_FOUND)
    kinds = [(e["kind"], e["subject"], e["owner"]) for e in _events(ns)[-3:]]
    assert kinds == [
        ("task.failed", "t3", "manual"),
        ("task.completed", "t1", "manual"),
        ("task.deleted", "t4", None),
    ]


def test_refused_transitions_and_missing_tasks(ns: list[str]) -> None:
    assert invoke("tasks", "complete", "t1", "--yes", *ns).code == EXIT_OK
    assert_error(invoke("tasks", "requeue", "t1", "--yes", *ns), EXIT_ERROR, "InvalidTransitionError")
    assert_error(invoke("tasks", "complete", "t3", "--yes", *ns), EXIT_ERROR, "InvalidTransitionError")
    assert_error(invoke("tasks", "delete", "nope", "--yes", *ns), EXIT_NOT_FOUND, "NotFoundError")
    several = invoke("tasks", "delete", "t3", "nope", "--yes", *ns, "--json")
    assert several.code == EXIT_NOT_FOUND
    assert [(t["task_id"], t["result"]) for t in several.json()["tasks"]] == [
        ("t3", "done"),
        ("nope", "error"),
    ]


def test_usage_errors(ns: list[str]) -> None:
    for args in (
        ["tasks", "requeue"],
        ["tasks", "requeue", "t1", "--status", "processing"],
        ["tasks", "requeue", "t1", "--older-than", "1m"],
        ["tasks", "requeue", "--status", "completed"],
        ["tasks", "complete", "--status", "pending"],
        ["tasks", "requeue", "--status", "processing", "--older-than", "later"],
        ["tasks", "fail", "--status", "pending", "--limit", "0"],
    ):
        outcome = invoke(*args, *ns, "--yes")
        assert outcome.code == EXIT_USAGE, outcome.where()
    assert_error(invoke("tasks", "fail", "a b", "--yes", *ns), EXIT_USAGE, "InvalidInputError")


def test_bulk_requeue_by_status_and_age(redis_url: str, redis_namespace: str) -> None:
    cfg = config(redis_url, redis_namespace)
    clock = ManualClock()

    async def prepare() -> None:
        from ponos_redis.backends.redis import RedisAggregatorStore

        store = await RedisAggregatorStore.open(cfg, clock=clock)
        try:
            await store.save_tasks([make_task(f"old-{i}") for i in range(7)] + [make_task("young")])
            await store.claim_tasks("stuck", limit=7, lease_s=3600)  # old-0 .. old-6, long ago
        finally:
            await store.close()
        async with open_aggregator_store(cfg) as agg:  # now, by the server's clock
            await agg.claim_tasks("busy", limit=1, lease_s=3600)

    asyncio.run(prepare())
    ns = ["--store", redis_url, "--namespace", redis_namespace]
    selection = ["--status", "processing", "--older-than", "10m"]
    plan = invoke("tasks", "requeue", *selection, *ns, "--json").json()
    assert sorted(t["task_id"] for t in plan["tasks"]) == [f"old-{i}" for i in range(7)]
    done = invoke("tasks", "requeue", *selection, "--limit", "5", "--batch-size", "2", "--yes", *ns, "--json")
    assert done.code == EXIT_OK, done.where()
    assert done.json()["done"] == 5
    rest = invoke("tasks", "requeue", *selection, "--yes", *ns, "--json").json()
    assert rest["done"] == 2
    still = invoke("tasks", "list", "--status", "processing", *ns, "--json").json()
    assert [(t["task_id"], t["owner"]) for t in still] == [("young", "busy")]
    released = [e for e in _events(ns) if e["kind"] == "task.released"]
    assert len(released) == 7
    assert all(e["owner"] == "manual" for e in released)


def test_requeue_the_tasks_of_a_dead_replica(ns: list[str]) -> None:
    outcome = invoke("tasks", "requeue", "--status", "processing", "--owner", "r1", "--yes", *ns, "--json")
    assert outcome.code == EXIT_OK, outcome.where()
    assert sorted(t["task_id"] for t in outcome.json()["tasks"]) == ["t1", "t2"]
    assert invoke("leases", *ns, "--json").json()["tasks"] == []
    assert invoke("tasks", "requeue", "t1", "--owner", "r1", "--yes", *ns).code == EXIT_USAGE


def test_bulk_delete_failed_tasks(ns: list[str]) -> None:
    outcome = invoke("tasks", "delete", "--status", "failed", "--yes", *ns)
    assert outcome.code == EXIT_OK, outcome.where()
    assert "deleted 1 task(s)" in outcome.stdout
    assert invoke("tasks", "list", "--status", "failed", *ns, "--json").json() == []


def test_rewind(ns: list[str]) -> None:
    outcome = invoke("rewind", "17000", "40", "--yes", *ns, "--json")
    assert outcome.code == EXIT_OK, outcome.where()
    assert outcome.json() == {
        "chain_id": 17000,
        "cursor": 100,
        "block": 40,
        "dry_run": False,
        "lease_owner": "r1",
    }
    chains = {c["chain_id"]: c for c in invoke("chains", *ns, "--json").json()["chains"]}
    assert chains[17000]["cursor"] == 40
    event = _events(ns)[-1]
    assert (event["kind"], event["subject"], event["token"]) == ("chain.rewound", "17000", None)
    assert_error(invoke("rewind", "17000", "41", "--yes", *ns), EXIT_ERROR, "InvalidTransitionError")
    assert_error(invoke("rewind", "5", "1", "--yes", *ns), EXIT_NOT_FOUND, "NotFoundError")
    assert invoke("rewind", "x", "1", *ns).code == EXIT_USAGE


def test_reap(ns: list[str]) -> None:
    outcome = invoke("reap", *ns, "--json")
    assert outcome.code == EXIT_OK, outcome.where()
    assert outcome.json() == {"reaped": 0}
    assert "reaped 0 expired lease(s)" in run("reap", *ns).stdout


def test_actions_never_create_a_namespace(redis_url: str, redis_namespace: str) -> None:
    ns = ["--store", redis_url, "--namespace", redis_namespace]
    for args in (["tasks", "requeue", "t1", "--yes"], ["rewind", "1", "1", "--yes"], ["reap"]):
        assert_error(invoke(*args, *ns), EXIT_NOT_FOUND, "not found")
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.exists(Keys(redis_namespace).meta) == 0
    finally:
        client.close()


def test_actions_on_the_fake_in_process() -> None:
    reset_memory_namespaces("cli-actions")
    try:

        async def prepare() -> None:
            store = MemoryAggregatorStore("cli-actions")
            await store.save_tasks([make_task("a"), make_task("b")])
            [claimed, _] = await store.claim_tasks("r", limit=2, lease_s=30)
            await store.fail_task(claimed.task.task_id, claimed.token, "boom")

        asyncio.run(prepare())
        ns = ["--store", "memory", "--namespace", "cli-actions"]
        assert invoke("tasks", "requeue", "a", "--yes", *ns).code == EXIT_OK
        assert invoke("tasks", "fail", "--status", "processing", "--yes", *ns, "--json").json()["done"] == 1

        async def check() -> None:
            store = MemoryAggregatorStore("cli-actions")
            record = await store.get_task("a")
            assert (record.status, record.attempts) == (TaskStatus.PENDING, 0)
            assert (await store.get_task("b")).status is TaskStatus.FAILED

        asyncio.run(check())
        assert invoke("reap", *ns).code == EXIT_OK
        assert_error(invoke("tasks", "delete", "zzz", "--yes", *ns), EXIT_NOT_FOUND)
    finally:
        reset_memory_namespaces("cli-actions")


def test_action_with_a_config_file(tmp_path: object, redis_url: str, redis_namespace: str) -> None:
    seed(config(redis_url, redis_namespace), redis_namespace)
    path = tmp_path / "ponos.yaml"  # type: ignore[operator]
    path.write_text(
        f"storage:\n  namespace: {redis_namespace}\n  redis:\n    url: {redis_url}\n    durability: none\n"
    )
    outcome = run("tasks", "requeue", "t0", "--yes", "--store", str(path))
    assert outcome.code == EXIT_OK, outcome.where()
    assert outcome.stderr == ""  # durability none: nothing to warn about
    StorageConfig.from_yaml(str(path))
