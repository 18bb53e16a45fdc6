"""Every metric ponos-redis exports, in one table: name, type, labels, scope, help.

The modules that export them build their metrics from this table, the tests
check that what a registry exposes is exactly this, and docs/observability.md
lists it. ``scope`` says where a series comes from:

- ``process``: each process reports its own (the store wrapper, the retry hook,
  the runtime's components); add them up across instances in PromQL. Nothing
  is counted twice: each process counts only what it did itself.
- ``namespace``: read from the store, exported from ONE place per namespace
  (``ponos-redis metrics serve``), so that N replicas do not report N copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CATALOG", "MetricSpec", "spec"]

Kind = Literal["counter", "gauge", "histogram"]
Scope = Literal["process", "namespace"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric.

    Attributes:
        name: the name as exposed (a counter's ends with ``_total``; a histogram's
            samples add ``_bucket``, ``_sum`` and ``_count``).
        kind: counter, gauge or histogram.
        labels: its label names, in order.
        scope: ``process`` or ``namespace`` (see the module's docstring).
        source: what exports it.
        help: one sentence.
    """

    name: str
    kind: Kind
    labels: tuple[str, ...]
    scope: Scope
    source: str
    help: str

    @property
    def base(self) -> str:
        """The name prometheus-client wants (a counter's without ``_total``)."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name

    @property
    def samples(self) -> tuple[str, ...]:
        """The sample names a scrape shows for it."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


_OP = ("operation", "backend", "namespace")
WRAPPER = "instrument()"
RETRY = "Redis retry hook"
RUNTIME = "RuntimeCollector"
SERVE = "metrics serve"

