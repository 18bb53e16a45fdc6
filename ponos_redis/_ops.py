"""Script replies -> results or typed errors: pure functions, no I/O.

Scripts answer ``{'OK', ...}`` or ``{<CODE>, detail}``; this is the one place
that turns a code into an exception, so callers never see a Redis reply.
"""

from __future__ import annotations

from typing import Any

from .errors import (
    AlreadyExistsError,
    CorruptRecordError,
    InvalidTransitionError,
    NamespaceLostError,
    NotFoundError,
    PonosStorageError,
    SchemaVersionError,
    StaleLeaseError,
)
from .keys import namespace_of

__all__ = ["as_text", "check", "migration_message", "schema_message"]


def as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def check(reply: Any, subject: str, *, key: str = "") -> list[Any]:
    """Return the values after ``'OK'``, or raise the error the reply's code names.

    Args:
        reply: a script's reply.
        subject: what the call was about (``"task 'x'"``), for the message.
        key: the record's key, named by CorruptRecordError.
    """
    if not isinstance(reply, list) or not reply:
        raise PonosStorageError(f"{subject}: unexpected script reply {reply!r}")
    code = as_text(reply[0])
    rest = list(reply[1:])
    if code == "OK":
        return rest
    detail = as_text(rest[0]) if rest else ""
    if code == "NOTFOUND":
        raise NotFoundError(f"{subject} not found")
    if code == "STALE":
        current = f" (current token: {detail})" if detail else ""
        raise StaleLeaseError(f"{subject}: the token or lease is no longer current{current}")
    if code == "TRANSITION":
        raise InvalidTransitionError(f"{subject}: not allowed from its current state ({detail})")
    if code == "CORRUPT":
        raise CorruptRecordError(key or subject, f"field {detail!r} cannot be decoded")
    if code == "LOST":
        raise NamespaceLostError(namespace_lost_message(subject, detail))
    if code == "SCHEMA":
        expected = as_text(rest[1]) if len(rest) > 1 else "?"
        namespace = namespace_of(as_text(rest[2])) if len(rest) > 2 else None
        raise SchemaVersionError(
            f"{subject}: refused, nothing was written: " + schema_message(namespace, detail, expected)
        )
    if code == "EXISTS":
        raise AlreadyExistsError(f"a different task with id {detail!r} already exists")
    raise PonosStorageError(f"{subject}: script answered {code} {detail}")


def namespace_lost_message(subject: str, epoch: str) -> str:
    now = f"it now has epoch {epoch!r}" if epoch else "it no longer exists"
    return (
        f"{subject}: refused, the namespace is not the one this store opened ({now}): Redis lost its "
        "data or the namespace was re-created. Nothing was written. Stop this service; its leases and "
        "tokens belong to a namespace that is gone"
    )


def schema_message(namespace: str | None, found: object, expected: object) -> str:
    """What to do about a namespace of schema version ``found`` met by a library writing ``expected``."""
    name = repr(namespace) if namespace else "the namespace"
    try:
        older = int(str(found)) < int(str(expected))
    except ValueError:
        older = False
    if older:
        return (
            f"namespace {name} has schema version {found}, this library writes version {expected}: "
            f"upgrade it with `ponos-redis migrate --store ... --namespace {namespace or '<namespace>'}` "
            "(docs/operations.md: Schema versions and migrations)"
        )
    return (
        f"namespace {name} has schema version {found}, this library writes version {expected}: "
        "this process runs an older ponos-redis than the namespace needs; stop it and upgrade ponos-redis"
    )


def migration_message(namespace: str, migration: str) -> str:
    """A namespace whose migration has not finished (still running, or interrupted)."""
    return (
        f"namespace {namespace!r} is being migrated (schema {migration}), or its migration was "
        f"interrupted: run `ponos-redis migrate --store ... --namespace {namespace}` to finish it "
        "(it resumes where it stopped)"
    )
