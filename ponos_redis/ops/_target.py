"""What the ops functions are given (a store, a config, a URL) -> the namespace to work on."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

from .._ops import schema_message
from ..backends import memory as fake
from ..config import StorageConfig
from ..errors import InvalidInputError, SchemaVersionError
from ..interfaces import AggregatorStore, ExecutorStore
from ..keys import SCHEMA_VERSION
from ._memory import MemoryNamespace, MemorySchema
from ._redis import RedisNamespace

__all__ = ["StoreOrConfig", "open_namespace"]

StoreOrConfig = AggregatorStore | ExecutorStore | StorageConfig | str | Mapping[str, Any]
Purpose = Literal["read", "write", "schema"]


def _maintenance_store_class() -> Any:
    from ..backends.redis import RedisAggregatorStore

    class MaintenanceStore(RedisAggregatorStore):
        """A store that opens a namespace of an older schema version, or one being
        migrated, without creating it: what export and migrate work through."""

        async def _open_namespace(self) -> None:
            version, _ = await self._read_namespace(create=False)
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(schema_message(self.namespace, version, SCHEMA_VERSION))

    return MaintenanceStore


@contextlib.asynccontextmanager
async def open_namespace(
    target: StoreOrConfig, namespace: str | None, purpose: Purpose
) -> AsyncIterator[Any]:
    """The namespace ``target`` names, for reading, writing or its schema.

    A store is used as it is (and stays open); a config is opened here and
    closed after: for ``read`` and ``schema`` without creating the namespace and
    whatever its schema version (up to this library's), for ``write`` as the
    config says (``create_namespace``), at this library's schema version.
    """
    from ..backends.redis import _RedisStore

    if isinstance(target, _RedisStore):
        _same(target.namespace, namespace)
        yield RedisNamespace(target)
        return
    if isinstance(target, fake._MemoryStore):
        _same(target.namespace, namespace)
        if purpose == "schema":
            yield MemorySchema(target.namespace, target)
            return
        async with _memory_pair(target.namespace, target._clock, True) as pair:
            yield pair
        return
    if isinstance(target, AggregatorStore | ExecutorStore):
        raise InvalidInputError(f"{type(target).__name__} is not a store of this library's backends")
    cfg = StorageConfig.coerce(target, namespace)
    if cfg.type == "memory":
        if purpose == "schema":
            yield MemorySchema(cfg.namespace)
            return
        async with _memory_pair(cfg.namespace, None, cfg.create_namespace) as pair:
            yield pair
        return
    from ..backends.redis import RedisAggregatorStore

    opener = RedisAggregatorStore if purpose == "write" else _maintenance_store_class()
    store = await opener.open(cfg)
    try:
        yield RedisNamespace(store)
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def _memory_pair(namespace: str, clock: Any, create: bool) -> AsyncIterator[MemoryNamespace]:
    aggregator = fake.MemoryAggregatorStore(namespace, clock=clock, create_namespace=create)
    executor = fake.MemoryExecutorStore(namespace, clock=clock, create_namespace=create)
    try:
        yield MemoryNamespace(aggregator, executor)
    finally:
        await aggregator.close()
        await executor.close()


def _same(store_namespace: str, namespace: str | None) -> None:
    if namespace is not None and namespace != store_namespace:
        raise InvalidInputError(
            f"namespace {namespace!r} was given with a store of namespace {store_namespace!r}"
        )
