"""``doctor`` and ``check`` as a user runs them: on the shipped configuration, on a server
that denies CONFIG, on a namespace whose key layout was damaged (and ``--repair``), behind
Sentinel and on a Cluster; and the Redis version check of a store's open."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from _cli_support import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    assert_error,
    config,
    invoke,
    run,
    seed,
)

from ponos_redis import ManualClock, StoreConfigurationError, TaskStatus
from ponos_redis._durability import ServerFacts
from ponos_redis._redis_server import RedisServer
from ponos_redis._topology import ClusterTopology, SentinelTopology, docker_conf
from ponos_redis.backends.redis import RedisAggregatorStore
from ponos_redis.keys import Keys
from ponos_redis.testing import make_task

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(120)]


def _yaml(tmp_path: Path, namespace: str, redis_block: str) -> str:
    path = tmp_path / "ponos.yaml"
    path.write_text(f"storage:\n  namespace: {namespace}\n  redis:\n{redis_block}", encoding="utf-8")
    return str(path)


async def _raw(url: str, act: Any) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        await act(client)
    finally:
        await client.aclose()


def _findings(outcome: Any, level: str | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = outcome.json()["findings"]
    return [f for f in found if level is None or f["level"] == level]


def test_doctor_and_check_on_the_shipped_config() -> None:
    with RedisServer(conf_file=docker_conf("redis.conf")) as server:
        seed(config(server.url, "healthy"), "healthy")
        store = ["--store", server.url, "--namespace", "healthy"]
        outcome = invoke("doctor", *store, "--json")
        assert outcome.code == EXIT_OK, outcome.where()
        assert outcome.json()["ok"] is True
        assert {f["check"] for f in _findings(outcome)} >= {
            "server",
            "durability",
            "replication",
            "schema",
            "layout",
        }
        assert _findings(outcome, "problem") == []
        table = run("doctor", *store)
        assert table.code == EXIT_OK, table.where()
        assert "appendfsync always" in table.stdout
        probe = run("check", *store)
        assert probe.code == EXIT_OK, probe.where()
        assert probe.stdout.count("\n") == 1
        assert probe.stdout.startswith("ok: ")
        assert invoke("check", *store, "--json").json()["ok"] is True
        assert_error(
            run("check", "--store", server.url, "--namespace", "absent"), EXIT_NOT_FOUND, "not found"
        )
        missing = invoke("doctor", "--store", server.url, "--namespace", "absent", "--json")
        assert missing.code == EXIT_NOT_FOUND
        assert missing.json()["namespace_found"] is False


def test_check_reports_a_durability_problem_and_a_replica(redis_url: str, redis_namespace: str) -> None:
    seed(config(redis_url, redis_namespace), redis_namespace)
    # The session's server has no AOF: the default policy (aof) cannot be kept.
    outcome = run("check", "--store", redis_url, "--namespace", redis_namespace)
    assert_error(outcome, EXIT_ERROR, "appendonly")
    assert outcome.stdout == ""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    with RedisServer(extra={"replicaof": f"127.0.0.1 {port}", "appendonly": "yes"}) as replica:
        deadline = time.monotonic() + 20
        client = redis.Redis(port=replica.port)
        try:
            while client.exists(Keys(redis_namespace).meta) == 0:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            client.close()
        assert_error(
            run("check", "--store", replica.url, "--namespace", redis_namespace), EXIT_ERROR, "not a primary"
        )
        doctor = invoke("doctor", "--store", replica.url, "--namespace", redis_namespace, "--json")
        assert doctor.code == EXIT_ERROR
        assert any("replica" in f["summary"] for f in _findings(doctor, "problem"))


def test_check_gives_up_quickly_when_unreachable() -> None:
    started = time.monotonic()
    outcome = run("check", "--store", "redis://127.0.0.1:1/0", "--timeout", "1")
    assert_error(outcome, EXIT_UNREACHABLE, "StoreUnavailableError")
    assert time.monotonic() - started < 15
    assert run("check", "--store", "memory").code == EXIT_OK
    assert invoke("check", "--store", "memory", "--timeout", "0").code == EXIT_USAGE


def test_doctor_with_config_denied() -> None:
    denied = {"rename-command": 'CONFIG ""'}
    with RedisServer(conf_file=docker_conf("redis.conf"), extra=denied) as server:
        seed(config(server.url, "denied"), "denied")
        outcome = invoke("doctor", "--store", server.url, "--namespace", "denied", "--json")
        assert outcome.code == EXIT_ERROR, outcome.where()
        durability = [f for f in _findings(outcome) if f["check"] == "durability"]
        summaries = " | ".join(f["summary"] for f in durability)
        assert "CONFIG GET is refused" in summaries
        assert "appendfsync is unknown" in summaries  # only CONFIG tells it; aof needs it
        assert "appendonly is no" not in summaries  # INFO said aof_enabled:1


def test_doctor_names_damaged_keys_and_repairs_what_is_safe(
    tmp_path: Path, redis_url: str, redis_namespace: str
) -> None:
    cfg = config(redis_url, redis_namespace)
    keys = Keys(redis_namespace)

    async def before_seeding() -> None:
        old = await RedisAggregatorStore.open(cfg, clock=ManualClock())  # long ago: its lease is long gone
        try:
            await old.save_task(make_task("stuck"))
            [claimed] = await old.claim_tasks("gone-replica", limit=1, lease_s=30)
            assert claimed.task.task_id == "stuck"
        finally:
            await old.close()
        async with await RedisAggregatorStore.open(cfg) as store:
            await store.save_task(make_task("t-bad"))
            await _raw(redis_url, lambda r: r.hset(keys.task("t-bad"), "block_number", "x"))
            assert await store.claim_tasks("r9", limit=1, lease_s=300) == []  # sets t-bad aside

    asyncio.run(before_seeding())
    seed(cfg, redis_namespace)

    async def damage(r: Any) -> None:
        await r.delete(keys.task("t4"))  # its index entries stay behind
        await r.zrem(keys.tasks(TaskStatus.PENDING), "t3")
        await r.zadd(keys.tasks(TaskStatus.COMPLETED), {"t-other": int(time.time() * 1000)})  # pending too
        await r.set(keys.prefix + "junk", "1")

    asyncio.run(_raw(redis_url, damage))
    store = ["--store", _yaml(tmp_path, redis_namespace, f"    url: {redis_url}\n    durability: none\n")]
    outcome = invoke("doctor", *store, "--json")
    assert outcome.code == EXIT_ERROR, outcome.where()
    problems = {f["summary"].split(":")[0]: f for f in _findings(outcome, "problem")}
    text = json.dumps(problems)
    assert keys.task("t3") in text  # missing from tasks:pending
    doubled = problems["1 task record(s) also on the index of another status"]
    assert f"{keys.task('t-other')} (also on {keys.tasks(TaskStatus.COMPLETED)})" in doubled["summary"]
    assert "ZREM" in doubled["fix"]
    assert "3 index entries whose record is gone" in text  # t4 on pending, its AVS's and its chain's
    assert keys.task("stuck") in text  # expired long ago, not reaped
    assert keys.task("t-bad") in text  # set aside
    assert keys.prefix + "junk" in json.dumps(_findings(outcome, "warning"))
    table = run("doctor", *store)
    assert table.code == EXIT_ERROR
    assert keys.task("t3") in table.stdout
    assert "--repair" in table.stdout

    repaired = invoke("doctor", *store, "--repair", "--json")
    done = " | ".join(repaired.json()["repaired"])
    assert "dropped 3 stale index entries" in done
    assert "reaped 1 expired lease(s)" in done
    after = json.dumps(_findings(repaired, "problem"))
    assert "whose record is gone" not in after
    assert "not reaped" not in after
    events = [json.loads(line) for line in invoke("events", *store, "--json").stdout.splitlines()]
    assert [e["subject"] for e in events if e["kind"] == "index.repaired"] == ["t4", "t4", "t4"]

    # The fixes the report gives, followed as an operator would.
    asyncio.run(_raw(redis_url, lambda r: r.zrem(keys.tasks(TaskStatus.COMPLETED), "t-other")))
    assert invoke("tasks", "fail", "t3", "--yes", *store).code == EXIT_OK
    assert invoke("tasks", "requeue", "t3", "--yes", *store).code == EXIT_OK
    shown = invoke("show", "t-bad", *store)
    assert_error(shown, EXIT_ERROR, "block_number")
    assert "raw.block_number" in shown.stdout
    assert_error(invoke("tasks", "requeue", "t-bad", "--yes", *store), EXIT_ERROR, "repair the field first")
    asyncio.run(
        _raw(redis_url, lambda r: r.hset(keys.task("t-bad"), "block_number", "100"))
    )  # as with redis-cli
    assert invoke("tasks", "requeue", "t-bad", "--yes", *store).code == EXIT_OK
    assert invoke("show", "t-bad", *store, "--json").json()["set_aside"] is False
    final = invoke("doctor", *store, "--json")
    assert final.code == EXIT_OK, final.where()
    assert final.json()["warnings"] >= 1  # the junk key: warned about, left alone


def test_doctor_behind_sentinel(tmp_path: Path) -> None:
    with SentinelTopology(replicas=2, sentinels=3) as topo:
        hosts = ", ".join(f'"{h}"' for h in topo.sentinel_hosts)
        block = f"    sentinel: {{hosts: [{hosts}], service: {topo.service}}}\n    durability: replicated\n"
        path = _yaml(tmp_path, "behind-sentinel", block)
        seed(config(topo.nodes[0].url, "behind-sentinel"), "behind-sentinel")
        outcome = invoke("doctor", "--store", path, "--json")
        assert outcome.code == EXIT_OK, outcome.where()
        [sentinel] = [f for f in _findings(outcome) if f["check"] == "sentinel"]
        assert sentinel["level"] == "ok"
        assert "3 sentinel(s) agree" in sentinel["summary"]
        assert "CKQUORUM OK" in sentinel["summary"]
        topo.sentinels[2].stop()
        degraded = invoke("doctor", "--store", path, "--json")
        assert any("unreachable" in f["summary"] for f in _findings(degraded, "warning")), degraded.where()
        assert invoke("check", "--store", path).code == EXIT_OK


def test_doctor_on_a_cluster(tmp_path: Path) -> None:
    with ClusterTopology(masters=3) as cluster:
        nodes = ", ".join(f'"{n}"' for n in cluster.startup_nodes)
        block = f"    cluster: {{nodes: [{nodes}]}}\n    durability: aof\n    retry: {{total_s: 1}}\n"
        path = _yaml(tmp_path, "on-cluster", block)

        async def fill() -> None:
            from ponos_redis import StorageConfig

            cfg = StorageConfig.from_yaml(path)
            async with await RedisAggregatorStore.open(cfg) as store:
                await store.save_tasks([make_task("c1"), make_task("c2")])

        asyncio.run(fill())
        outcome = invoke("doctor", "--store", path, "--json")
        assert outcome.code == EXIT_OK, outcome.where()
        [state] = [f for f in _findings(outcome) if f["check"] == "cluster"]
        assert "16384 slots covered by 3 primaries" in state["summary"]
        assert invoke("status", "--store", path, "--json").json()["tasks"]["pending"] == 2
        assert invoke("check", "--store", path).code == EXIT_OK

        # A slot nobody serves: the cluster refuses every command, doctor still says why.
        own = cluster.keyslot(Keys("on-cluster").meta)
        other = (own + 8192) % 16384
        client = redis.Redis(port=cluster.node_for_key(Keys("on-cluster").meta).port)
        ports = [port for _, _, port in cluster.slot_owners()]
        try:
            deadline = time.monotonic() + 30
            for _ in range(300):  # bounded; gossip still in flight may teach a node the slot again
                for port in ports:  # every master forgets who serves it
                    node = redis.Redis(port=port)
                    try:
                        node.execute_command("CLUSTER", "DELSLOTS", other)
                    except redis.ResponseError:
                        pass  # already unassigned there
                    finally:
                        node.close()
                if client.execute_command("CLUSTER", "INFO").find(b"cluster_state:fail") >= 0:
                    break
                assert time.monotonic() < deadline, "the cluster never noticed the unserved slot"
                time.sleep(0.1)
        finally:
            client.close()
        broken = invoke("doctor", "--store", path, "--json")
        assert broken.code == EXIT_ERROR, broken.where()
        summaries = " | ".join(f["summary"] for f in _findings(broken, "problem"))
        assert "16383 of 16384 slots assigned" in summaries
        assert "cannot be read" in summaries
        assert broken.json()["namespace_found"] is None


def test_a_store_refuses_a_redis_older_than_7(monkeypatch: pytest.MonkeyPatch) -> None:
    async def old_server(self: Any, node: Any = None) -> ServerFacts:
        return ServerFacts(
            appendonly="yes", appendfsync="always", maxmemory_policy="noeviction", redis_version="6.2.14"
        )

    monkeypatch.setattr(RedisAggregatorStore, "_gather_facts", old_server)
    with pytest.raises(StoreConfigurationError, match=r"Redis 6\.2\.14.*7\.0 or newer"):
        asyncio.run(RedisAggregatorStore.open("redis://127.0.0.1:1/0"))
