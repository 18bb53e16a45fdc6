"""The runtime uses the store core only: models, interfaces and errors; never a
backend, Redis or the CLI (STYLE.md, "The layers")."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ponos_redis.runtime

RUNTIME = Path(ponos_redis.runtime.__file__).parent
ALLOWED_CORE = {"ponos_redis.errors", "ponos_redis.interfaces", "ponos_redis.models"}
ALLOWED_THIRD_PARTY = {"msgspec"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.add(node.module or "")
            elif node.level == 1:
                found.add(f"ponos_redis.runtime.{node.module}")
            else:
                found.add(f"ponos_redis.{node.module}")
    return found


def test_runtime_imports_only_the_store_core() -> None:
    files = sorted(RUNTIME.glob("*.py"))
    assert len(files) >= 7
    for path in files:
        for module in _imports(path):
            top = module.split(".")[0]
            if module.startswith("ponos_redis.runtime.") or module == "__future__":
                continue
            if top == "ponos_redis":
                assert module in ALLOWED_CORE, f"{path.name} imports {module}"
            else:
                assert top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY, (
                    f"{path.name} imports {module}"
                )


def test_importing_the_runtime_does_not_load_redis() -> None:
    code = "import sys, ponos_redis.runtime; print('redis' in sys.modules, 'ponos_redis.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
