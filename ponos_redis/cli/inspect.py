"""Read-only views of a namespace: status, tasks, show, leases, chains, performers,
deployments, events.

Each opens the namespace with :func:`ponos_redis.ops.inspect.inspect_namespace`,
which writes nothing (no meta write, no script load, no durability check), so
they work against a replica and as a read-only ACL user. Each has ``--json``
(one stable schema per command, documented in docs/operations.md).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime
from typing import Any

import click
from rich.table import Table

from ..ops.inspect import (
    SET_ASIDE,
    ChainView,
    NamespaceSummary,
    ServerView,
    TaskView,
    parse_task_selector,
)
from . import main
from ._common import (
    Duration,
    _CliError,
    _run,
    _view,
    console,
    emit_json,
    json_option,
    namespace_option,
    new_table,
    payload,
    seconds,
    store_option,
    text,
    when,
)

_STATUSES = ["pending", "processing", "completed", "failed", SET_ASIDE]


def _print(table: Table) -> None:
    console.print(table, highlight=False)


def _say(line: str) -> None:
    console.print(line, highlight=False, markup=False)


def _server_line(server: ServerView) -> str:
    if server.unavailable:
        return f"server: {server.address} ({server.mode}): {server.unavailable}"
    memory = server.used_memory_human or text(server.used_memory)
    limit = "no maxmemory" if not server.maxmemory else f"maxmemory {server.maxmemory}"
    aof = "AOF on" if server.aof_enabled else "AOF off"
    if server.aof_enabled and server.aof_last_write_status:
        aof += f" (last write {server.aof_last_write_status})"
    role = server.role or "?"
    if server.role == "master":
        role += f", {text(server.connected_replicas)} replica(s)"
    elif server.master_link_status:
        role += f", link to master {server.master_link_status}"
    loading = ", LOADING its data" if server.loading else ""
    return (
        f"server: redis {text(server.redis_version)} {server.mode}, {role}, at {server.address}; "
        f"memory {memory} ({limit}, {text(server.maxmemory_policy)}); {aof}; "
        f"RDB last save {text(server.rdb_last_bgsave_status)}{loading}"
    )


def _chains_table(chains: list[ChainView], title: str = "chains") -> Table:
    table = new_table(
        "chain", "cursor", "lease owner", "token", "lease expires", "blocks saved", "tasks", title=title
    )
    for chain in chains:
        lease = chain.lease
        expires = "-"
        if lease is not None:
            expires = "EXPIRED" if lease.expired else f"in {seconds(lease.expires_in_s)}"
            expires += f" ({when(lease.expires_at)})"
        table.add_row(
            str(chain.chain_id),
            text(chain.cursor),
            "-" if lease is None else lease.owner,
            "-" if lease is None else text(lease.token),
            expires,
            f"{chain.blocks_saved}"
            + (f" (newest {chain.newest_block})" if chain.newest_block is not None else ""),
            str(chain.tasks),
        )
    return table


def _print_summary(s: NamespaceSummary) -> None:
    schema = f"schema {text(s.schema_version)}"
    if s.schema_version is not None and s.schema_version != s.schema_supported:
        schema += f" (this ponos-redis writes {s.schema_supported})"
    created = f", created {when(s.created_at)}" if s.created_at else ""
    epoch = f", epoch {s.epoch}" if s.epoch else ""
    _say(f"namespace {s.namespace} ({s.backend}, {schema}{created}{epoch})")
    if s.migration:
        _say(f"MIGRATION IN PROGRESS: {s.migration} (stores refuse to open until it ends)")
    if s.server is not None:
        _say(_server_line(s.server))
    clock = "" if s.clock == "server" else " (this host's clock: TIME is not permitted)"
    _say(f"now: {when(s.now)}{clock}")

    table = new_table("status", "tasks", title="tasks")
    for name, count in (
        ("pending", s.tasks.pending),
        ("processing", s.tasks.processing),
        ("completed", s.tasks.completed),
        ("failed", s.tasks.failed),
        (SET_ASIDE, s.tasks.set_aside),
    ):
        table.add_row(name, str(count))
    _print(table)
    if s.oldest_pending is not None:
        o = s.oldest_pending
        _say(f"oldest pending: {o.task_id}, waiting {seconds(o.age_s)} (saved {when(o.created_at)})")
    else:
        _say("oldest pending: none")

    leases = s.leases
    _say(f"task leases: {leases.held} held, {leases.expired} expired (the reaper's next work)")
    if leases.holders:
        table = new_table(
            "owner", "tasks", "expired", "next expiry", "last expiry", title="task leases by holder"
        )
        for holder in leases.holders:
            table.add_row(
                holder.owner,
                str(holder.tasks),
                str(holder.expired),
                when(holder.next_expiry),
                when(holder.last_expiry),
            )
        _print(table)
        if leases.truncated:
            _say(f"(holders of the first {leases.examined} leases by expiry; ponos-redis leases for all)")
    if s.chains:
        _print(_chains_table(s.chains))
    else:
        _say("chains: none")
    if s.chains_truncated:
        _say("(the search for chains stopped at its bound: there may be more)")
    table = new_table("stream", "length", "cap", "first id", "last id", title="streams")
    for stream in s.streams:
        table.add_row(
            stream.name, str(stream.length), text(stream.maxlen), text(stream.first_id), text(stream.last_id)
        )
    _print(table)


@main.command()
@store_option
@namespace_option
@json_option
def status(store: str | None, namespace: str | None, as_json: bool) -> None:
    """What the namespace holds: tasks by status, the oldest pending task, leases,
    chains, streams, the schema version, and the server's memory and persistence."""

    async def go() -> NamespaceSummary:
        async with _view(store, namespace, allow_newer_schema=True) as view:
            return await view.summary()

    summary = _run(go())
    if as_json:
        emit_json(summary)
    else:
        _print_summary(summary)


