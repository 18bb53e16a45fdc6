"""``open_aggregator_store`` / ``open_executor_store``: one call, awaited or
used with ``async with``, for every backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar

import msgspec

from .config import StorageConfig
from .interfaces import AggregatorStore, ExecutorStore

__all__ = ["StoreOpener", "open_aggregator_store", "open_executor_store"]

S = TypeVar("S", AggregatorStore, ExecutorStore)


class StoreOpener(Generic[S]):
    """Awaitable (``store = await open_...``) and an async context manager
    (``async with open_... as store``), as asyncpg's ``create_pool`` is."""

    def __init__(self, opener: Callable[[], Awaitable[S]]) -> None:
        self._opener: Callable[[], Awaitable[S]] = opener
        self._store: S | None = None

    def __await__(self) -> Generator[Any, None, S]:
        return _await(self._opener()).__await__()

    async def __aenter__(self) -> S:
        self._store = await self._opener()
        return self._store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.close()


async def _await(awaitable: Awaitable[S]) -> S:
    return await awaitable


def _memory_tuning(cfg: StorageConfig, *names: str) -> dict[str, Any]:
    from .backends._common import StoreSettings

    settings = msgspec.structs.asdict(StoreSettings.from_config(cfg))
    return {name: settings[name] for name in names} if names else settings


def open_aggregator_store(
    config: StorageConfig | str | Mapping[str, Any], namespace: str | None = None
) -> StoreOpener[AggregatorStore]:
    """Open the aggregator store described by ``config``.

    Args:
        config: a :class:`StorageConfig`, the mapping under ``storage:``,
            ``"memory"`` or a Redis URL.
        namespace: overrides the config's namespace.

    Raises:
        InvalidInputError: the config or namespace is invalid (before any I/O).
        DurabilityError: strict durability was asked for and the server cannot keep it.
        SchemaVersionError: the namespace has another schema version (an older one names
            ``ponos-redis migrate``), or its migration has not finished.
    """
    cfg = StorageConfig.coerce(config, namespace)

    async def opener() -> AggregatorStore:
        if cfg.type == "memory":
            from .backends.memory import MemoryAggregatorStore

            return MemoryAggregatorStore(cfg.namespace, **_memory_tuning(cfg))
        from .backends.redis import RedisAggregatorStore

        return await RedisAggregatorStore.open(cfg)

    return StoreOpener(opener)


def open_executor_store(
    config: StorageConfig | str | Mapping[str, Any], namespace: str | None = None
) -> StoreOpener[ExecutorStore]:
    """Open the executor store described by ``config``; see :func:`open_aggregator_store`."""
    cfg = StorageConfig.coerce(config, namespace)

    async def opener() -> ExecutorStore:
        if cfg.type == "memory":
            from .backends.memory import MemoryExecutorStore

            return MemoryExecutorStore(
                cfg.namespace,
                **_memory_tuning(
                    cfg, "processed_ttl_s", "history_maxlen", "max_payload_bytes", "create_namespace"
                ),
            )
        from .backends.redis import RedisExecutorStore

        return await RedisExecutorStore.open(cfg)

    return StoreOpener(opener)
