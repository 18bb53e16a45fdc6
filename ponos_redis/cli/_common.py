"""What every command of the ``ponos-redis`` CLI shares: options, errors, output, the store.

Exit codes (docs/operations.md#exit-codes): 0 ok; 1 an error, or a problem
found (``doctor``, ``check``); 2 invalid input or usage (click's own usage
errors too); 3 not found (a namespace, task, deployment ...); 4 Redis
unreachable within the retry budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click
import msgspec
from rich.console import Console
from rich.table import Table

from .._connection import redact
from .._open import open_aggregator_store
from ..config import StorageConfig
from ..errors import NamespaceLostError, NotFoundError
from ..interfaces import AggregatorStore
from ..ops.inspect import NamespaceView, Payload, inspect_namespace

T = TypeVar("T")
# Piped into a file or grep (no terminal, no COLUMNS), tables are drawn 250 columns wide
# rather than rich's 80, so that a key name or an id stays on one line.
_SIZED = sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit()
console = Console(soft_wrap=True, width=None if _SIZED else 250)

EXIT_OK = 0
EXIT_ERROR = 1  # an error, or a problem found (doctor, check)
EXIT_PROBLEM = EXIT_ERROR
EXIT_INVALID = 2  # invalid input: a bad --store, namespace, id, limit ... (as click's usage errors)
EXIT_NOT_FOUND = 3  # the namespace, task, deployment ... does not exist
EXIT_UNREACHABLE = 4  # Redis could not be reached within the retry budget


class _CliError(click.ClickException):
    """An error of a command, shown as one ``error: ...`` line on stderr."""

    exit_code = EXIT_ERROR

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _CliInvalidInput(_CliError):
    exit_code = EXIT_INVALID


class _CliNotFound(_CliError):
    exit_code = EXIT_NOT_FOUND


class _CliUnreachable(_CliError):
    exit_code = EXIT_UNREACHABLE


def _one_line(exc: BaseException) -> str:
    text = " ".join(redact(str(exc)).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _config(store: str | None) -> StorageConfig:
    value = store or os.environ.get("PONOS_STORE")
    if not value:
        raise click.UsageError("give --store (memory, a Redis URL or a YAML file) or set PONOS_STORE")
    if value != "memory" and "://" not in value and _is_file(value):
        return StorageConfig.from_yaml(value)
    return StorageConfig.from_string(value)


def _is_file(value: str) -> bool:
    try:
        return Path(value).is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte ...: not a file
        return False


def _run(coro: Awaitable[T]) -> T:
    """Run a command's coroutine; its errors reach the group's error handling."""

    async def runner() -> T:
        return await coro

    return asyncio.run(runner())


@contextlib.asynccontextmanager
async def _aggregator(store: str | None, namespace: str | None) -> AsyncIterator[AggregatorStore]:
    async with open_aggregator_store(_config(store), namespace=namespace) as opened:
        yield opened


@contextlib.asynccontextmanager
async def _existing_aggregator(store: str | None, namespace: str | None) -> AsyncIterator[AggregatorStore]:
    """The aggregator store of a namespace that must exist: an operator's action never
    creates one (a mistyped --namespace is "not found", exit 3, not a new namespace)."""
    cfg = StorageConfig.coerce(_config(store), namespace)
    if cfg.redis is not None:
        cfg = msgspec.structs.replace(cfg, create_namespace=False)
    try:
        opened = await open_aggregator_store(cfg)
    except NamespaceLostError as exc:
        raise NotFoundError(f"namespace {cfg.namespace!r} not found: {exc}") from None
    try:
        yield opened
    finally:
        await opened.close()


@contextlib.asynccontextmanager
async def _view(
    store: str | None, namespace: str | None, *, allow_newer_schema: bool = False
) -> AsyncIterator[NamespaceView]:
    """A read-only view of the namespace (NotFoundError when it does not exist)."""
    async with inspect_namespace(_config(store), namespace, allow_newer_schema=allow_newer_schema) as view:
        yield view


store_option = click.option(
    "--store", "-s", help="memory, a Redis URL or a YAML file (default: $PONOS_STORE)"
)
namespace_option = click.option("--namespace", "-n", default=None, help="namespace (default: the config's)")
json_option = click.option(
    "--json", "as_json", is_flag=True, help="print JSON instead of a table (schema: docs/operations.md)"
)
yes_option = click.option("--yes", "-y", is_flag=True, help="do it (without --yes: show what would be done)")


# Columns whose cells may be long text: they wrap first when a table is too wide.
_TEXT_COLUMNS = frozenset({"finding", "fix", "detail", "last error", "error", "value", "environment"})


def new_table(*columns: str, title: str | None = None, show_lines: bool = False) -> Table:
    """A table whose cells wrap (fold) rather than cut: a key or an id is never shortened.

    Short columns (ids, statuses, counts, times) keep their width; the text columns
    wrap first when the terminal is narrow.
    """
    made = Table(title=title, show_lines=show_lines)
    for name in columns:
        if name in _TEXT_COLUMNS:
            made.add_column(name, overflow="fold", ratio=1)
        else:
            made.add_column(name, overflow="fold", no_wrap=True)
    return made


def emit_json(value: Any) -> None:
    """Print ``value`` (Structs, dicts, lists ...) as one line of JSON on stdout."""
    click.echo(msgspec.json.encode(value).decode())


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", re.ASCII)
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


if TYPE_CHECKING:
    _ParamType = click.ParamType[float, Any]  # generic in click 8.2 and newer
else:
    _ParamType = click.ParamType


class Duration(_ParamType):
    """A duration: ``90`` or ``90s``, ``10m``, ``2h``, ``1d``, ``500ms``; in seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        match = _DURATION.fullmatch(str(value))
        if match is None:
            self.fail(f"{value!r} is not a duration (such as 90s, 10m, 2h, 1d)", param, ctx)
        return float(match[1]) * _UNIT_S[match[2]]


def when(value: datetime | None) -> str:
    """A time as an operator reads it: UTC, to the millisecond."""
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def seconds(value: float | None) -> str:
    """A duration for a person: ``42.1s``, ``12m05s``, ``3h02m``, ``2d04h``."""
    if value is None:
        return "-"
    sign = "-" if value < 0 else ""
    left = abs(value)
    if left < 60:
        return f"{sign}{left:.1f}s"
    minutes, secs = divmod(int(left), 60)
    if minutes < 60:
        return f"{sign}{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{sign}{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{sign}{days}d{hours:02d}h"


def payload(value: Payload, *, shown: int = 32) -> str:
    """A payload as its length and hex digits, cut after ``shown`` bytes."""
    digits = value.hex[: shown * 2]
    more = "..." if value.length > shown else ""
    return f"{value.length} bytes: 0x{digits}{more}" if value.length else "0 bytes"


def text(value: object) -> str:
    """A cell: ``-`` for None, else the value as text."""
    return "-" if value is None else str(value)
