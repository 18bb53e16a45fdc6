"""What both backends share beyond models and validation: tuning, the texts
of generated errors, event kinds and event-id parsing."""

from __future__ import annotations

import re
from types import TracebackType
from typing import Self

import msgspec

from .. import _validate as v
from ..config import StorageConfig
from ..errors import InvalidInputError, StoreClosedError
from ..models import TaskStatus

__all__ = [
    "DEADLINE_EXCEEDED",
    "StoreLifecycle",
    "MANUAL_OWNER",
    "MAX_EVENT_ID",
    "MAX_KEEP_IDS",
    "ORPHAN_BATCH",
    "OVERRIDE_EVENT",
    "CLAIM_BATCH",
    "CLAIM_LOOK_AT",
    "REAP_TRIM_LIMIT",
    "SAVE_BATCH",
    "TRIM_BATCH",
    "StoreSettings",
    "parse_event_id",
    "reap_error",
    "retry_exhausted_error",
]

MANUAL_OWNER = "manual"
DEADLINE_EXCEEDED = "deadline exceeded"

# update_task_status emits the kind of the change it amounts to.
OVERRIDE_EVENT: dict[TaskStatus, str] = {
    TaskStatus.PENDING: "task.released",
    TaskStatus.PROCESSING: "task.claimed",
    TaskStatus.COMPLETED: "task.completed",
    TaskStatus.FAILED: "task.failed",
}

# Trimming finished tasks: one script deletes at most TRIM_BATCH (lua/trim.lua caps it
# too, whatever it is asked); reap_expired_leases trims until none past retention is
# left, at most REAP_TRIM_LIMIT per call (100 batches). Both backends use these.
TRIM_BATCH = 1000
REAP_TRIM_LIMIT = 100 * TRIM_BATCH

# fail_orphaned_tasks: one script looks at most at ORPHAN_BATCH index entries and
# reads at most MAX_KEEP_IDS ids to keep (lua/fail_orphaned.lua caps both too).
ORPHAN_BATCH = 1000
MAX_KEEP_IDS = 10_000
# Claiming: one script claims at most CLAIM_BATCH tasks and looks at most at
# CLAIM_LOOK_AT pending entries (lua/claim.lua caps both); claim_tasks makes a
# larger claim of several, and stops early after one that reached CLAIM_LOOK_AT
# without filling (expired deadlines), so the work of one call stays bounded.
# One save script writes at most SAVE_BATCH tasks (lua/save.lua refuses more).
CLAIM_BATCH = 500
CLAIM_LOOK_AT = 1000
SAVE_BATCH = 500

_EVENT_ID_RE = re.compile(r"(\d{1,20})-(\d{1,20})", re.ASCII)  # ASCII: int() reads other digits too
# The greatest event id (both parts are below 2**64, as a Redis stream id's): nothing follows it.
MAX_EVENT_ID = (2**64 - 1, 2**64 - 1)


def reap_error(attempts: int, max_attempts: int) -> str:
    return f"lease expired after {attempts} of {max_attempts} attempts"


def retry_exhausted_error(reason: str, attempts: int, max_attempts: int) -> str:
    return f"{reason} (no retry: {attempts} of {max_attempts} attempts used)"


def parse_event_id(value: object) -> tuple[int, int]:
    """An event id ``<ms>-<n>`` as a comparable pair."""
    match = _EVENT_ID_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None or max(int(match[1]), int(match[2])) >= 2**64:
        raise InvalidInputError(f"not an event id: {v.show(value)}")
    return int(match[1]), int(match[2])


class StoreSettings(msgspec.Struct, frozen=True, kw_only=True):
    """A store's tuning, validated once when the store is built."""

    default_lease_s: float = 30.0
    max_attempts: int = 5
    retention_s: float = 86400.0
    max_payload_bytes: int = 1_048_576
    events_maxlen: int = 100_000
    block_window: int = 10_000
    history_maxlen: int = 1_000
    processed_ttl_s: float = 604_800.0
    create_namespace: bool = True

    @classmethod
    def from_config(cls, config: StorageConfig) -> StoreSettings:
        """The tuning given by a ``storage:`` config."""
        return cls.build(
            default_lease_s=config.tasks.default_lease_s,
            max_attempts=config.tasks.max_attempts,
            retention_s=config.tasks.retention_s,
            max_payload_bytes=config.tasks.max_payload_bytes,
            events_maxlen=config.events_maxlen,
            block_window=config.block_window,
            history_maxlen=config.history_maxlen,
            processed_ttl_s=config.processed_ttl_s,
            create_namespace=config.create_namespace,
        )

    @classmethod
    def build(cls, **values: object) -> StoreSettings:
        checked: dict[str, object] = {}
        for name, value in values.items():
            if name in ("default_lease_s", "processed_ttl_s"):
                checked[name] = v.duration(value, name)
            elif name == "create_namespace":
                checked[name] = v.boolean(value, name)
            elif name == "retention_s":
                checked[name] = v.duration(value, name, allow_zero=True)
            elif name in cls.__struct_fields__:
                number = v.integer(value, name)
                if number < 1:
                    raise InvalidInputError(f"{name} must be >= 1, got {number}")
                checked[name] = number
            else:
                raise InvalidInputError(f"unknown store setting {name!r}")
        return cls(**checked)  # type: ignore[arg-type]


class StoreLifecycle:
    """Open/closed state shared by every store: ``async with`` support, an
    idempotent ``close()``, and StoreClosedError for any call after it."""

    namespace: str
    _closed: bool = False

    async def __aenter__(self) -> Self:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the store; idempotent. Other calls afterwards raise StoreClosedError."""
        if self._closed:
            return
        self._closed = True
        await self._release()

    async def _release(self) -> None:
        """Free what the store holds (connections); called once, by close()."""

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the store for namespace {self.namespace!r} is closed")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} namespace={self.namespace!r} {state}>"
