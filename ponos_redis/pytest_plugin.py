"""pytest plugin: fixtures for testing code that uses ponos-redis.

Loaded in every pytest run of an environment where ponos-redis is installed
(a ``pytest11`` entry point named ``ponos_redis``), so importing it is cheap,
nothing starts until a test asks for a fixture, and every name it adds starts
with ``ponos_`` (or ``--ponos-``) so it cannot collide with a project's own.

Fixtures:

``ponos_aggregator_store``, ``ponos_executor_store`` (function, async)
    Ready stores on one fresh namespace (``ponos_redis_namespace``), closed
    after the test. On the ``memory`` backend they are the in-process fakes
    driven by ``ponos_clock``; on ``redis`` they are Redis stores on
    ``ponos_redis_url`` (``durability: none``, judged by the server's clock).
    They need pytest-asyncio (``pip install "ponos-redis[testing]"``).

``ponos_backend`` (function)
    ``"memory"`` or ``"redis"``: the marker ``@pytest.mark.ponos_backend("redis")``
    on the test (or its module or class), else ``--ponos-backend`` (default ``memory``).

``ponos_clock`` (function)
    A :class:`~ponos_redis.ManualClock` the memory stores read; move it with
    ``advance(seconds)`` to expire leases, deadlines and de-dup markers.

``ponos_redis_url`` (session)
    A Redis URL. In order: ``PONOS_TEST_REDIS_URL`` if set; else a ``redis``
    container through testcontainers when a Docker daemon answers within 2 s
    (image ``PONOS_TEST_REDIS_IMAGE``, default ``redis:7``, started from the
    shipped ``docker/redis.conf`` and ``users.acl``, with passwords generated for
    it; the URL logs in as ``ponos-admin``); else a private ``redis-server`` from PATH on
    127.0.0.1 with a throwaway directory. Tests using it are skipped, with the
    reason, when none of these exists (``PONOS_TEST_REQUIRE_REDIS=1`` makes that
    an error instead). The server or container is stopped at the end of the
    session. All tests of a session share it: keep each test's keys apart
    with ``ponos_redis_namespace``.

``ponos_redis_namespace`` (function)
    A fresh namespace per test, matching ``[A-Za-z0-9_.-]{1,64}``.

>>> @pytest.mark.ponos_backend("redis")  # doctest: +SKIP
... async def test_claim(ponos_aggregator_store):
...     await ponos_aggregator_store.save_task(make_task())
...     assert await ponos_aggregator_store.claim_tasks("replica-1", limit=1)
"""

from __future__ import annotations

import gc
import importlib
import os
import re
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from ._clock import ManualClock
    from .config import StorageConfig
    from .interfaces import AggregatorStore, ExecutorStore

__all__ = [
    "ponos_aggregator_store",
    "ponos_backend",
    "ponos_clock",
    "ponos_executor_store",
    "ponos_redis_namespace",
    "ponos_redis_url",
]

URL_ENV = "PONOS_TEST_REDIS_URL"
IMAGE_ENV = "PONOS_TEST_REDIS_IMAGE"
REQUIRE_ENV = "PONOS_TEST_REQUIRE_REDIS"
DEFAULT_IMAGE = "redis:7"
BACKENDS = ("memory", "redis")
MARKER = "ponos_backend"
# Where the container reads the shipped templates (as docker/compose.yaml mounts them).
CONTAINER_DIR = "/etc/ponos"
_DOCKER_PROBE_TIMEOUT = 2
_DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"

_NOT_NAMESPACE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ponos-redis")
    group.addoption(
        "--ponos-backend",
        choices=BACKENDS,
        default="memory",
        help="backend of the ponos_aggregator_store / ponos_executor_store fixtures (default: memory)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(name): run this test's ponos-redis store fixtures on 'memory' or 'redis'",
    )


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


def _start_container(
    image: str | None = None, secrets: Mapping[str, str] | None = None
) -> tuple[str, Callable[[], object]]:
    """Start a Redis container from the shipped ``docker/redis.conf`` and ``users.acl``, with
    their access control; its URL (logging in as ``ponos-admin``) and a function that stops it.

    As ``docker/compose.yaml`` does: the templates are mounted read-only and the shipped
    ``entrypoint.sh`` renders them at start with ``secrets`` (default: passwords generated
    for this container), given in the container's environment. The only overrides are
    ``bind 0.0.0.0`` and ``protected-mode no``: the published port's connections come from
    the container network's gateway, not from loopback.
    """
    from urllib.parse import quote

    from ._acl import ADMIN_PASSWORD_ENV, ADMIN_USER, generate_secrets
    from ._configs import docker_file

    values = dict(secrets) if secrets is not None else generate_secrets()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs

        container = DockerContainer(image or os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE).with_exposed_ports(
            6379
        )
        for name in ("redis.conf", "users.acl", "entrypoint.sh"):
            container = container.with_volume_mapping(str(docker_file(name)), f"{CONTAINER_DIR}/{name}", "ro")
        for name, value in values.items():
            container = container.with_env(name, value)
        container = container.with_kwargs(
            entrypoint=[
                "sh",
                f"{CONTAINER_DIR}/entrypoint.sh",
                f"{CONTAINER_DIR}/redis.conf=/data/redis.conf",
                f"{CONTAINER_DIR}/users.acl=/data/users.acl",
                "--",
            ]
        ).with_command("redis-server /data/redis.conf --bind 0.0.0.0 --protected-mode no")
        container.start()
        try:
            wait_for_logs(container, "Ready to accept connections", timeout=60)
            host = container.get_container_host_ip()
            port = container.get_exposed_port(6379)
        except BaseException:
            container.stop()
            raise
    password = quote(values[ADMIN_PASSWORD_ENV], safe="")
    return f"redis://{ADMIN_USER}:{password}@{host}:{port}/0", container.stop


