"""The schema version in a namespace's meta hash: written on first open,
checked on every open."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from _redis_support import Stores, make_task

from ponos_redis import (
    CorruptRecordError,
    SchemaVersionError,
    open_aggregator_store,
    open_executor_store,
)
from ponos_redis.keys import SCHEMA_VERSION, Keys

pytestmark = [pytest.mark.redis_only, pytest.mark.timeout(30)]


async def test_first_open_writes_the_schema_version(stores: Stores, raw: aioredis.Redis) -> None:
    meta = Keys(stores.namespace).meta
    assert await raw.exists(meta) == 0
    await stores.aggregator()
    assert await raw.hget(meta, "schema_version") == str(SCHEMA_VERSION).encode()


async def test_executor_open_writes_it_too(stores: Stores, raw: aioredis.Redis) -> None:
    await stores.executor()
    assert await raw.hget(Keys(stores.namespace).meta, "schema_version") == str(SCHEMA_VERSION).encode()


async def test_reopening_keeps_the_version_and_the_data(stores: Stores, raw: aioredis.Redis) -> None:
    first = await stores.aggregator()
    await first.save_task(make_task("t-1"))
    await first.close()
    again = await stores.aggregator()
    assert (await again.get_task("t-1")).task.task_id == "t-1"
    assert await raw.hget(again.keys.meta, "schema_version") == str(SCHEMA_VERSION).encode()


@pytest.mark.parametrize("kind", ["aggregator", "executor"])
async def test_a_newer_schema_version_refuses_to_open(stores: Stores, raw: aioredis.Redis, kind: str) -> None:
    meta = Keys(stores.namespace).meta
    await raw.hset(meta, "schema_version", "999")
    with pytest.raises(SchemaVersionError) as info:
        await getattr(stores, kind)()
    assert "999" in str(info.value)
    assert stores.namespace in str(info.value)
    # The refusal wrote nothing: the newer version is still there.
    assert await raw.hget(meta, "schema_version") == b"999"


@pytest.mark.parametrize("opener", [open_aggregator_store, open_executor_store])
async def test_the_public_openers_refuse_too(stores: Stores, raw: aioredis.Redis, opener: object) -> None:
    await raw.hset(Keys(stores.namespace).meta, "schema_version", str(SCHEMA_VERSION + 1))
    with pytest.raises(SchemaVersionError):
        await opener(stores.config())  # type: ignore[operator]
    with pytest.raises(SchemaVersionError):
        async with opener(stores.config()):  # type: ignore[operator]
            pass


async def test_an_unreadable_schema_version_is_corrupt(stores: Stores, raw: aioredis.Redis) -> None:
    meta = Keys(stores.namespace).meta
    await raw.hset(meta, "schema_version", "one")
    with pytest.raises(CorruptRecordError) as info:
        await stores.aggregator()
    assert info.value.key == meta


async def test_namespaces_have_their_own_versions(stores: Stores, raw: aioredis.Redis) -> None:
    await raw.hset(Keys(stores.namespace).meta, "schema_version", "999")
    other = "other-" + stores.namespace[-40:]  # keeps the random suffix
    store = await stores.aggregator(namespace=other)
    assert await raw.hget(store.keys.meta, "schema_version") == str(SCHEMA_VERSION).encode()
