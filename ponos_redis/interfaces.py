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
    async def get_last_processed_block(self, chain_id: int) -> int: ...
    async def set_last_processed_block(
        self, chain_id: int, block_number: int, *, fence: int | None = None
    ) -> None: ...
    async def rewind_chain(self, chain_id: int, block_number: int, *, fence: int | None = None) -> None: ...
    async def save_block(self, record: BlockRecord) -> None: ...
    async def get_block(self, chain_id: int, number: int) -> BlockRecord: ...
    async def delete_block(self, chain_id: int, number: int) -> None: ...
    async def acquire_chain_lease(self, chain_id: int, owner: str, *, ttl_s: float) -> ChainLease | None: ...
    async def renew_chain_lease(self, lease: ChainLease, *, ttl_s: float) -> ChainLease: ...
    async def release_chain_lease(self, lease: ChainLease) -> None: ...

    # tasks
    async def save_task(self, task: Task) -> bool: ...
    async def save_tasks(self, tasks: Iterable[Task]) -> int: ...
    async def get_task(self, task_id: str) -> TaskRecord: ...
    async def list_pending_tasks(
        self, avs_address: str | None = None, *, limit: int | None = None
    ) -> list[Task]: ...
    async def count_tasks(self) -> dict[TaskStatus, int]: ...
    async def update_task_status(self, task_id: str, status: TaskStatus) -> None: ...
    async def delete_task(self, task_id: str) -> None: ...
    async def claim_tasks(self, owner: str, *, limit: int, lease_s: float) -> list[ClaimedTask]: ...
    async def renew_task_lease(self, task_id: str, token: int, *, lease_s: float) -> None: ...
    async def complete_task(self, task_id: str, token: int) -> None: ...
    async def fail_task(self, task_id: str, token: int, reason: str, *, retry: bool = False) -> None: ...
    async def release_task(self, task_id: str, token: int) -> None: ...
    async def reap_expired_leases(self) -> int: ...
    async def trim_finished_tasks(self, *, limit: int = 1000) -> int: ...
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
    ) -> None: ...
    async def get_operator_set_config(
        self, avs_address: str, operator_set_id: int
    ) -> OperatorSetTaskConfig: ...
    async def save_avs_config(self, avs_address: str, config: AvsConfig) -> None: ...
    async def get_avs_config(self, avs_address: str) -> AvsConfig: ...

    def events(
        self, *, after: str | None = None, block_s: float | None = None
    ) -> AsyncIterator[StoreEvent]: ...
    async def close(self) -> None: ...


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

    async def save_performer_state(self, state: PerformerState) -> None: ...
    async def get_performer_state(self, performer_id: str) -> PerformerState: ...
    async def list_performer_states(self) -> list[PerformerState]: ...
    async def delete_performer_state(self, performer_id: str) -> None: ...
    async def save_inflight_task(self, task: InflightTask) -> None: ...
    async def get_inflight_task(self, task_id: str) -> InflightTask: ...
    async def list_inflight_tasks(self) -> list[InflightTask]: ...
    async def delete_inflight_task(self, task_id: str) -> None: ...
    async def save_deployment(self, deployment: Deployment) -> None: ...
    async def get_deployment(self, deployment_id: str) -> Deployment: ...
    async def update_deployment_status(
        self, deployment_id: str, status: DeploymentStatus, *, error: str = ""
    ) -> None: ...
    async def list_deployment_history(self, deployment_id: str) -> list[DeploymentEvent]: ...
    async def mark_task_processed(self, task_id: str) -> bool: ...
    async def is_task_processed(self, task_id: str) -> bool: ...
    async def close(self) -> None: ...
