"""The inspection commands write nothing: they work against a replica (``replicaof``) and
as an ACL user allowed only ``+@read -@write``, each on a private redis-server, and a run
against the master changes nothing (``rdb_changes_since_last_save`` does not move)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from _cli_support import EXIT_NOT_FOUND, EXIT_OK, assert_error, config, invoke, run, seed

from ponos_redis._redis_server import RedisServer
from ponos_redis.keys import Keys

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(90)]

NS = "readonly"
VIEWS = [
    ["status"],
    ["tasks", "list"],
    ["tasks", "list", "--status", "processing", "--older-than", "0s"],
    ["pending"],
    ["show", "t3"],
    ["leases"],
    ["chains"],
    ["performers"],
    ["deployments", "list"],
    ["deployments", "show", "dep-1"],
    ["inflight"],
    ["events"],
]


@pytest.fixture(scope="module")
def master() -> Iterator[RedisServer]:
    with RedisServer() as server:
        seed(config(server.url, NS), NS)
        yield server


@pytest.fixture(scope="module")
def replica(master: RedisServer) -> Iterator[RedisServer]:
    with RedisServer(extra={"replicaof": f"127.0.0.1 {master.port}"}) as server:
        client = redis.Redis(port=server.port)
        try:
            deadline = time.monotonic() + 20
            while client.exists(Keys(NS).meta) == 0:
                assert time.monotonic() < deadline, "the replica never synced"
                time.sleep(0.05)
            info = client.info("replication")
            assert info["role"] == "slave"
            assert info["master_link_status"] == "up"
        finally:
            client.close()
        yield server


def _writes(server: RedisServer) -> int:
    client = redis.Redis(port=server.port)
    try:
        return int(client.info("persistence")["rdb_changes_since_last_save"])
    finally:
        client.close()


def test_views_on_a_replica(master: RedisServer, replica: RedisServer) -> None:
    for args in VIEWS:
        on_master = invoke(*args, "--store", master.url, "--namespace", NS, "--json")
        on_replica = invoke(*args, "--store", replica.url, "--namespace", NS, "--json")
        assert on_replica.code == EXIT_OK, on_replica.where()
        if args[0] not in ("status", "leases", "chains"):  # these say "now" and "expires in"
            assert on_replica.stdout == on_master.stdout, args
    report = invoke("status", "--store", replica.url, "--namespace", NS, "--json").json()
    assert report["server"]["role"] == "slave"
    assert report["server"]["master_link_status"] == "up"
    assert report["tasks"]["pending"] == 3
    outcome = run("status", "--store", replica.url, "--namespace", NS)
    assert outcome.code == EXIT_OK, outcome.where()
    assert_error(
        invoke("status", "--store", replica.url, "--namespace", "nothing-here"), EXIT_NOT_FOUND, "not found"
    )


def test_views_write_nothing(master: RedisServer) -> None:
    before = _writes(master)
    for args in VIEWS:
        assert invoke(*args, "--store", master.url, "--namespace", NS).code == EXIT_OK, args
    assert_error(invoke("status", "--store", master.url, "--namespace", "nothing-here"), EXIT_NOT_FOUND)
    assert _writes(master) == before


def test_views_as_a_read_only_acl_user() -> None:
    with RedisServer() as server:
        seed(config(server.url, NS), NS)
        admin = redis.Redis(port=server.port)
        try:
            admin.acl_setuser(
                "reader", enabled=True, passwords=["+readpw"], keys=["*"], commands=["+@read", "-@write"]
            )
        finally:
            admin.close()
        url = f"redis://reader:readpw@127.0.0.1:{server.port}/0"
        for args in VIEWS:
            outcome = invoke(*args, "--store", url, "--namespace", NS)
            assert outcome.code == EXIT_OK, outcome.where()
            assert "readpw" not in outcome.stdout + outcome.stderr
        report = invoke("status", "--store", url, "--namespace", NS, "--json").json()
        assert report["clock"] == "local"  # TIME is not in +@read
        assert report["server"]["unavailable"].startswith("INFO refused")
        assert report["tasks"]["processing"] == 2
        assert_error(invoke("status", "--store", url, "--namespace", "nothing-here"), EXIT_NOT_FOUND)
        # An action needs a user that may write: refused, nothing done, one line.
        refused = invoke("tasks", "requeue", "t0", "--yes", "--store", url, "--namespace", NS)
        assert refused.code != EXIT_OK
        assert refused.stderr.splitlines()[-1].startswith("error: ")
