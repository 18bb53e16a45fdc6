"""The run's fake chains: one :class:`~ponos_redis.runtime.FakeChain` per (namespace, chain id).

FakeChain is a pure function of its parameters and its step, so every process
builds the same chain from the same :class:`ChainSpec` and sees the same blocks
at the same instant: the step follows the wall clock from ``genesis_time``
(chosen once by the coordinator, handed to every replica, a restarted one
included), and stops at ``final_step``, when the run's chain stops producing
blocks (its clock is capped there). The verdict builds the same chain at
``final_step`` to know which tasks ended on the canonical chain and which a
reorg orphaned.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from ..runtime import FakeChain
from ._verdict import ChainTruth

__all__ = ["AVS_ADDRESS", "CHAIN_IDS", "ChainSpec"]

AVS_ADDRESS = "0x" + "ab" * 20
# Chain ids that share leading digits (1 / 17000 / 11155111, 8453 / 84532): a cursor
# keyed by a prefix would mix them up (LESSONS.md #11).
CHAIN_IDS = (17000, 1, 11155111, 8453, 84532, 10, 42161, 137)

TASKS_PER_BLOCK = (1, 6)
REORG_EVERY = (12, 30)  # steps between reorgs
MAX_REORG_DEPTH = 3


@dataclass(frozen=True)
class ChainSpec:
    namespace: str
    chain_id: int
    seed: str
    genesis_time: float
    block_time_s: float
    final_step: int

    @property
    def end_time(self) -> float:
        """When the chain stops: half a block into ``final_step``, clear of rounding."""
        return self.genesis_time + (self.final_step + 0.5) * self.block_time_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChainSpec:
        return cls(**data)

    def build(self, *, live: bool = True) -> FakeChain:
        """The chain; ``live``: its step follows the wall clock (capped at ``final_step``),
        else it is frozen at ``final_step``."""
        end = self.end_time

        def clock() -> float:
            return min(time.time(), end)

        return FakeChain(
            self.chain_id,
            seed=self.seed,
            avs_address=AVS_ADDRESS,
            tasks_per_block=TASKS_PER_BLOCK,
            reorg_every=REORG_EVERY,
            max_reorg_depth=MAX_REORG_DEPTH,
            block_time_s=self.block_time_s,
            genesis_time=self.genesis_time,
            clock=clock if live else None,
            step=0 if live else self.final_step,
        )

    def truth(self) -> ChainTruth:
        chain = self.build(live=False)
        return ChainTruth(
            namespace=self.namespace,
            chain_id=self.chain_id,
            head=self.final_step,
            canonical={t.task_id for t in chain.canonical_tasks(self.final_step)},
            orphaned=chain.orphaned_task_ids(self.final_step),
            reorgs=len(chain.reorgs(self.final_step)),
        )
