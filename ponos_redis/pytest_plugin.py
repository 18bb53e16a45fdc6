"""pytest plugin: Redis fixtures for ponos-redis and its users.

Loaded in every pytest run of an environment where ponos-redis is installed
(a ``pytest11`` entry point), so importing it is cheap and nothing starts
until a test asks for a fixture.

Fixtures:

``redis_url`` (session)
    A Redis URL for tests. In order: ``PONOS_TEST_REDIS_URL`` if set; else a
    ``redis`` container through testcontainers when a Docker daemon answers
    within 2 s (image ``PONOS_TEST_REDIS_IMAGE``, default ``redis:7``); else a
    private ``redis-server`` from PATH on 127.0.0.1 with a throwaway
    directory. Tests using it are skipped when none of these exists. The
    server or container is stopped at the end of the session. All tests of a
    session share it: keep each test's keys apart with ``redis_namespace``.

``redis_namespace`` (function)
    A fresh namespace per test, matching ``[A-Za-z0-9_.-]{1,64}``.

Options and markers: ``--soak`` runs the tests marked ``soak``, which are
skipped otherwise; the markers ``soak`` and ``redis_only`` are registered.
"""

from __future__ import annotations

import gc
import importlib
import os
import re
import uuid
import warnings
from collections.abc import Callable, Iterator

import pytest

__all__ = ["redis_namespace", "redis_url"]

URL_ENV = "PONOS_TEST_REDIS_URL"
IMAGE_ENV = "PONOS_TEST_REDIS_IMAGE"
REQUIRE_ENV = "PONOS_TEST_REQUIRE_REDIS"
DEFAULT_IMAGE = "redis:7"
_DOCKER_PROBE_TIMEOUT = 2
_DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"

_MARKERS = {
    "soak": "soak: long soak runs, skipped unless --soak is given",
    "redis_only": "redis_only: needs a real Redis server",
}
_NOT_NAMESPACE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ponos-redis")
    group.addoption("--soak", action="store_true", default=False, help="run the tests marked soak")


def pytest_configure(config: pytest.Config) -> None:
    declared = {line.split(":", 1)[0].split("(", 1)[0].strip() for line in config.getini("markers")}
    for name, line in _MARKERS.items():
        if name not in declared:
            config.addinivalue_line("markers", line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("soak"):
        return
    skip_soak = pytest.mark.skip(reason="slow soak test: run with --soak")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip_soak)


def _docker_answers() -> bool:
    """Whether a Docker daemon answers a ping within a couple of seconds."""
    if not os.environ.get("DOCKER_HOST") and not os.path.exists(_DEFAULT_DOCKER_SOCKET):
        return False
    # docker-py leaves a socket unclosed when the daemon is missing: with warnings as errors, that
    # ResourceWarning would fail whichever test the garbage collector happens to run in.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return _ping_docker()
        finally:
            gc.collect()


def _ping_docker() -> bool:
    try:
        # By name: mypy would take the project's docker/ folder for the package.
        docker = importlib.import_module("docker")
        client = docker.from_env(timeout=_DOCKER_PROBE_TIMEOUT)
        try:
            client.ping()
        finally:
            client.close()
    except Exception:
        return False
    return True


def _start_container() -> tuple[str, Callable[[], object]]:
    """Start a Redis container; its URL and a function that stops it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from testcontainers.community.redis import RedisContainer
        except ImportError:  # testcontainers before the community/ split
            from testcontainers.redis import RedisContainer

        container = RedisContainer(os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE)
        container.start()
        try:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(6379)
        except BaseException:
            container.stop()
            raise
    return f"redis://{host}:{port}/0", container.stop


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL shared by the session: env URL, else a container, else a private redis-server."""
    env_url = os.environ.get(URL_ENV)
    if env_url:
        yield env_url
        return

    from ._redis_server import RedisServer, redis_server_available

    container_error: Exception | None = None
    if _docker_answers():
        try:
            url, stop = _start_container()
        except Exception as exc:  # fall back to a local redis-server, if there is one
            container_error = exc
        else:
            try:
                yield url
            finally:
                stop()
            return

    if not redis_server_available():
        if container_error is not None:
            raise container_error
        if os.environ.get(REQUIRE_ENV):
            raise RuntimeError(f"{REQUIRE_ENV} is set but redis-server is not on PATH")
        pytest.skip(
            f"no Redis for tests: {URL_ENV} is not set, no Docker daemon answered, "
            "and redis-server is not on PATH"
        )
    server = RedisServer()
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_namespace(request: pytest.FixtureRequest) -> str:
    """A fresh namespace for this test: ``t-<test name>-<random hex>``, at most 64 characters."""
    slug = _NOT_NAMESPACE_CHARS.sub("_", request.node.name)[:40]
    return f"t-{slug}-{uuid.uuid4().hex[:16]}"
