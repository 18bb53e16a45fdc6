"""The runtime: the loops a replicated aggregator and an executor run on the stores.

- :class:`TaskWorker`: claim tasks under a lease, run a handler for each with
  bounded concurrency, renew while it runs, cancel it when the lease is lost,
  complete / fail with the fencing token, release everything on shutdown.
- :class:`Reaper`: ``reap_expired_leases`` once per interval across all
  replicas (a single-runner guard), with a stated takeover bound.
- :class:`ChainPoller`: the chain-lease holder saves blocks and tasks, moves
  the cursor (fenced) and fails what a reorg orphaned.
- :class:`ChainSource` (protocol), :class:`ChainBlock`, :class:`FakeChain`:
  where blocks come from; the fake is deterministic and shareable across processes.
- :class:`ExecutorRuntime`: de-duplicated execution, inflight records and
  recovery after a restart, performer and deployment records.

Every store call that raises ``StoreUnavailableError`` is repeated
(:class:`RetryPolicy`, :func:`repeat_on_unavailable`); ``StaleLeaseError`` stops
the work it concerns before any further side effect; ``NamespaceLostError``
stops the component (``run()`` raises it).

The runtime uses only the store interfaces, models and errors: no Redis, no
backend internals, and no chain or RPC client of its own.
"""

from ._retry import RetryPolicy, repeat_on_unavailable
from ._service import RuntimeEvent, stop_on_signals
from .chain import ChainBlock, ChainSource, FakeChain, Reorg
from .executor import INFLIGHT_INTERRUPTED, INFLIGHT_RUNNING, ExecutorRuntime, Performer
from .poller import ChainPoller
from .reaper import REAPER_GUARD, Reaper
from .worker import TaskHandler, TaskWorker

__all__ = [
    "INFLIGHT_INTERRUPTED",
    "INFLIGHT_RUNNING",
    "REAPER_GUARD",
    "ChainBlock",
    "ChainPoller",
    "ChainSource",
    "ExecutorRuntime",
    "FakeChain",
    "Performer",
    "Reaper",
    "Reorg",
    "RetryPolicy",
    "RuntimeEvent",
    "TaskHandler",
    "TaskWorker",
    "repeat_on_unavailable",
    "stop_on_signals",
]
