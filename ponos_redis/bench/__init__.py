"""``ponos-redis bench``: each store operation beside a raw baseline, measured in one run.

The Redis backend is measured against a bare ``redis.asyncio`` client running
minimal Lua scripts on the same server (and ``redis-benchmark`` for the
ceiling of a save, when installed); the fake against a plain dict. Ours and
the baseline run interleaved, so the ratio holds even on a busy machine.
Figures and the command that produced them are in ``docs/BENCHMARKS.md``.
"""

from ._report import print_report, write_chart
from ._run import BenchOptions, BenchReport, Goal, Row, run_bench

__all__ = ["BenchOptions", "BenchReport", "Goal", "Row", "print_report", "run_bench", "write_chart"]
