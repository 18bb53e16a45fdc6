"""Operator actions that change a namespace: requeue, fail, complete or delete tasks,
rewind a chain, reap expired leases.

Each (but ``reap``, which the replicas run all the time) changes nothing without
``--yes``: it shows what it would do and exits 2. Each change goes through the
store (``update_task_status``, ``delete_task``, ``rewind_chain``), so it is
checked against the transition table and recorded in the event stream: an
override's event has owner ``manual``; a delete is ``task.deleted``; an
operator's rewind is ``chain.rewound`` without a token (a poller's carries its
lease token). Actions never create a namespace: a mistyped ``--namespace`` is
"not found" (exit 3).

Bulk forms select by ``--status`` (and ``--older-than``, ``--avs``) and act on
at most ``--limit`` tasks, reading and changing ``--batch-size`` at a time; a
task that changed in between (claimed, finished, deleted) is skipped, not an
error.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click
import msgspec

from ..errors import CorruptRecordError, InvalidTransitionError, NotFoundError, PonosStorageError
from ..interfaces import AggregatorStore
from ..models import TaskStatus
from ..ops.inspect import SET_ASIDE, NamespaceView, TaskView, parse_task_selector
from . import main
from ._common import (
    Duration,
    _CliError,
    _CliInvalidInput,
    _CliNotFound,
    _existing_aggregator,
    _run,
    _view,
    console,
    emit_json,
    json_option,
    namespace_option,
    new_table,
    store_option,
    text,
    when,
    yes_option,
)
from .inspect import tasks

P, R, C, F = TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.COMPLETED, TaskStatus.FAILED


class _Action(msgspec.Struct, frozen=True):
    name: str
    past: str
    target: TaskStatus | None  # None: delete
    sources: tuple[str, ...]  # the statuses it may select with --status


_ACTIONS = {
    "requeue": _Action("requeue", "requeued", P, (R.value, F.value)),
    "fail": _Action("fail", "failed", F, (P.value, R.value)),
    "complete": _Action("complete", "completed", C, (R.value,)),
    "delete": _Action("delete", "deleted", None, (P.value, R.value, C.value, F.value, SET_ASIDE)),
}


class TaskOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What an action did (or would do) to one task (``--json``)."""

    task_id: str
    status: str | None  # the status it had when selected
    result: str  # done | would | skipped | error
    detail: str | None = None


class ActionReport(msgspec.Struct, frozen=True, kw_only=True):
    """The ``--json`` of ``tasks requeue|fail|complete|delete``."""

    action: str
    dry_run: bool
    tasks: list[TaskOutcome]
    done: int
    skipped: int
    errors: int


def _note(action: _Action, view: TaskView) -> str | None:
    deadline = None if view.task is None else view.task.deadline
    if action.target is P and deadline is not None and deadline <= datetime.now(UTC):
        return f"its deadline ({when(deadline)}) has passed: its next claim fails it again"
    return None


async def _apply(store: AggregatorStore, action: _Action, task_id: str) -> None:
    if action.target is None:
        await store.delete_task(task_id)
    else:
        await store.update_task_status(task_id, action.target)


async def _one(store: AggregatorStore, action: _Action, view: TaskView, *, bulk: bool) -> TaskOutcome:
    if view.problem is not None and action.target in (P, C):
        # Back in circulation it would be set aside again at its next claim: repair it first.
        problem = CorruptRecordError(
            view.key, f"{view.problem}; repair the field first (ponos-redis show {view.task_id} names it)"
        )
        if not bulk:
            raise problem
        return TaskOutcome(task_id=view.task_id, status=view.status, result="skipped", detail=str(problem))
    try:
        await _apply(store, action, view.task_id)
    except (InvalidTransitionError, NotFoundError) as exc:
        if not bulk:
            raise
        # It changed since it was selected (claimed, finished, deleted): leave it.
        return TaskOutcome(task_id=view.task_id, status=view.status, result="skipped", detail=str(exc))
    return TaskOutcome(task_id=view.task_id, status=view.status, result="done", detail=_note(action, view))


