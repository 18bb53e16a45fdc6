"""Fixtures shared by every test folder.

The contract suite runs every test once per backend. A test asks for
``make_aggregator`` / ``make_executor`` (factories taking the store's tuning
keywords) or for the ready-made ``aggregator`` / ``executor``; all stores of
one test share one fresh namespace and one ``ManualClock``, like replicas
sharing one Redis.

This project's own options and fixtures live here, not in the installed
pytest plugin (which only adds ``ponos_``-prefixed names to users' runs):
``--soak`` runs the tests marked ``soak`` (the markers are declared in
pyproject.toml), and ``redis_url`` / ``redis_namespace`` are this suite's
names for the plugin's ``ponos_redis_url`` / ``ponos_redis_namespace``.

The contract suite's ``redis`` and ``redis-cluster`` backends run as the
shipped ``docker/users.acl``'s ``ponos`` user, the one a service runs as: on a
private server started from the shipped ``docker/redis.conf`` with its access
control (``redis_acl_server``), and on a cluster of such nodes, with passwords
generated for the run (``redis_secrets``, also in this process's environment,
where ``password_env`` finds them). With ``PONOS_TEST_REDIS_URL`` set, the
``redis`` backend uses that server as the URL says instead.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from ponos_redis import AggregatorStore, ExecutorStore, ManualClock, StorageConfig
from ponos_redis._acl import APP_PASSWORD_ENV, APP_USER, generate_secrets
from ponos_redis._configs import docker_file
from ponos_redis._redis_server import RedisServer, redis_server_available
from ponos_redis.backends.memory import MemoryAggregatorStore, MemoryExecutorStore
from ponos_redis.backends.redis import RedisAggregatorStore, RedisExecutorStore
from ponos_redis.pytest_plugin import URL_ENV

# Hypothesis profiles, chosen by PONOS_HYPOTHESIS_PROFILE: "default" keeps the suite within
# its CI budget; "nightly" runs ten times the examples, and programs up to three times
# longer (stateful_step_count: the longest program of the differential test). The differential
# and fuzz tests (tests/differential, tests/fuzz) take their sizes from the loaded profile.
HYPOTHESIS_PROFILE_ENV = "PONOS_HYPOTHESIS_PROFILE"
hypothesis_settings.register_profile("default", max_examples=100, stateful_step_count=40)
hypothesis_settings.register_profile("nightly", max_examples=1000, stateful_step_count=150)
hypothesis_settings.load_profile(os.environ.get(HYPOTHESIS_PROFILE_ENV) or "default")

# "redis-cluster": the same suite on a three-master Redis Cluster, namespaces spread over its shards.
BACKENDS = ["memory", "redis", "redis-cluster"]

AggregatorFactory = Callable[..., Awaitable[AggregatorStore]]
ExecutorFactory = Callable[..., Awaitable[ExecutorStore]]

_counter = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False, help="run the tests marked soak")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("soak"):
        return
    skip_soak = pytest.mark.skip(reason="slow soak test: run with --soak")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip_soak)


@pytest.fixture(scope="session")
def redis_url(ponos_redis_url: str) -> str:
    """The session's Redis: the plugin's ``ponos_redis_url``."""
    return ponos_redis_url


@pytest.fixture
def redis_namespace(ponos_redis_namespace: str) -> str:
    """A fresh namespace per test: the plugin's ``ponos_redis_namespace``."""
    return ponos_redis_namespace


@pytest.fixture
def namespace() -> str:
    return f"t{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


_TASK_TUNING = {"default_lease_s", "max_attempts", "retention_s", "max_payload_bytes"}


class RedisStoreFactory:
    """Builds Redis stores on the session's server with the fake's tuning keywords,
    logging in as ``username`` with the password in ``$<password_env>`` when given."""

    def __init__(
        self,
        url: str | None = None,
        *,
        cluster_nodes: list[str] | None = None,
        username: str | None = None,
        password_env: str | None = None,
    ) -> None:
        self.url = url
        self.cluster_nodes = cluster_nodes
        self.login = {
            name: value
            for name, value in (("username", username), ("password_env", password_env))
            if value is not None
        }

    def config(self, namespace: str, **tuning: Any) -> StorageConfig:
        tasks = {k: tuning.pop(k) for k in list(tuning) if k in _TASK_TUNING}
        return StorageConfig.from_dict(
            {
                "type": "redis",
                "namespace": namespace,
                "redis": {
                    **(
                        {"cluster": {"nodes": self.cluster_nodes}}
                        if self.cluster_nodes
                        else {"url": self.url}
                    ),
                    "durability": "none",
                    **self.login,
                },
                "tasks": tasks,
                **tuning,
            }
        )

    async def aggregator(self, namespace: str, *, clock: Any = None, **tuning: Any) -> AggregatorStore:
        return await RedisAggregatorStore.open(self.config(namespace, **tuning), clock=clock)

    async def executor(self, namespace: str, *, clock: Any = None, **tuning: Any) -> ExecutorStore:
        return await RedisExecutorStore.open(self.config(namespace, **tuning), clock=clock)


