"""Where the chain poller reads blocks: the ``ChainSource`` protocol, and
``FakeChain``, a deterministic chain with task events and reorgs.

The runtime has no chain client of its own: a real service passes an adapter
over its RPC client that implements :class:`ChainSource`; tests and the
simulation use :class:`FakeChain`.

``FakeChain`` is a pure function of ``(parameters, step)``
--------------------------------------------------------------

The chain advances one block per *step*: at step ``s`` the head is block
``s`` (block 0 is genesis). Reorgs happen at steps drawn from the seed (gaps
in ``reorg_every``); a reorg at step ``r`` of depth ``k`` (1 to
``max_reorg_depth``) replaces blocks ``r-k .. r-1`` with a new branch and adds
block ``r``: the fork point is ``r-k-1`` and genesis is never replaced. Each
replaced block gets a new version (a new hash, hence new children's parent
hashes). Its tasks are drawn again: each task of the replaced version is
carried into the new version (same id and content, new block hash) with
probability ``carry_probability``, otherwise it is orphaned for good; when a
replaced block had two or more tasks, at least one is carried and at least
one is not, so both cases occur whenever tasks are orphaned. New tasks are
drawn too. Ids of fresh tasks name the chain, seed, block and version, so
they never repeat.

Everything (hashes, tasks, payloads, the reorg schedule) is derived from the
constructor's arguments and the step with string-seeded ``random.Random`` and
SHA-256, never from process state, so **any number of processes that build
a FakeChain with the same arguments see the same chain at the same step**.
How the simulation shares one chain among processes (aggregator replicas
each in its own process):

- by time: pass the same ``genesis_time`` (unix seconds, chosen once by the
  parent and handed to each child) and ``clock=time.time``; the step is
  ``floor((clock() - genesis_time) / block_time_s)``, so every process sees
  the head move at the same instants (up to their clocks' skew, which only
  looks like RPC lag);
- or by step: build without ``clock`` and drive ``advance()`` / ``set_step()``
  from a shared counter, or take a frozen view with ``at(step)``.

For the verdict, ``canonical_tasks(step)``, ``orphaned_task_ids(step)`` and
``reorgs(step)`` say what is on the chain and what was orphaned at a step.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import msgspec

from ..models import BlockRecord, Task

__all__ = ["ChainBlock", "ChainSource", "FakeChain", "Reorg"]

GENESIS_PARENT = "0x" + "00" * 32
_TASK_CACHE = 1024  # block versions whose tasks a FakeChain keeps computed
# 2026-01-01T00:00:00Z, ManualClock's default start.
DEFAULT_GENESIS_TIME = 1_767_225_600.0


class ChainBlock(msgspec.Struct, frozen=True, kw_only=True):
    """A block as the chain source reports it, with the tasks created in it."""

    chain_id: int
    number: int
    hash: str
    parent_hash: str
    timestamp: int
    tasks: list[Task] = msgspec.field(default_factory=list)

    def record(self) -> BlockRecord:
        """The block record the poller saves for reorg detection."""
        return BlockRecord(
            chain_id=self.chain_id,
            number=self.number,
            hash=self.hash,
            parent_hash=self.parent_hash,
            timestamp=self.timestamp,
        )


@runtime_checkable
class ChainSource(Protocol):
    """A chain the poller reads. Implement it over a real RPC client, or use FakeChain."""

    @property
    def chain_id(self) -> int:
        """The chain's id."""
        ...

    async def head(self) -> int:
        """The number of the latest block."""
        ...

    async def block(self, number: int) -> ChainBlock | None:
        """Block ``number`` of the current canonical chain, or None if it does not exist (yet)."""
        ...


@dataclass(frozen=True)
class Reorg:
    """A reorg of FakeChain: at ``step`` blocks ``fork+1 .. step-1`` were replaced."""

    step: int
    fork: int
    depth: int


