"""The Lua scripts in ``lua/``: one lookup that works from a checkout and from
an installed wheel (which carries them as ``ponos_redis/lua``).

Each script is sent as: its ``#!lua`` first line, then the line
``local SCHEMA_VERSION = '<n>'`` (the key layout the script writes, checked
against the namespace's by the namespace guard), then ``_lib.lua`` (shared
local helpers), then the rest of the file, so the header stays first in the
file a person reads while every script gets the same helpers.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from .keys import SCHEMA_VERSION

__all__ = ["SCRIPT_NAMES", "lua_dir", "script_header", "script_source"]

SCRIPT_NAMES: tuple[str, ...] = (
    "save",
    "claim",
    "renew",
    "complete",
    "fail",
    "release",
    "reap",
    "trim",
    "override",
    "delete",
    "advance",
    "rewind",
    "save_block",
    "delete_block",
    "lease_acquire",
    "lease_renew",
    "lease_release",
    "put_hash",
    "put_record",
    "delete_record",
    "deployment_save",
    "deployment_update",
    "mark_processed",
    "is_processed",
    "namespace_open",
    "set_aside",
    "fail_orphaned",
    "runner_lease",
    "export_hashes",
    "import_tasks",
    "import_records",
    "migrate_begin",
    "migrate_chain_index",
    "repair_index",
)

_HEADER_RE = re.compile(r"\A#!lua[^\n]*\n--\[\[(.*?)\]\]", re.S)


def lua_dir() -> Path:
    """The folder holding the scripts: inside the package when installed, else the checkout's ``lua/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "lua", here.parent / "lua"):
        if (candidate / "_lib.lua").is_file():
            return candidate
    raise FileNotFoundError(f"no lua/ folder with _lib.lua next to {here}")


@functools.cache
def _read(name: str) -> str:
    return (lua_dir() / f"{name}.lua").read_text(encoding="utf-8")


@functools.cache
def script_source(name: str, schema_version: int = SCHEMA_VERSION) -> str:
    """The full source sent to Redis for the script ``name``.

    Args:
        name: one of :data:`SCRIPT_NAMES`.
        schema_version: the schema version the script's namespace guard
            expects; another value only in tests (a replica of an older version).
    """
    text = _read(name)
    first, _, rest = text.partition("\n")
    if not first.startswith("#!lua"):
        raise ValueError(f"lua/{name}.lua must start with a #!lua line")
    version = f"local SCHEMA_VERSION = '{int(schema_version)}'"
    return f"{first}\n{version}\n{_read('_lib')}\n{rest}"


def script_header(name: str) -> str:
    """The ``--[[ ... ]]`` header of a script (what it does, KEYS, ARGV, returns)."""
    match = _HEADER_RE.match(_read(name))
    if match is None:
        raise ValueError(f"lua/{name}.lua lacks a --[[ header ]] after its #!lua line")
    return match.group(1)
