"""Helpers for testing code that uses ponos-redis (and for this project's own tests).

- :class:`ManualClock`: pass it as ``clock=`` to the memory stores (or, in
  tests only, to ``RedisAggregatorStore.open``) and move time with ``advance``.
- ``make_task``, ``make_tasks``, ``make_performer``, ``make_inflight``,
  ``make_deployment``: valid records with every field overridable.
- :func:`reset_memory_namespaces`: forget the fake's shared state.

The pytest plugin (installed with the package, see :mod:`ponos_redis.pytest_plugin`)
adds ready store fixtures (``ponos_aggregator_store``, ``ponos_executor_store``),
``ponos_clock``, ``ponos_redis_url`` and ``ponos_redis_namespace``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ._clock import ManualClock
from .backends.memory import reset_memory_namespaces
from .models import Deployment, InflightTask, PerformerState, Task

__all__ = [
    "AVS",
    "OPERATOR",
    "START",
    "ManualClock",
    "make_deployment",
    "make_inflight",
    "make_performer",
    "make_task",
    "make_tasks",
    "reset_memory_namespaces",
]

AVS = "0x" + "ab" * 20
OPERATOR = "0x" + "12" * 20
# ManualClock's default start.
START = datetime(2026, 1, 1, tzinfo=UTC)


def make_task(task_id: str = "task-1", **fields: Any) -> Task:
    """A valid task; any field can be overridden."""
    values: dict[str, Any] = {
        "task_id": task_id,
        "avs_address": AVS,
        "operator_set_id": 1,
        "chain_id": 1,
        "block_number": 100,
        "block_hash": "0x" + "00" * 32,
        "callback_address": "0xCallBack",
        "deadline": None,
        "threshold_bips": 6667,
        "payload": b"payload",
    }
    values.update(fields)
    return Task(**values)


def make_tasks(n: int, prefix: str = "task", **fields: Any) -> list[Task]:
    """``n`` valid tasks with ids ``<prefix>-0000`` ... in order."""
    return [make_task(f"{prefix}-{i:04d}", **fields) for i in range(n)]


def make_performer(performer_id: str = "perf-1", **fields: Any) -> PerformerState:
    """A valid performer state; any field can be overridden."""
    values: dict[str, Any] = {"performer_id": performer_id, "avs_address": AVS, "created_at": START}
    values.update(fields)
    return PerformerState(**values)


def make_inflight(task_id: str = "inflight-1", **fields: Any) -> InflightTask:
    """A valid inflight task; any field can be overridden."""
    values: dict[str, Any] = {
        "task_id": task_id,
        "avs_address": AVS,
        "operator_address": OPERATOR,
        "received_at": START,
    }
    values.update(fields)
    return InflightTask(**values)


def make_deployment(deployment_id: str = "dep-1", **fields: Any) -> Deployment:
    """A valid deployment; any field can be overridden."""
    values: dict[str, Any] = {
        "deployment_id": deployment_id,
        "avs_address": AVS,
        "artifact_registry": "registry.example/avs",
        "artifact_digest": "sha256:" + "0" * 64,
        "started_at": START,
    }
    values.update(fields)
    return Deployment(**values)
