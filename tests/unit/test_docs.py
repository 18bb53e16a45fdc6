"""The reference pages cannot drift from the code: docs/configuration.md lists
every field of every settings class with its default, and docs/troubleshooting.md
has a section for every error class ``ponos_redis.errors`` exports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from ponos_redis import config, errors
from ponos_redis.config import RedisSettings, StorageConfig

DOCS = Path(__file__).resolve().parents[2] / "docs"
CONFIGURATION = DOCS / "configuration.md"
TROUBLESHOOTING = DOCS / "troubleshooting.md"

SETTINGS_CLASSES = [
    getattr(config, name)
    for name in config.__all__
    if isinstance(getattr(config, name), type) and issubclass(getattr(config, name), msgspec.Struct)
]
_ROW = re.compile(r"^\| `(\w+)` \| (.+?) \| .+ \|$")


def _tables() -> dict[str, dict[str, str]]:
    """Class name -> {field: default cell}, from the ``## ... (`Class`)`` sections."""
    tables: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in CONFIGURATION.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## .*\(`(\w+)`\)$", line)
        if heading:
            current = tables.setdefault(heading[1], {})
        elif line.startswith("#"):
            current = None
        elif current is not None and (row := _ROW.match(line)):
            assert row[1] not in current, f"{row[1]} listed twice"
            current[row[1]] = row[2]
    return tables


def _check_default(cls: type, field: msgspec.structs.FieldInfo, cell: str) -> None:
    where = f"docs/configuration.md: {cls.__name__}.{field.name}"
    if field.required:
        assert cell == "required", f"{where}: is required, the page says {cell!r}"
    elif field.default_factory is not msgspec.NODEFAULT:
        factory: Any = field.default_factory
        assert f"`{factory.__name__}`" in cell, f"{where}: defaults to {factory.__name__}(), page: {cell!r}"
    else:
        shown = re.fullmatch(r"`([^`]*)`", cell)
        assert shown is not None, f"{where}: the default must be one `value`, got {cell!r}"
        value = yaml.safe_load(shown[1])
        booleans = isinstance(value, bool) or isinstance(field.default, bool)  # 0 == False, 1 == True
        same = value is field.default if booleans else value == field.default
        assert same, f"{where}: the page says {shown[1]}, the code {field.default!r}"


@pytest.mark.parametrize("cls", SETTINGS_CLASSES, ids=lambda cls: cls.__name__)
def test_configuration_lists_every_field_with_its_default(cls: type) -> None:
    tables = _tables()
    assert cls.__name__ in tables, f"docs/configuration.md has no section for {cls.__name__}"
    documented = tables[cls.__name__]
    fields = msgspec.structs.fields(cls)
    assert list(documented) == [f.name for f in fields], (
        f"docs/configuration.md: the fields of {cls.__name__} (in order) are {[f.name for f in fields]}"
    )
    for field in fields:
        _check_default(cls, field, documented[field.name])


def test_every_settings_class_is_covered() -> None:
    assert {cls.__name__ for cls in SETTINGS_CLASSES} == set(_tables())
    assert len(SETTINGS_CLASSES) == 6


def test_the_complete_example_is_the_defaults() -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    (example,) = re.findall(r"```yaml\n(.*?)```", text, re.S)
    loaded = StorageConfig.from_dict(yaml.safe_load(example)["storage"])
    assert loaded == StorageConfig(type="redis", redis=RedisSettings(url="redis://127.0.0.1:6379/0"))


def test_a_changed_default_is_caught() -> None:
    """The check itself: a default that differs from the page fails it."""
    field = next(f for f in msgspec.structs.fields(config.TaskSettings) if f.name == "max_attempts")
    with pytest.raises(AssertionError, match="max_attempts"):
        _check_default(config.TaskSettings, field, "`6`")
    strict = next(f for f in msgspec.structs.fields(RedisSettings) if f.name == "strict")
    with pytest.raises(AssertionError, match="strict"):
        _check_default(RedisSettings, strict, "`0`")


def test_troubleshooting_covers_every_error_class() -> None:
    text = TROUBLESHOOTING.read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## `(\w+)`\n(.*?)(?=^## |\Z)", text, re.S | re.M))
    for name in errors.__all__:
        assert isinstance(getattr(errors, name), type), name
        assert name in sections, f"docs/troubleshooting.md has no section for {name}"
        assert "**What it means.**" in sections[name], f"{name}: say what it means"
        assert "**What to do.**" in sections[name], f"{name}: say what to do"


def _section_rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the table rows (header and rule excluded) under ``## heading``."""
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ") and not set(line) <= set("|- ")]
    rows = [line.strip("|").split("|") for line in lines]
    return [[cell.strip().strip("`") for cell in row] for row in rows[1:]]


def _statuses(cell: str, names: set[str]) -> set[str]:
    return {word for word in re.findall(r"[a-z]+", cell) if word in names}


def test_states_page_is_the_transition_table() -> None:
    from ponos_redis.models import DeploymentStatus, TaskStatus
    from ponos_redis.transitions import DEPLOYMENT_TRANSITIONS, TASK_OPERATIONS, TASK_OVERRIDES

    text = (DOCS / "states.md").read_text(encoding="utf-8")
    task_names = {s.value for s in TaskStatus}
    operations = {row[0]: row for row in _section_rows(text, "Operations")}
    assert set(operations) == {op.value for op in TASK_OPERATIONS}
    for op, (required, targets) in TASK_OPERATIONS.items():
        _, _, source, target = operations[op.value]
        assert source == required.value, op
        assert _statuses(target, task_names) == {t.value for t in targets}, op
    for heading, table, names in (
        ("The operator's override", TASK_OVERRIDES, task_names),
        ("Deployments", DEPLOYMENT_TRANSITIONS, {s.value for s in DeploymentStatus}),
    ):
        rows = {row[0]: _statuses(row[1], names) for row in _section_rows(text, heading)}
        assert rows == {s.value: {t.value for t in targets} for s, targets in table.items()}, heading
