"""The alert rules, their unit tests, the Prometheus config and the Grafana
dashboard name only metrics that the code or the redis exporter exports; the
catalog is exactly what the code exposes, and the docs list all of it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")

from _metrics_names import DOCKER, ROOT, exporter_names, metric_names, ponos_samples
from prometheus_client import CollectorRegistry

from ponos_redis.backends.memory import MemoryAggregatorStore, MemoryExecutorStore
from ponos_redis.metrics import CATALOG, NamespaceCollector, RuntimeCollector, StoreMetrics, instrument
from ponos_redis.models import Task
from ponos_redis.runtime import ChainPoller, ExecutorRuntime, FakeChain, Reaper, TaskWorker
from ponos_redis.testing import AVS

ALERTS = DOCKER / "alerts.yml"
ALERT_TESTS = ROOT / "tests" / "metrics" / "alerts_test.yml"
PROMETHEUS_CONFIG = DOCKER / "prometheus.yml"
DASHBOARD = DOCKER / "grafana" / "ponos-redis.json"
DOC = ROOT / "docs" / "observability.md"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not on PATH (Debian package prometheus; scripts/dev test installs it)",
)


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    done = _promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_unit_tests_of_every_alert_pass() -> None:
    done = _promtool("test", "rules", str(ALERT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_promtool_checks_the_prometheus_config() -> None:
    done = _promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts == fired
    assert len(alerts) >= 12


def test_the_metric_name_parser() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, operation) (rate(x_bucket{namespace=~"$ns"}[5m]))) '
        '> on (instance) group_left y and time() - z offset 5m unless count by (role) (w{role="a"})'
    )
    assert metric_names(expr) == {"x_bucket", "y", "z", "w"}


def _names_used() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for rule in _rules():
        used[f"alert {rule['alert']}"] = metric_names(rule["expr"])
    for panel in _panels():
        used[f"panel {panel['title']!r}"] = {n for t in panel["targets"] for n in metric_names(t["expr"])}
    return used


def test_rules_and_dashboard_name_only_exported_metrics() -> None:
    ours, exporter = ponos_samples(), exporter_names()
    for where, names in _names_used().items():
        assert names, f"{where} names no metric"
        for name in names:
            if name.startswith("redis_"):
                assert name in exporter, f"{where}: {name} is not in docker/redis-exporter-metrics.txt"
            else:
                assert name in ours, f"{where}: {name} is exported by no code"


def test_every_exporter_metric_of_the_list_is_used() -> None:
    used = set().union(*_names_used().values())
    assert exporter_names() <= used


def test_the_dashboard_has_a_panel_for_every_metric() -> None:
    used = {name for names in _names_used().values() for name in names}
    for metric in CATALOG:
        assert used & set(metric.samples), f"no panel shows {metric.name}"
    exprs = {p["title"]: [t["expr"] for t in p["targets"]] for p in _panels()}
    assert len(exprs) == len(_panels()), "panel titles are unique"


async def _everything(registry: CollectorRegistry) -> list[Any]:
    store = instrument(MemoryAggregatorStore("catalog"), registry, backend="redis")
    executor_store = MemoryExecutorStore("catalog")
    chain = FakeChain(1, seed=1, avs_address=AVS, reorg_every=None)

    async def nothing(claimed: Any) -> None:
        return None

    async def perform(task: Task) -> bytes:
        return b""

    components: list[ChainPoller | TaskWorker | Reaper | ExecutorRuntime] = [
        ChainPoller(store, chain, "r1"),
        TaskWorker(store, "r1", nothing),
        Reaper(store, "r1"),
        ExecutorRuntime(executor_store, "0x" + "ef" * 20, performer=perform),
    ]
    collectors: list[Any] = [RuntimeCollector(*components, registry=registry)]
    collectors.append(NamespaceCollector(store, registry=registry, task_sla_s=1, required_replicas=0))
    return collectors


async def test_the_catalog_is_exactly_what_the_code_exposes() -> None:
    registry = CollectorRegistry()
    collectors = await _everything(registry)
    try:
        families = {family.name: family for family in registry.collect()}
    finally:
        for collector in collectors:
            collector.unregister()
        StoreMetrics.of(registry).stop_observing_retries()
    expected = {metric.base: metric for metric in CATALOG}
    assert set(families) == set(expected)
    for name, metric in expected.items():
        assert families[name].type == metric.kind, name
        assert families[name].documentation == metric.help, name
    labelled = {
        (family.name, tuple(sorted(set(sample.labels) - {"le"})))
        for family in registry.collect()
        for sample in family.samples
    }
    for family_name, labels in labelled:
        assert labels == tuple(sorted(expected[family_name].labels)), family_name


def _doc_table() -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\|\s*`(ponos_[a-z_]+)`\s*\|(.*)\|\s*$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def test_the_docs_list_every_metric_alert_and_panel() -> None:
    table = _doc_table()
    assert set(table) == {metric.name for metric in CATALOG}
    for metric in CATALOG:
        kind, labels, scope = table[metric.name][:3]
        assert kind == metric.kind, metric.name
        assert scope.startswith(metric.scope), metric.name
        assert [label.strip("` ") for label in labels.split(",") if label.strip()] == list(metric.labels)
    text = DOC.read_text()
    for rule in _rules():
        assert f"### {rule['alert']}" in text, rule["alert"]
    for panel in _panels():
        assert panel["title"] in text, panel["title"]
    assert "docs/img/observability-run.png" in text or "img/observability-run.png" in text
    assert (ROOT / "docs" / "img" / "observability-run.png").exists()
