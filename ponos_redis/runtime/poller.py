"""ChainPoller: move one chain's block cursor forward, save each block's tasks,
and undo what a reorg orphaned. Only the holder of the chain's lease polls.

Each pass (``poll_once``):

1. Acquire the chain lease, or renew it when a third of its ttl has passed.
   Without it the pass ends (another replica polls). Every fenced write
   carries the lease token (``fence``); the first ``StaleLeaseError`` ends
   the pass at once, and nothing more is written until the lease is held
   again (with a new token). The lease's local deadline is measured from
   before the acquire/renew call; unfenced writes (``save_block``,
   ``save_tasks``) are not made once it has passed.
2. Resume from the stored cursor (``start_block - 1`` when there is none).
3. For each next block up to ``head - confirmations``: if its parent hash
   differs from the stored record of the block before it, handle a reorg
   (below); else save its block record, save its tasks (idempotent:
   identical re-saves count 0) and move the cursor to it (fenced).

A reorg: walk back through the stored block records until one matches the
chain (the fork point, at most ``max_reorg_depth`` blocks back), read the
new branch's blocks above the fork (up to the head, at most
``max_keep_blocks``) for the ids of tasks that are still on chain, then

- ``fail_orphaned_tasks(chain_id, fork, keep=<those ids>, reason="reorg", fence=token)``:
  the old branch's pending and processing tasks fail, with a new token, so a
  worker that holds one gets ``StaleLeaseError`` on its next renew or complete;
- ``rewind_chain(chain_id, fork, fence=token)``: the cursor goes back to the fork
  and the block records above it are dropped; polling resumes at ``fork + 1``.

Failing comes before rewinding on purpose: if the process dies between the
two, the stored records above the fork still disagree with the chain, so the
next pass (of any replica) detects the same reorg and finishes it (failing
again is a no-op). The other order would drop that evidence and leave the
orphaned tasks pending for good.

Restart: the cursor and block records are in the store, so a restarted (or
another) poller resumes at ``cursor + 1``; a block processed halfway is simply
processed again (every write is idempotent).

Limits, stated plainly: ``save_block`` and ``save_tasks`` take no fence, so a
poller paused past its lease (GC, a stalled host) between its local deadline
check and the write could still save one block's record or tasks; the next
pass of the current leader treats a wrong record as a reorg and fails any
task that is not on the chain. A task re-included more than
``max_keep_blocks`` above the fork, or after its orphaned copy was already
failed, stays failed (a failed task is final).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..errors import (
    AlreadyExistsError,
    NotFoundError,
    PonosStorageError,
    StaleLeaseError,
    StoreUnavailableError,
)
from ..interfaces import AggregatorStore
from ..models import BlockRecord, ChainLease, Task
from ._retry import RetryPolicy, repeat_on_unavailable
from ._service import FATAL_ERRORS, EventCallback, Service
from .chain import ChainBlock, ChainSource

__all__ = ["ChainPoller"]

T = TypeVar("T")

_log = logging.getLogger("ponos_redis.runtime.poller")

# fail_orphaned_tasks takes at most this many ids to keep.
_MAX_KEEP_IDS = 10_000
# Reorgs handled in one pass before it yields (a chain that keeps flapping).
_MAX_REORGS_PER_PASS = 8


class _LeaseLost(Exception):
    """Internal: the chain lease is gone; stop writing."""


class ChainPoller(Service):
    """Polls one chain for blocks and tasks while it holds the chain's lease.

    Args:
        store: the aggregator store.
        chain: the chain source (its ``chain_id`` names the chain).
        owner: this replica's name (an id), recorded as the lease owner.
        lease_ttl_s: the chain lease's ttl; renewed every third of it.
        poll_interval_s: sleep between passes that found nothing new (jittered ±20%).
        start_block: the first block to process when the chain has no cursor yet.
        confirmations: stay this many blocks behind the head.
        max_blocks_per_poll: most blocks one pass processes (then the next pass
            starts at once).
        max_reorg_depth: how far back the fork point is looked for.
        max_keep_blocks: how many blocks of the new branch are read for tasks to keep.
        retry: repetitions after ``StoreUnavailableError``; default ``RetryPolicy()``.
        on_event: called with a :class:`RuntimeEvent` for ``"lease_acquired"``,
            ``"lease_lost"``, ``"block"``, ``"reorg"`` and ``"orphaned"``.

    Attributes (counters):
        blocks, reorgs, tasks_saved, orphaned_failed: blocks processed, reorgs
        handled, tasks created, orphaned tasks failed.
        leases_acquired, leases_lost, conflicts, store_retries, errors: lease
        acquisitions (new or after a loss), losses, tasks whose id was already
        stored with other content (kept as stored), repeated store calls and
        passes that ended in an error.
        lease: the chain lease while held, else None.
        head, cursor: the chain head seen by the last pass and the cursor as this
            poller last read or moved it (None before the first pass); their
            difference is the lag that metrics report while the lease is held.
    """

    component = "poller"

    def __init__(
        self,
        store: AggregatorStore,
        chain: ChainSource,
        owner: str,
        *,
        lease_ttl_s: float = 10.0,
        poll_interval_s: float = 0.5,
        start_block: int = 0,
        confirmations: int = 0,
        max_blocks_per_poll: int = 100,
        max_reorg_depth: int = 64,
        max_keep_blocks: int = 256,
        retry: RetryPolicy | None = None,
        on_event: EventCallback | None = None,
    ) -> None:
        super().__init__(owner, on_event, _log)
        if lease_ttl_s <= 0 or poll_interval_s <= 0:
            raise ValueError("lease_ttl_s and poll_interval_s must be positive")
        if start_block < 0 or confirmations < 0:
            raise ValueError("start_block and confirmations must not be negative")
        if max_blocks_per_poll < 1 or max_reorg_depth < 1 or max_keep_blocks < 1:
            raise ValueError("max_blocks_per_poll, max_reorg_depth and max_keep_blocks must be positive")
        self.store = store
        self.chain = chain
        self.chain_id = chain.chain_id
        self.lease_ttl_s = float(lease_ttl_s)
        self.poll_interval_s = float(poll_interval_s)
        self.start_block = start_block
        self.confirmations = confirmations
        self.max_blocks_per_poll = max_blocks_per_poll
        self.max_reorg_depth = max_reorg_depth
        self.max_keep_blocks = max_keep_blocks
        self.retry = retry or RetryPolicy()
        self.lease: ChainLease | None = None
        self.head: int | None = None
        self.cursor: int | None = None
        self._lease_deadline = 0.0
        self._renew_at = 0.0
        self.blocks = 0
        self.reorgs = 0
        self.tasks_saved = 0
        self.orphaned_failed = 0
        self.leases_acquired = 0
        self.leases_lost = 0
        self.conflicts = 0
        self.store_retries = 0
        self.errors = 0

    # -- public ----------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until ``stop()``, a signal or cancellation; then release the chain lease.

        A pass that fails (store unreachable after the repetitions, a chain
        source error) is logged and the next one starts after ``poll_interval_s``.

        Raises:
            NamespaceLostError: the store lost the namespace.
            StoreClosedError: the store was closed under the poller.
        """
        self._begin_run()
        try:
            while not self.stopping:
                processed = 0
                try:
                    processed = await self.poll_once()
                except FATAL_ERRORS:
                    raise
                except StoreUnavailableError:
                    self.errors += 1  # logged by the repeater
                except PonosStorageError as exc:
                    self.errors += 1
                    _log.error("poller %s (chain %d): %s", self.owner, self.chain_id, exc)
                except Exception:  # the chain source's failures: try again next pass
                    self.errors += 1
                    _log.exception("poller %s (chain %d): pass failed", self.owner, self.chain_id)
                if processed < self.max_blocks_per_poll:
                    await self._sleep_or_wake(self._jittered(self.poll_interval_s))
        finally:
            try:
                await self.release()
            finally:
                self._end_run()

    async def release(self) -> None:
        """Give the chain lease up (if held) so another replica can poll at once."""
        lease, self.lease = self.lease, None
        if lease is None:
            return
        try:
            await self._call("release_chain_lease", lambda: self.store.release_chain_lease(lease))
        except StaleLeaseError:
            pass  # somebody else's already
        except StoreUnavailableError as exc:
            _log.warning("poller %s: chain lease not released (it lapses after its ttl): %s", self.owner, exc)
        except FATAL_ERRORS as exc:
            _log.warning("poller %s: chain lease not released: %s", self.owner, exc)

    async def poll_once(self) -> int:
        """One pass; returns the number of blocks processed (0 when not the leader).

        Raises:
            StoreUnavailableError: the store stayed unreachable (a later pass resumes).
            NamespaceLostError: the store lost the namespace.
        """
        try:
            if not await self._ensure_lease():
                return 0
            return await self._pass()
        except _LeaseLost:
            return 0

    # -- the pass ----------------------------------------------------------------------

    async def _pass(self) -> int:
        try:
            cursor = await self._call(
                "get_last_processed_block", lambda: self.store.get_last_processed_block(self.chain_id)
            )
            has_cursor = True
            self.cursor = cursor
        except NotFoundError:
            cursor, has_cursor = self.start_block - 1, False
        head = self.head = await self.chain.head()
        target = min(head - self.confirmations, cursor + self.max_blocks_per_poll)
        number = cursor + 1
        processed = 0
        reorgs = 0
        while number <= target and not self.stopping:
            if not await self._ensure_lease():
                break
            block = await self.chain.block(number)
            if block is None:
                break
            if has_cursor:  # the block before is ours: does this one build on it?
                previous = await self._stored_block(number - 1)
                if previous is not None and previous.hash != block.parent_hash:
                    if reorgs == _MAX_REORGS_PER_PASS:
                        break  # the chain keeps changing under us: next pass
                    reorgs += 1
                    number = await self._handle_reorg(number) + 1
                    continue
            await self._process(block)
            has_cursor = True
            processed += 1
            number += 1
        return processed

    async def _process(self, block: ChainBlock) -> None:
        token = self._token()
        self._check_deadline()
        await self._call("save_block", lambda: self.store.save_block(block.record()))
        if block.tasks:
            self._check_deadline()
            self.tasks_saved += await self._save_tasks(block)
        await self._fenced(
            "set_last_processed_block",
            lambda: self.store.set_last_processed_block(self.chain_id, block.number, fence=token),
        )
        self.blocks += 1
        self.cursor = block.number
        self._emit("block", str(self.chain_id), f"block {block.number}, {len(block.tasks)} task(s)")

    async def _save_tasks(self, block: ChainBlock) -> int:
        try:
            return await self._call("save_tasks", lambda: self.store.save_tasks(block.tasks))
        except AlreadyExistsError:
            pass
        # One of them is stored with other content (re-included after a reorg
        # with a new block hash): keep what is stored, save the others.
        created = 0
        for task in block.tasks:
            self._check_deadline()
            try:
                created += await self._call("save_task", self._saver(task))
            except AlreadyExistsError:
                self.conflicts += 1
                _log.info(
                    "task %s of block %d already stored with other content; kept", task.task_id, block.number
                )
        return created

    def _saver(self, task: Task) -> Callable[[], Awaitable[bool]]:
        return lambda: self.store.save_task(task)

    async def _stored_block(self, number: int) -> BlockRecord | None:
        if number < 0:
            return None
        try:
            return await self._call("get_block", lambda: self.store.get_block(self.chain_id, number))
        except NotFoundError:
            return None

    async def _handle_reorg(self, number: int) -> int:
        """Block ``number``'s parent is not the stored block: fail what was orphaned, rewind."""
        token = self._token()
        fork = number - 1
        for _ in range(self.max_reorg_depth):
            stored = await self._stored_block(fork)
            if stored is None:
                break  # nothing older is known: treat it as the fork
            on_chain = await self.chain.block(fork)
            if on_chain is not None and on_chain.hash == stored.hash:
                break
            fork -= 1
        else:
            _log.error(
                "chain %d: no common block within %d blocks of %d; rewinding to %d",
                self.chain_id,
                self.max_reorg_depth,
                number,
                fork,
                extra={"event": "reorg_too_deep", "chain_id": self.chain_id, "fork": fork},
            )
        fork = max(fork, 0)
        keep = await self._new_branch_task_ids(fork)
        failed = await self._fenced(
            "fail_orphaned_tasks",
            lambda: self.store.fail_orphaned_tasks(
                self.chain_id, fork, keep=keep, reason="reorg", fence=token
            ),
        )
        await self._fenced("rewind_chain", lambda: self.store.rewind_chain(self.chain_id, fork, fence=token))
        self.reorgs += 1
        self.orphaned_failed += len(failed)
        self.cursor = fork
        _log.info(
            "chain %d: reorg below block %d, fork at %d; %d orphaned task(s) failed",
            self.chain_id,
            number,
            fork,
            len(failed),
            extra={"event": "reorg", "chain_id": self.chain_id, "fork": fork, "orphaned": len(failed)},
        )
        self._emit("reorg", str(self.chain_id), f"fork {fork}, {len(failed)} orphaned")
        for task_id in failed:
            self._emit("orphaned", task_id)
        return fork

    async def _new_branch_task_ids(self, fork: int) -> list[str]:
        head = await self.chain.head()
        keep: list[str] = []
        for number in range(fork + 1, min(head, fork + self.max_keep_blocks) + 1):
            block = await self.chain.block(number)
            if block is None:
                break
            keep.extend(task.task_id for task in block.tasks)
        if len(keep) > _MAX_KEEP_IDS:
            _log.warning(
                "chain %d: %d tasks above the fork; keeping the first %d",
                self.chain_id,
                len(keep),
                _MAX_KEEP_IDS,
            )
            keep = keep[:_MAX_KEEP_IDS]
        return keep

    # -- the lease ---------------------------------------------------------------------

    async def _ensure_lease(self) -> bool:
        """Hold the chain lease (acquire, or renew when due); False when another replica does."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.lease is not None and now < self._renew_at:
            return True
        sent = loop.time()
        if self.lease is None:
            lease = await self._call(
                "acquire_chain_lease",
                lambda: self.store.acquire_chain_lease(self.chain_id, self.owner, ttl_s=self.lease_ttl_s),
            )
            if lease is None:
                return False
            self.leases_acquired += 1
            _log.info(
                "poller %s: chain %d lease acquired (token %d)",
                self.owner,
                self.chain_id,
                lease.token,
                extra={
                    "event": "chain_lease_acquired",
                    "owner": self.owner,
                    "chain_id": self.chain_id,
                    "token": lease.token,
                },
            )
            self._emit("lease_acquired", str(self.chain_id), f"token {lease.token}")
        else:
            held = self.lease
            try:
                lease = await self._call(
                    "renew_chain_lease", lambda: self.store.renew_chain_lease(held, ttl_s=self.lease_ttl_s)
                )
            except StaleLeaseError as exc:
                self._lost(str(exc))
                return False
        self.lease = lease
        self._lease_deadline = sent + self.lease_ttl_s
        self._renew_at = sent + self.lease_ttl_s / 3
        return True

    def _token(self) -> int:
        if self.lease is None:
            raise _LeaseLost
        return self.lease.token

    def _check_deadline(self) -> None:
        """Before an unfenced write: the lease must still be ours by the local clock."""
        if self.lease is None:
            raise _LeaseLost
        if asyncio.get_running_loop().time() >= self._lease_deadline:
            self._lost("lease past due without a successful renewal")
            raise _LeaseLost

    def _lost(self, reason: str) -> None:
        if self.lease is not None:
            self.leases_lost += 1
            _log.warning(
                "poller %s: chain %d lease lost (%s); writing stops",
                self.owner,
                self.chain_id,
                reason,
                extra={"event": "chain_lease_lost", "owner": self.owner, "chain_id": self.chain_id},
            )
            self._emit("lease_lost", str(self.chain_id), reason)
        self.lease = None

    async def _fenced(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await self._call(what, call)
        except StaleLeaseError as exc:
            self._lost(f"{what} refused: {exc}")
            raise _LeaseLost from exc

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        return await repeat_on_unavailable(
            call, what=what, policy=self.retry, on_repeat=self._count_retry, logger=_log
        )

    def _count_retry(self, _exc: StoreUnavailableError) -> None:
        self.store_retries += 1
