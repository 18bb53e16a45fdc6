"""The ``simulate`` command: replicated aggregators and executors under faults."""

from __future__ import annotations

import sys
from typing import Literal

import click

from . import main
from ._common import Duration, _run, console


@main.command()
@click.option(
    "--duration",
    type=Duration(),
    default=20.0,
    show_default=True,
    help="how long the chain produces blocks: seconds, or 10m, 2h (at most 1h; 1d with --soak)",
)
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
@click.option(
    "--client-kill/--no-client-kill",
    default=True,
    show_default=True,
    help="cut every client connection of the Redis (CLIENT KILL TYPE normal) twice a run",
)
@click.option(
    "--soak",
    is_flag=True,
    help="a long run: faults repeat every --fault-period, Redis memory, keys and every process's "
    "RSS sampled every --sample-every, and judged flat once the store's windows (--retention) filled",
)
@click.option(
    "--fault-period", type=Duration(), default=None, help="--soak: the fault schedule repeats this often [5m]"
)
@click.option("--sample-every", type=Duration(), default=None, help="--soak: seconds between samples [5s]")
@click.option(
    "--retention",
    type=Duration(),
    default=None,
    help="--soak: tasks.retention_s, and the windows it sizes (events_maxlen, block_window, "
    "processed_ttl_s) [2m]",
)
@click.option(
    "--soak-samples",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="--soak: write every sample to this file, one JSON object per line (scripts/soak_plot.py plots it)",
)
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
    client_kill: bool,
    soak: bool,
    fault_period: float | None,
    sample_every: float | None,
    retention: float | None,
    soak_samples: str | None,
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
        client_kill=client_kill,
        soak=soak,
        fault_period_s=fault_period,
        sample_every_s=sample_every,
        retention_s=retention,
        samples_path=soak_samples,
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
