"""Operator log lines: one line per event, key=value or JSON, never a password."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from ponos_redis import ManualClock
from ponos_redis.backends.memory import MemoryAggregatorStore
from ponos_redis.logs import JsonFormatter, KeyValueFormatter, configure, record_fields
from ponos_redis.runtime import Reaper
from ponos_redis.testing import make_task

SECRET = "s3cr3t-pw"


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("ponos_redis.test", logging.WARNING, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_key_value_line_has_event_fields_and_message_on_one_line() -> None:
    record = _record("reaper %s: %d lease(s)\nreturned", "r1", 3, event="lease_reaped", owner="r1", count=3)
    line = KeyValueFormatter().format(record)
    assert "\n" not in line
    assert line.split(" ")[1:4] == ["level=warning", "logger=ponos_redis.test", "event=lease_reaped"]
    assert "owner=r1 count=3 " in line
    assert line.endswith('msg="reaper r1: 3 lease(s)\\nreturned"')


def test_json_line_has_the_same_fields() -> None:
    record = _record("lost %s", "t-1", event="stale_refused", task_id="t-1")
    fields = json.loads(JsonFormatter().format(record))
    assert fields["event"] == "stale_refused"
    assert fields["task_id"] == "t-1"
    assert fields["msg"] == "lost t-1"
    assert list(fields)[:4] == ["time", "level", "logger", "event"]
    assert fields["time"].endswith("+00:00")


@pytest.mark.parametrize("formatter", [KeyValueFormatter(), JsonFormatter()])
def test_passwords_are_never_written(formatter: logging.Formatter) -> None:
    url = f"redis://user:{SECRET}@127.0.0.1:6379/0"
    record = _record("cannot reach %s", url, event="durability_warning", url=url)
    try:
        raise ConnectionError(f"refused: redis://:{SECRET}@host:1?password={SECRET}")
    except ConnectionError:
        import sys

        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    assert SECRET not in line
    assert "***" in line
    assert "\n" not in line


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root")
def test_configure_installs_one_handler_and_reads_the_env(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    configure(stream=stream)
    configure(stream=stream)  # replaces its own handler: no line twice
    logging.getLogger("ponos_redis.x").info("hello", extra={"event": "namespace_created"})
    assert stream.getvalue().count("event=namespace_created") == 1
    monkeypatch.setenv("PONOS_LOG_FORMAT", "json")
    stream = io.StringIO()
    configure(stream=stream)
    logging.getLogger("ponos_redis.x").info("hello", extra={"event": "namespace_created"})
    assert json.loads(stream.getvalue())["event"] == "namespace_created"


async def test_a_reaped_lease_is_one_line_with_its_facts(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    store = MemoryAggregatorStore("logs-reap", clock=clock)
    await store.save_task(make_task("t-1"))
    await store.claim_tasks("dead-replica", limit=1, lease_s=5)
    clock.advance(6)
    with caplog.at_level(logging.INFO, logger="ponos_redis"):
        await Reaper(store, "r1").run_once()
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "lease_reaped"]
    fields = record_fields(record)
    assert (fields["owner"], fields["count"]) == ("r1", 1)
    assert KeyValueFormatter().format(record).count("event=lease_reaped") == 1
