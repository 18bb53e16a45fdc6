"""A soak (``simulate --soak``): the store's windows it shortens, what it samples, and the
flat check.

The store settings
------------------

A namespace's memory is bounded by its windows: finished tasks live
``tasks.retention_s`` (default a day), the executors' de-duplication markers
``processed_ttl_s`` (a week), the event stream keeps ``events_maxlen`` entries
(100,000), each chain ``block_window`` blocks (10,000). At the simulation's rate
(two chains, a block every 0.25 s) none of those defaults is reached within an
hour, so memory would grow through any soak of reasonable length, by design.
A soak therefore shortens them to ``--retention R`` seconds (default 120 s), and
only them (:func:`soak_store_settings`):

- ``tasks.retention_s`` = R;
- ``processed_ttl_s`` = the larger of R and the longest a task can be delivered
  again (``max_attempts`` leases, each followed by a reaper pass): a marker that
  expired earlier would let an executor run a redelivered task twice;
- ``events_maxlen`` = about the events R seconds write (12 per block per chain:
  a block's event and its tasks' saved, claimed and completed), at least 1,000;
- ``block_window`` = the blocks R seconds produce, at least 100.

That is what a service with a high task rate sets too: memory then levels off
at rate x window (see the README).

What a soak samples
-------------------

Every ``sample_every_s`` seconds: the Redis ``used_memory`` and ``DBSIZE``
(summed over a cluster's nodes), and the resident memory (``VmRSS`` of
``/proc/<pid>/status``) of the coordinator and of every replica and executor
process (a restarted one under the same name). Each sample is a JSON line of
the samples file (``--soak-samples``), written as it is taken.

The flat check
--------------

Once every window above has filled (the *settle* time: the longest of
``retention_s`` plus a reaper pass and ``processed_ttl_s``, plus one sample
interval), memory must stop growing. The samples after a warm-up of
``max(run / 3, settle)`` seconds are split into two halves by time, *earlier*
and *later* (with a run of at least three settle times: the middle and the
last third of the run). A series is flat when

    max(later) <= max(earlier) * (1 + 5 %) + allowance

with an allowance of 1 MiB for ``used_memory``, 100 keys for ``DBSIZE`` and
2 MiB for a process's RSS (noise: allocator arenas, client buffers, a restarted
process warming up). Comparing maxima, not the last values, keeps a restart
that happened to free memory (a Redis reloading its AOF, a killed replica)
from hiding a growth. A series with no sample in either half is not judged
(an in-process run has no child processes); a run too short to have both
halves fails the check.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._options import SimulationOptions
from ._verdict import Invariant

__all__ = [
    "FLAT",
    "FLAT_ALLOWANCE",
    "FLAT_PERCENT",
    "FLAT_RULE",
    "Sample",
    "SampleWriter",
    "SoakPlan",
    "judge_flat",
    "rss_kib",
    "soak_plan",
    "summary_rows",
]

FLAT = "memory, keys and every process's RSS stayed flat once the windows filled"
FLAT_PERCENT = 5.0
MIB = 1024 * 1024
# Per series kind: the absolute allowance, in the series' unit (bytes, keys, KiB).
FLAT_ALLOWANCE = {"used_memory": MIB, "keys": 100, "rss": 2 * 1024}
FLAT_RULE = (
    f"after a warm-up of max(run/3, settle), max(later half) <= max(earlier half) * "
    f"{1 + FLAT_PERCENT / 100:.2f} + allowance (used_memory 1 MiB, keys 100, RSS 2 MiB)"
)
_EVENTS_PER_BLOCK = 12  # a block's chain.advanced, and its tasks' saved, claimed, completed
_MIN_EVENTS_MAXLEN = 1_000
_MIN_BLOCK_WINDOW = 100
_MAX_ATTEMPTS = 5  # tasks.max_attempts stays at its default


@dataclass(frozen=True)
class SoakPlan:
    """A soak's store settings and the times its flat check works with."""

    retention_s: float
    processed_ttl_s: float
    events_maxlen: int
    block_window: int
    settle_s: float
    warm_up_s: float

    def store_settings(self) -> dict[str, Any]:
        """The ``storage:`` keys the soak sets (everything else keeps its default)."""
        return {
            "tasks": {"retention_s": self.retention_s},
            "processed_ttl_s": self.processed_ttl_s,
            "events_maxlen": self.events_maxlen,
            "block_window": self.block_window,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "store_settings": self.store_settings(),
            "settle_s": round(self.settle_s, 2),
            "warm_up_s": round(self.warm_up_s, 2),
        }


