"""The key layout of a namespace (ponos_redis.keys): one hash tag, no aliasing
between key kinds whatever the ids contain, exact chain keys. No server."""

from __future__ import annotations

import fnmatch
import inspect
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
from redis.crc import key_slot

from ponos_redis import InvalidInputError, TaskStatus
from ponos_redis.keys import Keys, parse_key

NS = "ns-1"

# Ids that look like other keys, or like the hash tag.
TRICKY_IDS = [
    "a",
    "a:history",
    "history:a",
    "a:pending",
    "s:pending",
    "a:config",
    "a:blocks",
    "a:block-index",
    "meta",
    "events",
    "performers",
    "deployments",
    "x{y}z",
    "}{",
    "{ns-1}",
    "{other}",
    "ns-1}:task:a",
    ":",
    "a:",
    ":a",
    "täsk-ü",
]
# Addresses reach Keys validated and lower-cased (0x + 40 hex digits).
ADDRESSES = ["0x" + "ab" * 20, "0x" + "00" * 20]
CHAIN_IDS = [0, 1, 8453, 84532, 17000, 11155111]
OPSET_IDS = [0, 1, 11]

_SAMPLES: dict[str, list[Any]] = {
    "task_id": TRICKY_IDS,
    "performer_id": TRICKY_IDS,
    "deployment_id": TRICKY_IDS,
    "claim_id": TRICKY_IDS,
    "name": TRICKY_IDS,
    "status": list(TaskStatus),
    "avs_address": ADDRESSES,
    "chain_id": CHAIN_IDS,
    "operator_set_id": OPSET_IDS,
}


# SCAN MATCH patterns, not keys.
_PATTERNS = {"pattern", "chain_pattern", "runner_pattern"}


def _builders() -> list[tuple[str, Any]]:
    return [
        (name, attr)
        for name, attr in vars(Keys).items()
        if not name.startswith("_") and name != "namespace" and name not in _PATTERNS
    ]


def all_keys(keys: Keys) -> Iterator[tuple[str, tuple[Any, ...], str]]:
    """Every key kind of ``keys`` with sample arguments: (kind, args, key)."""
    for name, attr in _builders():
        if name == "prefix":
            continue
        if isinstance(attr, property):
            yield name, (), getattr(keys, name)
            continue
        params = [p for p in inspect.signature(attr).parameters if p != "self"]
        unknown = [p for p in params if p not in _SAMPLES]
        assert not unknown, f"Keys.{name} takes {unknown}: add sample values to this test"
        for args in itertools.product(*(_SAMPLES[p] for p in params)):
            yield name, args, getattr(keys, name)(*args)


def test_every_key_kind_is_exercised() -> None:
    kinds = {kind for kind, _, _ in all_keys(Keys(NS))}
    assert kinds == {name for name, _ in _builders()} - {"prefix"}


def test_every_key_is_told_apart_from_the_others() -> None:
    # parse_key (what doctor and the views use) names each key's kind and id, whatever the id.
    keys = Keys(NS)
    refs: dict[tuple[str, str], str] = {}
    for kind, args, key in all_keys(keys):
        ref = parse_key(keys, key)
        assert ref is not None, (kind, args, key)
        if args:
            assert ref.ident.endswith(str(args[-1].value if isinstance(args[-1], TaskStatus) else args[-1]))
        assert refs.setdefault((ref.kind, ref.ident), key) == key, (
            f"{key!r} and {refs[(ref.kind, ref.ident)]!r}"
        )
    assert parse_key(keys, Keys("other").meta) is None


def test_patterns_match_the_keys_they_name() -> None:
    keys = Keys(NS)
    for kind, _, key in all_keys(keys):
        assert fnmatch.fnmatchcase(key, keys.pattern.replace("[", "[[]")), key
        if kind in ("chain", "blocks", "block_index", "chain_tasks"):
            assert fnmatch.fnmatchcase(key, keys.chain_pattern), key
        if kind == "runner":
            assert fnmatch.fnmatchcase(key, keys.runner_pattern), key


def test_every_key_starts_with_the_namespace_prefix_and_hash_tag() -> None:
    keys = Keys(NS)
    assert keys.prefix == "ponos:{ns-1}:"
    for kind, args, key in all_keys(keys):
        assert key.startswith(keys.prefix), (kind, args, key)
        # The first {...} of a key is its hash tag: the namespace's, whatever the id holds.
        assert re.search(r"\{([^}]*)\}", key).group(1) == NS, (kind, args, key)  # type: ignore[union-attr]


