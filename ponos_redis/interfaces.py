"""The two store interfaces. Both backends (the in-process fake and Redis)
implement them with the same semantics; the contract suite holds them to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from .models import (
    AvsConfig,
    BlockRecord,
    ChainLease,
    ClaimedTask,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    InflightTask,
    OperatorSetTaskConfig,
    PerformerState,
    StoreEvent,
    Task,
    TaskRecord,
    TaskStatus,
)

__all__ = ["AggregatorStore", "ExecutorStore"]


@runtime_checkable
class AggregatorStore(Protocol):
    """The aggregator's shared state: chain cursors, blocks, tasks, config cache, events."""

    namespace: str

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    # chain cursor and block records
    async def get_last_processed_block(self, chain_id: int) -> int:
        """The chain's cursor: the last block number processed.

        Raises:
            NotFoundError: the cursor of this chain was never set.
        """
        ...

    async def set_last_processed_block(
        self, chain_id: int, block_number: int, *, fence: int | None = None
    ) -> None:
        """Move the chain's cursor forward to ``block_number``; the same value is a no-op.

        With ``fence`` (the token of the chain lease) the cursor moves only while
        that lease is live and still the current one.

        Raises:
            InvalidTransitionError: ``block_number`` is below the cursor (use ``rewind_chain``).
            StaleLeaseError: ``fence`` is not the chain's live lease token (nothing is written).
        """
        ...

    async def rewind_chain(self, chain_id: int, block_number: int, *, fence: int | None = None) -> None:
        """Move the cursor back to ``block_number`` after a reorg and drop the block records above it.

        Raises:
            NotFoundError: the cursor of this chain was never set.
            InvalidTransitionError: ``block_number`` is above the cursor.
            StaleLeaseError: ``fence`` is not the chain's live lease token (nothing is written).
        """
        ...

    async def save_block(self, record: BlockRecord) -> None:
        """Save (or replace) a block record; a chain keeps its newest ``block_window`` block numbers."""
        ...

    async def get_block(self, chain_id: int, number: int) -> BlockRecord:
        """The saved record of block ``number`` of a chain.

        Raises:
            NotFoundError: the chain has no record of that block.
        """
        ...

    async def delete_block(self, chain_id: int, number: int) -> None:
        """Delete the record of block ``number`` of a chain.

        Raises:
            NotFoundError: the chain has no record of that block.
        """
        ...

    async def acquire_chain_lease(self, chain_id: int, owner: str, *, ttl_s: float) -> ChainLease | None:
        """Take the chain's lease for ``ttl_s`` seconds: the holder alone moves the chain's cursor.

        A free or expired lease goes to ``owner`` with a new fencing token (tokens only
        grow); a live lease of the same ``owner`` is extended with its token kept.

        Returns:
            the lease, or None if another owner holds a live one.
        """
        ...

    async def renew_chain_lease(self, lease: ChainLease, *, ttl_s: float) -> ChainLease:
        """Extend a live lease by ``ttl_s`` seconds from now, keeping its token.

        Returns:
            the renewed lease.

        Raises:
            StaleLeaseError: the lease expired or another owner holds it now.
        """
        ...

    async def release_chain_lease(self, lease: ChainLease) -> None:
        """Give the lease up; a lease already gone is a no-op.

        Raises:
            StaleLeaseError: another owner holds it now.
        """
        ...

    # tasks
    async def save_task(self, task: Task) -> bool:
        """Save a new pending task.

        Returns:
            True if it was created; False if the identical task was already there.

        Raises:
            AlreadyExistsError: a different task has the same id.
            InvalidInputError: the task is invalid.
        """
        ...

    async def save_tasks(self, tasks: Iterable[Task]) -> int:
        """Save many pending tasks; identical tasks already there are skipped.

        All or nothing up to 500 tasks (and about 8 MiB). A larger batch is first
        checked whole for conflicts (nothing is written if one conflicts), then saved
        in chunks of up to 500, each all or nothing; repeating a call that failed
        midway is safe.

        Returns:
            how many tasks were created.

        Raises:
            AlreadyExistsError: a different task has the id of one of them.
            InvalidInputError: one of them is invalid.
        """
        ...

    async def get_task(self, task_id: str) -> TaskRecord:
        """A task with its status, lease, token, attempts and times.

        Raises:
            NotFoundError: no task has this id.
        """
        ...

    async def list_pending_tasks(
        self, avs_address: str | None = None, *, limit: int | None = None
    ) -> list[Task]:
        """Pending tasks, oldest first, optionally of one AVS and at most ``limit``."""
        ...

    async def count_tasks(self) -> dict[TaskStatus, int]:
        """How many tasks are in each status (every status is present, with 0 when none)."""
        ...

    async def update_task_status(self, task_id: str, status: TaskStatus) -> None:
        """The operator's override: move a task to ``status``.

        The allowed moves are ``transitions.TASK_OVERRIDES`` (failed -> pending is
        the operator's requeue: ``attempts`` back to 0); the same status is a no-op,
        and every change gives the task a new token, takes it off the set-aside
        index (a record repaired by hand) and emits an event with owner ``manual``.

        Raises:
            NotFoundError: no task has this id.
            InvalidTransitionError: the table does not allow the move.
        """
        ...

    async def delete_task(self, task_id: str) -> None:
        """Delete a task, whatever its status.

        Raises:
            NotFoundError: no task has this id.
        """
        ...

    async def claim_tasks(self, owner: str, *, limit: int, lease_s: float) -> list[ClaimedTask]:
        """Claim up to ``limit`` pending tasks for ``owner``, oldest first, each leased for ``lease_s`` s.

        Each claimed task gets a fresh fencing token, needed to renew, complete, fail
        or release it. A task whose deadline has passed is failed ("deadline
        exceeded") instead. On Redis a claim is made of scripts of at most 500
        tasks: if a later one fails, the tasks the earlier ones claimed are still
        returned.

        Returns:
            the claimed tasks with their tokens; empty when none is pending.
        """
        ...

    async def renew_task_lease(self, task_id: str, token: int, *, lease_s: float) -> None:
        """Extend the lease of a task you hold to ``lease_s`` seconds from now (even if expired, unreaped).

        Raises:
            NotFoundError: no task has this id.
            StaleLeaseError: ``token`` is not the task's current one (reaped, released or claimed again).
            InvalidTransitionError: the task is not processing.
        """
        ...

    async def complete_task(self, task_id: str, token: int) -> None:
        """Complete a task you hold; repeating it with the same token is a no-op.

        Raises:
            NotFoundError: no task has this id.
            StaleLeaseError: ``token`` is not the task's current one (reaped, released or claimed again).
            InvalidTransitionError: the task is not processing.
        """
        ...

    async def fail_task(self, task_id: str, token: int, reason: str, *, retry: bool = False) -> None:
        """Fail a task you hold, with ``reason`` as its ``last_error``.

        With ``retry`` it goes back to pending (with a new token) while its attempts
        are below ``max_attempts``, and to failed after that.

        Raises:
            NotFoundError: no task has this id.
            StaleLeaseError: ``token`` is not the task's current one (reaped, released or claimed again).
            InvalidTransitionError: the task is not processing.
        """
        ...

    async def release_task(self, task_id: str, token: int) -> None:
        """Give a task you hold back to pending at once; it gets a new token.

        Raises:
            NotFoundError: no task has this id.
            StaleLeaseError: ``token`` is not the task's current one (reaped, released or claimed again).
            InvalidTransitionError: the task is not processing.
        """
        ...

    async def reap_expired_leases(self) -> int:
        """Return expired leases to pending, or to failed after ``max_attempts``; then trim finished tasks.

        Any replica may call it, concurrently too: each task is one atomic
        compare-and-move. Completed and failed tasks past ``retention_s`` are then
        trimmed, oldest first, until none is left or 100,000 were trimmed in this call.

        Returns:
            how many leases were reaped.
        """
        ...

    async def trim_finished_tasks(self, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` completed or failed tasks older than ``retention_s``, oldest first.

        Returns:
            how many tasks were deleted.
        """
        ...

    async def fail_orphaned_tasks(
        self,
        chain_id: int,
        above_block: int,
        *,
        keep: Collection[str] = (),
        reason: str = "reorg",
        fence: int | None = None,
    ) -> list[str]:
        """Fail the pending and processing tasks of a chain above a block, after a reorg.

        Every task of ``chain_id`` whose ``block_number`` is above ``above_block``,
        whose id is not in ``keep`` and which is pending or processing goes to
        failed: it gets a new token (a holder's later complete, renew or release
        raises StaleLeaseError), ``last_error = reason`` and a ``task.failed``
        event. Completed and failed tasks are left alone. Chain ids are exact
        (1 never matches 17000). On Redis one script looks at most at 1,000 of the
        chain's tasks, and a larger range takes several calls, each checking the
        fence; a repeated call fails nothing twice.

        Args:
            chain_id: the chain that reorged.
            above_block: the last block still valid; tasks above it are failed.
            keep: ids to leave alone (tasks that are still valid on the new fork);
                at most 10,000.
            reason: the failed tasks' ``last_error``.
            fence: the chain's current lease token, as for set_last_processed_block.

        Returns:
            the ids it failed, in (block number, id) order.

        Raises:
            InvalidInputError: an argument is invalid (nothing is written).
            StaleLeaseError: ``fence`` is not the chain's live lease token (nothing is written).
        """
        ...

    # periodic jobs
    async def try_runner_lease(self, name: str, owner: str, *, ttl_s: float) -> bool:
        """Take the single-runner lease of a periodic job (the reaper, say) for ``ttl_s``.

        Of the replicas that call it for one ``name`` while it is live, one gets it:
        free or expired, it goes to the caller; held by the same ``owner``, its
        expiry is extended; held live by another owner, it is refused. Nothing
        releases it: it lapses ``ttl_s`` after the last successful call.

        Args:
            name: the job's name (an id: 1-256 characters, no whitespace).
            owner: the replica asking (an id).
            ttl_s: how long the lease lasts, in seconds (> 0).

        Returns:
            True if ``owner`` now holds the lease; False if another owner holds a live one.

        Raises:
            InvalidInputError: an argument is invalid.
        """
        ...

    # config cache
    async def save_operator_set_config(
        self, avs_address: str, operator_set_id: int, config: OperatorSetTaskConfig
    ) -> None:
        """Save (or replace) the task config of an operator set of an AVS."""
        ...

    async def get_operator_set_config(self, avs_address: str, operator_set_id: int) -> OperatorSetTaskConfig:
        """The task config of an operator set of an AVS.

        Raises:
            NotFoundError: none was saved for this operator set.
        """
        ...

    async def save_avs_config(self, avs_address: str, config: AvsConfig) -> None:
        """Save (or replace) an AVS's config."""
        ...

    async def get_avs_config(self, avs_address: str) -> AvsConfig:
        """An AVS's config.

        Raises:
            NotFoundError: none was saved for this AVS.
        """
        ...

    def events(self, *, after: str | None = None, block_s: float | None = None) -> AsyncIterator[StoreEvent]:
        """The namespace's events in delivery order, after ``after`` (an event id) or from the oldest kept.

        With ``block_s=None`` the iteration ends once every event present was
        delivered; with ``block_s=x`` it waits up to x seconds for each next event.
        The stream is capped at about ``events_maxlen`` events.
        """
        ...

    async def close(self) -> None:
        """Close the store; idempotent. Other calls afterwards raise ``StoreClosedError``."""
        ...


@runtime_checkable
class ExecutorStore(Protocol):
    """The executor's state: performers, inflight tasks, deployments, de-duplication."""

    namespace: str

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def save_performer_state(self, state: PerformerState) -> None:
        """Save (or replace) a performer's state."""
        ...

    async def get_performer_state(self, performer_id: str) -> PerformerState:
        """A performer's state.

        Raises:
            NotFoundError: no performer has this id.
        """
        ...

    async def list_performer_states(self) -> list[PerformerState]:
        """Every performer's state, by id."""
        ...

    async def delete_performer_state(self, performer_id: str) -> None:
        """Delete a performer's state.

        Raises:
            NotFoundError: no performer has this id.
        """
        ...

    async def save_inflight_task(self, task: InflightTask) -> None:
        """Save (or replace) an inflight task."""
        ...

    async def get_inflight_task(self, task_id: str) -> InflightTask:
        """An inflight task.

        Raises:
            NotFoundError: no inflight task has this id.
        """
        ...

    async def list_inflight_tasks(self) -> list[InflightTask]:
        """Every inflight task, by task id."""
        ...

    async def delete_inflight_task(self, task_id: str) -> None:
        """Delete an inflight task.

        Raises:
            NotFoundError: no inflight task has this id.
        """
        ...

    async def save_deployment(self, deployment: Deployment) -> None:
        """Save (or replace) a deployment; its history gets an event with the saved status."""
        ...

    async def get_deployment(self, deployment_id: str) -> Deployment:
        """A deployment.

        Raises:
            NotFoundError: no deployment has this id.
        """
        ...

    async def update_deployment_status(
        self, deployment_id: str, status: DeploymentStatus, *, error: str = ""
    ) -> None:
        """Move a deployment along pending -> deploying -> running | failed, with ``error`` as its reason.

        The change is appended to the deployment's history.

        Raises:
            NotFoundError: no deployment has this id.
            InvalidTransitionError: ``transitions.DEPLOYMENT_TRANSITIONS`` does not allow the move.
        """
        ...

    async def list_deployment_history(self, deployment_id: str) -> list[DeploymentEvent]:
        """Every status change of a deployment, oldest first (the newest ``history_maxlen`` are kept).

        Raises:
            NotFoundError: no deployment has this id.
        """
        ...

    async def mark_task_processed(self, task_id: str) -> bool:
        """Atomically mark a task processed: True the first time, False afterwards.

        The marker expires ``processed_ttl_s`` after it was set.
        """
        ...

    async def is_task_processed(self, task_id: str) -> bool:
        """Whether a task is marked processed (and its marker has not expired)."""
        ...

    async def close(self) -> None:
        """Close the store; idempotent. Other calls afterwards raise ``StoreClosedError``."""
        ...
