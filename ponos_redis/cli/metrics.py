"""The ``metrics`` commands: serve Prometheus metrics of namespaces."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

import click

from .._open import open_aggregator_store
from . import main
from ._common import _CliError, _config, _run, emit_json, json_option, store_option


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
@json_option
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
    as_json: bool,
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
        from prometheus_client import CollectorRegistry

        from ..metrics import MergedCollector, NamespaceCollector, start_metrics_server
    except ImportError as exc:
        raise _CliError(str(exc)) from None
    from ..logs import configure

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
                    opened,
                    registry=CollectorRegistry(),  # one each: namespaces share metric names
                    task_sla_s=task_sla_s,
                    required_replicas=required,
                    chain_ids=chain_ids or None,
                )
                await collector.collect_once()
                collectors.append(collector)
            try:
                served = CollectorRegistry()
                served.register(MergedCollector(collectors))
                server = start_metrics_server(port, served, addr=addr)
            except OSError as exc:
                raise _CliError(f"cannot listen on {addr}:{port}: {exc.strerror or exc}") from None
            stack.callback(server.close)
            names = ", ".join(c.namespace for c in collectors)
            if as_json:  # one line, when serving starts: {"url", "namespaces"}
                emit_json({"url": server.url, "namespaces": [c.namespace for c in collectors]})
            else:
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
