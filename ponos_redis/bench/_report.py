"""The bench report as a rich table, and as a PNG chart when matplotlib is installed."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from ._run import BenchReport

__all__ = ["print_report", "write_chart"]


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:,.1f} ms" if value >= 10_000 else f"{value:,.0f} us"


def _rate(value: float | None, unit: str) -> str:
    return "-" if not value else f"{value:,.0f} {unit}/s"


def print_report(report: BenchReport, console: Console) -> None:
    """Print the machine, the server, every row beside its baseline, memory and the goals."""
    m, s = report.machine, report.server
    console.print(f"[bold]{report.command}[/bold]")
    console.print(f"machine: {m['cpus']} CPUs, {m['memory']}, Python {m['python']}, {m['platform']}")
    if s:
        console.print(
            f"server: Redis {s.get('redis_version')} ({s.get('server')}): appendonly {s.get('appendonly')}, "
            f"appendfsync {s.get('appendfsync')}, save {s.get('save')!r}, maxmemory-policy "
            f"{s.get('maxmemory-policy')}, hash-max-listpack-value {s.get('hash-max-listpack-value')}"
        )
    table = Table(title="operations: ours beside the raw baseline, same run")
    for name in ("backend", "operation", "callers", "p50", "p99", "throughput", "raw p50", "raw p99",
                 "raw throughput", "ratio"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("backend", "operation") else "right")
    for row in report.rows:
        ratio = row.ratio
        table.add_row(
            row.backend,
            row.operation,
            str(row.callers),
            _us(row.p50_us),
            _us(row.p99_us),
            _rate(row.rate, row.unit),
            _us(row.raw_p50_us),
            _us(row.raw_p99_us),
            _rate(row.raw_rate, row.unit),
            "-" if ratio is None else f"{ratio:.2f}x",
        )
    console.print(table)
    for row in report.rows:
        if row.note:
            console.print(f"  {row.backend} {row.operation} x{row.callers}: {row.note}", highlight=False)
    if report.memory:
        mem = Table(title="memory per stored task (1 KB payload)")
        for name in (
            "variant",
            "tasks",
            "RAM/task",
            "task hash",
            "encoding",
            "AOF/task",
            "AOF/task rewritten",
        ):
            mem.add_column(name, justify="left" if name in ("variant", "encoding") else "right")
        for entry in report.memory:
            aof = entry.get("aof_per_task")
            rewritten = entry.get("aof_per_task_after_rewrite")
            mem.add_row(
                entry["variant"],
                f"{entry['tasks']:,}",
                f"{entry['ram_per_task']:,.0f} B",
                f"{entry['task_hash_bytes']:,.0f} B",
                entry["task_hash_encoding"],
                "-" if aof is None else f"{aof:,.0f} B",
                "-" if rewritten is None else f"{rewritten:,.0f} B",
            )
        console.print(mem)
    goals = Table(title="goals")
    for name in ("goal", "target", "measured", "met"):
        goals.add_column(name)
    for goal in report.goals:
        met = "not measured" if goal.met is None else ("yes" if goal.met else "no")
        goals.add_row(goal.name, goal.target, goal.measured + (f" ({goal.note})" if goal.note else ""), met)
    console.print(goals)
    for note in report.notes:
        console.print(f"note: {note}")


def write_chart(report: BenchReport, path: Path) -> str:
    """Write a bar chart of the ratios to ``path``; what was done, as a line to print."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return "no chart: matplotlib is not installed"
    rows = [r for r in report.rows if r.ratio is not None]
    labels = [f"{r.backend} {r.operation} x{r.callers}" for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(rows) + 1))
    ax.barh(labels, [r.ratio or 0 for r in rows])
    ax.axvline(1.25, linestyle="--")
    ax.set_xlabel("ours / raw baseline")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return f"chart written to {path}"