class _Model:
    """The pure part of a FakeChain, shared by its views (``FakeChain.at``)."""

    def __init__(
        self,
        chain_id: int,
        seed: int | str,
        avs_address: str,
        tasks_per_block: tuple[int, int],
        reorg_every: tuple[int, int] | None,
        max_reorg_depth: int,
        carry_probability: float,
        block_time_s: float,
        genesis_time: float,
        operator_set_id: int,
        callback_address: str,
        deadline_s: float | None,
        payload_bytes: int,
    ) -> None:
        self.chain_id = chain_id
        self.seed = seed
        self.avs_address = avs_address
        self.tasks_per_block = tasks_per_block
        self.reorg_every = reorg_every
        self.max_reorg_depth = max_reorg_depth
        self.carry_probability = carry_probability
        self.block_time_s = block_time_s
        self.genesis_time = genesis_time
        self.operator_set_id = operator_set_id
        self.callback_address = callback_address
        self.deadline_s = deadline_s
        self.payload_bytes = payload_bytes
        self._tag = f"{seed}/{chain_id}"
        self._reorg_rng = random.Random(f"{self._tag}/reorgs")
        self._reorg_steps: list[int] = []
        self._reorgs: list[Reorg] = []
        self._next_reorg = 0
        # The tasks of the block versions asked for lately (a pure function of the key, so
        # an entry dropped is only computed again): bounded, so a chain that runs for hours
        # does not keep every block's tasks in memory.
        self._tasks: OrderedDict[tuple[int, int], list[Task]] = OrderedDict()

    # -- reorg schedule ------------------------------------------------------------

    def _extend_reorgs(self, until: int) -> None:
        if self.reorg_every is None:
            return
        lo, hi = self.reorg_every
        while self._next_reorg <= until:
            if self._next_reorg == 0:
                self._next_reorg = max(2, self._reorg_rng.randint(lo, hi))
                continue
            step = self._next_reorg
            depth = min(self._reorg_rng.randint(1, self.max_reorg_depth), step - 1)
            self._reorgs.append(Reorg(step=step, fork=step - depth - 1, depth=depth))
            self._reorg_steps.append(step)
            self._next_reorg = step + self._reorg_rng.randint(lo, hi)

    def reorgs(self, until: int) -> list[Reorg]:
        self._extend_reorgs(until)
        return self._reorgs[: bisect.bisect_right(self._reorg_steps, until)]

    def replacements(self, number: int, step: int) -> list[int]:
        """Steps (<= step) of the reorgs that replaced block ``number``, in order."""
        last = min(step, number + self.max_reorg_depth)
        self._extend_reorgs(last)
        lo = bisect.bisect_right(self._reorg_steps, number)
        hi = bisect.bisect_right(self._reorg_steps, last)
        return [r.step for r in self._reorgs[lo:hi] if r.fork < number]

    def version(self, number: int, step: int) -> int:
        return len(self.replacements(number, step))

    # -- blocks --------------------------------------------------------------------

    def hash(self, number: int, version: int) -> str:
        return "0x" + hashlib.sha256(f"{self._tag}/{number}/{version}".encode()).hexdigest()

    def timestamp(self, number: int) -> int:
        return int(self.genesis_time + number * self.block_time_s)

    def parent_hash(self, number: int, version: int) -> str:
        if number == 0:
            return GENESIS_PARENT
        created = (
            number if version == 0 else self.replacements(number, number + self.max_reorg_depth)[version - 1]
        )
        return self.hash(number - 1, self.version(number - 1, created))

    def tasks(self, number: int, version: int) -> list[Task]:
        key = (number, version)
        cached = self._tasks.get(key)
        if cached is not None:
            self._tasks.move_to_end(key)
            return cached
        rng = random.Random(f"{self._tag}/{number}/{version}/tasks")
        block_hash = self.hash(number, version)
        out: list[Task] = []
        if version > 0:
            previous = self.tasks(number, version - 1)
            carry = [rng.random() < self.carry_probability for _ in previous]
            if len(previous) >= 2 and len(set(carry)) == 1:
                carry[-1] = not carry[-1]  # both fates, whenever two or more are orphaned
            out.extend(
                msgspec.structs.replace(task, block_hash=block_hash)
                for task, kept in zip(previous, carry, strict=True)
                if kept
            )
        lo, hi = self.tasks_per_block
        deadline = (
            None
            if self.deadline_s is None
            else datetime.fromtimestamp(self.timestamp(number), UTC) + timedelta(seconds=self.deadline_s)
        )
        for i in range(rng.randint(lo, hi)):
            out.append(
                Task(
                    task_id=f"c{self.chain_id}-s{self.seed}-b{number}v{version}-{i}",
                    avs_address=self.avs_address,
                    operator_set_id=self.operator_set_id,
                    chain_id=self.chain_id,
                    block_number=number,
                    block_hash=block_hash,
                    callback_address=self.callback_address,
                    deadline=deadline,
                    threshold_bips=6667,
                    payload=rng.randbytes(self.payload_bytes),
                )
            )
        self._tasks[key] = out
        if len(self._tasks) > _TASK_CACHE:
            self._tasks.popitem(last=False)
        return out

    def block(self, number: int, step: int) -> ChainBlock | None:
        if number < 0 or number > step:
            return None
        version = self.version(number, step)
        return ChainBlock(
            chain_id=self.chain_id,
            number=number,
            hash=self.hash(number, version),
            parent_hash=self.parent_hash(number, version),
            timestamp=self.timestamp(number),
            tasks=list(self.tasks(number, version)),
        )


