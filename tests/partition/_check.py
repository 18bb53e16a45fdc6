"""Reads a namespace after a partition test, from inside a node's namespace.

``python _check.py CONFIG_JSON TASK_IDS_JSON`` prints one JSON object:
``tasks``: for each task id, its status in the hash (None: no record) and
the status indexes holding it; ``completed_events``: how many
``task.completed`` events each task has in the stream.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from typing import Any

from ponos_redis import NotFoundError, StorageConfig, TaskStatus
from ponos_redis.backends.redis import RedisAggregatorStore
from ponos_redis.keys import Keys


async def main(config_json: str, ids_json: str) -> None:
    config = StorageConfig.from_dict(json.loads(config_json))
    ids: list[str] = json.loads(ids_json)
    keys = Keys(config.namespace)
    out: dict[str, Any] = {"tasks": {}, "completed_events": {}}
    async with await RedisAggregatorStore.open(config) as store:
        client = store._client  # the store's own connection to the current master
        for task_id in ids:
            try:
                status: str | None = (await store.get_task(task_id)).status.value
            except NotFoundError:
                status = None
            held = []
            for s in TaskStatus:
                if await client.zscore(keys.tasks(s), task_id) is not None:
                    held.append(s.value)
            out["tasks"][task_id] = {"status": status, "indexes": held}
        completed: Counter[str] = Counter()
        async for event in store.events():
            if event.kind == "task.completed":
                completed[event.subject] += 1
        out["completed_events"] = dict(completed)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