def _show_table(record: TaskView) -> Table:
    table = new_table("field", "value")
    table.add_row("task_id", record.task_id)
    table.add_row("key", record.key)
    table.add_row("status", text(record.status) + (" (SET ASIDE: unreadable)" if record.set_aside else ""))
    if record.problem is not None:
        table.add_row("problem", record.problem)
        for name, value in sorted((record.raw or {}).items()):
            table.add_row(f"raw.{name}", value)
        return table
    for name, value in (
        ("attempts", text(record.attempts)),
        ("owner", text(record.owner)),
        ("token", text(record.token)),
        ("lease_until", when(record.lease_until)),
        ("created_at", when(record.created_at)),
        ("updated_at", when(record.updated_at)),
        ("last_error", text(record.last_error)),
    ):
        table.add_row(name, value)
    task = record.task
    if task is not None:
        for name, value in (
            ("avs_address", task.avs_address),
            ("operator_set_id", str(task.operator_set_id)),
            ("chain_id", str(task.chain_id)),
            ("block_number", str(task.block_number)),
            ("block_hash", task.block_hash),
            ("callback_address", task.callback_address),
            ("deadline", when(task.deadline)),
            ("threshold_bips", str(task.threshold_bips)),
            ("payload", payload(task.payload, shown=256)),
        ):
            table.add_row(f"task.{name}", value)
    return table


@main.command()
@store_option
@namespace_option
@json_option
@click.argument("task_id")
def show(store: str | None, namespace: str | None, task_id: str, as_json: bool) -> None:
    """One task with its state (the payload as hex, with its length).

    A record that cannot be read is shown field by field, with why, and the
    command exits 1.
    """

    async def go() -> TaskView:
        async with _view(store, namespace) as view:
            return await view.task(task_id)

    record = _run(go())
    if as_json:
        emit_json(record)
    else:
        _print(_show_table(record))
    if record.problem is not None:
        raise _CliError(f"CorruptRecordError: {record.key} cannot be read: {record.problem}")


def _short(address: str) -> str:
    """An address cut for a table (``0xabab...abab``); --json has it whole."""
    return address if len(address) <= 14 else f"{address[:6]}...{address[-4:]}"


def _ago(value: datetime | None, now: datetime) -> str:
    return "-" if value is None else seconds((now - value).total_seconds()) + " ago"


