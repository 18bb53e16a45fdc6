"""The ``ponos-redis`` command: demo, status, inspection and operations.

Every command takes ``--store`` (``memory``, a Redis URL, or a YAML file with
a ``storage:`` block; default ``$PONOS_STORE``) and ``--namespace``.

Errors never print a traceback: every command runs under :class:`_Group`,
which prints one ``error: ...`` line on stderr (passwords redacted) and exits
with 2 for invalid input (``InvalidInputError``, and click's usage errors) or
1 for any other error. ``doctor`` also exits 1 when it finds a problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import click
from rich.console import Console
from rich.table import Table

from ._connection import redact
from ._open import open_aggregator_store
from .config import StorageConfig
from .errors import InvalidInputError, PonosStorageError
from .interfaces import AggregatorStore

__all__ = ["main"]

T = TypeVar("T")
console = Console(soft_wrap=True)

EXIT_ERROR = 1  # the store failed (unreachable, not found, durability problem ...)
EXIT_INVALID = 2  # invalid input: a bad --store, namespace, id, limit ... (as click's usage errors)


class _CliError(click.ClickException):
    """An error of a command, shown as one ``error: ...`` line on stderr."""

    exit_code = EXIT_ERROR

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _CliInvalidInput(_CliError):
    exit_code = EXIT_INVALID


def _one_line(exc: BaseException) -> str:
    text = " ".join(redact(str(exc)).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Group(click.Group):
    """The one place errors of every command are turned into ``error: ...`` and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except InvalidInputError as exc:
            raise _CliInvalidInput(_one_line(exc)) from None
        except PonosStorageError as exc:
            raise _CliError(_one_line(exc)) from None
        except Exception as exc:  # a bug: still one line, never a traceback
            raise _CliError(f"unexpected {_one_line(exc)}") from None


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
    """Run a command's coroutine; its errors reach :class:`_Group`."""

    async def runner() -> T:
        return await coro

    return asyncio.run(runner())


@contextlib.asynccontextmanager
async def _aggregator(store: str | None, namespace: str | None) -> AsyncIterator[AggregatorStore]:
    async with open_aggregator_store(_config(store), namespace=namespace) as opened:
        yield opened


store_option = click.option(
    "--store", "-s", help="memory, a Redis URL or a YAML file (default: $PONOS_STORE)"
)
namespace_option = click.option("--namespace", "-n", default=None, help="namespace (default: the config's)")


