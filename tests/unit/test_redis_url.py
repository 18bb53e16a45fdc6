"""Redis URLs: a malformed one raises InvalidInputError when the config is built (before any
I/O) and no message, repr or encoding of a config shows any part of a password. No server."""

from __future__ import annotations

import copy
import pickle
import traceback
from pathlib import Path

import msgspec
import pytest

from ponos_redis import InvalidInputError, StorageConfig, open_aggregator_store, open_executor_store
from ponos_redis._connection import connect, redact
from ponos_redis.config import RedisSettings

PASSWORD = "s3cr/etpw"  # an unencoded "/": urllib reads "s3cr" as the port
PARTS = ("s3cr", "etpw")

MALFORMED = [
    pytest.param("redis://127.0.0.1:abc/0", id="port-not-a-number"),
    pytest.param("redis://127.0.0.1:99999/0", id="port-out-of-range"),
    pytest.param("redis://127.0.0.1:0/0", id="port-zero"),
    pytest.param("redis://[::1/0", id="unclosed-ipv6"),
    pytest.param("redis://127.0.0.1:6379/abc", id="db-not-a-number"),
    pytest.param("redis://127.0.0.1:6379/0?db=x", id="db-query-not-a-number"),
    pytest.param("redis://127.0.0.1:6379/0?socket_timeout=soon", id="bad-option-value"),
    pytest.param("redis://127.0.0.1:6379/0?foo=bar", id="unknown-option"),
    pytest.param("redis://127.0.0.1:6379/0?ssl_ca_certs=/ca.pem", id="tls-option-without-tls"),
    pytest.param("rediss://127.0.0.1:abc/0", id="rediss-bad-port"),
    pytest.param("unix://", id="unix-without-path"),
    pytest.param("unix:///run/redis.sock?socket_keepalive=true", id="unix-tcp-option"),
    pytest.param("redis+sentinel://127.0.0.1:26379", id="sentinel-without-service"),
    pytest.param("redis+sentinel://127.0.0.1:x/ponos", id="sentinel-bad-port"),
    pytest.param("redis+sentinel://127.0.0.1:26379,:1/ponos", id="sentinel-empty-host"),
    pytest.param("redis+sentinel://127.0.0.1:99999/ponos", id="sentinel-port-out-of-range"),
    pytest.param("redis+sentinel://127.0.0.1:26379/ponos/x", id="sentinel-db-not-a-number"),
    pytest.param("redis://127.0.0.1 :6379/0", id="space"),
    pytest.param("redis://127.0.0.1:6379/0\n", id="newline"),
    pytest.param("redis://h\ud800:6379/0", id="lone-surrogate"),
    pytest.param("redis://" + "h" * 5000, id="too-long"),
    pytest.param("http://127.0.0.1:6379/0", id="scheme"),
]
WITH_PASSWORD = [
    pytest.param(f"redis://:{PASSWORD}@127.0.0.1:6379/0", id="slash"),
    pytest.param(f"redis://user:{PASSWORD}@127.0.0.1:6379/0", id="user-slash"),
    pytest.param(f"rediss://user:{PASSWORD}@127.0.0.1:6379/0", id="rediss-slash"),
    pytest.param("redis://user:s3cr?etpw@127.0.0.1:6379/0", id="question-mark"),
    pytest.param("redis://user:s3cr#etpw@127.0.0.1:6379/0", id="hash"),
    pytest.param("redis://user:s3cr etpw@127.0.0.1:6379/0", id="space"),
    pytest.param("redis://user:s3cretpw@127.0.0.1:abc/0", id="bad-port"),
    pytest.param("redis://user:s3cretpw@[::1/0", id="unclosed-ipv6"),
    pytest.param("redis://user:s3cretpw@127.0.0.1:6379/x", id="bad-db"),
    pytest.param("unix://user:s3cr/etpw@/run/redis.sock", id="unix-slash"),
    pytest.param(f"redis+sentinel://:{PASSWORD}@127.0.0.1:26379/ponos", id="sentinel-slash"),
    pytest.param("redis+sentinel://:s3cretpw/ponos", id="sentinel-missing-host"),
]
VALID = [
    "redis://127.0.0.1:6379/0",
    "redis://127.0.0.1",
    "redis://localhost:6379/",
    "redis://[::1]:6379/0",
    "redis://user:p%40ss%2Fword@127.0.0.1:6379/2",
    "redis://127.0.0.1:6379/0?client_name=aggregator&socket_timeout=2.5&db=3",
    "rediss://127.0.0.1:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem",
    "unix:///run/redis.sock",
    "unix:///run/redis.sock?db=1",
    "unix://:pw@/run/redis.sock?db=1",
    "redis+sentinel://127.0.0.1:26379/ponos",
    "redis+sentinel://127.0.0.1:26379,[::1]:26380/ponos/2",
    "redis+sentinel://:pw@127.0.0.1:26379/ponos?password=x",
]