def soak_plan(options: SimulationOptions, *, task_lease_s: float, reaper_interval_s: float) -> SoakPlan:
    """The store settings and flat-check times of a soak of ``options``."""
    retention = options.soak_retention_s
    redelivery = _MAX_ATTEMPTS * (task_lease_s + reaper_interval_s)
    processed_ttl = max(retention, redelivery)
    blocks = math.ceil(retention / options.block_time_s)
    events = max(_MIN_EVENTS_MAXLEN, blocks * options.chains * _EVENTS_PER_BLOCK)
    settle = max(retention + reaper_interval_s, processed_ttl) + options.sample_interval_s
    return SoakPlan(
        retention_s=retention,
        processed_ttl_s=processed_ttl,
        events_maxlen=events,
        block_window=max(_MIN_BLOCK_WINDOW, blocks),
        settle_s=settle,
        warm_up_s=max(options.duration_s / 3, settle),
    )


def rss_kib(pid: int) -> int | None:
    """The resident memory of process ``pid`` in KiB (``VmRSS``), or None (gone, no /proc)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class Sample:
    """One sample: ``t`` seconds after the chain started."""

    t: float
    used_memory: int | None = None
    keys: int | None = None
    rss_kib: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 2),
            "used_memory": self.used_memory,
            "keys": self.keys,
            "rss_kib": self.rss_kib,
        }


class SampleWriter:
    """The samples file: one JSON object per line, flushed as each sample is taken."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._file: IO[str] | None = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def write(self, sample: Sample) -> None:
        if self._file is not None:
            self._file.write(json.dumps(sample.to_dict()) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _series(samples: Sequence[Sample]) -> dict[str, tuple[str, list[tuple[float, int]]]]:
    """Each series by name: its kind (for the allowance) and its ``(t, value)`` points."""
    series: dict[str, tuple[str, list[tuple[float, int]]]] = {}

    def add(name: str, kind: str, t: float, value: int | None) -> None:
        if value is not None:
            series.setdefault(name, (kind, []))[1].append((t, value))

    for s in samples:
        add("redis used_memory (bytes)", "used_memory", s.t, s.used_memory)
        add("redis keys (DBSIZE)", "keys", s.t, s.keys)
        for process, kib in sorted(s.rss_kib.items()):
            add(f"RSS {process} (KiB)", "rss", s.t, kib)
    return series


def judge_flat(
    samples: Sequence[Sample], *, warm_up_s: float, end_s: float
) -> tuple[Invariant, dict[str, Any]]:
    """The flat check over ``samples`` (module docstring), and each series' summary."""
    inv = Invariant(FLAT)
    middle = (warm_up_s + end_s) / 2
    summary: dict[str, Any] = {}
    if end_s - warm_up_s <= 0:
        inv.fail(f"the run ({end_s:.0f} s) ends before the warm-up ({warm_up_s:.0f} s) is over")
    for name, (kind, points) in _series(samples).items():
        values = [v for _, v in points]
        earlier = [v for t, v in points if warm_up_s < t <= middle]
        later = [v for t, v in points if t > middle]
        entry: dict[str, Any] = {
            "first": values[0],
            "min": min(values),
            "max": max(values),
            "last": values[-1],
            "earlier_max": max(earlier) if earlier else None,
            "later_max": max(later) if later else None,
            "allowance": FLAT_ALLOWANCE[kind],
            "flat": None,
        }
        summary[name] = entry
        if not earlier or not later:
            continue
        inv.checked += 1
        bound = max(earlier) * (1 + FLAT_PERCENT / 100) + FLAT_ALLOWANCE[kind]
        entry["growth_pct"] = (
            round(100 * (max(later) - max(earlier)) / max(earlier), 1) if max(earlier) else None
        )
        entry["flat"] = max(later) <= bound
        if not entry["flat"]:
            inv.fail(
                f"{name}: later max {max(later)} > earlier max {max(earlier)} "
                f"* {1 + FLAT_PERCENT / 100:.2f} + {FLAT_ALLOWANCE[kind]}"
            )
    if not inv.checked and inv.ok:
        inv.fail("no series had samples in both halves after the warm-up")
    return inv, summary


def summary_rows(series: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The report's rows for each series: its name, and first / max earlier / max later / last."""

    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{value:,}"

    rows = []
    for name, s in series.items():
        verdict = {True: "flat", False: "GREW", None: "not judged"}[s["flat"]]
        rows.append(
            (
                name,
                f"first {fmt(s['first'])}, earlier max {fmt(s['earlier_max'])}, "
                f"later max {fmt(s['later_max'])}, last {fmt(s['last'])}: {verdict}",
            )
        )
    return rows