async def _by_ids(
    view: NamespaceView, store: AggregatorStore | None, action: _Action, ids: tuple[str, ...]
) -> tuple[list[TaskOutcome], BaseException | None]:
    outcomes: list[TaskOutcome] = []
    first_error: BaseException | None = None
    for task_id in ids:
        try:
            found = await view.task(task_id)
            if store is None:
                outcomes.append(
                    TaskOutcome(
                        task_id=task_id, status=found.status, result="would", detail=_note(action, found)
                    )
                )
            else:
                outcomes.append(await _one(store, action, found, bulk=False))
        except PonosStorageError as exc:
            if len(ids) == 1:
                raise
            first_error = first_error or exc
            outcomes.append(
                TaskOutcome(
                    task_id=task_id, status=None, result="error", detail=f"{type(exc).__name__}: {exc}"
                )
            )
    return outcomes, first_error


async def _bulk(
    view: NamespaceView,
    store: AggregatorStore | None,
    action: _Action,
    *,
    status: str,
    avs: str | None,
    older_than: float | None,
    limit: int,
    batch_size: int,
    owner: str | None = None,
) -> list[TaskOutcome]:
    selector = parse_task_selector(status)
    outcomes: list[TaskOutcome] = []
    seen: set[str] = set()
    while len(outcomes) < limit:
        batch = await view.tasks(
            status=selector,
            avs=avs,
            older_than_s=older_than,
            limit=min(batch_size, limit - len(outcomes)),
            skip=frozenset(seen),
            owner=owner,
        )
        if not batch:
            break
        for found in batch:
            seen.add(found.task_id)
            if store is None:
                outcomes.append(
                    TaskOutcome(
                        task_id=found.task_id,
                        status=found.status,
                        result="would",
                        detail=_note(action, found),
                    )
                )
            else:
                outcomes.append(await _one(store, action, found, bulk=True))
        if store is None and len(batch) < batch_size:
            break
    return outcomes


def _report(action: _Action, outcomes: list[TaskOutcome], *, dry_run: bool, as_json: bool) -> None:
    report = ActionReport(
        action=action.name,
        dry_run=dry_run,
        tasks=outcomes,
        done=sum(1 for o in outcomes if o.result == "done"),
        skipped=sum(1 for o in outcomes if o.result == "skipped"),
        errors=sum(1 for o in outcomes if o.result == "error"),
    )
    if as_json:
        emit_json(report)
        return
    table = new_table("task_id", "was", "result", "detail")
    for o in outcomes:
        result = {"done": action.past, "would": f"would {action.name}"}.get(o.result, o.result)
        table.add_row(o.task_id, text(o.status), result, o.detail or "")
    if outcomes:
        console.print(table, highlight=False)
    if dry_run:
        console.print(
            f"dry run: would {action.name} {len(outcomes)} task(s); nothing changed", highlight=False
        )
    else:
        console.print(
            f"{action.past} {report.done} task(s), skipped {report.skipped}, errors {report.errors}",
            highlight=False,
        )


def _task_command(action: _Action) -> click.Command:
    sources = ", ".join(action.sources)

    @store_option
    @namespace_option
    @click.argument("task_ids", nargs=-1)
    @click.option("--status", default=None, help=f"act on the tasks of this status ({sources})")
    @click.option(
        "--older-than", type=Duration(), default=None, help="with --status: unchanged for this long"
    )
    @click.option("--avs", default=None, help="with --status: only this AVS")
    @click.option("--owner", default=None, help="with --status: only the tasks of this owner (holder)")
    @click.option(
        "--limit",
        type=click.IntRange(1, 100_000),
        default=100,
        show_default=True,
        help="with --status: at most",
    )
    @click.option(
        "--batch-size",
        type=click.IntRange(1, 1000),
        default=100,
        show_default=True,
        help="tasks read per batch",
    )
    @yes_option
    @json_option
    def command(
        store: str | None,
        namespace: str | None,
        task_ids: tuple[str, ...],
        status: str | None,
        older_than: float | None,
        avs: str | None,
        owner: str | None,
        limit: int,
        batch_size: int,
        yes: bool,
        as_json: bool,
    ) -> None:
        if bool(task_ids) == (status is not None):
            raise click.UsageError(
                "give TASK_IDS, or --status (with --older-than, --avs, --owner) for a bulk action"
            )
        if status is None and (older_than is not None or avs is not None or owner is not None):
            raise click.UsageError("--older-than, --avs and --owner select with --status")
        if status is not None and status not in action.sources:
            raise click.UsageError(f"tasks {action.name} --status takes one of: {sources}")

        async def go() -> tuple[list[TaskOutcome], BaseException | None]:
            async with _view(store, namespace) as view:
                if not yes:
                    if task_ids:
                        return await _by_ids(view, None, action, task_ids)
                    assert status is not None
                    found = await _bulk(
                        view,
                        None,
                        action,
                        status=status,
                        avs=avs,
                        older_than=older_than,
                        limit=limit,
                        batch_size=batch_size,
                        owner=owner,
                    )
                    return found, None
                async with _existing_aggregator(store, namespace) as agg:
                    if task_ids:
                        return await _by_ids(view, agg, action, task_ids)
                    assert status is not None
                    found = await _bulk(
                        view,
                        agg,
                        action,
                        status=status,
                        avs=avs,
                        older_than=older_than,
                        limit=limit,
                        batch_size=batch_size,
                        owner=owner,
                    )
                    return found, None

        outcomes, error = _run(go())
        _report(action, outcomes, dry_run=not yes, as_json=as_json)
        if not yes:
            raise _CliInvalidInput(f"nothing changed: add --yes to {action.name} {len(outcomes)} task(s)")
        if error is not None:
            cls = _CliNotFound if isinstance(error, NotFoundError) else _CliError
            raise cls(f"{type(error).__name__}: {error}")

    command.__doc__ = {
        "requeue": "Put processing or failed tasks back to pending (a failed one gets its attempts back).",
        "fail": "Fail pending or processing tasks (last_error: set to failed by an operator).",
        "complete": "Mark processing tasks completed (the holder's token stops working).",
        "delete": "Delete tasks, whatever their status (set-aside ones too).",
    }[action.name] + (
        "\n\nTASK_IDS, or a bulk selection: --status (and --older-than, --avs, --owner), at most"
        " --limit tasks."
        " Without --yes nothing changes: it shows what it would do and exits 2."
    )
    return click.command(action.name)(command)


