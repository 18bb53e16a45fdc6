"""The shipped access control (``docker/users.acl``, loaded by ``docker/redis.conf``), on
the session's server started from those files with passwords generated for the run
(``redis_acl_server``, the one the contract suite runs on as the ``ponos`` user).

- The default user is off: a connection that has not logged in runs nothing.
- ``ponos`` (the library) is refused every command a store never needs (FLUSHALL,
  FLUSHDB, KEYS, DEBUG, CONFIG SET, SCRIPT FLUSH, SHUTDOWN ...), and every key outside
  ``ponos:{<namespace>}:...``, also from inside a script; the server is unchanged after.
- The durability check works as ``ponos`` (``strict: true`` with ``durability: aof``
  opens, ``doctor`` confirms it), because ``ponos`` may run ``CONFIG GET``; a user
  without it cannot confirm ``appendfsync`` (the alternative, ``replicated``, is
  tested in tests/ha/test_replicated_durability.py).
- ``ponos-readonly`` runs the read-only views and is refused every write.
- A restart on the AOF keeps every write made as ``ponos``: Redis 7.0 replays each
  MULTI/EXEC block of the AOF (every script's writes) as the default user, whose
  rights are checked again (redis/redis#14541), so the shipped default user is off
  but keeps the rights of that replay.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from click.testing import CliRunner
from redis.backoff import NoBackoff
from redis.retry import Retry

from ponos_redis import (
    DurabilityError,
    StorageConfig,
    StoreConfigurationError,
    TaskStatus,
    open_aggregator_store,
    open_executor_store,
)
from ponos_redis._acl import (
    ADMIN_USER,
    APP_PASSWORD_ENV,
    APP_USER,
    READONLY_PASSWORD_ENV,
    READONLY_USER,
)
from ponos_redis._configs import docker_file
from ponos_redis._redis_server import RedisServer
from ponos_redis.backends.redis import RedisAggregatorStore
from ponos_redis.keys import Keys
from ponos_redis.testing import make_deployment, make_inflight, make_performer, make_task

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(60)]

NS = "acl-views"
# The key every destructive attempt must leave in place.
KEEP = Keys(NS).meta


def _client(
    server: RedisServer, user: str | None, password: str | None, *, decode: bool = True
) -> redis.Redis:
    """A RESP2 client that logs in only when given a user (RESP3 would send HELLO first)."""
    return redis.Redis(
        port=server.port,
        username=user,
        password=password,
        protocol=2,
        socket_timeout=5,
        decode_responses=decode,
        retry=Retry(NoBackoff(), 0),  # a refusal is an answer: nothing to try again
    )


def _dumps(server: RedisServer, keys: list[str]) -> list[bytes | None]:
    """Each key's serialized value (DUMP), read as the admin user: equal means unchanged."""
    assert server.auth is not None
    client = _client(server, *server.auth, decode=False)
    try:
        return [client.dump(key) for key in keys]
    finally:
        client.close()


@pytest.fixture(scope="module")
def admin(redis_acl_server: RedisServer) -> Iterator[redis.Redis]:
    assert redis_acl_server.auth is not None
    user, password = redis_acl_server.auth
    assert user == ADMIN_USER
    client = _client(redis_acl_server, user, password)
    yield client
    client.close()


@pytest.fixture(scope="module")
def app(redis_acl_server: RedisServer, redis_secrets: dict[str, str]) -> Iterator[redis.Redis]:
    client = _client(redis_acl_server, APP_USER, redis_secrets[APP_PASSWORD_ENV])
    yield client
    client.close()


@pytest.fixture(scope="module")
def reader(redis_acl_server: RedisServer, redis_secrets: dict[str, str]) -> Iterator[redis.Redis]:
    client = _client(redis_acl_server, READONLY_USER, redis_secrets[READONLY_PASSWORD_ENV])
    yield client
    client.close()


