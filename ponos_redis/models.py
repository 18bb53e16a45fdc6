"""The records a store saves and returns: frozen msgspec Structs.

Stores return snapshots: changing state means calling the store, never
mutating a record. Times are timezone-aware UTC datetimes with millisecond
precision once they have been through a store.

Every string field a store is given must be valid UTF-8 (no lone surrogates)
and is bounded in length: ids and owners 1-256 characters, hashes and
free-form addresses 256, a fail reason or deployment error 4096, performer
and deployment text fields 1024, an inflight status 256, environment
variable names 256 and values 32768 (at most 1024 variables). The table is in
the docstring of ``ponos_redis._validate`` and the README ("Limits").

Persisted types evolve safely: a new field always has a default and no field
changes type, so records written by an older version still decode.
"""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

__all__ = [
    "AvsConfig",
    "BlockRecord",
    "ChainLease",
    "ClaimedTask",
    "Consensus",
    "ConsensusType",
    "CurveType",
    "Deployment",
    "DeploymentEvent",
    "DeploymentStatus",
    "EnvironmentVar",
    "InflightTask",
    "OperatorSetTaskConfig",
    "PerformerState",
    "StoreEvent",
    "Task",
    "TaskRecord",
    "TaskStatus",
]


class TaskStatus(enum.StrEnum):
    """Where a task is in its life; the values are the strings stored in Redis."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class DeploymentStatus(enum.StrEnum):
    """Where a performer deployment is in its life."""

    PENDING = "pending"
    DEPLOYING = "deploying"
    RUNNING = "running"
    FAILED = "failed"


class CurveType(enum.StrEnum):
    """The signature curve of an operator set."""

    UNKNOWN = "unknown"
    ECDSA = "ecdsa"
    BN254 = "bn254"


class ConsensusType(enum.IntEnum):
    """How the aggregator decides a task's result is final."""

    NONE = 0
    STAKE_PROPORTION_THRESHOLD = 1


class _Record(msgspec.Struct, frozen=True, kw_only=True):
    pass


class Task(_Record, frozen=True, kw_only=True):
    """A task created on chain, to be handed to operators."""

    task_id: str
    avs_address: str
    operator_set_id: int
    chain_id: int
    block_number: int
    block_hash: str
    callback_address: str
    deadline: datetime | None = None
    threshold_bips: int = 0
    payload: bytes = b""


class TaskRecord(_Record, frozen=True, kw_only=True):
    """A task with its state in the store."""

    task: Task
    status: TaskStatus
    attempts: int
    owner: str | None
    token: int | None
    lease_until: datetime | None
    created_at: datetime
    updated_at: datetime
    last_error: str | None = None


class ClaimedTask(_Record, frozen=True, kw_only=True):
    """A task handed to one owner under a lease.

    ``token`` is the fencing token every later call about this task must carry.
    """

    task: Task
    token: int
    lease_until: datetime
    attempt: int


class BlockRecord(_Record, frozen=True, kw_only=True):
    """A block the chain poller has seen, kept to detect reorgs."""

    chain_id: int
    number: int
    hash: str
    parent_hash: str
    timestamp: int


class ChainLease(_Record, frozen=True, kw_only=True):
    """The right to poll one chain, held by one owner, fenced by ``token``."""

    chain_id: int
    owner: str
    token: int
    expires_at: datetime


class Consensus(_Record, frozen=True, kw_only=True):
    """How an operator set's results are aggregated: the consensus type and its threshold."""

    type: ConsensusType = ConsensusType.NONE
    threshold: int = 0


class OperatorSetTaskConfig(_Record, frozen=True, kw_only=True):
    """The task config of one operator set of an AVS (cached by the aggregator).

    ``task_metadata`` is bounded by ``tasks.max_payload_bytes``.
    """

    task_sla_s: float
    curve_type: CurveType
    task_metadata: bytes = b""
    consensus: Consensus = msgspec.field(default_factory=Consensus)


class AvsConfig(_Record, frozen=True, kw_only=True):
    """An AVS's config: its aggregator and executor operator sets and its curve."""

    aggregator_operator_set_id: int
    executor_operator_set_ids: list[int]
    curve_type: CurveType


class EnvironmentVar(_Record, frozen=True, kw_only=True):
    """One environment variable of a performer: a literal ``value`` or the name of a variable to read."""

    name: str
    value: str = ""
    value_from_env: str = ""


class PerformerState(_Record, frozen=True, kw_only=True):
    """The executor's record of one performer (an AVS's container): artifact, health, endpoint."""

    performer_id: str
    avs_address: str
    resource_id: str = ""
    status: str = ""
    artifact_registry: str = ""
    artifact_digest: str = ""
    artifact_tag: str = ""
    deployment_mode: str = ""
    created_at: datetime
    last_health_check: datetime | None = None
    container_healthy: bool = False
    application_healthy: bool = False
    network_name: str = ""
    container_endpoint: str = ""
    container_hostname: str = ""
    environment_vars: list[EnvironmentVar] = msgspec.field(default_factory=list)


class InflightTask(_Record, frozen=True, kw_only=True):
    """A task the executor received and has not finished, kept so a restart can find it."""

    task_id: str
    avs_address: str
    operator_address: str
    received_at: datetime
    status: str = ""
    aggregator_address: str = ""
    operator_set_id: int = 0


class Deployment(_Record, frozen=True, kw_only=True):
    """One deployment of a performer's artifact; ``status`` moves pending -> deploying -> running | failed."""

    deployment_id: str
    avs_address: str
    artifact_registry: str = ""
    artifact_digest: str = ""
    status: DeploymentStatus = DeploymentStatus.PENDING
    started_at: datetime
    completed_at: datetime | None = None
    error: str = ""


class DeploymentEvent(_Record, frozen=True, kw_only=True):
    """One status change in a deployment's history."""

    deployment_id: str
    status: DeploymentStatus
    at: datetime
    error: str = ""


class StoreEvent(_Record, frozen=True, kw_only=True):
    """One change in a namespace, as delivered by ``AggregatorStore.events``.

    ``status`` is the subject's status after the change (None where it has
    none); ``owner`` and ``token`` are set where the change involved a lease.
    """

    id: str
    kind: str
    subject: str
    status: str | None = None
    owner: str | None = None
    token: int | None = None
    at: datetime
