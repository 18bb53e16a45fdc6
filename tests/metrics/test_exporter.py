"""The redis exporter metrics the rules and the dashboard use exist: scraped from a real
``prometheus-redis-exporter`` watching a private redis-server (skipped without the binary).

The server runs the shipped ``docker/redis.conf`` and ``users.acl`` (passwords generated for
the run) and the exporter logs in as ``ponos-monitor``, its password in its environment as
``docker/compose.yaml`` gives it: that user's rights are enough for every metric used."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
import redis
from _metrics_names import exporter_names

from ponos_redis._acl import MONITOR_PASSWORD_ENV, MONITOR_USER
from ponos_redis._configs import docker_file
from ponos_redis._redis_server import HOST, RedisServer, find_free_port, redis_server_available

EXPORTER = shutil.which("prometheus-redis-exporter") or shutil.which("redis_exporter")

pytestmark = [
    pytest.mark.skipif(
        EXPORTER is None,
        reason="prometheus-redis-exporter is not on PATH (Debian package prometheus-redis-exporter)",
    ),
    pytest.mark.skipif(not redis_server_available(), reason="redis-server is not on PATH"),
]


def _names(text: str) -> set[str]:
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")
    }


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5.0) as reply:
        return str(reply.read().decode())


@pytest.fixture(scope="module")
def server(redis_secrets: dict[str, str]) -> Iterator[RedisServer]:
    """A private redis-server from the shipped config (AOF on), with its access control."""
    with RedisServer(
        conf_file=docker_file("redis.conf"), secrets=redis_secrets, extra={"maxmemory": "64mb"}
    ) as started:
        yield started


@pytest.fixture(scope="module")
def exporter(server: RedisServer, redis_secrets: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(exporter base URL, redis URL): an exporter watching ``server`` as ``ponos-monitor``."""
    assert EXPORTER is not None
    port = find_free_port()
    login = {"REDIS_USER": MONITOR_USER, "REDIS_PASSWORD": redis_secrets[MONITOR_PASSWORD_ENV]}
    process = subprocess.Popen(
        [EXPORTER, f"-redis.addr={server.url}", f"-web.listen-address={HOST}:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **login},
    )
    try:
        base = f"http://{HOST}:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # bounded: until it answers with redis_up 1
            try:
                if "\nredis_up 1" in _get(f"{base}/metrics"):
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        else:
            pytest.fail("the exporter did not report redis_up 1 within 20 s")
        yield base, server.url
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def test_every_listed_exporter_metric_is_exported(exporter: tuple[str, str]) -> None:
    base, _ = exporter
    scraped = _names(_get(f"{base}/metrics"))
    missing = exporter_names() - scraped
    assert not missing, f"not exported by {EXPORTER}: {sorted(missing)}"


def test_the_multi_target_endpoint_of_prometheus_yml_works(exporter: tuple[str, str]) -> None:
    """docker/prometheus.yml scrapes each data node through the exporter's /scrape?target=."""
    base, redis_url = exporter
    text = _get(f"{base}/scrape?target={urllib.parse.quote(redis_url, safe='')}")
    assert "\nredis_up 1" in text
    assert exporter_names() <= _names(text)


def test_the_monitor_user_is_refused_nothing_but_config_get(
    exporter: tuple[str, str], server: RedisServer
) -> None:
    """After the scrapes above, the only command the exporter was refused is CONFIG GET, kept
    from ponos-monitor on purpose (it would show the replication password); it goes without."""
    base, _ = exporter
    assert "\nredis_up 1" in _get(f"{base}/metrics")
    assert server.auth is not None
    admin = redis.Redis(
        port=server.port, username=server.auth[0], password=server.auth[1], decode_responses=True
    )
    try:
        refused = {(entry["username"], entry["object"]) for entry in admin.acl_log(count=100)}
    finally:
        admin.close()
    assert refused <= {(MONITOR_USER, "config|get")}, refused
