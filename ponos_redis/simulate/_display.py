"""The live view of a run (rich.live), shown on a terminal unless ``--json``.

It shows what the coordinator knows while the run goes: the phase, the
chain heads, each process and what it reports, the task counts as the store
tells them (polled), and the faults so far. None of it feeds the verdict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = ["Display", "LiveState", "ProcessView"]


@dataclass
class ProcessView:
    name: str
    role: str
    pid: int | None = None
    state: str = "starting"
    incarnation: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    leases: set[str] = field(default_factory=set)


@dataclass
class LiveState:
    phase: str = "starting"
    started: float = field(default_factory=time.monotonic)
    chain_started: float | None = None
    duration_s: float = 0.0
    heads: dict[str, int] = field(default_factory=dict)
    processes: dict[str, ProcessView] = field(default_factory=dict)
    store_counts: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    title: str = ""


class Display:
    """A rich.live view of a :class:`LiveState`; does nothing when disabled."""

    def __init__(self, state: LiveState, console: Console, *, enabled: bool) -> None:
        self.state = state
        self._console = console
        self._live: Live | None = None
        self._enabled = enabled

    def __enter__(self) -> Display:
        if self._enabled:
            self._live = Live(
                get_renderable=self._render, console=self._console, refresh_per_second=4, transient=True
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def _render(self) -> RenderableType:
        s = self.state
        now = time.monotonic()
        if s.chain_started is not None:
            run = max(0.0, min(now - s.chain_started, s.duration_s))
            bar = int(30 * run / s.duration_s) if s.duration_s else 30
            clock = f"{run:5.1f} / {s.duration_s:.0f} s [{'#' * bar}{'.' * (30 - bar)}]"
        else:
            clock = f"{now - s.started:5.1f} s"
        header = Text.assemble(
            ("ponos-redis simulate ", "bold"), (s.title + "  ", ""), (s.phase, "cyan"), ("  " + clock, "")
        )
        procs = Table("process", "pid", "state", "chain leases", "claimed", "completed", "executed", box=None)
        for p in s.processes.values():
            state = p.state if p.incarnation <= 1 else f"{p.state} (#{p.incarnation})"
            style = "red" if p.state == "killed" else ""
            procs.add_row(
                p.name,
                str(p.pid or "-"),
                Text(state, style=style),
                ", ".join(sorted(p.leases)) or "-",
                str(p.counts.get("claimed", 0)),
                str(p.counts.get("completed", 0)),
                str(p.counts.get("executed", 0)),
            )
        heads = "  ".join(f"{k}: {v}" for k, v in sorted(s.heads.items())) or "-"
        counts = "  ".join(f"{k} {v}" for k, v in s.store_counts.items()) or "(waiting for the store)"
        extra = "  ".join(f"{k} {v}" for k, v in sorted(s.counters.items()) if v)
        lines: list[RenderableType] = [
            header,
            Text(f"chain heads  {heads}"),
            Text(f"store        {counts}"),
        ]
        if extra:
            lines.append(Text(f"reported     {extra}"))
        lines.append(procs)
        for fault in s.faults[-6:]:
            lines.append(Text(f"fault  {fault}", style="yellow"))
        return Group(*lines)
