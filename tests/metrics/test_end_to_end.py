"""For real, in processes: a real ``prometheus`` scrapes a workload's /metrics and sees
the tasks by status that ``count_tasks()`` returns; ``ponos-redis metrics serve`` serves
a namespace on loopback and stops on SIGTERM.

The workload (ponos_redis/metrics/_workload.py) is two replicas, each with a TaskWorker,
a Reaper and a ChainPoller on a private redis-server, every store instrumented, and one
NamespaceCollector, as ``metrics serve`` runs it. ``ponos-redis simulate --metrics-port``
is scraped the same way: its replica and executor processes (one killed and restarted on
its port) and the coordinator's namespace endpoint, whose final reading it keeps serving
(``--metrics-linger``) until Prometheus has it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")

from prometheus_client import CollectorRegistry

from ponos_redis import AggregatorStore, TaskStatus, open_aggregator_store
from ponos_redis._redis_server import HOST, RedisServer, find_free_port, redis_server_available
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


def test_metrics_serve_reports_several_namespaces_on_one_port(server: RedisServer) -> None:
    """Namespaces share metric names: served on one port, their families are merged."""
    asyncio.run(_save_then_claim(server.url, "e2e-many-a", save=2))
    asyncio.run(_save_then_claim(server.url, "e2e-many-b", save=5))
    command = [
        CLI, "metrics", "serve", "--store", server.url,
        "-n", "e2e-many-a", "-n", "e2e-many-b", "--port", "0", "--interval", "0.2",
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
        line = process.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), line
        samples = _scrape(line.split()[1])
        assert samples['ponos_tasks{namespace="e2e-many-a",status="pending"}'] == 2
        assert samples['ponos_tasks{namespace="e2e-many-b",status="pending"}'] == 5
    finally:
        os.kill(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err


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


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that were free a moment ago."""
    for _ in range(50):
        base = find_free_port()
        if base + count > 65535:
            continue
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind((HOST, port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    pytest.fail(f"no {count} consecutive free ports on {HOST}")


def _wait_for_line(path: Path, prefix: str, process: subprocess.Popen[str], limit_s: float) -> list[str]:
    """The lines of ``path`` once one starts with ``prefix`` (bounded; fails if the process ends)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        lines = path.read_text(errors="replace").splitlines()
        if any(line.startswith(prefix) for line in lines):
            return lines
        if process.poll() is not None:
            pytest.fail(f"simulate exited with {process.returncode} first:\n" + "\n".join(lines[-30:]))
        time.sleep(0.2)
    pytest.fail(f"no {prefix!r} line within {limit_s} s:\n{path.read_text(errors='replace')[-3000:]}")


async def _count_tasks(url: str, namespace: str) -> dict[TaskStatus, int]:
    async with open_aggregator_store(url, namespace=namespace) as store:
        return await store.count_tasks()


def _by_label(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {item["metric"][label]: float(item["value"][1]) for item in result}


@needs_redis
@needs_prometheus
@pytest.mark.timeout(240)
def test_prometheus_scraping_a_simulation_sees_the_tasks_by_status_that_count_tasks_returns(
    server: RedisServer, tmp_path: Path
) -> None:
    """``simulate --metrics-port P`` on a private redis-server, with a replica killed and
    restarted: after the run, the ``ponos_tasks`` series Prometheus scraped from the
    coordinator equal ``count_tasks()``, in one copy; every replica and executor was
    scraped on its own port."""
    replicas, executors = 2, 1
    base = _free_ports(1 + replicas + executors)
    nodes = [f"{HOST}:{base + i}" for i in range(1, 1 + replicas + executors)]
    targets = {"ponos-namespace": [f"{HOST}:{base}"], "ponos-process": nodes}
    stderr = tmp_path / "simulate.err"
    command = [
        CLI, "simulate", "--duration", "8", "--seed", "4243", "--replicas", str(replicas),
        "--executors", str(executors), "--redis-url", server.url,
        "--metrics-port", str(base), "--metrics-linger", "90", "--json",
    ]  # fmt: skip
    with PrometheusServer(targets, scrape_interval_s=0.5) as prometheus, stderr.open("w") as err:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            lines = _wait_for_line(stderr, "metrics: the run is over", process, limit_s=150)
            # The endpoints were printed at the start: the namespaces on P, the nodes after it.
            endpoints = [line.split()[1] for line in lines if line.startswith("metrics: http")]
            assert endpoints == [f"http://{HOST}:{base + i}/metrics" for i in range(len(nodes) + 1)]

            # The run is over and nothing writes any more: read count_tasks() now.
            [namespace] = {item["metric"]["namespace"] for item in prometheus.query("ponos_tasks")}
            counts = asyncio.run(_count_tasks(server.url, namespace))
            read_at = time.time()
            assert counts[TaskStatus.COMPLETED] > 0
            expected = {status.value: float(n) for status, n in counts.items()}
            seen: dict[str, float] = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # bounded: until a scrape after that read is stored
                fresh = prometheus.query(f"ponos_tasks and timestamp(ponos_tasks) > {read_at:.3f}")
                seen = _by_label(fresh, "status")
                if len(seen) == len(expected):
                    break
                time.sleep(0.25)
            assert seen == expected, prometheus.log_tail()

            # One copy of the namespace gauges: only the coordinator's endpoint has them.
            jobs = prometheus.query("count by (job) (last_over_time(ponos_tasks[10m]))")
            assert _by_label(jobs, "job") == {"ponos-namespace": float(len(expected))}
            # Its event counters saw every transition, whichever replica made it.
            events = _by_label(prometheus.query(f'ponos_events_total{{namespace="{namespace}"}}'), "kind")
            assert events["task.saved"] == sum(expected.values())
            assert events["task.completed"] == expected["completed"]

            # Every replica and executor was scraped on its own port.
            up = prometheus.query('max_over_time(up{job="ponos-process"}[10m])')
            assert _by_label(up, "instance") == dict.fromkeys(nodes, 1.0)
            [completed] = prometheus.query(
                'sum(max_over_time(ponos_worker_tasks_total{outcome="completed"}[10m]))'
            )  # one series per incarnation (the owner): a killed replica's last scrape counts
            assert 0 < float(completed["value"][1]) <= expected["completed"]
            [claims] = prometheus.query(
                "sum(max_over_time(ponos_store_operation_duration_seconds_count"
                '{operation="claim_tasks",backend="redis"}[10m]))'
            )
            assert float(claims["value"][1]) > 0
            [executed] = prometheus.query(
                'sum(max_over_time(ponos_executor_tasks_total{outcome="executed"}[10m]))'
            )
            assert float(executed["value"][1]) > 0
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)  # ends the linger: the report follows
            try:
                out, _ = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the group this test made
                out, _ = process.communicate()
    assert process.returncode == 0, f"{out}\n{stderr.read_text()[-3000:]}"
    report = json.loads(out)
    assert report["ok"] is True
    assert report["namespaces"] == [namespace]
    assert [f["kind"] for f in report["faults"]] == ["kill-replica"]
    assert report["metrics"] == {
        "namespaces": f"{HOST}:{base}",
        "replicas": {f"replica-{i + 1}": f"{HOST}:{base + 1 + i}" for i in range(replicas)},
        "executors": {f"executor-{j + 1}": f"{HOST}:{base + 1 + replicas + j}" for j in range(executors)},
        "linger_s": 90.0,
    }
