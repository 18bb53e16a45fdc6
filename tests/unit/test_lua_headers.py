"""The Lua scripts document themselves: a header that names every KEYS and ARGV
slot the body uses, a ``#!lua`` first line, and transition tables that match
``ponos_redis.transitions``. Pure text checks, no server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ponos_redis._scripts import SCRIPT_NAMES, lua_dir, script_header, script_source
from ponos_redis.models import DeploymentStatus, TaskStatus
from ponos_redis.transitions import DEPLOYMENT_TRANSITIONS, TASK_OVERRIDES

READ_ONLY = {"is_processed", "export_hashes"}
# Commands that change data; a script with none of them must declare flags=no-writes.
WRITE_COMMANDS = {
    "SET",
    "DEL",
    "UNLINK",
    "HSET",
    "HSETNX",
    "HDEL",
    "HINCRBY",
    "INCR",
    "INCRBY",
    "ZADD",
    "ZREM",
    "ZREMRANGEBYSCORE",
    "ZREMRANGEBYRANK",
    "XADD",
    "XTRIM",
    "XDEL",
    "EXPIRE",
    "PEXPIRE",
    "SETEX",
    "PSETEX",
}
# _lib.lua helpers that derive keys from the namespace prefix.
KEY_DERIVING_HELPERS = ("enqueue(", "dequeue(")

_SLOT_LINE = re.compile(r"^\s*(KEYS|ARGV)\[([^\]]+)\]", re.M)
_LITERAL_USE = {kind: re.compile(rf"{kind}\[(\d+)\]") for kind in ("KEYS", "ARGV")}
_ANY_USE = {kind: re.compile(rf"{kind}\[([^\]]+)\]") for kind in ("KEYS", "ARGV")}


def _path(name: str) -> Path:
    return lua_dir() / f"{name}.lua"


def _text(name: str) -> str:
    return _path(name).read_text(encoding="utf-8")


def _body(name: str) -> str:
    """The script after its header: the code a person wrote for this transition."""
    text = _text(name)
    end = text.index("]]")
    return text[end + 2 :]


class _Documented:
    """The KEYS or ARGV slots a header names: literal indices, ranges and formulas."""

    def __init__(self, header: str, kind: str) -> None:
        self.literals: set[int] = set()
        self.ranges: list[tuple[int, int | None]] = []  # (first, last or None for open-ended)
        self.formulas: set[str] = set()
        for found_kind, spec in _SLOT_LINE.findall(header):
            if found_kind != kind:
                continue
            spec = spec.strip()
            if spec.isdigit():
                self.literals.add(int(spec))
            elif m := re.fullmatch(r"(\d+)\s*\.\.\s*(\S*)", spec):
                last = m.group(2)
                self.ranges.append((int(m.group(1)), int(last) if last.isdigit() else None))
            else:
                self.formulas.add(_normalise(spec))

    def covers(self, index: int) -> bool:
        if index in self.literals:
            return True
        return any(first <= index and (last is None or index <= last) for first, last in self.ranges)

    def covers_formula(self, spec: str) -> bool:
        return _normalise(spec) in self.formulas


def _normalise(spec: str) -> str:
    """``2 + 2 * i`` and ``2+2i`` are the same formula."""
    return re.sub(r"[\s*]", "", spec)


def _loop_bounds(body: str, var: str) -> tuple[int, int] | None:
    m = re.search(rf"for\s+{re.escape(var)}\s*=\s*(\d+)\s*,\s*(\d+)\s+do", body)
    return None if m is None else (int(m.group(1)), int(m.group(2)))


@pytest.fixture(params=SCRIPT_NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_script_names_are_unique() -> None:
    assert len(set(SCRIPT_NAMES)) == len(SCRIPT_NAMES)


def test_every_script_has_a_file_starting_with_a_lua_shebang(name: str) -> None:
    assert _path(name).is_file(), f"lua/{name}.lua is missing"
    first = _text(name).partition("\n")[0]
    assert first.startswith("#!lua"), f"lua/{name}.lua must start with #!lua, got {first!r}"
    # The shebang must stay the first line of what is sent to Redis, _lib after it.
    assert script_source(name).partition("\n")[0] == first


def test_no_writes_flag_exactly_on_read_only_scripts(name: str) -> None:
    first = _text(name).partition("\n")[0]
    flagged = "flags=no-writes" in first
    assert flagged == (name in READ_ONLY), f"lua/{name}.lua: {first!r}"


def test_scripts_without_write_commands_are_flagged_no_writes(name: str) -> None:
    called = {c.upper() for c in re.findall(r"redis\.call\(\s*'(\w+)'", _body(name))}
    writes = called & WRITE_COMMANDS
    helpers = [h for h in ("emit(", *KEY_DERIVING_HELPERS) if h in _body(name)]
    if name in READ_ONLY:
        assert not writes, f"read-only lua/{name}.lua writes: {writes}"
        assert not helpers, f"read-only lua/{name}.lua calls {helpers}"
    else:
        assert writes or helpers, f"lua/{name}.lua writes nothing: flag it no-writes"


def test_header_names_keys_argv_and_returns(name: str) -> None:
    header = script_header(name)
    assert header.split(":", 1)[0].strip() == name, "the header starts with the script's name"
    # A slot or a range of slots (ARGV[2..] field, value ...).
    assert re.search(r"^\s*KEYS\[\d+", header, re.M), f"lua/{name}.lua: no KEYS in header"
    assert re.search(r"^\s*ARGV\[\d+", header, re.M), f"lua/{name}.lua: no ARGV in header"
    assert re.search(r"^\s*Returns\b", header, re.M), f"lua/{name}.lua: no Returns line"


@pytest.mark.parametrize("kind", ["KEYS", "ARGV"])
def test_literal_slots_in_header_are_contiguous_from_one(name: str, kind: str) -> None:
    documented = _Documented(script_header(name), kind)
    literals = sorted(documented.literals)
    assert literals == list(range(1, len(literals) + 1)), f"lua/{name}.lua {kind}: {literals}"


@pytest.mark.parametrize("kind", ["KEYS", "ARGV"])
def test_every_slot_the_body_uses_is_documented(name: str, kind: str) -> None:
    body = _body(name)
    documented = _Documented(script_header(name), kind)
    for index in sorted({int(i) for i in _LITERAL_USE[kind].findall(body)}):
        assert documented.covers(index), f"lua/{name}.lua uses {kind}[{index}], not in its header"
    for spec in set(_ANY_USE[kind].findall(body)):
        if spec.strip().isdigit():
            continue
        var = spec.strip()
        if re.fullmatch(r"[A-Za-z_]\w*", var) and (bounds := _loop_bounds(body, var)):
            for index in range(bounds[0], bounds[1] + 1):
                assert documented.covers(index), (
                    f"lua/{name}.lua uses {kind}[{var}] for {var} = {bounds}; {kind}[{index}] is undocumented"
                )
        elif kind == "KEYS":
            assert documented.covers_formula(spec), (
                f"lua/{name}.lua uses KEYS[{spec}], which its header does not give as a formula"
            )
        elif not documented.covers_formula(spec):
            # Computed ARGV positions (save.lua's field values) need a documented range.
            assert documented.ranges, f"lua/{name}.lua uses ARGV[{spec}] but documents no ARGV range"
    for m in re.finditer(rf"unpack\(\s*{kind}\s*(?:,\s*(\d+))?", body):
        first = int(m.group(1) or 1)
        assert any(f == first and last is None for f, last in documented.ranges), (
            f"lua/{name}.lua unpacks {kind} from {first}: document it as {kind}[{first}..]"
        )


def test_scripts_that_derive_keys_say_so(name: str) -> None:
    body = _body(name)
    derives = re.search(r"\bprefix\s*\.\.", body) is not None or any(h in body for h in KEY_DERIVING_HELPERS)
    if derives:
        assert "Derived key" in script_header(name), f"lua/{name}.lua derives keys: say 'Derived key'"


def test_no_script_scans_the_keyspace(name: str) -> None:
    called = {c.upper() for c in re.findall(r"redis\.call\(\s*'(\w+)'", script_source(name))}
    assert not called & {"KEYS", "SCAN"}, f"lua/{name}.lua must not call KEYS/SCAN (Cluster, lesson 7)"


def test_every_lua_file_is_a_known_script() -> None:
    files = {p.stem for p in lua_dir().glob("*.lua")}
    assert "_lib" in files
    orphans = files - set(SCRIPT_NAMES) - {"_lib"}
    assert not orphans, f"lua files not in SCRIPT_NAMES: {sorted(orphans)}"


def test_lib_is_not_a_script_and_uses_no_slots() -> None:
    text = _text("_lib")
    assert not text.startswith("#!lua"), "_lib.lua is placed after each script's #!lua line"
    code = text[text.index("]]") + 2 :]
    assert not re.search(r"\b(KEYS|ARGV)\[", code), "_lib.lua helpers take their keys as arguments"


# -- the transition tables --------------------------------------------------------


def _lua_allowed_table(name: str) -> dict[str, set[str]]:
    m = re.search(r"local ALLOWED = \{(.*?)\n\}", _text(name), re.S)
    assert m is not None, f"lua/{name}.lua has no ALLOWED table"
    table: dict[str, set[str]] = {}
    for source, targets in re.findall(r"(\w+)\s*=\s*\{([^}]*)\}", m.group(1)):
        entries = re.findall(r"(\w+)\s*=\s*(\w+)", targets)
        assert all(flag == "true" for _, flag in entries), f"{name}: {source} = {{{targets}}}"
        table[source] = {target for target, _ in entries}
    return table


def _python_table(
    table: dict[TaskStatus, frozenset[TaskStatus]] | dict[DeploymentStatus, frozenset[DeploymentStatus]],
) -> dict[str, set[str]]:
    return {source.value: {t.value for t in targets} for source, targets in table.items()}


def test_override_table_matches_task_overrides() -> None:
    assert _lua_allowed_table("override") == _python_table(TASK_OVERRIDES)


def test_deployment_update_table_matches_deployment_transitions() -> None:
    assert _lua_allowed_table("deployment_update") == _python_table(DEPLOYMENT_TRANSITIONS)


def test_lua_table_parser_sees_every_status() -> None:
    # Guard against a parser that silently reads nothing.
    assert set(_lua_allowed_table("override")) == {s.value for s in TaskStatus}
    assert set(_lua_allowed_table("deployment_update")) == {s.value for s in DeploymentStatus}
