"""RedisServer: private redis-server processes on 127.0.0.1 for tests."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ponos_redis import _redis_server
from ponos_redis._redis_server import RedisServer, RedisServerError, redis_server_available

pytestmark = [
    pytest.mark.redis_only,
    pytest.mark.timeout(60),
    pytest.mark.skipif(not redis_server_available(), reason="redis-server is not on PATH"),
]

MakeServer = Callable[..., RedisServer]
Connect = Callable[[RedisServer], redis.Redis]


@pytest.fixture
def make_server() -> Iterator[MakeServer]:
    """Start RedisServers; every one is stopped (SIGKILL, directory removed) after the test."""
    servers: list[RedisServer] = []

    def make(**kwargs: Any) -> RedisServer:
        server = RedisServer(**kwargs)
        servers.append(server)
        server.start(timeout=10)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def connect() -> Iterator[Connect]:
    clients: list[redis.Redis] = []

    def connect(server: RedisServer) -> redis.Redis:
        client = redis.Redis.from_url(server.url, socket_timeout=5, socket_connect_timeout=5)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"process {pid} still exists {timeout} s after stop()")
        time.sleep(0.01)


def test_starts_and_answers_ping(make_server: MakeServer, connect: Connect) -> None:
    server = make_server()
    assert server.running
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    client = connect(server)
    assert client.ping() is True
    assert client.info("server")["process_id"] == server.pid
    assert client.config_get("save") == {"save": ""}
    assert client.config_get("appendonly") == {"appendonly": "no"}
    assert client.config_get("dir") == {"dir": str(server.dir)}


def test_context_manager_stops_and_removes_its_directory(
    connect: Connect,
) -> None:
    with RedisServer() as server:
        assert connect(server).ping() is True
        pid, directory = server.pid, server.dir
    _wait_gone(pid)
    assert not directory.exists()


def test_restart_after_kill_keeps_aof_data(make_server: MakeServer, connect: Connect) -> None:
    server = make_server(extra={"appendonly": "yes", "appendfsync": "always"})
    port, directory, first_pid = server.port, server.dir, server.pid
    assert connect(server).set("ponos:key", "value") is True

    server.kill()
    _wait_gone(first_pid)
    assert not server.running
    assert (directory / "appendonlydir").is_dir()

    server.restart(timeout=10)
    assert (server.port, server.dir) == (port, directory)
    assert server.pid != first_pid
    assert connect(server).get("ponos:key") == b"value"


@pytest.mark.parametrize("graceful", [False, True], ids=["sigkill", "sigterm"])
def test_stop_leaves_no_process(make_server: MakeServer, graceful: bool) -> None:
    server = make_server()
    pid, directory = server.pid, server.dir
    server.stop(graceful=graceful)
    _wait_gone(pid)
    assert not server.running
    assert not directory.exists()
    server.stop()  # a second stop is harmless


def test_kept_directory_survives_stop(make_server: MakeServer) -> None:
    server = make_server(keep_dir=True)
    directory = server.dir
    try:
        server.stop()
        assert (directory / _redis_server.CONF_NAME).is_file()
    finally:
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()


def test_two_servers_get_different_ports(make_server: MakeServer, connect: Connect) -> None:
    first, second = make_server(), make_server()
    assert first.port != second.port
    assert first.dir != second.dir
    connect(first).set("which", "first")
    assert connect(second).get("which") is None


def test_fixed_port_in_use_fails_without_touching_the_other_server(
    make_server: MakeServer, connect: Connect
) -> None:
    # The other server answers PING on that port: its PID tells it is not ours.
    other = make_server()
    server = RedisServer(port=other.port)
    try:
        with pytest.raises(RedisServerError, match="Address already in use"):
            server.start(timeout=10)
        assert not server.running
    finally:
        server.stop()
    assert other.running
    assert connect(other).info("server")["process_id"] == other.pid


def test_port_taken_before_start_is_retried(
    make_server: MakeServer, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = make_server()
    ports = iter([other.port])
    real = _redis_server.find_free_port
    monkeypatch.setattr(_redis_server, "find_free_port", lambda: next(ports, None) or real())

    server = make_server()
    assert server.port != other.port
    assert connect(server).info("server")["process_id"] == server.pid
    assert connect(other).info("server")["process_id"] == other.pid


def test_port_held_by_a_silent_listener_is_retried(
    make_server: MakeServer, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1]])
        real = _redis_server.find_free_port
        monkeypatch.setattr(_redis_server, "find_free_port", lambda: next(ports, None) or real())

        server = make_server()
        assert server.port != taken.getsockname()[1]
        assert connect(server).ping() is True


def test_conf_file_is_the_base_and_extra_wins(
    make_server: MakeServer, connect: Connect, tmp_path: Path
) -> None:
    base = tmp_path / "base.conf"
    base.write_text(
        "port 6379\nbind 0.0.0.0\ndir /nonexistent\nlogfile /nonexistent/redis.log\n"
        "appendonly yes\nappendfsync always\n"
    )
    server = make_server(conf_file=base, extra={"appendfsync": "everysec"})
    client = connect(server)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert client.config_get("dir") == {"dir": str(server.dir)}


def test_managed_directives_are_refused() -> None:
    with pytest.raises(ValueError, match="port"):
        RedisServer(extra={"port": "6379"})