@click.group(cls=_Group)
@click.version_option(package_name="ponos-redis", prog_name="ponos-redis")
@click.option("-v", "--verbose", is_flag=True, help="log warnings and retries")
def main(verbose: bool) -> None:
    """Durable, shared state for Ponos aggregators and executors, on Redis."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )


@contextlib.contextmanager
def _embedded_redis() -> Iterator[str | None]:
    """A private redis-server with AOF on, when one is on PATH; else None."""
    from ._redis_server import RedisServer, redis_server_available

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
def demo(redis_url: str | None, use_memory: bool) -> None:
    """Show every promise of the stores end to end.

    Without --redis-url it starts a private redis-server (AOF on) when one is
    on PATH, else it uses the in-process fake.
    """
    from .demo import run_demo

    def say(line: str) -> None:
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
    sys.exit(0 if report.ok else 1)


@main.command()
@click.option("--duration", type=float, default=20.0, show_default=True, help="seconds of blocks")
@click.option("--replicas", type=int, default=3, show_default=True, help="aggregator replica processes")
@click.option("--executors", type=int, default=2, show_default=True, help="executor processes")
@click.option("--chains", type=int, default=2, show_default=True, help="fake chains per namespace")
@click.option("--seed", type=int, default=None, help="repeat a run (default: random, shown at the end)")
@click.option("--redis-url", default=None, help="run against this Redis (no Redis faults then)")
@click.option(
    "--topology",
    type=click.Choice(["single", "sentinel", "cluster"]),
    default="single",
    show_default=True,
    help="one server; a master, 2 replicas and 3 sentinels; or a 3-master cluster",
)
@click.option("--memory", "use_memory", is_flag=True, help="run on the in-process fake")
@click.option("--kill-replica/--no-kill-replica", default=True, show_default=True)
@click.option("--kill-executor/--no-kill-executor", default=False, show_default=True)
@click.option("--restart-redis/--no-restart-redis", default=True, show_default=True)
@click.option("--failover/--no-failover", default=False, show_default=True, help="needs --topology sentinel")
@click.option("--namespaces", type=int, default=None, help="aggregator namespaces (1; 3 on a cluster)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON, no live view")
def simulate(
    duration: float,
    replicas: int,
    executors: int,
    chains: int,
    seed: int | None,
    redis_url: str | None,
    topology: Literal["single", "sentinel", "cluster"],
    use_memory: bool,
    kill_replica: bool,
    kill_executor: bool,
    restart_redis: bool,
    failover: bool,
    namespaces: int | None,
    as_json: bool,
) -> None:
    """Replicated aggregators and executors in processes, under faults; verdict from the store.

    Exits 0 only when every invariant holds. See ponos_redis/simulate/__init__.py.
    """
    from .simulate import SimulationOptions, run_simulation

    opts = SimulationOptions(
        duration_s=duration,
        replicas=replicas,
        executors=executors,
        chains=chains,
        seed=seed,
        redis_url=redis_url,
        topology=topology,
        memory=use_memory,
        kill_replica=kill_replica,
        kill_executor=kill_executor,
        restart_redis=restart_redis,
        failover=failover,
        namespaces=namespaces,
    )
    report = _run(run_simulation(opts, live=False if as_json else None))
    if as_json:
        click.echo(report.to_json())
    else:
        report.print(console)
    sys.exit(report.exit_code)


@main.command()
@store_option
@namespace_option
def status(store: str | None, namespace: str | None) -> None:
    """Task counts of a namespace."""

    async def go() -> dict[str, int]:
        async with _aggregator(store, namespace) as agg:
            return {s.value: n for s, n in (await agg.count_tasks()).items()}

    counts = _run(go())
    table = Table("status", "tasks")
    for name, n in counts.items():
        table.add_row(name, str(n))
    console.print(table)


@main.command()
@store_option
@namespace_option
@click.argument("task_id")
def show(store: str | None, namespace: str | None, task_id: str) -> None:
    """One task with its state."""

    async def go() -> Any:
        async with _aggregator(store, namespace) as agg:
            return await agg.get_task(task_id)

    record = _run(go())
    table = Table("field", "value")
    for name in (
        "status",
        "attempts",
        "owner",
        "token",
        "lease_until",
        "created_at",
        "updated_at",
        "last_error",
    ):
        table.add_row(name, str(getattr(record, name)))
    for name in record.task.__struct_fields__:
        value = getattr(record.task, name)
        table.add_row(f"task.{name}", repr(value) if isinstance(value, bytes) else str(value))
    console.print(table)


@main.command()
@store_option
@namespace_option
@click.option("--avs", default=None, help="only this AVS")
@click.option("--limit", default=50, show_default=True)
def pending(store: str | None, namespace: str | None, avs: str | None, limit: int) -> None:
    """Pending tasks, oldest first."""

    async def go() -> Any:
        async with _aggregator(store, namespace) as agg:
            return await agg.list_pending_tasks(avs, limit=limit)

    table = Table("task_id", "avs", "chain", "block", "deadline")
    for task in _run(go()):
        table.add_row(
            task.task_id, task.avs_address, str(task.chain_id), str(task.block_number), str(task.deadline)
        )
    console.print(table)


@main.command()
@store_option
@namespace_option
def reap(store: str | None, namespace: str | None) -> None:
    """Return expired leases to pending (or failed) and trim old finished tasks."""

    async def go() -> int:
        async with _aggregator(store, namespace) as agg:
            return await agg.reap_expired_leases()

    console.print(f"reaped {_run(go())} expired lease(s)")


@main.command()
@store_option
@namespace_option
@click.option("--after", default=None, help="resume after this event id")
@click.option("--follow", "-f", is_flag=True, help="wait for new events (stops after 60 s of silence)")
def events(store: str | None, namespace: str | None, after: str | None, follow: bool) -> None:
    """Print the event stream."""

    async def go() -> None:
        async with _aggregator(store, namespace) as agg:
            async for ev in agg.events(after=after, block_s=60.0 if follow else None):
                owner = f" owner={ev.owner}" if ev.owner else ""
                token = f" token={ev.token}" if ev.token is not None else ""
                console.print(
                    f"{ev.id} {ev.at.isoformat()} {ev.kind} {ev.subject} {ev.status or ''}{owner}{token}",
                    highlight=False,
                )

    _run(go())


@main.command()
@store_option
@namespace_option
def doctor(store: str | None, namespace: str | None) -> None:
    """Check the server against the configured durability policy."""
    from ._durability import assess
    from .backends.redis import RedisAggregatorStore

    cfg = _config(store)
    if cfg.redis is None:
        console.print("the in-process fake keeps nothing across restarts: nothing to check")
        return

    async def go() -> list[str]:
        async with await RedisAggregatorStore.open(cfg, namespace=namespace) as agg:
            facts = await agg.server_facts()
            console.print(facts)
            assert cfg.redis is not None
            problems = assess(cfg.redis.durability, cfg.redis.replicas, facts)
            set_aside = await agg.set_aside_task_ids()
            if set_aside:
                shown = ", ".join(set_aside[:20]) + (" ..." if len(set_aside) > 20 else "")
                problems.append(
                    f"{len(set_aside)} task record(s) could not be read and were set aside "
                    f"({agg.keys.set_aside}): {shown}; repair them (docs/keys.md)"
                )
            return problems

    problems = _run(go())
    for problem in problems:
        console.print(f"[yellow]problem:[/yellow] {problem}")
    if not problems:
        console.print(f"[green]ok:[/green] the server can keep durability {cfg.redis.durability!r}")
    sys.exit(1 if problems else 0)


@main.group()
def namespace() -> None:
    """Create a namespace deliberately (for configs with create_namespace: false)."""


@namespace.command("create")
@store_option
@namespace_option
def namespace_create(store: str | None, namespace: str | None) -> None:
    """Create the namespace if it does not exist; print its epoch.

    After Redis lost a namespace's data, open stores refuse every write with
    NamespaceLostError; this starts a new epoch whose tokens are above the old ones.
    """
    import msgspec

    from .backends.redis import RedisAggregatorStore
    from .errors import NamespaceLostError

    cfg = _config(store)
    if cfg.redis is None:
        console.print("the in-process fake creates namespaces as it uses them: nothing to do")
        return

    async def go() -> tuple[str, bool]:
        existing = msgspec.structs.replace(cfg, create_namespace=False)
        try:
            async with await RedisAggregatorStore.open(existing, namespace=namespace) as agg:
                return agg.epoch, False
        except NamespaceLostError:
            pass
        created = msgspec.structs.replace(cfg, create_namespace=True)
        async with await RedisAggregatorStore.open(created, namespace=namespace) as agg:
            return agg.epoch, True

    epoch, made = _run(go())
    name = namespace or cfg.namespace
    console.print(f"{'created' if made else 'exists:'} namespace {name!r} (epoch {epoch})", highlight=False)


@main.group()
def metrics() -> None:
    """Prometheus metrics (needs the extra: pip install 'ponos-redis[metrics]')."""


@metrics.command("serve")
@store_option
@click.option(
    "--namespace",
    "-n",
    "namespaces",
    multiple=True,
    help="a namespace to report; repeat for several (default: the config's)",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=9187, show_default=True, help="0: any free port"
)
@click.option("--addr", default="127.0.0.1", show_default=True, help="the address to listen on")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="seconds between two reads of each namespace",
)
@click.option(
    "--task-sla-s",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="exported as ponos_task_sla_seconds, the oldest pending age the SLA alert allows",
)
@click.option(
    "--chain-id", "chain_ids", type=int, multiple=True, help="report these chains only (default: all found)"
)
@click.option("--duration", type=click.FloatRange(min=0), default=None, help="stop after this many seconds")
@click.option(
    "--json-logs", is_flag=True, help="log JSON lines (default: key=value; or PONOS_LOG_FORMAT=json)"
)
def metrics_serve(
    store: str | None,
    namespaces: tuple[str, ...],
    port: int,
    addr: str,
    interval: float,
    task_sla_s: float,
    chain_ids: tuple[int, ...],
    duration: float | None,
    json_logs: bool,
) -> None:
    """Serve the namespace metrics at http://ADDR:PORT/metrics until SIGTERM or SIGINT.

    Run exactly one per namespace: task counts, the oldest pending age, the event
    stream, chain cursors and lease holders describe the namespace, not a process.
    The store is opened with strict durability off, so that a server that cannot
    keep its promise is still reported on (with a durability_warning log line).
    """
    import signal

    import msgspec

    try:
        from .metrics import NamespaceCollector, start_metrics_server
    except ImportError as exc:
        raise _CliError(str(exc)) from None
    from .logs import configure

    configure(json=True if json_logs else None, level=logging.INFO, exclusive=True)
    cfg = _config(store)
    required = 0
    if cfg.redis is not None:
        required = cfg.redis.replicas if cfg.redis.durability == "replicated" else 0
        cfg = msgspec.structs.replace(cfg, redis=msgspec.structs.replace(cfg.redis, strict=False))

    async def serve() -> None:
        async with contextlib.AsyncExitStack() as stack:
            collectors = []
            for name in namespaces or (cfg.namespace,):
                opened = await stack.enter_async_context(open_aggregator_store(cfg, namespace=name))
                collector = NamespaceCollector(
                    opened, task_sla_s=task_sla_s, required_replicas=required, chain_ids=chain_ids or None
                )
                stack.callback(collector.unregister)
                await collector.collect_once()
                collectors.append(collector)
            try:
                server = start_metrics_server(port, addr=addr)
            except OSError as exc:
                raise _CliError(f"cannot listen on {addr}:{port}: {exc.strerror or exc}") from None
            stack.callback(server.close)
            names = ", ".join(c.namespace for c in collectors)
            click.echo(f"serving {server.url} for namespace(s) {names}", nl=True)
            sys.stdout.flush()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            if duration is not None:
                loop.call_later(duration, stop.set)
            async with asyncio.TaskGroup() as group:
                for collector in collectors:
                    group.create_task(collector.run(interval, stop=stop))

    _run(serve())
