"""StorageConfig: the `storage:` block of API.md parses, and every bad value
raises InvalidInputError naming the field, before any connection. No server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ponos_redis import InvalidInputError, StorageConfig, open_aggregator_store, open_executor_store

# The block of API.md, verbatim (comments included).
API_YAML = """\
storage:
  type: redis                  # or: memory
  namespace: aggregator-mainnet
  redis:
    url: redis://127.0.0.1:6379/0      # exactly one of url / sentinel / cluster
    # sentinel: {hosts: ["127.0.0.1:26379"], service: ponos, password_env: REDIS_PASSWORD}
    # cluster: {nodes: ["127.0.0.1:7000"]}
    durability: aof            # none | aof | replicated
    replicas: 1                # replicated: acknowledgements to wait for
    wait_timeout_ms: 500
    strict: true               # refuse to open when the server cannot keep the durability promise
    retry: {attempts: 6, max_backoff_ms: 2000}
  tasks:
    default_lease_s: 30        # lease given by update_task_status(..., processing)
    max_attempts: 5            # claims before a reaped or retried task is failed
    retention_s: 86400         # completed/failed tasks are trimmed after this
    max_payload_bytes: 1048576
  events_maxlen: 100000        # approximate cap of the event stream
  processed_ttl_s: 604800      # executor de-dup markers expire after this