@pytest.fixture(scope="session")
def redis_secrets() -> Iterator[dict[str, str]]:
    """Passwords for the shipped configs' users, generated for this run, by the name of the
    environment variable each is read from; put in this process's environment (stores read
    them through ``password_env``, subprocesses inherit them) until the session ends."""
    secrets = generate_secrets()
    saved = {name: os.environ.get(name) for name in secrets}
    os.environ.update(secrets)
    try:
        yield secrets
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def redis_acl_server(redis_secrets: dict[str, str]) -> Iterator[RedisServer]:
    """A private redis-server from the shipped ``docker/redis.conf`` with its access control
    (``docker/users.acl``, the default user off), on a free loopback port; its ``auth`` is
    the admin user."""
    if not redis_server_available():
        pytest.skip("redis-server is not on PATH")
    with RedisServer(conf_file=docker_file("redis.conf"), secrets=redis_secrets) as server:
        yield server


@pytest.fixture(scope="session")
def redis_store_factory(request: pytest.FixtureRequest) -> RedisStoreFactory:
    """Stores as the ``ponos`` user on ``redis_acl_server``; on ``redis_url`` when
    ``PONOS_TEST_REDIS_URL`` names a server (or no redis-server is on PATH)."""
    if os.environ.get(URL_ENV) or not redis_server_available():
        return RedisStoreFactory(request.getfixturevalue("redis_url"))
    server: RedisServer = request.getfixturevalue("redis_acl_server")
    return RedisStoreFactory(server.url, username=APP_USER, password_env=APP_PASSWORD_ENV)


@pytest.fixture(scope="session")
def redis_cluster_store_factory(redis_secrets: dict[str, str]) -> Iterator[RedisStoreFactory]:
    """Stores as the ``ponos`` user on a three-master cluster of nodes from the shipped
    ``docker/redis.conf`` with its access control."""
    from ponos_redis._topology import ClusterTopology

    with ClusterTopology(masters=3, secrets=redis_secrets) as cluster:
        yield RedisStoreFactory(
            cluster_nodes=cluster.startup_nodes, username=APP_USER, password_env=APP_PASSWORD_ENV
        )


def _redis_factory(request: pytest.FixtureRequest, backend: str) -> RedisStoreFactory:
    name = "redis_cluster_store_factory" if backend == "redis-cluster" else "redis_store_factory"
    factory: RedisStoreFactory = request.getfixturevalue(name)
    return factory


@pytest.fixture
async def make_aggregator(
    backend: str, namespace: str, clock: ManualClock, request: pytest.FixtureRequest
) -> AsyncIterator[AggregatorFactory]:
    opened: list[AggregatorStore] = []

    async def factory(**tuning: Any) -> AggregatorStore:
        ns = tuning.pop("namespace", namespace)
        store: AggregatorStore
        if backend == "memory":
            store = MemoryAggregatorStore(ns, clock=clock, **tuning)
        else:
            store = await _redis_factory(request, backend).aggregator(ns, clock=clock, **tuning)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
async def make_executor(
    backend: str, namespace: str, clock: ManualClock, request: pytest.FixtureRequest
) -> AsyncIterator[ExecutorFactory]:
    opened: list[ExecutorStore] = []

    async def factory(**tuning: Any) -> ExecutorStore:
        ns = tuning.pop("namespace", namespace)
        store: ExecutorStore
        if backend == "memory":
            store = MemoryExecutorStore(ns, clock=clock, **tuning)
        else:
            store = await _redis_factory(request, backend).executor(ns, clock=clock, **tuning)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
async def aggregator(make_aggregator: AggregatorFactory) -> AggregatorStore:
    return await make_aggregator()


@pytest.fixture
async def executor(make_executor: ExecutorFactory) -> ExecutorStore:
    return await make_executor()
