"""``simulate --metrics-port``: each replica and executor serves its process metrics on its own
port, the coordinator one NamespaceCollector per namespace on the first, whose final reading
matches the verdict's figures; without the option prometheus-client is not imported.

These run on the in-process fake (no redis-server, no Prometheus needed); a real Prometheus
scraping a simulation on a redis-server is in tests/metrics/test_end_to_end.py.
"""

from __future__ import annotations

import asyncio
import io
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner
from rich.console import Console

from ponos_redis._redis_server import HOST
from ponos_redis.cli import main
from ponos_redis.simulate import SimulationOptions, run_simulation

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")


def _scrape(url: str) -> dict[str, float]:
    """The ``ponos_*`` samples of ``url`` ({} when nothing answers there)."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as reply:
            text = reply.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return {}
    samples = {}
    for line in text.splitlines():
        if line.startswith("ponos_"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def _names(samples: dict[str, float]) -> set[str]:
    return {name.split("{", 1)[0] for name in samples}


def _owners(samples: dict[str, float]) -> set[str]:
    return {
        name.split('owner="', 1)[1].split('"', 1)[0]
        for name in samples
        if name.startswith("ponos_worker_tasks_total{")
    }


async def _until(console: io.StringIO, text: str, limit_s: float) -> str:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:  # bounded
        if text in console.getvalue():
            return console.getvalue()
        await asyncio.sleep(0.05)
    pytest.fail(f"no {text!r} within {limit_s} s:\n{console.getvalue()}")


@pytest.mark.timeout(90)
async def test_each_node_and_the_namespaces_are_served_and_the_final_reading_is_the_end_state() -> None:
    out = io.StringIO()
    options = SimulationOptions(
        memory=True, duration_s=4, seed=31, replicas=2, executors=1, metrics_port=0, metrics_linger_s=3
    )
    run = asyncio.create_task(run_simulation(options, console=Console(file=out, width=300), live=False))
    names: dict[str, set[str]] = {}
    owners: dict[str, set[str]] = {}
    try:
        text = await _until(out, "metrics: http", 30)
        lines = [line.split() for line in text.splitlines() if line.startswith("metrics: http")]
        endpoints = {words[2]: words[1] for words in lines}  # the namespaces', then each node's
        assert list(endpoints) == ["namespaces", "replica-1", "replica-2", "executor-1"]
        assert all(url.startswith(f"http://{HOST}:") for url in endpoints.values())
        nodes = {name: url for name, url in endpoints.items() if name != "namespaces"}

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "the run is over" not in out.getvalue():  # bounded
            for node, url in nodes.items():
                samples = await asyncio.to_thread(_scrape, url)
                names.setdefault(node, set()).update(_names(samples))
                owners.setdefault(node, set()).update(_owners(samples))
            await asyncio.sleep(0.1)
        await _until(out, "metrics: the run is over", 1)
        final = await asyncio.to_thread(_scrape, endpoints["namespaces"])
    finally:
        report = await asyncio.wait_for(run, 60)
    assert report.ok, report.to_json()
    assert report.metrics is not None
    assert report.metrics["replicas"] == {
        name: url.removeprefix("http://").removesuffix("/metrics")
        for name, url in nodes.items()
        if name.startswith("replica")
    }

    # Each node served its own process metrics, and no namespace gauge.
    for node in ("replica-1", "replica-2"):
        assert {"ponos_worker_tasks_total", "ponos_poller_lease_held"} <= names[node], names
    assert "ponos_executor_tasks_total" in names["executor-1"], names
    for node in nodes:
        assert "ponos_store_operation_duration_seconds_count" in names[node]  # instrument()
        assert "ponos_tasks" not in names[node]
    # The replica killed during the run came back on the same port, as a new owner.
    [kill] = report.faults
    assert kill.kind == "kill-replica"
    assert owners[kill.target] == {f"{kill.target}.1", f"{kill.target}.2"}

    # The coordinator's final reading is the end state the verdict read.
    [namespace] = report.namespaces
    statuses = ("pending", "processing", "completed", "failed")
    tasks = {
        status: final[f'ponos_tasks{{namespace="{namespace}",status="{status}"}}'] for status in statuses
    }
    figures = report.figures
    assert tasks == {
        "pending": 0,
        "processing": 0,
        "completed": figures["tasks_completed"],
        "failed": sum(figures["tasks_failed"].values()),
    }
    saved = final[f'ponos_events_total{{kind="task.saved",namespace="{namespace}"}}']
    assert saved == figures["tasks_created"]


def test_a_metrics_port_in_use_is_refused_before_anything_starts() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["simulate", "--memory", "--metrics-port", str(port - 1)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: InvalidInputError: --metrics-port ")
    match = re.search(r"and ([0-9, ]+) is in use;", result.output)
    assert match is not None, result.output
    busy = {int(part) for part in match.group(1).split(", ")}
    assert port in busy, result.output


@pytest.mark.timeout(60)
def test_without_metrics_port_prometheus_client_is_not_imported() -> None:
    script = (
        "import asyncio, sys\n"
        "from ponos_redis.simulate import SimulationOptions, run_simulation\n"
        "options = SimulationOptions(memory=True, duration_s=2, seed=5, replicas=2, executors=1)\n"
        "report = asyncio.run(run_simulation(options, live=False))\n"
        "print(report.ok, report.metrics, 'prometheus_client' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True", "None", "False"], done.stderr[-3000:]
