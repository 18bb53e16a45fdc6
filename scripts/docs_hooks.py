"""mkdocs hooks of the documentation site (mkdocs.yml ``hooks:``).

mkdocstrings leaves out an object that has no docstring without a word, so a
missing docstring would go unnoticed. This hook reads the ``::: identifier``
blocks of every page (and their ``members`` option), loads the same objects
with griffe, and logs a warning for each public class, function, method or
property without a docstring: ``mkdocs build --strict`` then fails, naming it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import griffe
import yaml

log = logging.getLogger("mkdocs.hooks.docstrings")

_BLOCK = re.compile(r"^::: (\S+)\n((?:[ \t]+.*\n|\n)*)", re.M)


def _blocks(docs_dir: Path) -> list[tuple[str, dict[str, Any], str]]:
    """Each ``::: identifier`` of the pages with its options, and the page it is on."""
    found = []
    for page in sorted(docs_dir.rglob("*.md")):
        for match in _BLOCK.finditer(page.read_text(encoding="utf-8") + "\n"):
            options = yaml.safe_load(match[2]) or {}
            found.append((match[1], options.get("options") or {}, str(page.relative_to(docs_dir))))
    return found


def _documented(obj: griffe.Object | griffe.Alias) -> bool:
    return obj.docstring is not None and bool(obj.docstring.value.strip())


def _public_members(obj: griffe.Object | griffe.Alias, names: Any) -> list[griffe.Object | griffe.Alias]:
    if names is False:
        return []
    members = []
    for name, member in obj.members.items():
        if isinstance(names, list):
            if name not in names:
                continue
        elif name.startswith("_") or not member.is_public:
            continue
        if member.is_alias and not obj.is_module:
            continue  # inherited: checked where it is defined
        members.append(member)
    return members


def _missing(obj: griffe.Object | griffe.Alias, names: Any, seen: set[str]) -> list[str]:
    """Paths of the public objects under ``obj`` (and ``obj``) without a docstring."""
    missing: list[str] = []
    target = obj.final_target if obj.is_alias else obj
    if target.path in seen:
        return missing
    seen.add(target.path)
    is_property = target.is_attribute and "property" in target.labels
    if (target.is_class or target.is_function or target.is_module or is_property) and not _documented(target):
        missing.append(target.path)
    if target.is_module or target.is_class:
        for member in _public_members(target, names):
            missing += _missing(member, None, seen)
    return missing


def on_pre_build(config: Any) -> None:
    docs_dir = Path(config["docs_dir"])
    paths = [str(Path(config["config_file_path"]).parent)]
    loader = griffe.GriffeLoader(search_paths=paths)
    seen: set[str] = set()
    for identifier, options, page in _blocks(docs_dir):
        package = identifier.split(".", 1)[0]
        if package not in loader.modules_collection:
            loader.load(package)
            loader.resolve_aliases(implicit=True, external=False)
        obj = loader.modules_collection.get_member(identifier)
        for path in _missing(obj, options.get("members"), seen):
            log.warning("%s: %s has no docstring (shown by '::: %s')", page, path, identifier)