for _action in _ACTIONS.values():
    tasks.add_command(_task_command(_action))


class RewindReport(msgspec.Struct, frozen=True, kw_only=True):
    """The ``--json`` of ``rewind``."""

    chain_id: int
    cursor: int | None
    block: int
    dry_run: bool
    lease_owner: str | None


@main.command()
@store_option
@namespace_option
@click.argument("chain_id", type=int)
@click.argument("block", type=int)
@yes_option
@json_option
def rewind(
    store: str | None, namespace: str | None, chain_id: int, block: int, yes: bool, as_json: bool
) -> None:
    """Move CHAIN_ID's cursor back to BLOCK and drop its block records above it.

    The chain's poller resumes from the cursor at its next pass, so the blocks
    above BLOCK are read again (saving their tasks again is a no-op for the
    tasks already there). Without --yes nothing changes (exit 2).
    """

    async def go() -> RewindReport:
        async with _view(store, namespace) as view:
            found, _ = await view.chains()
            chain = next((c for c in found if c.chain_id == chain_id), None)
            if chain is None or chain.cursor is None:
                raise NotFoundError(f"chain {chain_id} has no processed block yet")
            if block > chain.cursor:
                raise InvalidTransitionError(
                    f"chain {chain_id}: block {block} is above its cursor {chain.cursor}; "
                    "rewind only moves back"
                )
            report = RewindReport(
                chain_id=chain_id,
                cursor=chain.cursor,
                block=block,
                dry_run=not yes,
                lease_owner=None if chain.lease is None or chain.lease.expired else chain.lease.owner,
            )
            if yes:
                async with _existing_aggregator(store, namespace) as agg:
                    await agg.rewind_chain(chain_id, block)
            return report

    report = _run(go())
    if as_json:
        emit_json(report)
    else:
        verb = "would rewind" if report.dry_run else "rewound"
        console.print(
            f"{verb} chain {chain_id}: cursor {report.cursor} -> {block}, "
            f"the block records above {block} dropped",
            highlight=False,
        )
        if report.lease_owner:
            console.print(
                f"its poller ({report.lease_owner}) resumes from block {block + 1}", highlight=False
            )
    if not yes:
        raise _CliInvalidInput(f"nothing changed: add --yes to rewind chain {chain_id}")


class ReapReport(msgspec.Struct, frozen=True, kw_only=True):
    """The ``--json`` of ``reap``."""

    reaped: int


@main.command()
@store_option
@namespace_option
@json_option
def reap(store: str | None, namespace: str | None, as_json: bool) -> None:
    """Return expired leases to pending (or failed) and trim old finished tasks."""

    async def go() -> int:
        async with _existing_aggregator(store, namespace) as agg:
            return await agg.reap_expired_leases()

    reaped = _run(go())
    if as_json:
        emit_json(ReapReport(reaped=reaped))
    else:
        console.print(f"reaped {reaped} expired lease(s)", highlight=False)
