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
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from ponos_redis import AggregatorStore, ExecutorStore, ManualClock, StorageConfig
from ponos_redis.backends.memory import MemoryAggregatorStore, MemoryExecutorStore
from ponos_redis.backends.redis import RedisAggregatorStore, RedisExecutorStore

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
    """Builds Redis stores on the session's server with the fake's tuning keywords."""

    def __init__(self, url: str | None = None, *, cluster_nodes: list[str] | None = None) -> None:
        self.url = url
        self.cluster_nodes = cluster_nodes

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
def redis_store_factory(redis_url: str) -> RedisStoreFactory:
    return RedisStoreFactory(redis_url)


@pytest.fixture(scope="session")
def redis_cluster_store_factory() -> Iterator[RedisStoreFactory]:
    from ponos_redis._topology import ClusterTopology

    with ClusterTopology(masters=3) as cluster:
        yield RedisStoreFactory(cluster_nodes=cluster.startup_nodes)


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
