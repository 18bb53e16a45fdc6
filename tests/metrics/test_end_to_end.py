"""For real, in processes: a real ``prometheus`` scrapes a workload's /metrics and sees
the tasks by status that ``count_tasks()`` returns; ``ponos-redis metrics serve`` serves
a namespace on loopback and stops on SIGTERM.

The workload (ponos_redis/metrics/_workload.py) is two replicas, each with a TaskWorker,
a Reaper and a ChainPoller on a private redis-server, every store instrumented, and one
NamespaceCollector, as ``metrics serve`` runs it. (The simulation's own ``--metrics-port``
is not wired yet.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")

from prometheus_client import CollectorRegistry

from ponos_redis import AggregatorStore, TaskStatus, open_aggregator_store
from ponos_redis._redis_server import RedisServer, redis_server_available
from ponos_redis.metrics import start_metrics_server
from ponos_redis.metrics._prometheus import PrometheusServer, prometheus_available
from ponos_redis.metrics._workload import Workload, WorkloadSettings
from ponos_redis.testing import make_tasks

CLI = str(Path(sys.executable).with_name("ponos-redis"))

needs_redis = pytest.mark.skipif(not redis_server_available(), reason="redis-server is not on PATH")
needs_prometheus = pytest.mark.skipif(
    not prometheus_available(), reason="prometheus is not on PATH (Debian package prometheus)"
)


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer(extra={"appendonly": "yes", "maxmemory-policy": "noeviction"}) as redis:
        yield redis


@needs_redis
@needs_prometheus
@pytest.mark.timeout(180)
async def test_prometheus_sees_the_tasks_by_status_that_count_tasks_returns(server: RedisServer) -> None:
    registry = CollectorRegistry()

    async def open_store() -> AggregatorStore:
        return await open_aggregator_store(server.url, namespace="e2e-prometheus")

    settings = WorkloadSettings(stall_at_s=1.0, collect_interval_s=0.25, fail_ratio=0.1)
    with (
        start_metrics_server(0, registry) as metrics,
        PrometheusServer({"ponos": [f"127.0.0.1:{metrics.port}"]}, scrape_interval_s=0.5) as prometheus,
    ):
        assert metrics.host == "127.0.0.1"
        async with Workload(open_store, registry, settings) as workload:
            await workload.run(6.0)
            stopped = time.time()
            counts = await workload.stores[0].count_tasks()
            assert counts[TaskStatus.COMPLETED] > 0
            expected = {status.value: float(n) for status, n in counts.items()}
            seen: dict[str, float] = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # bounded: until a scrape after the stop is stored
                fresh = prometheus.query(f"ponos_tasks and timestamp(ponos_tasks) > {stopped + 0.5:.3f}")
                seen = {item["metric"]["status"]: float(item["value"][1]) for item in fresh}
                if len(seen) == len(expected):
                    break
                await asyncio.sleep(0.25)
            assert seen == expected, prometheus.log_tail()

            # The per-process series made it too, through the same scrape.
            [completed] = prometheus.query('sum(ponos_worker_tasks_total{outcome="completed"})')
            workers = [s for s in workload.services if type(s).__name__ == "TaskWorker"]
            assert float(completed["value"][1]) == sum(getattr(w, "completed", 0) for w in workers)
            [claims] = prometheus.query(
                'sum(ponos_store_operation_duration_seconds_count{operation="claim_tasks",backend="redis"})'
            )
            assert float(claims["value"][1]) > 0
            [stale] = prometheus.query("sum(ponos_stale_completions_total)")
            assert float(stale["value"][1]) >= workload.stale_refusals


def _scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5.0) as reply:
        text = reply.read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ponos_")
    }


async def _save_then_claim(url: str, namespace: str, *, save: int = 0, claim: int = 0) -> None:
    async with open_aggregator_store(url, namespace=namespace) as store:
        if save:
            await store.save_tasks(make_tasks(save))
        if claim:
            await store.claim_tasks("r1", limit=claim, lease_s=30)


@needs_redis
@pytest.mark.timeout(120)
def test_metrics_serve_reports_a_namespace_and_stops_on_sigterm(server: RedisServer) -> None:
    namespace = "e2e-serve"
    asyncio.run(_save_then_claim(server.url, namespace, save=7))
    command = [
        CLI, "metrics", "serve", "--store", server.url,
        "--namespace", namespace, "--port", "0", "--interval", "0.2", "--task-sla-s", "45", "--json-logs",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "serving http://127.0.0.1:PORT/metrics for namespace(s) ..."
        assert line.startswith("serving http://127.0.0.1:"), line
        url = line.split()[1]
        samples = _scrape(url)
        assert samples[f'ponos_tasks{{namespace="{namespace}",status="pending"}}'] == 7
        assert samples[f'ponos_task_sla_seconds{{namespace="{namespace}"}}'] == 45
        asyncio.run(_save_then_claim(server.url, namespace, claim=3))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # bounded: the next reading
            samples = _scrape(url)
            if samples[f'ponos_tasks{{namespace="{namespace}",status="processing"}}'] == 3:
                break
            time.sleep(0.1)
        assert samples[f'ponos_tasks{{namespace="{namespace}",status="pending"}}'] == 4
        assert samples[f'ponos_events_total{{kind="task.claimed",namespace="{namespace}"}}'] == 3
    finally:
        os.kill(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    # The server has AOF on but appendfsync everysec: the default policy (aof) warns, as JSON.
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(event.get("event") == "durability_warning" for event in events), err


def test_metrics_serve_without_a_store_is_a_usage_error() -> None:
    done = subprocess.run(
        [CLI, "metrics", "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PONOS_STORE"},
    )
    assert done.returncode == 2
    assert "--store" in done.stderr
