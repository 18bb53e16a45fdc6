"""The exceptions of ponos-redis.

Every error a store raises is a :class:`PonosStorageError`. Backends translate
their own failures (Redis replies, connection errors that outlived the retry
policy) at one boundary, so callers never see ``redis.exceptions.*``.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "CorruptRecordError",
    "DurabilityError",
    "InvalidInputError",
    "InvalidTransitionError",
    "NamespaceLostError",
    "NotFoundError",
    "PonosStorageError",
    "SchemaVersionError",
    "StaleLeaseError",
    "StoreClosedError",
    "StoreConfigurationError",
    "StoreUnavailableError",
]


class PonosStorageError(Exception):
    """Base class of every error raised by a ponos-redis store."""


class NotFoundError(PonosStorageError):
    """The record asked for does not exist."""


class AlreadyExistsError(PonosStorageError):
    """A different record already exists under the same id."""


class StoreClosedError(PonosStorageError):
    """The store was closed; open a new one."""


class InvalidTransitionError(PonosStorageError):
    """The requested state change is not allowed from the record's current state."""


class StaleLeaseError(PonosStorageError):
    """The fencing token or lease is no longer the current one; nothing was changed."""


class InvalidInputError(PonosStorageError, ValueError):
    """An argument or configuration value is invalid; nothing was written."""


class CorruptRecordError(PonosStorageError):
    """A stored record cannot be decoded.

    Attributes:
        key: the storage key (a Redis key, or the fake's equivalent) of the record.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"corrupt record at {key!r}: {reason}")
        self.key = key
        self.reason = reason


class DurabilityError(PonosStorageError):
    """The server cannot keep the durability promise, or a write's durability
    could not be confirmed (the write itself may have been applied)."""


class SchemaVersionError(PonosStorageError):
    """The namespace was written by an incompatible schema version."""


class StoreUnavailableError(PonosStorageError):
    """The backend could not be reached within the retry policy's bounds.

    The outcome of the operation that raised it is unknown: it may have been
    applied. Every store operation is safe to repeat.
    """


class NamespaceLostError(PonosStorageError):
    """The namespace this store opened no longer exists as it was opened.

    Redis lost its data (a restart without AOF, ``FLUSHDB``, a failover to a
    replica that had not received it) or the namespace was re-created. Nothing
    was written. Stop the service: its leases and tokens belong to a namespace
    that is gone. Also raised by ``open_*_store`` when the namespace does not
    exist and the config says not to create it (``create_namespace: false``).
    """


class StoreConfigurationError(PonosStorageError):
    """The server refused the connection for a reason no retry can fix.

    Authentication failed, the user's ACL does not allow a command or key the
    store needs (``NOPERM``), the URL names a read-only replica, or the
    database index does not exist. Nothing was written; fix the configuration.
    """
