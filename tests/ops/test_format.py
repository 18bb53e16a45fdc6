"""The export file format, read without a server: a whole file is validated
before anything is written, and every refusal names its line."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from _ops_support import fresh_namespace, populate, rewrite

from ponos_redis import InvalidInputError, MemoryAggregatorStore, MemoryExecutorStore
from ponos_redis.ops import export_namespace, read_file
from ponos_redis.ops._format import FORMAT, FORMAT_VERSION, Header, TaskLine


@pytest.fixture
async def exported() -> bytes:
    namespace = fresh_namespace("format")
    agg, exe = MemoryAggregatorStore(namespace), MemoryExecutorStore(namespace)
    await populate(agg, exe)
    buffer = io.BytesIO()
    await export_namespace(agg, buffer)
    return buffer.getvalue()


async def test_a_file_reads_back_to_its_records(exported: bytes) -> None:
    export = read_file(io.BytesIO(exported))
    assert isinstance(export.header, Header)
    assert (export.header.format, export.header.format_version) == (FORMAT, FORMAT_VERSION)
    assert export.header.consistency == "point-in-time"
    assert export.header.source == "memory"
    assert len(export.records) == 23
    assert export.lines == list(range(2, 25))
    assert export.line_of("task", "t-04") is not None
    processing = [t for t in export.by_type(TaskLine) if t.record.status == "processing"]
    assert [t.record.task.task_id for t in processing] == ["t-04"]
    assert processing[0].record.lease_until is not None
    assert processing[0].record.token is not None


def _set(kind: str, **fields: object) -> Callable[[list[dict[str, object]]], None]:
    def change(lines: list[dict[str, object]]) -> None:
        line = next(x for x in lines if x["type"] == kind)
        for name, value in fields.items():
            target = line
            *path, last = name.split(".")
            for part in path:
                target = target[part]  # type: ignore[assignment]
            target[last] = value

    return change


def _line_number(data: bytes, needle: bytes) -> int:
    return next(n for n, line in enumerate(data.splitlines(), start=1) if needle in line)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_set("task", **{"record.status": "processing", "record.lease_until": None}), "needs owner, token"),
        (_set("task", **{"record.task.avs_address": "0x12"}), "avs_address must be 0x"),
        (_set("chain", last_block=-1), "last_block must be 0 <= n"),
        (
            _set(
                "deployment",
                history=[{"deployment_id": "other", "status": "pending", "at": "2026-01-01T00:00:00Z"}],
            ),
            "a history entry of deployment 'other'",
        ),
        (_set("processed", expires_at="2026-01-01T00:00:00"), "naive"),
    ],
)
async def test_an_invalid_record_is_refused_naming_its_line(
    exported: bytes, change: Callable[[list[dict[str, object]]], None], expected: str
) -> None:
    data = rewrite(exported, change)
    with pytest.raises(InvalidInputError) as info:
        read_file(io.BytesIO(data))
    assert expected in str(info.value)
    assert "export line " in str(info.value)
    assert "nothing was written" in str(info.value)


async def test_structural_damage_is_refused_naming_the_line(exported: bytes) -> None:
    lines = exported.splitlines(keepends=True)

    def refused(data: bytes) -> str:
        with pytest.raises(InvalidInputError) as info:
            read_file(io.BytesIO(data))
        return str(info.value)

    assert "line 1: not a ponos-redis-export file" in refused(b"".join(lines[1:]))
    assert "is empty" in refused(b"")
    header = lines[0].replace(f'"format_version":{FORMAT_VERSION}'.encode(), b'"format_version":99')
    assert "line 1: format version 99" in refused(header + b"".join(lines[1:]))
    assert "line 3: empty line" in refused(b"".join([*lines[:2], b"\n", *lines[2:]]))
    assert f"line {len(lines)}: the line is cut short" in refused(exported[:-1])
    assert "after the end line" in refused(exported + lines[1])
    assert f"line {len(lines) - 1}: the file ends without its end line" in refused(b"".join(lines[:-1]))
    assert "line 3: task 't-" in refused(b"".join([*lines[:2], lines[1], *lines[2:]]))
    assert "again (first on line 2)" in refused(rewrite(exported, lambda body: body.insert(2, body[1])))
    tampered = exported.replace(b'"boom"', b'"bang"')
    assert f"line {len(lines)}: checksum mismatch" in refused(tampered)
    no_counters = rewrite(
        exported, lambda body: body.remove(next(x for x in body if x["type"] == "counters"))
    )
    assert "no counters line" in refused(no_counters)
    assert _line_number(exported, b'"type":"counters"') == len(lines) - 1


def test_the_import_encodes_tasks_as_the_stores_do() -> None:
    """import_tasks compares and writes the fields save.lua does: the same text."""
    from datetime import UTC, datetime

    from ponos_redis import _codec as codec
    from ponos_redis.ops._redis import _TASK_TEXT, _TASK_TEXT_FIELDS
    from ponos_redis.testing import make_task

    for task in (
        make_task("a"),
        make_task("b:é", deadline=datetime(2031, 5, 6, 7, 8, 9, 123000, tzinfo=UTC), threshold_bips=0),
        make_task("c", operator_set_id=2**53 - 1, chain_id=0, block_number=12, callback_address=""),
    ):
        stored = dict(zip(codec.TASK_FIELDS, codec.encode_task(task), strict=True))
        assert [encode(task) for encode in _TASK_TEXT] == [stored[name] for name in _TASK_TEXT_FIELDS]