"""

URL = "redis://127.0.0.1:6379/0"


def _write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_api_md_block_parses(tmp_path: Path) -> None:
    cfg = StorageConfig.from_yaml(_write(tmp_path, API_YAML))
    assert cfg.type == "redis"
    assert cfg.namespace == "aggregator-mainnet"
    assert cfg.redis is not None
    assert cfg.redis.url == URL
    assert cfg.redis.sentinel is None
    assert cfg.redis.cluster is None
    assert cfg.redis.durability == "aof"
    assert cfg.redis.replicas == 1
    assert cfg.redis.wait_timeout_ms == 500
    assert cfg.redis.strict is True
    assert (cfg.redis.retry.attempts, cfg.redis.retry.max_backoff_ms) == (6, 2000)
    assert cfg.tasks.default_lease_s == 30
    assert cfg.tasks.max_attempts == 5
    assert cfg.tasks.retention_s == 86400
    assert cfg.tasks.max_payload_bytes == 1048576
    assert cfg.events_maxlen == 100000
    assert cfg.processed_ttl_s == 604800


def test_from_yaml_accepts_a_str_path(tmp_path: Path) -> None:
    assert StorageConfig.from_yaml(str(_write(tmp_path, API_YAML))).namespace == "aggregator-mainnet"


def test_sentinel_and_cluster_variants_parse() -> None:
    sentinel = StorageConfig.from_dict(
        {"redis": {"sentinel": {"hosts": ["127.0.0.1:26379"], "service": "ponos", "password_env": "X"}}}
    )
    assert sentinel.type == "redis"
    assert sentinel.redis is not None
    assert sentinel.redis.sentinel is not None
    assert sentinel.redis.sentinel.addresses() == [("127.0.0.1", 26379)]
    cluster = StorageConfig.from_dict({"redis": {"cluster": {"nodes": ["127.0.0.1:7000"]}}})
    assert cluster.redis is not None
    assert cluster.redis.cluster is not None


def test_defaults() -> None:
    cfg = StorageConfig.from_dict({"redis": {"url": URL}})
    assert cfg.type == "redis"
    assert cfg.namespace == "default"
    assert cfg.redis is not None
    assert cfg.redis.durability == "aof"
    assert cfg.redis.strict is False
    retry = cfg.redis.retry
    assert (retry.attempts, retry.max_backoff_ms, retry.total_s) == (30, 2000, 15.0)
    assert StorageConfig.from_dict({}).type == "memory"


def test_float_durations_are_accepted() -> None:
    cfg = StorageConfig.from_dict(
        {"redis": {"url": URL}, "tasks": {"retention_s": 0.2, "default_lease_s": 0.5}, "processed_ttl_s": 1.5}
    )
    assert cfg.tasks.retention_s == 0.2
    assert cfg.tasks.default_lease_s == 0.5
    assert cfg.processed_ttl_s == 1.5


def _redis(**redis: Any) -> dict[str, Any]:
    return {"type": "redis", "redis": {"url": URL, **redis}}


@pytest.mark.parametrize(
    ("data", "names"),
    [
        pytest.param({**_redis(), "bogus": 1}, ["bogus"], id="unknown-top-level-field"),
        pytest.param({**_redis(), "tasks": {"max_atempts": 5}}, ["max_atempts"], id="unknown-task-field"),
        pytest.param(_redis(timeout=3), ["timeout"], id="unknown-redis-field"),
        pytest.param({**_redis(), "tasks": {"max_attempts": "five"}}, ["max_attempts"], id="wrong-type"),
        pytest.param({**_redis(), "tasks": {"max_attempts": True}}, ["max_attempts"], id="bool-for-int"),
        pytest.param(
            {**_redis(), "tasks": {"default_lease_s": -1}}, ["default_lease_s"], id="negative-lease"
        ),
        pytest.param({**_redis(), "tasks": {"default_lease_s": 0}}, ["default_lease_s"], id="zero-lease"),
        pytest.param({**_redis(), "tasks": {"max_attempts": 0}}, ["max_attempts"], id="zero-attempts"),
        pytest.param(_redis(retry={"total_s": 0}), ["redis.retry.total_s"], id="zero-retry-total"),
        pytest.param(_redis(retry={"total_s": -1}), ["redis.retry.total_s"], id="negative-retry-total"),
        pytest.param(
            _redis(retry={"total_s": float("inf")}), ["redis.retry.total_s"], id="unbounded-retry-total"
        ),
        pytest.param(_redis(retry={"total_s": "15s"}), ["total_s"], id="retry-total-not-a-number"),
        pytest.param(_redis(retry={"attempts": 0}), ["redis.retry.attempts"], id="zero-retry-attempts"),
        pytest.param({**_redis(), "events_maxlen": 0}, ["events_maxlen"], id="zero-maxlen"),
        pytest.param(
            _redis(sentinel={"hosts": ["127.0.0.1:26379"], "service": "ponos"}),
            ["url", "sentinel"],
            id="url-and-sentinel",
        ),
        pytest.param(
            {"type": "redis", "redis": {}}, ["url", "sentinel", "cluster"], id="no-url-sentinel-cluster"
        ),
        pytest.param({"type": "redis"}, ["redis"], id="no-redis-block"),
        pytest.param({**_redis(), "namespace": "bad ns!"}, ["namespace"], id="bad-namespace"),
        pytest.param({**_redis(), "namespace": "a{b}"}, ["namespace"], id="namespace-with-braces"),
        pytest.param(
            _redis(durability="replicated", replicas=0), ["replicas"], id="replicated-zero-replicas"
        ),
        pytest.param(_redis(durability="fsync"), ["durability"], id="unknown-durability"),
        pytest.param(_redis(replicas=-1), ["replicas"], id="negative-replicas"),
        pytest.param({"type": "redis", "redis": {"url": "http://x"}}, ["redis.url"], id="bad-url-scheme"),
        pytest.param(
            {"redis": {"sentinel": {"hosts": ["nohost"], "service": "s"}}}, ["sentinel.hosts"], id="bad-host"
        ),
        pytest.param({"type": "sqlite"}, ["type"], id="unknown-type"),
    ],
)
def test_invalid_config_names_the_field(data: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(InvalidInputError) as info:
        StorageConfig.from_dict(data)
    message = str(info.value)
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"


def test_invalid_input_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="bogus"):
        StorageConfig.from_dict({"bogus": 1})


@pytest.mark.parametrize("data", [None, [], "redis://x", 3])
def test_from_dict_needs_a_mapping(data: Any) -> None:
    with pytest.raises(InvalidInputError, match="mapping"):
        StorageConfig.from_dict(data)


def test_yaml_field_error_names_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, API_YAML.replace("max_attempts: 5 ", 'max_attempts: "five" '))
    with pytest.raises(InvalidInputError, match="max_attempts"):
        StorageConfig.from_yaml(path)


@pytest.mark.parametrize(
    "text",
    [
        "redis:\n  url: redis://127.0.0.1:6379/0\n",
        "storage: memory\n",
        "- storage\n",
        "",
    ],
    ids=["no-storage-key", "storage-not-a-mapping", "a-list", "empty"],
)
def test_yaml_without_a_storage_mapping(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InvalidInputError, match="storage") as info:
        StorageConfig.from_yaml(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "text",
    ["storage:\n  type: redis\n   namespace: x\n", "storage: {type: redis\n", "storage:\n\t- a\n"],
    ids=["bad-indent", "unclosed-flow", "tab"],
)
def test_unreadable_yaml(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InvalidInputError, match="cannot read") as info:
        StorageConfig.from_yaml(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(InvalidInputError, match="cannot read"):
        StorageConfig.from_yaml(path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"storage:\n  namespace: caf\xe9\n")
    with pytest.raises(InvalidInputError, match="cannot read"):
        StorageConfig.from_yaml(path)


# -- opening checks the namespace before any I/O ------------------------------------


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to connect fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a connection was attempted")

    import ponos_redis._connection
    import ponos_redis.backends.redis

    monkeypatch.setattr(ponos_redis._connection, "connect", refuse)
    monkeypatch.setattr(ponos_redis.backends.redis, "connect", refuse)


# Port 1 on loopback: nothing listens, so even an attempted connection would not hang.
UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.mark.usefixtures("no_connect")
@pytest.mark.parametrize("opener", [open_aggregator_store, open_executor_store])
@pytest.mark.parametrize("namespace", ["bad ns!", "", "a{b}", "x" * 65])
async def test_open_with_a_bad_namespace_raises_before_io(opener: Any, namespace: str) -> None:
    cfg = StorageConfig.from_dict({"redis": {"url": UNREACHABLE}})
    with pytest.raises(InvalidInputError, match="namespace"):
        await opener(cfg, namespace=namespace)
    with pytest.raises(InvalidInputError, match="namespace"):
        async with opener(cfg, namespace=namespace):
            pass


@pytest.mark.usefixtures("no_connect")
@pytest.mark.parametrize("opener", [open_aggregator_store, open_executor_store])
async def test_open_with_a_bad_config_raises_before_io(opener: Any) -> None:
    with pytest.raises(InvalidInputError, match="max_attempts"):
        await opener({"redis": {"url": UNREACHABLE}, "tasks": {"max_attempts": "five"}})
    with pytest.raises(InvalidInputError):
        await opener("not a url")


@pytest.mark.usefixtures("no_connect")
def test_open_raises_at_call_time_not_at_await() -> None:
    cfg = StorageConfig.from_dict({"redis": {"url": UNREACHABLE}})
    with pytest.raises(InvalidInputError):
        _ = open_aggregator_store(cfg, namespace="bad ns!")
