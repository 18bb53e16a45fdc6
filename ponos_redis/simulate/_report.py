"""The end of a run: its report, as tables (rich) or as JSON (``--json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from ._soak import summary_rows
from ._verdict import Invariant

__all__ = ["FaultRecord", "SimulationReport"]


@dataclass
class FaultRecord:
    """One fault as it happened, ``at_s`` seconds after the chain started."""

    kind: str
    target: str
    at_s: float
    detail: str = ""
    back_after_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "at_s": round(self.at_s, 2),
            "detail": self.detail,
            "back_after_s": None if self.back_after_s is None else round(self.back_after_s, 2),
        }


@dataclass
class SimulationReport:
    """What a run did and whether every invariant held (``ok``; the exit code is 0 only then)."""

    seed: int
    backend: str
    duration_s: float
    replicas: int
    executors: int
    namespaces: list[str]
    chains: list[int]
    notes: list[str] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    invariants: list[Invariant] = field(default_factory=list)
    error: str | None = None
    log_dir: str | None = None
    elapsed_s: float = 0.0
    metrics: dict[str, Any] | None = None  # the scrape targets, with --metrics-port
    soak: dict[str, Any] | None = None  # a soak's settings, samples summary and flat rule

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.invariants) and all(i.ok for i in self.invariants)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def broken(self) -> list[str]:
        """The names of the invariants that did not hold."""
        return [i.name for i in self.invariants if not i.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seed": self.seed,
            "backend": self.backend,
            "duration_s": self.duration_s,
            "elapsed_s": round(self.elapsed_s, 1),
            "replicas": self.replicas,
            "executors": self.executors,
            "namespaces": self.namespaces,
            "chains": self.chains,
            "notes": self.notes,
            "faults": [f.to_dict() for f in self.faults],
            "figures": self.figures,
            "counters": self.counters,
            "invariants": [i.to_dict() for i in self.invariants],
            "error": self.error,
            "log_dir": self.log_dir,
            "metrics": self.metrics,
            "soak": self.soak,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    # -- tables ------------------------------------------------------------------------

    def print(self, console: Console) -> None:
        for note in self.notes:
            console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
        if self.faults:
            console.print(self._faults_table())
        console.print(self._figures_table())
        if self.soak is not None:
            console.print(self._soak_table())
        console.print(self._invariants_table())
        if self.error:
            console.print(f"[red]error:[/red] {self.error}", highlight=False)
        if self.log_dir:
            console.print(f"logs of the replicas and executors: {self.log_dir}", highlight=False)
        verdict = "[green]PASS[/green]" if self.ok else "[red]FAIL[/red]"
        console.print(
            f"{verdict}: seed {self.seed}, {self.elapsed_s:.1f} s (repeat with --seed {self.seed})",
            highlight=False,
        )

    def _faults_table(self) -> Table:
        table = Table("at", "fault", "target", "detail", title="faults")
        for f in self.faults:
            back = f", back after {f.back_after_s:.2f} s" if f.back_after_s is not None else ""
            table.add_row(f"{f.at_s:.1f} s", f.kind, f.target, f.detail + back)
        return table

    def _figures_table(self) -> Table:
        g, c = self.figures, self.counters
        table = Table("", "value", title=f"simulation: {self.backend}")

        def row(name: str, value: object) -> None:
            table.add_row(name, "n/a" if value is None else str(value))

        row("tasks created", g.get("tasks_created"))
        row("tasks completed", g.get("tasks_completed"))
        failed: dict[str, int] = g.get("tasks_failed") or {}
        row("tasks failed", sum(failed.values()))
        for reason, n in failed.items():
            row(f"  failed: {reason}", n)
        row("tasks reclaimed after a kill (reaped, claimed again)", g.get("tasks_reclaimed"))
        row("chain reorgs (tasks they orphaned)", f"{g.get('reorgs')} ({g.get('orphaned_tasks')})")
        row("completions refused as stale (fencing token)", c.get("stale_completion", 0))
        cut = g.get("connections_cut") or []
        if cut:
            row("client connections cut by each client-kill", ", ".join(map(str, cut)))
        row("executions", g.get("executions"))
        row("executions de-duplicated (redelivered, not run again)", c.get("deduplicated", 0))
        row("throughput (completed tasks/s)", g.get("throughput_per_s"))
        row("claim-to-complete latency p50 (ms, incl. the wait for finality)", g.get("latency_p50_ms"))
        row("claim-to-complete latency p99 (ms)", g.get("latency_p99_ms"))
        for t in g.get("takeovers", []):
            row(
                f"{t['owner']} killed: its {t['chains_held']} chain lease(s) taken over after (s)",
                t["chain_takeover_s"],
            )
            row(
                f"{t['owner']} killed: its {t['tasks_held']} task(s) taken over after (s)",
                t["task_takeover_s"],
            )
        resumed = g.get("writes_resumed_after_s", [])
        for fault, secs in zip(
            [f for f in self.faults if f.kind in ("restart-redis", "failover")], resumed, strict=False
        ):
            row(f"writes resumed after the {fault.kind} (s)", secs)
        return table

    def _soak_table(self) -> Table:
        soak = self.soak or {}
        table = Table("", "value", title="soak: samples and the flat check")
        settings = soak.get("store_settings", {})
        table.add_row(
            "store settings the soak changes", ", ".join(f"{k}: {v}" for k, v in _flat_items(settings))
        )
        table.add_row("fault schedule repeats every (s)", str(soak.get("fault_period_s")))
        table.add_row(
            "samples",
            f"{soak.get('samples')}, every {soak.get('sample_every_s')} s"
            + (f", written to {soak['samples_file']}" if soak.get("samples_file") else ""),
        )
        table.add_row(
            "warm-up (s)",
            f"{soak.get('warm_up_s')} (the store's windows filled after {soak.get('settle_s')} s)",
        )
        table.add_row("rule", str(soak.get("rule")))
        for name, text in summary_rows(soak.get("series", {})):
            table.add_row(name, text)
        return table

    def _invariants_table(self) -> Table:
        table = Table("invariant", "", "detail", title="verdict (from the store)")
        for inv in self.invariants:
            mark = "[green]ok[/green]" if inv.ok else "[red]BROKEN[/red]"
            table.add_row(inv.name, mark, inv.detail)
        return table


def _flat_items(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"tasks": {"retention_s": 5}}`` as ``[("tasks.retention_s", 5)]``."""
    items: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            items.extend(_flat_items(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items
