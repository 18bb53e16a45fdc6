"""``ponos-redis bench --quick`` runs end to end and prints its tables.

No figure is checked: benchmarks are not tests (docs/BENCHMARKS.md has the figures and
the command that produced them). Only that every part ran and reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ponos_redis._redis_server import redis_server_available

pytestmark = pytest.mark.timeout(120)


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("ponos-redis")
    return subprocess.run(
        [str(script), "bench", "--quick", *args], capture_output=True, text=True, timeout=110, check=False
    )


@pytest.mark.skipif(not redis_server_available(), reason="redis-server is not on PATH")
def test_bench_quick_prints_every_operation_beside_its_baseline_and_the_goals() -> None:
    done = _bench("--callers", "8")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    print(out)  # the table, for whoever runs the test with -s
    for part in ("save_task", "get_task", "claim_tasks(1)", "complete_task", "save_tasks(100)",
                 "list_pending_tasks", "count_tasks", "claim_tasks(100)", "lifecycle", "reap_expired_leases",
                 "restart", "memory per stored task", "goals", "appendfsync"):  # fmt: skip
        assert part in out, part


def test_bench_quick_on_the_fake_alone_prints_json() -> None:
    done = _bench("--no-redis", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    operations = {row["operation"].split(",")[0] for row in report["rows"]}
    assert {"save_task", "get_task", "claim_tasks(1)", "complete_task"} <= operations
    assert all(row["backend"] == "memory" for row in report["rows"])
    assert report["goals"]