def _lease(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    left = (value - now).total_seconds()
    return f"in {seconds(left)}" if left > 0 else f"EXPIRED {seconds(-left)} ago"


def _tasks_table(rows: list[TaskView], title: str) -> Table:
    now = datetime.now(UTC)
    columns = ["task_id", "status", "avs", "chain:block", "attempts", "owner", "lease", "changed", "payload"]
    table = new_table(*columns, "last error", title=title)
    for row in rows:
        task = row.task
        status = text(row.status) + (" (set aside)" if row.set_aside else "")
        if row.problem is not None:
            table.add_row(row.task_id, status, f"UNREADABLE: {row.problem}", *["-"] * 7)
            continue
        assert task is not None
        error = row.last_error or "-"
        table.add_row(
            row.task_id,
            status,
            _short(task.avs_address),
            f"{task.chain_id}:{task.block_number}",
            text(row.attempts),
            text(row.owner),
            _lease(row.lease_until, now),
            _ago(row.updated_at, now),
            f"{task.payload.length} B",
            error if len(error) <= 60 else error[:57] + "...",
        )
    return table


@main.group()
def tasks() -> None:
    """Tasks: list them; requeue, fail, complete or delete them (operator actions)."""


@tasks.command("list")
@store_option
@namespace_option
@click.option(
    "--status", type=click.Choice(_STATUSES), default=None, help="only this status (default: every status)"
)
@click.option("--avs", default=None, help="only this AVS")
@click.option("--owner", default=None, help="only the tasks of this owner (the holder, or the last one)")
@click.option(
    "--older-than", type=Duration(), default=None, help="unchanged for at least this long (10m, 2h ...)"
)
@click.option("--limit", default=50, show_default=True, help="at most this many")
@json_option
def tasks_list(
    store: str | None,
    namespace: str | None,
    status: str | None,
    avs: str | None,
    owner: str | None,
    older_than: float | None,
    limit: int,
    as_json: bool,
) -> None:
    """Tasks in index order, oldest first: pending by queue order, processing by lease
    expiry, completed, failed and set-aside by when that happened."""

    async def go() -> list[TaskView]:
        async with _view(store, namespace) as view:
            return await view.tasks(
                status=parse_task_selector(status), avs=avs, older_than_s=older_than, limit=limit, owner=owner
            )

    rows = _run(go())
    if as_json:
        emit_json(rows)
    else:
        _print(_tasks_table(rows, f"{status or 'all'} tasks ({len(rows)} shown, limit {limit})"))


@main.command()
@store_option
@namespace_option
@click.option("--avs", default=None, help="only this AVS")
@click.option("--limit", default=50, show_default=True)
@json_option
def pending(store: str | None, namespace: str | None, avs: str | None, limit: int, as_json: bool) -> None:
    """Pending tasks, oldest first (the same as tasks list --status pending)."""

    async def go() -> list[TaskView]:
        async with _view(store, namespace) as view:
            return await view.tasks(status=parse_task_selector("pending"), avs=avs, limit=limit)

    rows = _run(go())
    if as_json:
        emit_json(rows)
        return
    table = new_table("task_id", "avs", "chain", "block", "deadline", "attempts", "payload")
    for row in rows:
        if row.task is None:
            table.add_row(row.task_id, f"UNREADABLE: {row.problem}", "-", "-", "-", "-", "-")
            continue
        table.add_row(
            row.task_id,
            row.task.avs_address,
            str(row.task.chain_id),
            str(row.task.block_number),
            when(row.task.deadline),
            text(row.attempts),
            f"{row.task.payload.length} B",
        )
    _print(table)


@main.command()
@store_option
@namespace_option
@click.option("--limit", default=100, show_default=True, help="task leases shown, soonest to expire first")
@json_option
def leases(store: str | None, namespace: str | None, limit: int, as_json: bool) -> None:
    """Leases: of tasks (who holds which, until when), of chains and of periodic jobs."""

    async def go() -> Any:
        async with _view(store, namespace) as view:
            return await view.leases(limit=limit)

    found = _run(go())
    if as_json:
        emit_json(found)
        return
    table = new_table("task_id", "owner", "token", "lease until", "expires", "attempts", title="task leases")
    for lease in found.tasks:
        table.add_row(
            lease.task_id,
            text(lease.owner),
            text(lease.token),
            when(lease.lease_until),
            "EXPIRED " + seconds(-lease.expires_in_s) + " ago"
            if lease.expired
            else "in " + seconds(lease.expires_in_s),
            text(lease.attempts),
        )
    _print(table)
    if found.truncated:
        _say(f"({len(found.tasks)} of {found.tasks_total} task leases shown; --limit for more)")
    _print(_chains_table(found.chains, "chain leases"))
    table = new_table("job", "owner", "expires", title="periodic jobs' runner leases")
    for runner in found.runners:
        table.add_row(
            runner.name, runner.owner, ("EXPIRED " if runner.expired else "") + when(runner.expires_at)
        )
    _print(table)


@main.command()
@store_option
@namespace_option
@json_option
def chains(store: str | None, namespace: str | None, as_json: bool) -> None:
    """Chains: cursor (last processed block), lease holder, blocks and tasks kept."""

    async def go() -> tuple[list[ChainView], bool]:
        async with _view(store, namespace) as view:
            return await view.chains()

    found, truncated = _run(go())
    if as_json:
        emit_json({"chains": found, "truncated": truncated})
        return
    _print(_chains_table(found))
    if truncated:
        _say("(the search for chains stopped at its bound: there may be more)")


@main.command()
@store_option
@namespace_option
@json_option
def performers(store: str | None, namespace: str | None, as_json: bool) -> None:
    """The executor's performers and their health (environment values hidden)."""

    async def go() -> Any:
        async with _view(store, namespace) as view:
            return await view.performers()

    found = _run(go())
    if as_json:
        emit_json(found)
        return
    table = new_table(
        "performer", "avs", "status", "mode", "container", "application", "last health check", "endpoint",
        "environment",
    )  # fmt: skip
    for p in found:
        table.add_row(
            p.performer_id,
            _short(p.avs_address),
            p.status or "-",
            p.deployment_mode or "-",
            "healthy" if p.container_healthy else "UNHEALTHY",
            "healthy" if p.application_healthy else "UNHEALTHY",
            when(p.last_health_check),
            p.container_endpoint or "-",
            ", ".join(var.name for var in p.environment_vars) or "-",
        )
    _print(table)


@main.command()
@store_option
@namespace_option
@json_option
def inflight(store: str | None, namespace: str | None, as_json: bool) -> None:
    """The executor's inflight tasks (after a restart, the interrupted ones)."""

    async def go() -> Any:
        async with _view(store, namespace) as view:
            return await view.inflight()

    found = _run(go())
    if as_json:
        emit_json(found)
        return
    table = new_table("task_id", "status", "avs", "operator", "received", "aggregator", "set")
    for task in found:
        table.add_row(
            task.task_id,
            task.status,
            _short(task.avs_address),
            _short(task.operator_address),
            when(task.received_at),
            task.aggregator_address,
            str(task.operator_set_id),
        )
    _print(table)


@main.group(invoke_without_command=True)
@click.pass_context
def deployments(ctx: click.Context) -> None:
    """The executor's deployments: list them, or show one with its history."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@deployments.command("list")
@store_option
@namespace_option
@json_option
def deployments_list(store: str | None, namespace: str | None, as_json: bool) -> None:
    """Every deployment, by id."""

    async def go() -> Any:
        async with _view(store, namespace) as view:
            return await view.deployments()

    found = _run(go())
    if as_json:
        emit_json(found)
        return
    table = new_table("deployment", "avs", "status", "started", "completed", "artifact", "error")
    for d in found:
        table.add_row(
            d.deployment_id,
            _short(d.avs_address),
            d.status.value,
            when(d.started_at),
            when(d.completed_at),
            f"{d.artifact_registry}@{d.artifact_digest}",
            d.error or "-",
        )
    _print(table)


@deployments.command("show")
@store_option
@namespace_option
@json_option
@click.argument("deployment_id")
def deployments_show(store: str | None, namespace: str | None, deployment_id: str, as_json: bool) -> None:
    """One deployment with every status change it went through."""

    async def go() -> Any:
        async with _view(store, namespace) as view:
            return await view.deployment(deployment_id)

    found = _run(go())
    if as_json:
        emit_json(found)
        return
    d = found.deployment
    table = new_table("field", "value")
    for name, value in (
        ("deployment_id", d.deployment_id),
        ("avs_address", d.avs_address),
        ("status", d.status.value),
        ("artifact_registry", d.artifact_registry),
        ("artifact_digest", d.artifact_digest),
        ("started_at", when(d.started_at)),
        ("completed_at", when(d.completed_at)),
        ("error", d.error or "-"),
    ):
        table.add_row(name, value)
    _print(table)
    history = new_table("at", "status", "error", title="history")
    for event in found.history:
        history.add_row(when(event.at), event.status.value, event.error or "-")
    _print(history)


@main.command()
@store_option
@namespace_option
@click.option("--after", default=None, help="resume after this event id")
@click.option("--follow", "-f", is_flag=True, help="wait for new events until interrupted (Ctrl-C, SIGTERM)")
@json_option
def events(store: str | None, namespace: str | None, after: str | None, follow: bool, as_json: bool) -> None:
    """Print the event stream, oldest first (--json: one JSON object per line)."""

    async def go() -> None:
        stop = asyncio.Event()
        if follow:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        async with _view(store, namespace) as view:
            async for ev in view.events(after=after, follow=follow, stop=stop):
                if as_json:
                    emit_json(ev)
                else:
                    owner = f" owner={ev.owner}" if ev.owner else ""
                    token = f" token={ev.token}" if ev.token is not None else ""
                    _say(f"{ev.id} {when(ev.at)} {ev.kind} {ev.subject} {ev.status or ''}{owner}{token}")
                if follow:
                    sys.stdout.flush()

    _run(go())