class FakeChain:
    """A deterministic fake chain with task events and reorgs; implements ChainSource.

    See the module docstring for the model and for sharing one chain across
    processes. Block ``s`` is the head at step ``s``.

    Args:
        chain_id: the chain's id (tasks carry it).
        seed: everything is derived from it (int or str).
        avs_address: the AVS of every task (``0x`` + 40 hex digits).
        tasks_per_block: ``(min, max)`` fresh tasks per block version.
        reorg_every: ``(min, max)`` steps between reorgs; None: no reorgs.
        max_reorg_depth: the most blocks a reorg replaces (at least 1).
        carry_probability: chance that a task of a replaced block is in the new branch.
        block_time_s: seconds per block (timestamps, and the step when ``clock`` is given).
        genesis_time: unix time of block 0.
        clock: unix seconds now (``time.time``); when given, the step follows it.
        step: the starting step when there is no clock.
        operator_set_id: copied into every task.
        callback_address: copied into every task.
        deadline_s: when set, each task's deadline is its block's timestamp plus this.
        payload_bytes: size of each task's (random) payload.
    """

    def __init__(
        self,
        chain_id: int,
        *,
        seed: int | str,
        avs_address: str,
        tasks_per_block: tuple[int, int] = (0, 3),
        reorg_every: tuple[int, int] | None = (20, 40),
        max_reorg_depth: int = 3,
        carry_probability: float = 0.5,
        block_time_s: float = 1.0,
        genesis_time: float = DEFAULT_GENESIS_TIME,
        clock: Callable[[], float] | None = None,
        step: int = 0,
        operator_set_id: int = 1,
        callback_address: str = "0x" + "cd" * 20,
        deadline_s: float | None = None,
        payload_bytes: int = 32,
    ) -> None:
        lo, hi = tasks_per_block
        if not 0 <= lo <= hi:
            raise ValueError("tasks_per_block must be (min, max) with 0 <= min <= max")
        if reorg_every is not None and not 1 <= reorg_every[0] <= reorg_every[1]:
            raise ValueError("reorg_every must be (min, max) with 1 <= min <= max, or None")
        if max_reorg_depth < 1:
            raise ValueError("max_reorg_depth must be at least 1")
        if not 0.0 <= carry_probability <= 1.0:
            raise ValueError("carry_probability must be within [0, 1]")
        if block_time_s <= 0:
            raise ValueError("block_time_s must be positive")
        if step < 0:
            raise ValueError("step must not be negative")
        self._model = _Model(
            chain_id,
            seed,
            avs_address,
            (lo, hi),
            reorg_every,
            max_reorg_depth,
            carry_probability,
            block_time_s,
            genesis_time,
            operator_set_id,
            callback_address,
            deadline_s,
            payload_bytes,
        )
        self._clock = clock
        self._step = step

    @classmethod
    def _view(cls, model: _Model, step: int) -> FakeChain:
        view = cls.__new__(cls)
        view._model = model
        view._clock = None
        view._step = step
        return view

    @property
    def chain_id(self) -> int:
        """The chain's id."""
        return self._model.chain_id

    @property
    def step(self) -> int:
        """The current step (from the clock when there is one)."""
        if self._clock is None:
            return self._step
        elapsed = self._clock() - self._model.genesis_time
        return max(0, math.floor(elapsed / self._model.block_time_s))

    def at(self, step: int) -> FakeChain:
        """A view of this chain frozen at ``step`` (shares the deterministic model)."""
        if step < 0:
            raise ValueError("step must not be negative")
        return FakeChain._view(self._model, step)

    def advance(self, steps: int = 1) -> int:
        """Move a clock-less chain forward; returns the new step."""
        self.set_step(self._step + steps)
        return self._step

    def set_step(self, step: int) -> None:
        """Set a clock-less chain's step (forward or back: it is a pure function of it)."""
        if self._clock is not None:
            raise RuntimeError("this FakeChain follows its clock; use at(step) for another step")
        if step < 0:
            raise ValueError("step must not be negative")
        self._step = step

    # -- ChainSource ----------------------------------------------------------------

    async def head(self) -> int:
        """The number of the latest block (the current step)."""
        return self.step

    async def block(self, number: int) -> ChainBlock | None:
        """Block ``number`` of the canonical chain now, or None above the head."""
        return self._model.block(number, self.step)

    # -- pure queries (any step) ------------------------------------------------------

    def block_at(self, number: int, step: int) -> ChainBlock | None:
        """Block ``number`` of the canonical chain at ``step`` (None above the head)."""
        return self._model.block(number, step)

    def reorgs(self, step: int | None = None) -> list[Reorg]:
        """The reorgs that happened at or before ``step`` (default: now)."""
        return self._model.reorgs(self.step if step is None else step)

    def canonical_tasks(self, step: int | None = None, *, up_to_block: int | None = None) -> list[Task]:
        """The tasks of the canonical chain at ``step``, in block order (optionally up to a block)."""
        s = self.step if step is None else step
        last = s if up_to_block is None else min(s, up_to_block)
        out: list[Task] = []
        for number in range(last + 1):
            out.extend(self._model.tasks(number, self._model.version(number, s)))
        return out

    def orphaned_task_ids(self, step: int | None = None) -> set[str]:
        """Ids of tasks that were on the chain at some step up to ``step`` and are not any more."""
        s = self.step if step is None else step
        canonical = {t.task_id for t in self.canonical_tasks(s)}
        orphaned: set[str] = set()
        for number in range(s + 1):
            for version in range(self._model.version(number, s)):
                orphaned.update(t.task_id for t in self._model.tasks(number, version))
        return orphaned - canonical
