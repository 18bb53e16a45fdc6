"""``doctor`` (the server and the namespace, checked, with fixes) and ``check`` (a
health probe for liveness and readiness checks)."""

from __future__ import annotations

import sys

import click
import msgspec

from ..config import RetrySettings
from ..ops.doctor import DoctorReport, ProbeReport, diagnose, probe, repair
from ..ops.inspect import RedisNamespaceView, inspect_namespace
from . import main
from ._common import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_PROBLEM,
    _config,
    _existing_aggregator,
    _run,
    console,
    emit_json,
    json_option,
    namespace_option,
    new_table,
    store_option,
)

_LEVEL = {"ok": "[green]ok[/green]", "warning": "[yellow]warning[/yellow]", "problem": "[red]PROBLEM[/red]"}


def _print_report(report: DoctorReport) -> None:
    table = new_table("check", "status", "finding", "fix", show_lines=True)
    for f in report.findings:
        finding = f.summary
        if f.keys:
            more = f" (and {f.count - len(f.keys)} more)" if f.count else ""
            finding += "\n" + "\n".join(f"  {key}" for key in f.keys) + more
        table.add_row(f.check, _LEVEL[f.level], finding, f.fix or "")
    console.print(table, highlight=False)
    for line in report.repaired:
        console.print(f"repaired: {line}", highlight=False, markup=False)
    verdict = "ok" if report.ok else f"{report.problems} problem(s)"
    scanned = f"{report.scanned_keys} key(s) scanned" + (
        "" if report.scan_complete else ", stopped at the bound"
    )
    console.print(
        f"namespace {report.namespace}: {verdict}, {report.warnings} warning(s); durability "
        f"{report.durability!r}; {scanned}",
        highlight=False,
        markup=False,
    )


@main.command()
@store_option
@namespace_option
@click.option("--repair", "do_repair", is_flag=True, help="fix what is safe and say what was done")
@click.option(
    "--max-keys",
    type=click.IntRange(1),
    default=100_000,
    show_default=True,
    help="bound of the key-layout checks (keys scanned, index entries read)",
)
@json_option
def doctor(store: str | None, namespace: str | None, do_repair: bool, max_keys: int, as_json: bool) -> None:
    """Check the server and the namespace; each finding with its fix.

    The server: version, role, the durability policy (CONFIG, or INFO where
    CONFIG is denied), replicas, Sentinel's quorum and replicas, Cluster slot
    coverage. The namespace: schema version, and its keys (a bounded SCAN):
    index entries without a record, records missing from their index, expired
    leases not reaped, records set aside as unreadable. Exits 1 when something
    is wrong, 3 when the namespace does not exist. --repair drops stale index
    entries and reaps expired leases (both safe), then checks again.
    """
    cfg = _config(store)
    if cfg.redis is None:
        message = "the in-process fake keeps nothing across restarts: nothing to check"
        if as_json:
            emit_json({"namespace": cfg.namespace, "backend": "memory", "ok": True, "findings": []})
        else:
            console.print(message, highlight=False)
        return

    async def go() -> DoctorReport:
        async with inspect_namespace(
            cfg, namespace, must_exist=False, allow_newer_schema=True, read_meta=False
        ) as view:
            assert isinstance(view, RedisNamespaceView)
            report, repairs = await diagnose(view, max_keys=max_keys)
            if not do_repair or not report.namespace_found:
                return report
            done: list[str] = []
            if repairs.stale or repairs.expired_leases:
                if repairs.expired_leases:
                    async with _existing_aggregator(store, namespace) as agg:
                        done = await repair(view, repairs, agg)
                else:
                    done = await repair(view, repairs, None)
            else:
                done = ["nothing to repair"]
            report, _ = await diagnose(view, max_keys=max_keys)
            return msgspec.structs.replace(report, repaired=done)

    report = _run(go())
    if as_json:
        emit_json(report)
    else:
        _print_report(report)
    if report.namespace_found is False:
        sys.exit(EXIT_NOT_FOUND)
    sys.exit(EXIT_OK if report.ok else EXIT_PROBLEM)


@main.command()
@store_option
@namespace_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="give up on Redis after this many seconds (exit 4)",
)
@json_option
def check(store: str | None, namespace: str | None, timeout: float, as_json: bool) -> None:
    """A health probe: reachable, a writable primary, the schema, the durability policy.

    Prints one line; exits 0 when ready, 1 when not (the line says why), 3 when
    the namespace does not exist, 4 when Redis cannot be reached. For liveness
    and readiness checks.
    """
    cfg = _config(store)
    if cfg.redis is None:
        if as_json:
            emit_json(
                ProbeReport(
                    ok=True,
                    namespace=cfg.namespace,
                    reachable=True,
                    writable_primary=True,
                    schema=True,
                    durability=True,
                    problems=[],
                )
            )
        else:
            click.echo(f"ok: namespace {cfg.namespace} on the in-process fake")
        return
    retry = RetrySettings(attempts=1000, max_backoff_ms=max(50, int(timeout * 250)), total_s=timeout)

    async def go() -> ProbeReport:
        async with inspect_namespace(cfg, namespace, retry=retry) as view:
            assert isinstance(view, RedisNamespaceView)
            return await probe(view)

    report = _run(go())
    if as_json:
        emit_json(report)
    elif report.ok:
        click.echo(
            f"ok: namespace {report.namespace}: writable primary, schema ok, durability "
            f"{cfg.redis.durability!r} ok"
        )
    if not report.ok:
        if not as_json:
            click.echo(f"error: not ready: {'; '.join(report.problems)}", err=True)
        sys.exit(EXIT_PROBLEM)