@pytest.fixture(scope="session")
def ponos_redis_url() -> Iterator[str]:
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
def ponos_redis_namespace(request: pytest.FixtureRequest) -> str:
    """A fresh namespace for this test: ``t-<test name>-<random hex>``, at most 64 characters."""
    slug = _NOT_NAMESPACE_CHARS.sub("_", request.node.name)[:40]
    return f"t-{slug}-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def ponos_backend(request: pytest.FixtureRequest) -> str:
    """``memory`` or ``redis``: the test's ``ponos_backend`` marker, else ``--ponos-backend``."""
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return str(request.config.getoption("ponos_backend"))
    name = marker.args[0] if marker.args else marker.kwargs.get("name")
    if name not in BACKENDS:
        pytest.fail(f"@pytest.mark.{MARKER} takes one of {', '.join(BACKENDS)}, got {name!r}", pytrace=False)
    return str(name)


@pytest.fixture
def ponos_clock() -> ManualClock:
    """A manual clock, read by the memory stores of the store fixtures."""
    from ._clock import ManualClock

    return ManualClock()


def _redis_config(url: str, namespace: str) -> StorageConfig:
    from .config import StorageConfig

    return StorageConfig.from_dict(
        {"type": "redis", "namespace": namespace, "redis": {"url": url, "durability": "none"}}
    )


def _async_fixture(function: Callable[..., AsyncIterator[Any]]) -> Any:
    """``pytest_asyncio.fixture``, or without pytest-asyncio a fixture that says what to install."""
    try:
        import pytest_asyncio
    except ImportError:
        name = function.__name__

        def missing() -> NoReturn:
            pytest.fail(
                f"the fixture {name} needs pytest-asyncio: pip install 'ponos-redis[testing]'", pytrace=False
            )

        missing.__doc__ = function.__doc__
        return pytest.fixture(name=name)(missing)
    return pytest_asyncio.fixture(function)


def _forget(backend: str, namespace: str) -> None:
    """Drop a memory namespace's state once its test is over (a Redis namespace is left as it is)."""
    if backend == "memory":
        from .backends.memory import reset_memory_namespaces

        reset_memory_namespaces(namespace)


@_async_fixture
async def ponos_aggregator_store(
    ponos_backend: str, ponos_redis_namespace: str, ponos_clock: ManualClock, request: pytest.FixtureRequest
) -> AsyncIterator[AggregatorStore]:
    """An open aggregator store on ``ponos_backend``, in ``ponos_redis_namespace``; closed after the test."""
    store: AggregatorStore
    if ponos_backend == "redis":
        from .backends.redis import RedisAggregatorStore

        url: str = request.getfixturevalue("ponos_redis_url")
        store = await RedisAggregatorStore.open(_redis_config(url, ponos_redis_namespace))
    else:
        from .backends.memory import MemoryAggregatorStore

        store = MemoryAggregatorStore(ponos_redis_namespace, clock=ponos_clock)
    try:
        yield store
    finally:
        await store.close()
        _forget(ponos_backend, ponos_redis_namespace)


@_async_fixture
async def ponos_executor_store(
    ponos_backend: str, ponos_redis_namespace: str, ponos_clock: ManualClock, request: pytest.FixtureRequest
) -> AsyncIterator[ExecutorStore]:
    """An open executor store on ``ponos_backend``, in ``ponos_redis_namespace``; closed after the test."""
    store: ExecutorStore
    if ponos_backend == "redis":
        from .backends.redis import RedisExecutorStore

        url: str = request.getfixturevalue("ponos_redis_url")
        store = await RedisExecutorStore.open(_redis_config(url, ponos_redis_namespace))
    else:
        from .backends.memory import MemoryExecutorStore

        store = MemoryExecutorStore(ponos_redis_namespace, clock=ponos_clock)
    try:
        yield store
    finally:
        await store.close()
        _forget(ponos_backend, ponos_redis_namespace)
