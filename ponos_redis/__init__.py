"""ponos-redis: durable, shared state for Ponos aggregators and executors, on Redis."""

from ._clock import ManualClock
from ._open import open_aggregator_store, open_executor_store
from .backends.memory import MemoryAggregatorStore, MemoryExecutorStore
from .config import StorageConfig
from .errors import (
    AlreadyExistsError,
    CorruptRecordError,
    DurabilityError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    PonosStorageError,
    SchemaVersionError,
    StaleLeaseError,
    StoreClosedError,
    StoreUnavailableError,
)
from .interfaces import AggregatorStore, ExecutorStore
from .models import (
    AvsConfig,
    BlockRecord,
    ChainLease,
    ClaimedTask,
    Consensus,
    ConsensusType,
    CurveType,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    EnvironmentVar,
    InflightTask,
    OperatorSetTaskConfig,
    PerformerState,
    StoreEvent,
    Task,
    TaskRecord,
    TaskStatus,
)

__version__ = "0.1.0"

__all__ = [
    "AggregatorStore",
    "AlreadyExistsError",
    "AvsConfig",
    "BlockRecord",
    "ChainLease",
    "ClaimedTask",
    "Consensus",
    "ConsensusType",
    "CorruptRecordError",
    "CurveType",
    "Deployment",
    "DeploymentEvent",
    "DeploymentStatus",
    "DurabilityError",
    "EnvironmentVar",
    "ExecutorStore",
    "InflightTask",
    "InvalidInputError",
    "InvalidTransitionError",
    "ManualClock",
    "MemoryAggregatorStore",
    "MemoryExecutorStore",
    "NotFoundError",
    "OperatorSetTaskConfig",
    "PerformerState",
    "PonosStorageError",
    "SchemaVersionError",
    "StaleLeaseError",
    "StorageConfig",
    "StoreClosedError",
    "StoreEvent",
    "StoreUnavailableError",
    "Task",
    "TaskRecord",
    "TaskStatus",
    "__version__",
    "open_aggregator_store",
    "open_executor_store",
]
