"""The ``ponos-redis`` command: demo, inspection, operator actions, health checks.

Every command that reads or changes a namespace takes ``--store`` (``memory``,
a Redis URL, or a YAML file with a ``storage:`` block; default
``$PONOS_STORE``), ``--namespace`` and ``--json``.

Errors never print a traceback: every command runs under :class:`_Group`,
which prints one ``error: ...`` line on stderr (passwords redacted) and exits
with 2 for invalid input (``InvalidInputError``, and click's usage errors), 3
when what was asked for does not exist (``NotFoundError``: a namespace, a
task ...), 4 when Redis could not be reached (``StoreUnavailableError``) and 1
for any other error. ``doctor`` and ``check`` also exit 1 when they find a
problem.

Each command group lives in its own module, which registers its commands on
:data:`main` when imported (at the end of this module).
"""

from __future__ import annotations

import logging
from typing import Any

import click

from ..errors import InvalidInputError, NotFoundError, PonosStorageError, StoreUnavailableError
from ._common import _CliError, _CliInvalidInput, _CliNotFound, _CliUnreachable, _one_line

__all__ = ["main"]


class _Group(click.Group):
    """The one place errors of every command are turned into ``error: ...`` and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except InvalidInputError as exc:
            raise _CliInvalidInput(_one_line(exc)) from None
        except NotFoundError as exc:
            raise _CliNotFound(_one_line(exc)) from None
        except StoreUnavailableError as exc:
            raise _CliUnreachable(_one_line(exc)) from None
        except PonosStorageError as exc:
            raise _CliError(_one_line(exc)) from None
        except Exception as exc:  # a bug: still one line, never a traceback
            raise _CliError(f"unexpected {_one_line(exc)}") from None


@click.group(cls=_Group)
@click.version_option(package_name="ponos-redis", prog_name="ponos-redis")
@click.option("-v", "--verbose", is_flag=True, help="log warnings and retries")
def main(verbose: bool) -> None:
    """Durable, shared state for Ponos aggregators and executors, on Redis."""
    root = logging.getLogger()
    theirs = set(root.handlers)  # handlers someone else installed (when run in-process) stay as they are
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if not verbose:
        # Each retry is a warning line; what finally happened is the command's own
        # one line (an error after the retry budget, or its result). -v shows them.
        for handler in root.handlers:
            if handler not in theirs:
                handler.addFilter(_quiet_retries)


_RETRY_EVENTS = frozenset({"redis_retry", "redis_ridden_through"})


def _quiet_retries(record: logging.LogRecord) -> bool:
    return getattr(record, "event", None) not in _RETRY_EVENTS


# Each module registers its commands on ``main`` when imported: add a new
# command module to this list.
from . import (  # noqa: E402, F401
    actions,
    bench,
    data,
    demo,
    doctor,
    inspect,
    metrics,
    namespace,
    simulate,
)
