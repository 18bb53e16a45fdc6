"""The raw baselines the bench compares the stores with.

For Redis: a bare ``redis.asyncio`` client (hiredis when installed) running
minimal Lua scripts that do the same state change as ours with nothing else:
no namespace guard, no replay records, no events, no validation, no per-AVS or
per-chain index, no deadline check. What the stores do beyond them is what the
ratio measures.

For the fake: a plain dict and deque behind one ``await asyncio.sleep(0)``
per call (the fake yields once per call, as I/O would).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import redis.asyncio as aioredis

from ..models import Task

__all__ = ["RAW_SCRIPTS", "DictBaseline", "RawRedis", "raw_fields"]

_NOW = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

RAW_SCRIPTS: dict[str, str] = {
    # KEYS: seq, pending, task hashes...; ARGV: 2f (field/value slots per task), the pairs
    "save": """
local f = tonumber(ARGV[1])
for i = 3, #KEYS do
  local base = 1 + (i - 3) * f
  local seq = redis.call('INCR', KEYS[1])
  redis.call('HSET', KEYS[i], 'status', 'pending', 'seq', seq, unpack(ARGV, base + 1, base + f))
  redis.call('ZADD', KEYS[2], seq, ARGV[base + 2])
end
return #KEYS - 2
""",
    # KEYS: pending, processing, fence; ARGV: task key prefix, limit, owner, lease ms
    "claim": _NOW
    + """
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[2])
local out = {}
for i = 1, #popped, 2 do
  local id = popped[i]
  local key = ARGV[1] .. id
  local token = redis.call('INCR', KEYS[3])
  redis.call('HSET', key, 'status', 'processing', 'owner', ARGV[3], 'token', token,
    'lease_until', now + ARGV[4])
  redis.call('ZADD', KEYS[2], now + ARGV[4], id)
  out[#out + 1] = {token, redis.call('HGETALL', key)}
end
return out
""",
    # KEYS: task hash, processing, completed; ARGV: token, id
    "complete": _NOW
    + """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'completed')
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], now, ARGV[2])
return 1
""",
    # KEYS: processing, pending; ARGV: task key prefix
    "reap": _NOW
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  redis.call('HSET', key, 'status', 'pending')
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], redis.call('HGET', key, 'seq'), id)
end
return #ids
""",
}


def raw_fields(task: Task) -> list[Any]:
    """A task's field/value pairs as a minimal client would write them (task_id first)."""
    return [
        "task_id",
        task.task_id,
        "avs_address",
        task.avs_address,
        "operator_set_id",
        task.operator_set_id,
        "chain_id",
        task.chain_id,
        "block_number",
        task.block_number,
        "block_hash",
        task.block_hash,
        "callback_address",
        task.callback_address,
        "deadline",
        "",
        "threshold_bips",
        task.threshold_bips,
        "payload",
        task.payload,
    ]


class RawRedis:
    """The bare client and its minimal scripts, under its own key prefix."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client: Any = aioredis.Redis.from_url(url)
        self.prefix = prefix
        self.pending = f"{prefix}pending"
        self.processing = f"{prefix}processing"
        self.completed = f"{prefix}completed"
        self.seq = f"{prefix}seq"
        self.fence = f"{prefix}fence"
        self.task_prefix = f"{prefix}task:"
        self.scripts = {name: self.client.register_script(src) for name, src in RAW_SCRIPTS.items()}

    async def save(self, tasks: list[Task]) -> int:
        """Save tasks with the minimal script (one call)."""
        args: list[Any] = [20]
        for task in tasks:
            args.extend(raw_fields(task))
        keys = [self.seq, self.pending, *(self.task_prefix + t.task_id for t in tasks)]
        return int(await self.scripts["save"](keys=keys, args=args))

    async def get(self, task_id: str) -> dict[bytes, bytes]:
        """HGETALL of one task, not decoded."""
        reply: dict[bytes, bytes] = await self.client.hgetall(self.task_prefix + task_id)
        return reply

    async def claim(self, limit: int) -> list[tuple[str, str]]:
        """Claim the oldest ``limit`` tasks; returns (id, token) pairs."""
        reply = await self.scripts["claim"](
            keys=[self.pending, self.processing, self.fence],
            args=[self.task_prefix, limit, "raw-owner", 30000],
        )
        out = []
        for token, fields in reply:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            out.append((values[b"task_id"].decode(), str(token)))
        return out

    async def complete(self, task_id: str, token: str) -> int:
        """Complete one task held under ``token``."""
        return int(
            await self.scripts["complete"](
                keys=[self.task_prefix + task_id, self.processing, self.completed], args=[token, task_id]
            )
        )

    async def list_pending(self, limit: int) -> list[dict[bytes, bytes]]:
        """ZRANGE, then every hash in one pipeline; not decoded."""
        ids = await self.client.zrange(self.pending, 0, limit - 1)
        pipe = self.client.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.task_prefix + i.decode())
        return list(await pipe.execute())

    async def count(self) -> list[int]:
        """ZCARD of each status index, one pipeline."""
        pipe = self.client.pipeline(transaction=False)
        for key in (self.pending, self.processing, self.completed, f"{self.prefix}failed"):
            pipe.zcard(key)
        return list(await pipe.execute())

    async def reap(self) -> int:
        """Expired leases back to pending, 1000 per script, until none is left."""
        total = 0
        while True:
            n = int(await self.scripts["reap"](keys=[self.processing, self.pending], args=[self.task_prefix]))
            total += n
            if n == 0:
                return total

    async def aclose(self) -> None:
        """Close the client."""
        await self.client.aclose()


class DictBaseline:
    """The fake's baseline: a dict of [task, status, token] and a deque of pending ids."""

    def __init__(self) -> None:
        self.tasks: dict[str, list[Any]] = {}
        self.pending: deque[str] = deque()
        self.token = 0

    async def save(self, task: Task) -> bool:
        """Insert one task."""
        await asyncio.sleep(0)
        if task.task_id in self.tasks:
            return False
        self.tasks[task.task_id] = [task, "pending", None]
        self.pending.append(task.task_id)
        return True

    async def get(self, task_id: str) -> list[Any]:
        """Look one task up."""
        await asyncio.sleep(0)
        return self.tasks[task_id]

    async def claim(self, limit: int) -> list[tuple[str, int]]:
        """Pop the oldest pending tasks."""
        await asyncio.sleep(0)
        out: list[tuple[str, int]] = []
        while self.pending and len(out) < limit:
            task_id = self.pending.popleft()
            self.token += 1
            row = self.tasks[task_id]
            row[1], row[2] = "processing", self.token
            out.append((task_id, self.token))
        return out

    async def complete(self, task_id: str, token: int) -> bool:
        """Complete one held task."""
        await asyncio.sleep(0)
        row = self.tasks[task_id]
        if row[2] != token:
            return False
        row[1] = "completed"
        return True
