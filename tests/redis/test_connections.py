"""Connection forms: Unix socket, TLS (rediss://) and a password from the environment
that never shows in a repr, a log line or an error message."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _redis_support import make_task

from ponos_redis import PonosStorageError, StorageConfig, open_aggregator_store
from ponos_redis._redis_server import RedisServer, find_free_port

pytestmark = pytest.mark.redis_only

SECRET = "s3cr3t-Pa55w0rd-do-not-print"


def _config(redis: dict[str, object], namespace: str) -> StorageConfig:
    return StorageConfig.from_dict({"namespace": namespace, "redis": {"durability": "none", **redis}})


async def _round_trip(cfg: StorageConfig) -> None:
    async with open_aggregator_store(cfg) as store:
        assert await store.save_task(make_task("t1"))
        assert (await store.get_task("t1")).task.task_id == "t1"


async def test_unix_socket(tmp_path: Path, redis_namespace: str) -> None:
    sock = tmp_path / "redis.sock"
    with RedisServer(extra={"unixsocket": str(sock), "unixsocketperm": "700"}):
        await _round_trip(_config({"url": f"unix://{sock}?db=0"}, redis_namespace))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificates")
    d = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ponos-test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr")  # fmt: skip
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.cnf", "-out", "server.crt")  # fmt: skip
    return {"ca": d / "ca.crt", "cert": d / "server.crt", "key": d / "server.key"}


async def test_tls(tls_files: dict[str, Path], redis_namespace: str) -> None:
    tls_port = find_free_port()
    extra = {
        "tls-port": str(tls_port),
        "tls-cert-file": str(tls_files["cert"]),
        "tls-key-file": str(tls_files["key"]),
        "tls-ca-cert-file": str(tls_files["ca"]),
        "tls-auth-clients": "no",
    }
    with RedisServer(extra=extra):
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_cert_reqs=required&ssl_ca_certs={tls_files['ca']}"
        await _round_trip(_config({"url": url}, redis_namespace))


@pytest.fixture(scope="module")
def protected() -> Iterator[RedisServer]:
    with RedisServer(extra={"requirepass": SECRET}) as server:
        yield server


async def test_password_from_env(
    protected: RedisServer, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PONOS_TEST_SECRET", SECRET)
    cfg = _config({"url": protected.url, "password_env": "PONOS_TEST_SECRET"}, redis_namespace)
    assert SECRET not in repr(cfg)
    await _round_trip(cfg)


async def test_password_never_printed(
    protected: RedisServer, redis_namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{protected.port}/0"
    cfg = _config({"url": url}, redis_namespace)
    assert SECRET not in repr(cfg)
    assert SECRET not in str(cfg)
    async with open_aggregator_store(cfg) as store:
        assert SECRET not in repr(store)
    wrong = _config(
        {"url": f"redis://:{SECRET}-wrong@127.0.0.1:{protected.port}/0", "strict": True},
        redis_namespace,
    )
    with caplog.at_level(logging.DEBUG, logger="ponos_redis"), pytest.raises(PonosStorageError) as err:
        await open_aggregator_store(wrong)
    assert SECRET not in str(err.value)
    assert SECRET not in caplog.text


def test_missing_password_env_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PONOS_TEST_NO_SUCH_VAR", raising=False)
    cfg = _config({"url": "redis://127.0.0.1:1/0", "password_env": "PONOS_TEST_NO_SUCH_VAR"}, "ns")
    with pytest.raises(PonosStorageError, match="PONOS_TEST_NO_SUCH_VAR"):
        cfg.redis.password()  # type: ignore[union-attr]