def test_every_key_of_a_namespace_maps_to_one_cluster_slot() -> None:
    keys = Keys(NS)
    slot = key_slot(b"{" + NS.encode() + b"}")
    slots = {key_slot(key.encode()) for _, _, key in all_keys(keys)}
    assert slots == {slot}


def test_different_key_kinds_or_ids_never_alias() -> None:
    seen: dict[str, tuple[str, tuple[Any, ...]]] = {}
    for kind, args, key in all_keys(Keys(NS)):
        other = seen.setdefault(key, (kind, args))
        assert other == (kind, args), f"{key!r} is both {other} and {(kind, args)}"


def test_deployment_id_that_looks_like_a_history_key() -> None:
    keys = Keys(NS)
    assert keys.deployment("a:history") != keys.deployment_history("a")
    assert keys.deployment_history("a") != keys.deployment("history:a")
    assert keys.task("s:pending") != keys.tasks(TaskStatus.PENDING)


def test_namespaces_never_share_keys() -> None:
    a = {key for _, _, key in all_keys(Keys("a"))}
    ab = {key for _, _, key in all_keys(Keys("ab"))}
    a_dot = {key for _, _, key in all_keys(Keys("a.b"))}
    assert not a & ab
    assert not a & a_dot


def _chain_keys(keys: Keys, chain_id: int) -> list[str]:
    return [
        keys.chain(chain_id),
        keys.blocks(chain_id),
        keys.block_index(chain_id),
        keys.chain_tasks(chain_id),
    ]


@pytest.mark.parametrize(("a", "b"), [(1, 17000), (1, 11155111), (17000, 11155111), (8453, 84532), (1, 10)])
def test_chain_keys_with_shared_digit_prefixes_are_exact(a: int, b: int) -> None:
    """Lesson 11: chain 1 must never see chain 17000's cursor or blocks."""
    keys = Keys(NS)
    keys_a, keys_b = _chain_keys(keys, a), _chain_keys(keys, b)
    assert len(set(keys_a + keys_b)) == 8
    exact = re.compile(re.escape(keys.prefix) + r"chain:(\d+)(?::blocks|:block-index|:tasks)?")
    for chain_id, own in ((a, keys_a), (b, keys_b)):
        for key in own:
            m = exact.fullmatch(key)
            assert m is not None, key
            assert int(m.group(1)) == chain_id, key
    # No key of one chain, followed by the delimiter, starts a key of the other.
    for mine, theirs in ((keys_a, keys_b), (keys_b, keys_a)):
        for key in mine:
            for other in theirs:
                assert not other.startswith(key + ":"), (key, other)


@pytest.mark.parametrize("bad", ["", "bad ns!", "a{b", "a}b", "a:b", "x" * 65, "ü", "a b", "a\n", None, 7])
def test_invalid_namespace_raises(bad: Any) -> None:
    with pytest.raises(InvalidInputError):
        Keys(bad)


def test_longest_valid_namespace_is_accepted() -> None:
    assert Keys("x" * 64).meta == "ponos:{" + "x" * 64 + "}:meta"


def test_docs_keys_md_lists_every_key_kind() -> None:
    """docs/keys.md documents every kind of key that keys.py builds."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "keys.md").read_text(encoding="utf-8")
    keys = Keys(NS)
    placeholders = {
        "task": ("<task_id>",),
        "tasks": None,
        "avs_pending": ("<avs_address>",),
        "claim": ("<claim_id>",),
        "chain": ("<chain_id>",),
        "blocks": ("<chain_id>",),
        "block_index": ("<chain_id>",),
        "chain_tasks": ("<chain_id>",),
        "runner": ("<name>",),
        "operator_set_config": ("<avs_address>", "<operator_set_id>"),
        "avs_config": ("<avs_address>",),
        "performer": ("<performer_id>",),
        "inflight": ("<task_id>",),
        "deployment": ("<deployment_id>",),
        "deployment_history": ("<deployment_id>",),
        "processed": ("<task_id>",),
    }
    built: list[str] = []
    for name, _ in _builders():
        if name == "prefix":
            continue
        attr = getattr(keys, name)
        if not callable(attr):
            built.append(attr)
        elif placeholders.get(name) is None:
            built.extend(attr(status) for status in TaskStatus)
        else:
            built.append(attr(*placeholders[name]))
    for key in built:
        suffix = key.removeprefix(keys.prefix)
        assert f"`{suffix}`" in doc, f"docs/keys.md does not document {suffix!r}"
