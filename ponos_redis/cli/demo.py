"""The ``demo`` command: every promise of the stores, end to end."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator

import click

from . import main
from ._common import _run, console, emit_json, json_option


@contextlib.contextmanager
def _embedded_redis() -> Iterator[str | None]:
    """A private redis-server with AOF on, when one is on PATH; else None."""
    from .._redis_server import RedisServer, redis_server_available

    if not redis_server_available():
        yield None
        return
    server = RedisServer(
        extra={"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}
    )
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@main.command()
@click.option("--redis-url", default=None, help="run against this Redis instead of an embedded one")
@click.option("--memory", "use_memory", is_flag=True, help="run against the in-process fake")
@json_option
def demo(redis_url: str | None, use_memory: bool, as_json: bool) -> None:
    """Show every promise of the stores end to end.

    Without --redis-url it starts a private redis-server (AOF on) when one is
    on PATH, else it uses the in-process fake. --json prints the report (and the
    lines it said) as one JSON document instead.
    """
    from ..demo import run_demo

    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        if not as_json:
            console.print(f"  {line}", highlight=False)

    with contextlib.ExitStack() as stack:
        target: str
        if use_memory:
            target = "memory"
        elif redis_url:
            target = redis_url
        else:
            embedded = stack.enter_context(_embedded_redis())
            target = embedded or "memory"
            if embedded:
                say(f"started a private redis-server at {embedded} (appendonly yes, appendfsync always)")
            else:
                say("redis-server is not on PATH: using the in-process fake")
        report = _run(run_demo(target, say))
    if as_json:
        emit_json({**dataclasses.asdict(report), "lines": said})
    sys.exit(0 if report.ok else 1)
