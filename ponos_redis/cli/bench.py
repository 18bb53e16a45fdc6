"""The ``bench`` command: every operation beside its raw baseline, in one run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console

from . import main
from ._common import _run, console


@main.command()
@click.option(
    "--store", "store", default=None, help="a Redis URL to measure (default: a private redis-server)"
)
@click.option("--quick", is_flag=True, help="small sizes (about half a minute), as the test suite runs it")
@click.option(
    "--callers", default=50, show_default=True, type=click.IntRange(1, 100), help="N concurrent callers"
)
@click.option("--no-memory", "no_memory", is_flag=True, help="skip the in-process fake")
@click.option("--no-redis", "no_redis", is_flag=True, help="skip the Redis backend")
@click.option(
    "--listpack-value",
    default=2048,
    show_default=True,
    type=click.IntRange(0),
    help="also measure RAM per task with this hash-max-listpack-value (0: skip)",
)
@click.option(
    "--bullmq", is_flag=True, help="also run BullMQ's lifecycle (needs node; runs npm install bullmq)"
)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option(
    "--chart", type=click.Path(dir_okay=False, path_type=Path), default=None, help="write a PNG chart"
)
def bench(
    store: str | None,
    quick: bool,
    callers: int,
    no_memory: bool,
    no_redis: bool,
    listpack_value: int,
    bullmq: bool,
    as_json: bool,
    chart: Path | None,
) -> None:
    """Measure each operation beside a raw baseline run in the same process and on the same server.

    Without --store it starts a private redis-server from the shipped docker/redis.conf.
    """
    from ..bench import BenchOptions, print_report, run_bench, write_chart

    opts = BenchOptions(
        store=store,
        quick=quick,
        callers=callers,
        redis=not no_redis,
        memory=not no_memory,
        listpack_value=listpack_value,
        bullmq=bullmq,
    )
    report = _run(run_bench(opts, command="ponos-redis " + " ".join(sys.argv[1:])))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report, Console(soft_wrap=True, width=max(console.width, 200)))
    if chart is not None:
        console.print(write_chart(report, chart))