CATALOG: tuple[MetricSpec, ...] = (
    # -- per process: the store wrapper ----------------------------------------------
    MetricSpec(
        "ponos_store_operation_duration_seconds",
        "histogram",
        _OP,
        "process",
        WRAPPER,
        "Latency of each store operation (successful or not), retries included.",
    ),
    MetricSpec(
        "ponos_store_operation_errors_total",
        "counter",
        (*_OP, "error_type"),
        "process",
        WRAPPER,
        "Store operations that raised, by exception type (NotFoundError, StaleLeaseError ...).",
    ),
    MetricSpec(
        "ponos_store_unavailable_total",
        "counter",
        _OP,
        "process",
        WRAPPER,
        "Operations that raised StoreUnavailableError: the retry budget was spent, outcome unknown.",
    ),
    MetricSpec(
        "ponos_durability_shortfalls_total",
        "counter",
        _OP,
        "process",
        WRAPPER,
        "Writes applied on the master whose replication WAIT fell short (DurabilityError).",
    ),
    MetricSpec(
        "ponos_stale_completions_total",
        "counter",
        ("backend", "namespace"),
        "process",
        WRAPPER,
        "complete_task calls refused with StaleLeaseError: the lease had passed to another holder.",
    ),
    MetricSpec(
        "ponos_leases_reaped_total",
        "counter",
        ("backend", "namespace"),
        "process",
        WRAPPER,
        "Expired task leases this process's reap_expired_leases calls returned (or failed).",
    ),
    # -- per process: the retry policy of the Redis backend ------------------------
    MetricSpec(
        "ponos_redis_transient_errors_total",
        "counter",
        ("operation", "error_type"),
        "process",
        RETRY,
        "Transient Redis errors met (connection lost, LOADING, READONLY, failover ...), retried or not.",
    ),
    MetricSpec(
        "ponos_redis_retries_total",
        "counter",
        ("operation", "error_type"),
        "process",
        RETRY,
        "Attempts repeated by the retry policy after a transient error.",
    ),
    MetricSpec(
        "ponos_redis_ridden_through_total",
        "counter",
        ("operation",),
        "process",
        RETRY,
        "Calls that succeeded after transient errors: a failover or restart ridden through.",
    ),
    # -- per process: the runtime -------------------------------------------------------
    MetricSpec(
        "ponos_worker_tasks_total",
        "counter",
        ("namespace", "owner", "outcome"),
        "process",
        RUNTIME,
        "Tasks a TaskWorker claimed, completed, failed, gave up as stale, released or abandoned.",
    ),
    MetricSpec(
        "ponos_worker_running_tasks",
        "gauge",
        ("namespace", "owner"),
        "process",
        RUNTIME,
        "Tasks a TaskWorker holds right now.",
    ),
    MetricSpec(
        "ponos_worker_concurrency",
        "gauge",
        ("namespace", "owner"),
        "process",
        RUNTIME,
        "A TaskWorker's slots (its concurrency).",
    ),
    MetricSpec(
        "ponos_worker_lease_renewals_total",
        "counter",
        ("namespace", "owner"),
        "process",
        RUNTIME,
        "Successful task lease renewals.",
    ),
    MetricSpec(
        "ponos_reaper_passes_total",
        "counter",
        ("namespace", "owner", "result"),
        "process",
        RUNTIME,
        "Reaper intervals: ran (held the single-runner guard and reaped) or skipped (another held it).",
    ),
    MetricSpec(
        "ponos_chain_blocks_total",
        "counter",
        ("namespace", "chain_id", "owner"),
        "process",
        RUNTIME,
        "Blocks a ChainPoller processed.",
    ),
    MetricSpec(
        "ponos_chain_reorgs_total",
        "counter",
        ("namespace", "chain_id", "owner"),
        "process",
        RUNTIME,
        "Reorgs a ChainPoller handled (orphaned tasks failed, cursor rewound).",
    ),
    MetricSpec(
        "ponos_chain_orphaned_tasks_total",
        "counter",
        ("namespace", "chain_id", "owner"),
        "process",
        RUNTIME,
        "Tasks a ChainPoller failed because a reorg orphaned them.",
    ),
    MetricSpec(
        "ponos_poller_lease_held",
        "gauge",
        ("namespace", "chain_id", "owner"),
        "process",
        RUNTIME,
        "1 while this ChainPoller holds its chain's lease, else 0.",
    ),
    MetricSpec(
        "ponos_chain_head_block",
        "gauge",
        ("namespace", "chain_id"),
        "process",
        RUNTIME,
        "The chain head the lease-holding poller last saw (exported by the holder only).",
    ),
    MetricSpec(
        "ponos_chain_lag_blocks",
        "gauge",
        ("namespace", "chain_id"),
        "process",
        RUNTIME,
        "Head minus cursor, as the lease-holding poller knows them (exported by the holder only).",
    ),
    MetricSpec(
        "ponos_runtime_store_retries_total",
        "counter",
        ("namespace", "component", "owner"),
        "process",
        RUNTIME,
        "Store calls the runtime repeated after StoreUnavailableError.",
    ),
    MetricSpec(
        "ponos_runtime_errors_total",
        "counter",
        ("namespace", "component", "owner"),
        "process",
        RUNTIME,
        "Runtime passes or calls that ended in an unexpected store error.",
    ),
    MetricSpec(
        "ponos_executor_tasks_total",
        "counter",
        ("namespace", "operator", "outcome"),
        "process",
        RUNTIME,
        "Executor tasks executed, deduplicated, re-executed after a restart, failed or ambiguous.",
    ),
    # -- per namespace: ponos-redis metrics serve ---------------------------------------
    MetricSpec(
        "ponos_tasks",
        "gauge",
        ("namespace", "status"),
        "namespace",
        SERVE,
        "Tasks by status (count_tasks()).",
    ),
    MetricSpec(
        "ponos_oldest_pending_task_age_seconds",
        "gauge",
        ("namespace",),
        "namespace",
        SERVE,
        "Age of the oldest pending task (0 when none is pending).",
    ),
    MetricSpec(
        "ponos_task_sla_seconds",
        "gauge",
        ("namespace",),
        "namespace",
        SERVE,
        "The task SLA the alerts compare the oldest pending age with (metrics serve --task-sla-s).",
    ),
    MetricSpec(
        "ponos_events_stream_length",
        "gauge",
        ("namespace",),
        "namespace",
        SERVE,
        "Entries in the namespace's event stream.",
    ),
    MetricSpec(
        "ponos_events_stream_max_length",
        "gauge",
        ("namespace",),
        "namespace",
        SERVE,
        "The event stream's approximate cap (events_maxlen).",
    ),
    MetricSpec(
        "ponos_events_total",
        "counter",
        ("namespace", "kind"),
        "namespace",
        SERVE,
        "Events appended to the namespace's stream since metrics serve started, by kind.",
    ),
    MetricSpec(
        "ponos_tasks_failed_total",
        "counter",
        ("namespace", "reason"),
        "namespace",
        SERVE,
        "Tasks that became failed since metrics serve started, by reason "
        "(handler, attempts_exhausted, lease_expired, deadline, reorg, operator, unknown).",
    ),
    MetricSpec(
        "ponos_chain_cursor_block",
        "gauge",
        ("namespace", "chain_id"),
        "namespace",
        SERVE,
        "The chain's last processed block (get_last_processed_block).",
    ),
    MetricSpec(
        "ponos_chain_lease_holders",
        "gauge",
        ("namespace", "chain_id"),
        "namespace",
        SERVE,
        "1 when a live lease on the chain is held by some replica, 0 when none is.",
    ),
    MetricSpec(
        "ponos_set_aside_tasks",
        "gauge",
        ("namespace",),
        "namespace",
        SERVE,
        "Task records set aside because they could not be read (see ponos-redis doctor).",
    ),
    MetricSpec(
        "ponos_durability_required_replicas",
        "gauge",
        ("namespace",),
        "namespace",
        SERVE,
        "Replica acknowledgements the config asks for (durability: replicated), else 0.",
    ),
    MetricSpec(
        "ponos_namespace_collect_errors_total",
        "counter",
        ("namespace",),
        "namespace",
        SERVE,
        "Passes of metrics serve that could not read the namespace.",
    ),
    MetricSpec(
        "ponos_namespace_collect_timestamp_seconds",
        "gauge",
        ("namespace",),
        "namespace",
        SERVE,
        "When the namespace was last read successfully (Unix time).",
    ),
    MetricSpec(
        "ponos_namespace_collect_duration_seconds",
        "gauge",
        ("namespace",),
        "namespace",
        SERVE,
        "How long the last successful read of the namespace took.",
    ),
)

_BY_NAME = {metric.name: metric for metric in CATALOG}


def spec(name: str) -> MetricSpec:
    """The catalog entry of ``name`` (KeyError if it is not one)."""
    return _BY_NAME[name]
