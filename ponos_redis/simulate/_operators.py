"""The fake operator RPC: how an aggregator replica hands a task to the executors.

Chosen: JSON lines over loopback TCP (:mod:`._jsonl`), one listening port per
executor, fixed for the run so a restarted executor is found again at the same
address. Not a Redis list: the RPC is the network between two services, and it
should not go down with the Redis the faults restart, nor hide a Redis
restart's effect on the stores behind its own.

A request::

    {"op": "execute", "task": <the Task as msgspec JSON>, "aggregator": <replica owner id>,
     "token": <fencing token>}

and its reply ``{"ok": true, "executor": <name>, "signature": <hex>, "deduplicated": bool}``
or ``{"ok": false, "error": ...}``.

The aggregator side (:class:`OperatorClient`) sends each task to every
executor at once and counts the signatures; the task's ``threshold_bips`` of
the executors must sign (at least one). Executors that did not answer are
asked again for a while; if too few signed in the end the handler raises and
the TaskWorker fails the task with ``retry=True``: it goes back to pending
while attempts remain.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import msgspec

from ..models import ClaimedTask
from ._jsonl import JsonLineClient, JsonLineError

__all__ = ["NotEnoughSignatures", "OperatorClient", "execute_request"]

CALL_TIMEOUT_S = 5.0


class NotEnoughSignatures(Exception):
    """Fewer executors than the task's threshold signed its result."""


def execute_request(claimed: ClaimedTask, owner: str) -> dict[str, Any]:
    task = claimed.task
    return {
        "op": "execute",
        "task": msgspec.json.encode(task).decode(),
        "aggregator": owner,
        "token": claimed.token,
    }


class OperatorClient:
    """Sends tasks to the executors listening on ``ports`` (127.0.0.1).

    An executor that does not answer (down, restarting) is asked again every
    ``retry_every_s`` until ``signature_timeout_s`` has passed since the first
    request, as an aggregator waits for signatures within a task's SLA; the
    TaskWorker renews the task's lease meanwhile.
    """

    def __init__(
        self,
        ports: list[int],
        owner: str,
        *,
        call_timeout_s: float = CALL_TIMEOUT_S,
        signature_timeout_s: float = 15.0,
        retry_every_s: float = 0.25,
    ) -> None:
        self._clients = [JsonLineClient(port) for port in ports]
        self._owner = owner
        self._call_timeout_s = call_timeout_s
        self._signature_timeout_s = signature_timeout_s
        self._retry_every_s = retry_every_s

    async def _one(self, client: JsonLineClient, request: dict[str, Any]) -> bool:
        try:
            reply = await client.call(request, within_s=self._call_timeout_s)
        except JsonLineError:
            return False
        return reply.get("ok") is True and isinstance(reply.get("signature"), str)

    async def handle(self, claimed: ClaimedTask) -> None:
        """The TaskWorker handler's last step: gather the signatures; raise when too few came."""
        request = execute_request(claimed, self._owner)
        n = len(self._clients)
        needed = max(1, math.ceil(claimed.task.threshold_bips * n / 10_000))
        missing = list(self._clients)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._signature_timeout_s
        rounds = 1 + math.ceil(self._signature_timeout_s / self._retry_every_s)
        for _ in range(rounds):
            signed = await asyncio.gather(*(self._one(c, request) for c in missing))
            missing = [c for c, ok in zip(missing, signed, strict=True) if not ok]
            if n - len(missing) >= needed or loop.time() + self._retry_every_s >= deadline:
                break
            await asyncio.sleep(self._retry_every_s)
        got = n - len(missing)
        if got < needed:
            raise NotEnoughSignatures(f"{got} of {n} operators signed, {needed} needed")

    async def close(self) -> None:
        for client in self._clients:
            await client.close()
