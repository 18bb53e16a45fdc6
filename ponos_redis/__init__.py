"""ponos-redis: durable, shared state for Ponos aggregators and executors, on Redis.

``RedisAggregatorStore`` and ``RedisExecutorStore`` are imported on first use
(module ``__getattr__``), so ``import ponos_redis`` does not load redis-py.
"""

from typing import TYPE_CHECKING, Any

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
    NamespaceLostError,
    NotFoundError,
    PonosStorageError,
    SchemaVersionError,
    StaleLeaseError,
    StoreClosedError,
    StoreConfigurationError,
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

if TYPE_CHECKING:
    from .backends.redis import RedisAggregatorStore, RedisExecutorStore


def _version() -> str:
    """The installed distribution's version (pyproject.toml is the one place it is written).

    From a checkout that is not installed: the version its pyproject.toml gives; else ``0+unknown``.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ponos-redis")
    except PackageNotFoundError:
        pass
    import tomllib
    from pathlib import Path

    try:
        with (Path(__file__).resolve().parent.parent / "pyproject.toml").open("rb") as file:
            project = tomllib.load(file).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        project = {}
    found = project.get("version") if project.get("name") == "ponos-redis" else None
    return found if isinstance(found, str) else "0+unknown"


__version__ = _version()

_LAZY = {"RedisAggregatorStore", "RedisExecutorStore"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from .backends import redis

        value = getattr(redis, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
    "NamespaceLostError",
    "NotFoundError",
    "OperatorSetTaskConfig",
    "PerformerState",
    "PonosStorageError",
    "RedisAggregatorStore",
    "RedisExecutorStore",
    "SchemaVersionError",
    "StaleLeaseError",
    "StorageConfig",
    "StoreClosedError",
    "StoreConfigurationError",
    "StoreEvent",
    "StoreUnavailableError",
    "Task",
    "TaskRecord",
    "TaskStatus",
    "__version__",
    "open_aggregator_store",
    "open_executor_store",
]
