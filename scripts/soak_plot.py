#!/usr/bin/env python3
"""Plot the samples of a soak (``ponos-redis simulate --soak --soak-samples FILE``) as a PNG.

    python scripts/soak_plot.py SAMPLES.jsonl [--report REPORT.json] [--out soak.png]

Three panels over the run's time: the Redis ``used_memory`` (MiB), its keys
(``DBSIZE``), and the resident memory (MiB) of the coordinator and of every
replica and executor process. With ``--report`` (the run's ``--json`` output)
the warm-up, the two halves the flat check compares and the faults are marked,
and the title says whether the check held.

Needs matplotlib (``pip install matplotlib``), which the library does not depend on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def load_samples(path: Path) -> list[dict[str, Any]]:
    """The samples of a samples file, one JSON object per line (a line cut short is skipped)."""
    samples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            samples.append(json.loads(line))
        except ValueError:
            continue
    return samples


def _length(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=Path, help="the --soak-samples file (JSON lines)")
    parser.add_argument(
        "--report", type=Path, help="the run's --json report: marks warm-up, halves and faults"
    )
    parser.add_argument("--out", type=Path, default=Path("soak.png"), help="the PNG to write [soak.png]")
    parser.add_argument("--title", default=None, help="the plot's title")
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("soak_plot.py needs matplotlib: pip install matplotlib", file=sys.stderr)
        return 2

    samples = load_samples(args.samples)
    if not samples:
        print(f"no samples in {args.samples}", file=sys.stderr)
        return 1
    report = json.loads(args.report.read_text(encoding="utf-8")) if args.report else None
    minutes = [s["t"] / 60 for s in samples]

    fig, (ax_mem, ax_keys, ax_rss) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    mem = [
        (m, s["used_memory"] / 2**20) for m, s in zip(minutes, samples, strict=True) if s.get("used_memory")
    ]
    keys = [(m, s["keys"]) for m, s in zip(minutes, samples, strict=True) if s.get("keys") is not None]
    if mem:
        ax_mem.plot(*zip(*mem, strict=True), color="tab:red", linewidth=1)
    if keys:
        ax_keys.plot(*zip(*keys, strict=True), color="tab:blue", linewidth=1)
    ax_mem.set_ylabel("Redis used_memory (MiB)")
    ax_keys.set_ylabel("Redis keys (DBSIZE)")
    names = sorted({name for s in samples for name in s.get("rss_kib", {})})
    for name in names:
        points = [
            (m, s["rss_kib"][name] / 1024)
            for m, s in zip(minutes, samples, strict=True)
            if name in s["rss_kib"]
        ]
        ax_rss.plot(*zip(*points, strict=True), linewidth=1, label=name)
    ax_rss.set_ylabel("RSS (MiB)")
    ax_rss.set_xlabel("minutes since the chain started")
    if names:
        ax_rss.legend(loc="lower right", fontsize=8, ncol=3)
    for ax in (ax_mem, ax_keys, ax_rss):
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)

    title = args.title or f"soak: {len(samples)} samples over {minutes[-1]:.1f} min"
    if report is not None:
        soak = report.get("soak") or {}
        end = report["duration_s"] / 60
        warm = soak.get("warm_up_s", 0) / 60
        middle = (warm + end) / 2
        for ax in (ax_mem, ax_keys, ax_rss):
            ax.axvspan(0, warm, color="grey", alpha=0.12)
            ax.axvline(middle, color="grey", linestyle=":", linewidth=1)
            for fault in report.get("faults", []):
                color = {
                    "restart-redis": "tab:red",
                    "kill-replica": "tab:orange",
                    "client-kill": "tab:purple",
                }
                ax.axvline(
                    fault["at_s"] / 60, color=color.get(fault["kind"], "black"), alpha=0.25, linewidth=0.8
                )
        flat = next((i for i in report.get("invariants", []) if i["name"].startswith("memory, keys")), None)
        verdict = "" if flat is None else (" - flat: held" if flat["ok"] else " - flat: BROKEN")
        settings = soak.get("store_settings", {})
        retention = settings.get("tasks", {}).get("retention_s")
        title = args.title or (
            f"ponos-redis simulate --soak, {_length(report['duration_s'])}, "
            f"retention {retention:g} s{verdict}\n"
            "grey: warm-up; dotted: the halves the flat check compares; "
            "vertical lines: faults (red restart-redis, orange kill-replica, purple client-kill)"
        )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