def _config_file(folder: Path, server: RedisServer, user: str, password_env: str, **redis_: Any) -> str:
    """A YAML config logging in as ``user``, its password in ``$<password_env>`` (not in the file)."""
    path = folder / f"{user}.yaml"
    block = {"url": server.url, "username": user, "password_env": password_env, **redis_}
    path.write_text(yaml.safe_dump({"storage": {"namespace": NS, "redis": block}}), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def configs(redis_acl_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("acl-configs")
    return {
        "app": _config_file(
            folder, redis_acl_server, APP_USER, APP_PASSWORD_ENV, durability="aof", strict=True
        ),
        "readonly": _config_file(folder, redis_acl_server, READONLY_USER, READONLY_PASSWORD_ENV),
    }


@pytest.fixture(scope="module")
def seeded(configs: dict[str, str]) -> dict[str, int]:
    """A namespace with a bit of everything, written as ``ponos``; the tokens it claimed."""
    config = StorageConfig.from_yaml(configs["app"])

    async def seed() -> dict[str, int]:
        async with open_aggregator_store(config) as agg:
            await agg.save_tasks([make_task(f"t{i}") for i in range(4)])
            claimed = {c.task.task_id: c.token for c in await agg.claim_tasks("r1", limit=2, lease_s=300)}
            await agg.fail_task("t0", claimed["t0"], "upstream down")
            lease = await agg.acquire_chain_lease(17000, "r1", ttl_s=300)
            assert lease is not None
            await agg.set_last_processed_block(17000, 100, fence=lease.token)
            assert await agg.try_runner_lease("reaper", "r1", ttl_s=300)
        async with open_executor_store(config) as exe:
            await exe.save_performer_state(make_performer("perf-1"))
            await exe.save_inflight_task(make_inflight("inflight-1"))
            await exe.save_deployment(make_deployment("dep-1"))
            assert await exe.mark_task_processed("t1")
        return claimed

    return asyncio.run(seed())


def cli(*args: str) -> tuple[int, str, str]:
    from ponos_redis.cli import main

    result = CliRunner().invoke(main, list(args), env={"PONOS_STORE": None, "COLUMNS": "250"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


# -- the default user -----------------------------------------------------------------------


def test_a_connection_that_has_not_logged_in_runs_nothing(
    redis_acl_server: RedisServer, admin: redis.Redis, seeded: dict[str, int]
) -> None:
    anonymous = _client(redis_acl_server, None, None)
    try:
        for command in (("PING",), ("GET", KEEP), ("FLUSHALL",), ("CONFIG", "GET", "*")):
            with pytest.raises(redis.AuthenticationError, match="Authentication required"):
                anonymous.execute_command(*command)
        with pytest.raises(redis.AuthenticationError):
            anonymous.execute_command("AUTH", "default", "anything")
    finally:
        anonymous.close()
    (line,) = [u for u in admin.execute_command("ACL", "LIST") if u.startswith("user default ")]
    assert line.split()[2] == "off"
    assert admin.exists(KEEP) == 1


def test_the_passwords_reach_the_server_through_private_files_only(
    redis_acl_server: RedisServer, redis_secrets: dict[str, str]
) -> None:
    """The server was started with its config file as its only argument; the files it reads
    the passwords from are its owner's only, and the ACL file holds hashes, never a password."""
    proc = redis_acl_server._proc
    assert proc is not None
    assert list(proc.args) == [proc.args[0], str(redis_acl_server.conf_path)]
    conf, acl = redis_acl_server.conf_path, redis_acl_server.dir / "users.acl"
    for path in (conf, acl):
        assert path.stat().st_mode & 0o077 == 0, f"{path.name} is readable by others"
    acl_text = acl.read_text(encoding="utf-8")
    assert not any(value in acl_text for value in redis_secrets.values())
    assert f"aclfile {acl}" in conf.read_text(encoding="utf-8")


# -- the library's user ------------------------------------------------------------------------

REFUSED = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("KEYS", "*"),
    ("DEBUG", "SLEEP", "0"),
    ("CONFIG", "SET", "appendfsync", "everysec"),
    ("CONFIG", "REWRITE"),
    ("CONFIG", "RESETSTAT"),
    ("SCRIPT", "FLUSH"),
    ("SHUTDOWN", "NOSAVE"),
    ("EVAL", "return 1", "0"),
    ("FUNCTION", "FLUSH"),
    ("ACL", "LIST"),
    ("ACL", "SETUSER", "intruder", "on", ">intruder-password", "+@all", "~*"),
    ("SAVE",),
    ("BGSAVE",),
    ("BGREWRITEAOF",),
    ("REPLICAOF", "NO", "ONE"),
    ("CLIENT", "LIST"),
    ("CLIENT", "KILL", "TYPE", "normal"),
    ("MONITOR",),
    ("MODULE", "LIST"),
    ("SWAPDB", "0", "1"),
    ("MIGRATE", "127.0.0.1", "1", KEEP, "0", "100"),
    ("PUBLISH", "__sentinel__:hello", "x"),
    ("UNLINK", KEEP),
    ("RENAME", KEEP, Keys(NS).prefix + "moved"),
]


@pytest.mark.parametrize("command", REFUSED, ids=lambda c: " ".join(c[:2]))
def test_the_library_user_is_refused_what_the_stores_never_run(
    app: redis.Redis,
    admin: redis.Redis,
    redis_acl_server: RedisServer,
    seeded: dict[str, int],
    command: tuple[str, ...],
) -> None:
    with pytest.raises(redis.ResponseError) as refused:
        app.execute_command(*command)
    # DEBUG is refused to every connection first (enable-debug-command no); the ACL too.
    assert isinstance(refused.value, redis.exceptions.NoPermissionError) or command[0] == "DEBUG"
    dry_run = admin.execute_command("ACL", "DRYRUN", APP_USER, *command)
    assert "no permissions" in dry_run, dry_run
    # Nothing happened: the namespace is there, the server runs, fsync is as shipped, no new user.
    assert redis_acl_server.running
    assert admin.exists(KEEP) == 1
    assert admin.config_get("appendfsync") == {"appendfsync": "always"}
    assert "intruder" not in admin.execute_command("ACL", "USERS")


OUTSIDE = ["other", "ponos:no-hash-tag", "ponosx:{a}:b", "ponos{a}:b", "x:ponos:{a}:b"]


@pytest.mark.parametrize("key", OUTSIDE)
def test_the_library_user_is_refused_keys_outside_its_prefix(
    app: redis.Redis, admin: redis.Redis, key: str
) -> None:
    admin.set(key, "kept")
    try:
        for command in (
            ("GET", key),
            ("SET", key, "x"),
            ("DEL", key),
            ("HSET", key, "f", "v"),
            ("XLEN", key),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                app.execute_command(*command)
        # Nor from inside a script it loaded: the script runs with its caller's rights.
        sha = app.script_load("return redis.call('GET', KEYS[1])")
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.evalsha(sha, 1, key)
        assert admin.get(key) == "kept"
    finally:
        admin.delete(key)


def test_the_library_user_sees_key_names_through_scan_but_not_their_values(
    app: redis.Redis, admin: redis.Redis
) -> None:
    """SCAN is keyless, so it lists every key name of the database (docs/security.md says so):
    ponos needs it for doctor, export and the metrics; the values stay out of reach."""
    admin.set("outside-secret", "value")
    try:
        names: set[str] = set()
        cursor = 0
        for _ in range(10_000):  # bounded: SCAN ends within a pass over the database
            cursor, found = app.scan(cursor=cursor, match="outside-*", count=1000)
            names.update(found)
            if cursor == 0:
                break
        assert "outside-secret" in names
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.get("outside-secret")
    finally:
        admin.delete("outside-secret")


# -- the durability check as the library's user --------------------------------------------------


async def test_a_strict_aof_store_opens_as_the_library_user(configs: dict[str, str]) -> None:
    config = StorageConfig.from_yaml(configs["app"])
    assert config.redis is not None
    assert (config.redis.username, config.redis.durability, config.redis.strict) == (APP_USER, "aof", True)
    async with open_aggregator_store(config, namespace="acl-strict") as store:
        assert isinstance(store, RedisAggregatorStore)
        facts = await store.server_facts()
        assert (facts.appendonly, facts.appendfsync, facts.maxmemory_policy) == (
            "yes",
            "always",
            "noeviction",
        )
        assert await store.save_task(make_task("t-strict"))


def test_doctor_confirms_the_durability_as_the_library_user(
    configs: dict[str, str], seeded: dict[str, int]
) -> None:
    code, out, err = cli("doctor", "--store", configs["app"], "--json")
    assert code == 0, out + err
    assert os.environ[APP_PASSWORD_ENV] not in out + err
    report = yaml.safe_load(out)
    durability = [f for f in report["findings"] if f["check"] == "durability"]
    assert durability, report
    assert [f["level"] for f in durability] == ["ok"] * len(durability), durability
    assert report["ok"] is True, report


def test_backup_as_the_library_user_exports_and_skips_the_server_snapshot(
    configs: dict[str, str], seeded: dict[str, int], tmp_path: Path
) -> None:
    """BGSAVE is the admin's: the backup still writes the export and says why it has no RDB copy."""
    code, out, err = cli("backup", "--store", configs["app"], "--to", str(tmp_path))
    assert code == 0, out + err
    assert "skipped: BGSAVE was refused" in out, out
    (backup,) = tmp_path.iterdir()
    assert (backup / "export.jsonl").is_file()
    assert not (backup / "dump.rdb").exists()


async def test_without_config_get_a_strict_aof_store_cannot_confirm_appendfsync(
    admin: redis.Redis, redis_acl_server: RedisServer, redis_secrets: dict[str, str]
) -> None:
    """The alternative to granting CONFIG GET: the check falls back on INFO, which does not
    report appendfsync, so ``durability: aof`` with ``strict: true`` refuses to open."""
    reply = admin.execute_command("ACL", "GETUSER", APP_USER)
    rules = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))
    assert "+config|get" in rules["commands"]
    name = "ponos-without-config-get"
    commands = rules["commands"].replace("+config|get", "").split()
    admin.execute_command(
        "ACL",
        "SETUSER",
        name,
        "reset",
        "on",
        f">{redis_secrets[APP_PASSWORD_ENV]}",
        "~ponos:{*}:*",
        *commands,
    )
    try:
        config = StorageConfig.from_dict(
            {
                "namespace": "acl-no-config",
                "redis": {
                    "url": redis_acl_server.url,
                    "username": name,
                    "password_env": APP_PASSWORD_ENV,
                    "durability": "aof",
                    "strict": True,
                },
            }
        )
        with pytest.raises(DurabilityError, match="appendfsync is unknown"):
            await open_aggregator_store(config)
    finally:
        admin.execute_command("ACL", "DELUSER", name)


# -- the read-only user ----------------------------------------------------------------------------

VIEWS = [
    ["status"],
    ["tasks", "list"],
    ["tasks", "list", "--status", "processing"],
    ["pending"],
    ["show", "t2"],
    ["leases"],
    ["chains"],
    ["performers"],
    ["deployments", "list"],
    ["deployments", "show", "dep-1"],
    ["inflight"],
    ["events"],
]


@pytest.mark.parametrize("view", VIEWS, ids=" ".join)
def test_the_read_only_user_runs_the_views(
    configs: dict[str, str], seeded: dict[str, int], view: list[str]
) -> None:
    code, out, err = cli(*view, "--store", configs["readonly"])
    assert code == 0, out + err
    assert os.environ[READONLY_PASSWORD_ENV] not in out + err


def test_the_read_only_status_reports_the_namespace(configs: dict[str, str], seeded: dict[str, int]) -> None:
    code, out, err = cli("status", "--store", configs["readonly"], "--json")
    assert code == 0, out + err
    report = yaml.safe_load(out)
    assert report["tasks"]["processing"] == 1
    assert report["tasks"]["failed"] == 1
    assert report["clock"] == "server", "TIME is allowed: the server's clock is read"


ACTIONS = [
    ["tasks", "requeue", "t0", "--yes"],
    ["tasks", "delete", "t3", "--yes"],
    ["reap"],
    ["rewind", "17000", "50", "--yes"],
    ["namespace", "create", "--namespace", "acl-readonly-new"],
]


@pytest.mark.parametrize("action", ACTIONS, ids=" ".join)
def test_the_read_only_user_is_refused_every_action(
    configs: dict[str, str],
    seeded: dict[str, int],
    admin: redis.Redis,
    redis_acl_server: RedisServer,
    action: list[str],
) -> None:
    keys = Keys(NS)
    watched = [keys.task("t0"), keys.task("t3"), keys.chain(17000), keys.meta, keys.fence]
    before = _dumps(redis_acl_server, watched)
    code, out, err = cli(*action, "--store", configs["readonly"])
    assert code != 0, out + err
    assert err.splitlines()[-1].startswith("error: StoreConfigurationError: "), err
    assert "refused the configured user" in err
    assert _dumps(redis_acl_server, watched) == before
    assert admin.exists(Keys("acl-readonly-new").meta) == 0


async def test_a_store_refused_by_the_acl_raises_at_once_naming_the_cause(
    configs: dict[str, str], seeded: dict[str, int]
) -> None:
    """A store opened as ponos-readonly (which may load no script) is refused with
    StoreConfigurationError, not retried, and the message says what to look at."""
    config = StorageConfig.from_yaml(configs["readonly"])
    with pytest.raises(StoreConfigurationError, match="NOPERM") as refused:
        await open_aggregator_store(config)
    assert "docs/security.md" in str(refused.value)
    assert "no retry can fix this" in str(refused.value)


@pytest.mark.parametrize(
    "command",
    [
        ("SET", KEEP, "x"),
        ("HSET", KEEP, "epoch", "x"),
        ("DEL", KEEP),
        ("ZADD", Keys(NS).tasks(TaskStatus.PENDING), "0", "t-new"),
        ("XADD", Keys(NS).events, "*", "k", "v"),
        ("INCR", Keys(NS).fence),
        ("SCRIPT", "LOAD", "return 1"),
        ("EVALSHA", "0" * 40, "0"),
        ("CONFIG", "GET", "masterauth"),
        ("FLUSHDB",),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_the_read_only_user_is_refused_writes(
    reader: redis.Redis, redis_acl_server: RedisServer, seeded: dict[str, int], command: tuple[str, ...]
) -> None:
    watched = [KEEP, Keys(NS).tasks(TaskStatus.PENDING), Keys(NS).fence]
    before = _dumps(redis_acl_server, watched)
    with pytest.raises(redis.exceptions.NoPermissionError):
        reader.execute_command(*command)
    assert _dumps(redis_acl_server, watched) == before
    assert reader.hget(KEEP, "epoch") is not None, "it reads the namespace"


# -- a restart on the AOF ------------------------------------------------------------------------


async def test_a_restart_on_the_aof_keeps_every_write_of_the_library_user(
    redis_secrets: dict[str, str],
) -> None:
    with RedisServer(conf_file=docker_file("redis.conf"), secrets=redis_secrets) as server:
        config = StorageConfig.from_dict(
            {
                "namespace": "acl-aof",
                "redis": {"url": server.url, "username": APP_USER, "password_env": APP_PASSWORD_ENV},
            }
        )
        async with open_aggregator_store(config) as store:
            await store.save_tasks([make_task(f"t{i}") for i in range(3)])
            (claimed,) = await store.claim_tasks("r1", limit=1, lease_s=30)
            await store.complete_task(claimed.task.task_id, claimed.token)
        admin = _client(server, *server.auth) if server.auth else None
        assert admin is not None
        try:
            keys_before = admin.dbsize()
            assert keys_before > 3
            server.restart()  # SIGKILL, then the same config and directory: the AOF is replayed
            assert admin.dbsize() == keys_before
            assert admin.execute_command("ACL", "LOG") == [], "the replay was refused nothing"
        finally:
            admin.close()
        async with open_aggregator_store(config) as store:
            assert (await store.get_task(claimed.task.task_id)).status is TaskStatus.COMPLETED
