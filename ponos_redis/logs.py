"""Log lines for operators: one line per event worth attention, key=value or JSON.

ponos-redis logs with the standard :mod:`logging` module, under the
``ponos_redis`` logger tree (``ponos_redis.runtime.worker`` ...), and never
configures logging itself. The lines an operator should see carry an
``event`` field (passed as ``extra``) and the facts as fields:

=========================  =========  ====================================================
event                      level      when
=========================  =========  ====================================================
``lease_reaped``           info       the reaper returned expired task leases (``count``)
``stale_refused``          warning    a complete/fail/release was refused: the lease moved on
``task_lease_lost``        warning    a worker cancelled a handler whose lease was lost
``chain_lease_acquired``   info       a poller took a chain's lease (``chain_id``, ``token``)
``chain_lease_lost``       warning    a poller lost a chain's lease; it stops writing
``reorg``                  info       a poller handled a reorg (``chain_id``, ``fork``, ``orphaned``)
``redis_retry``            warning    a transient Redis error; the call is retried
``redis_ridden_through``   warning    a call succeeded after transient errors (a failover)
``store_unavailable``      error      the runtime gave up repeating a call (outcome unknown)
``durability_warning``     warning    the server cannot keep the durability policy (not strict)
``durability_shortfall``   error      a write's replication was not confirmed (WAIT)
``record_set_aside``       warning    an unreadable task record was taken out of circulation
``records_unreadable``     warning    a listing skipped records it could not decode
``namespace_created``      info       a store created its namespace
``metrics_read_failed``    warning    metrics serve could not read a namespace
=========================  =========  ====================================================

:func:`configure` installs one handler that writes each record on one line:
``key=value`` pairs by default, a JSON object with ``json=True`` (or
``PONOS_LOG_FORMAT=json``). Passwords in Redis URLs are redacted from every
field, and newlines are escaped, so one event stays one line.
"""

from __future__ import annotations

import json as _json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import IO, Any

from ._redact import redact

__all__ = ["JsonFormatter", "KeyValueFormatter", "configure", "record_fields"]

# Attributes every LogRecord has: anything else on a record came in through ``extra``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_MARK = "_ponos_logs"  # set on the handler configure() installs, to find it again


def record_fields(record: logging.LogRecord, formatter: logging.Formatter | None = None) -> dict[str, Any]:
    """A record as ordered fields: time, level, logger, event, the extra fields, msg (and exc)."""
    fields: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
    }
    extra = {key: value for key, value in vars(record).items() if key not in _STANDARD}
    if "event" in extra:
        fields["event"] = extra.pop("event")
    fields.update(extra)
    fields["msg"] = record.getMessage()
    if record.exc_info:
        fields["exc"] = (formatter or logging.Formatter()).formatException(record.exc_info)
    return {key: _clean(value) for key, value in fields.items()}


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def _kv_value(value: Any) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text and all(c.isprintable() and c not in ' "=\\' for c in text):
        return text
    return _json.dumps(text, ensure_ascii=False)  # quoted, with \n and \" escaped: one line


class KeyValueFormatter(logging.Formatter):
    """``time=... level=warning logger=... event=... key=value ... msg="..."`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_kv_value(value)}" for key, value in record_fields(record, self).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the same fields as :class:`KeyValueFormatter`."""

    def format(self, record: logging.LogRecord) -> str:
        return _json.dumps(record_fields(record, self), ensure_ascii=False, default=str)


def configure(
    *,
    json: bool | None = None,
    level: int | str = logging.INFO,
    stream: IO[str] | None = None,
    logger: str = "",
    exclusive: bool = False,
) -> logging.Handler:
    """Write log records one per line, as key=value pairs or JSON.

    Installs a handler on ``logger`` (the root logger by default, so every
    library's lines look alike), replacing the one an earlier call installed,
    and sets that logger's level. Other handlers are left alone.

    Args:
        json: JSON objects instead of key=value; default: ``$PONOS_LOG_FORMAT == "json"``.
        level: the logger's level (``logging.INFO``, ``"WARNING"`` ...).
        stream: where to write; default standard error.
        logger: the logger to configure (``""``: the root logger).
        exclusive: remove the logger's other handlers too (a command that set up
            ``logging.basicConfig`` earlier would otherwise print each line twice).

    Returns:
        the installed handler.
    """
    if json is None:
        json = os.environ.get("PONOS_LOG_FORMAT", "").strip().lower() == "json"
    target = logging.getLogger(logger)
    for handler in list(target.handlers):
        if exclusive or getattr(handler, _MARK, False):
            target.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json else KeyValueFormatter())
    setattr(handler, _MARK, True)
    target.addHandler(handler)
    target.setLevel(level)
    return handler