@pytest.mark.parametrize("url", MALFORMED)
def test_malformed_url_is_invalid_input_before_any_io(url: str) -> None:
    with pytest.raises(InvalidInputError, match=r"redis\.url"):
        RedisSettings(url=url)
    with pytest.raises(InvalidInputError, match=r"redis\.url"):
        open_aggregator_store(url)  # raises when called: nothing is awaited, no I/O
    with pytest.raises(InvalidInputError, match=r"redis\.url"):
        open_executor_store({"redis": {"url": url}})
    with pytest.raises(InvalidInputError, match=r"redis\.url"):
        StorageConfig.from_dict({"type": "redis", "redis": {"url": url}})


@pytest.mark.parametrize("url", WITH_PASSWORD)
def test_malformed_url_error_never_shows_the_password(url: str) -> None:
    for build in (
        lambda: RedisSettings(url=url),
        lambda: open_aggregator_store(url),
        lambda: StorageConfig.from_dict({"redis": {"url": url}}),
    ):
        with pytest.raises(InvalidInputError) as err:
            build()
        # The message, and the traceback with any chained exception, as a CLI would print it.
        shown = f"{err.value!r} " + "".join(traceback.format_exception(err.value))
        for part in PARTS:
            assert part not in shown


def test_malformed_url_in_a_yaml_file_never_shows_the_password(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"storage:\n  redis:\n    url: redis://:{PASSWORD}@h:6379/0\n", encoding="utf-8")
    with pytest.raises(InvalidInputError) as err:
        StorageConfig.from_yaml(path)
    assert not any(part in str(err.value) for part in PARTS)


