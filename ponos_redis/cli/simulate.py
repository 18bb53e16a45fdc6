"""The ``simulate`` command: replicated aggregators and executors under faults."""

from __future__ import annotations

import sys
from typing import Literal

import click

from . import main
from ._common import _run, console


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
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="serve Prometheus metrics: the namespaces on this loopback port, each replica and "
    "executor on the next ones (0: any free ports); needs the metrics extra",
)
@click.option(
    "--metrics-linger",
    type=float,
    default=0.0,
    show_default=True,
    help="seconds to keep serving the namespaces' final reading after the run",
)
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
    metrics_port: int | None,
    metrics_linger: float,
    as_json: bool,
) -> None:
    """Replicated aggregators and executors in processes, under faults; verdict from the store.

    Exits 0 only when every invariant holds. See ponos_redis/simulate/__init__.py.
    """
    from ..simulate import SimulationOptions, run_simulation

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
        metrics_port=metrics_port,
        metrics_linger_s=metrics_linger,
    )
    report = _run(run_simulation(opts, live=False if as_json else None))
    if as_json:
        click.echo(report.to_json())
    else:
        report.print(console)
    sys.exit(report.exit_code)