def test_yaml_syntax_error_does_not_quote_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("storage:\n  redis:\n    url: redis://:s3cretpw@h:1/0\n   x: [\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"line \d+, column \d+") as err:
        StorageConfig.from_yaml(path)
    assert "s3cretpw" not in str(err.value)
    assert "\n" not in str(err.value)


def test_store_string_with_an_at_sign_is_not_quoted() -> None:
    with pytest.raises(InvalidInputError) as err:
        StorageConfig.from_string("redis:/user:s3cretpw@host/0")
    assert "s3cretpw" not in str(err.value)
    with pytest.raises(InvalidInputError, match="'garbage'"):
        StorageConfig.from_string("garbage")


@pytest.mark.parametrize("url", VALID)
def test_valid_urls_are_accepted(url: str) -> None:
    settings = RedisSettings(url=url)
    assert settings.connection_url() == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:p@ss@host/0", "redis://user:***@host/0"),
        ("redis://:p@s@s@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://:pa/ss@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://:pa?ss@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://:pa#ss@host:6379/0", "redis://:***@host:6379/0"),
        ("redis+sentinel://:p@w@a:1,b:2/ponos", "redis+sentinel://:***@a:1,b:2/ponos"),
        ("redis://user@host/0", "redis://user@host/0"),
        (
            "connecting to redis://u:p@w@h:1/0 failed (x@y)",
            "connecting to redis://u:***@h:1/0 failed (x@y)",
        ),
    ],
)
def test_redact_hides_the_whole_password(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:s3cretpw@127.0.0.1:6379/0",
        "redis://user:s3c@retpw@127.0.0.1:6379/0",
        "rediss://:s3cretpw@127.0.0.1:6379/0",
        "redis://127.0.0.1:6379/0?password=s3cretpw",
        "unix://:s3cretpw@/run/redis.sock",
        "redis+sentinel://:s3cretpw@127.0.0.1:26379/ponos",
    ],
)
def test_encoding_a_config_never_includes_the_password(url: str) -> None:
    secret = "s3cretpw" if "s3cretpw" in url else "retpw"
    cfg = StorageConfig.from_dict({"namespace": "ns", "redis": {"url": url}})
    assert cfg.redis is not None
    for shown in (
        msgspec.json.encode(cfg),
        msgspec.json.encode(cfg.redis),
        msgspec.msgpack.encode(cfg),
        repr(msgspec.to_builtins(cfg)).encode(),
        repr(cfg).encode(),
        str(cfg).encode(),
        repr(cfg.redis.url).encode(),
    ):
        assert secret.encode() not in shown
    assert b"***" in msgspec.json.encode(cfg)
    # The store still connects with the real URL, and copies keep it.
    assert cfg.redis.connection_url() == url
    assert copy.copy(cfg).redis.connection_url() == url  # type: ignore[union-attr]
    assert copy.deepcopy(cfg).redis.connection_url() == url  # type: ignore[union-attr]
    assert pickle.loads(pickle.dumps(cfg)).redis.connection_url() == url
    assert StorageConfig.coerce(cfg, "other").redis.connection_url() == url  # type: ignore[union-attr]


async def test_the_client_gets_the_hidden_password() -> None:
    settings = RedisSettings(url="redis://user:s3c@retpw@127.0.0.1:6379/4")
    assert "retpw" not in (settings.url or "")
    client = connect(settings)
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("user", "s3c@retpw", 4)
    finally:
        await client.aclose()


async def test_the_sentinel_client_gets_the_hidden_password() -> None:
    client = connect(RedisSettings(url="redis+sentinel://:s3cretpw@127.0.0.1:26379/ponos/2"))
    try:
        assert client.connection_pool.connection_kwargs["password"] == "s3cretpw"
        assert client.connection_pool.connection_kwargs["db"] == 2
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "redis",
    [
        pytest.param({"url": "redis://h:1/0", "password_env": "PW\ud800"}, id="password-env-surrogate"),
        pytest.param({"url": "redis://h:1/0", "password_env": "P" * 257}, id="password-env-too-long"),
        pytest.param({"sentinel": {"hosts": ["h\ud800:1"], "service": "s"}}, id="sentinel-host-surrogate"),
        pytest.param({"sentinel": {"hosts": ["h:1"], "service": "s\ud800"}}, id="sentinel-service-surrogate"),
        pytest.param({"sentinel": {"hosts": ["h:1"], "service": "a b"}}, id="sentinel-service-space"),
        pytest.param(
            {"sentinel": {"hosts": ["h:1"], "service": "s", "sentinel_password_env": "\udfff"}},
            id="sentinel-password-env-surrogate",
        ),
        pytest.param({"cluster": {"nodes": ["h :7000"]}}, id="cluster-node-space"),
        pytest.param(
            {"cluster": {"nodes": ["h:\uff17\uff10\uff10\uff10"]}}, id="cluster-port-fullwidth-digits"
        ),
        pytest.param(
            {"cluster": {"nodes": ["h:7000"], "password_env": "X\ud800"}}, id="cluster-env-surrogate"
        ),
    ],
)
def test_other_connection_strings_are_checked(redis: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError, match=r"redis\."):
        StorageConfig.from_dict({"redis": redis})
