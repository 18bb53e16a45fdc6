"""A built wheel carries every Lua script, and the installed lookup finds them there."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ponos_redis._scripts import SCRIPT_NAMES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out),
    ]
    subprocess.run([*command, str(ROOT)], check=True, timeout=300, capture_output=True)
    (built,) = out.glob("ponos_redis-*.whl")
    return built


def test_wheel_carries_every_script(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for script in (*SCRIPT_NAMES, "_lib"):
        assert f"ponos_redis/lua/{script}.lua" in names, f"{script}.lua missing from {wheel.name}"
    assert "ponos_redis/py.typed" in names


def test_installed_layout_finds_the_scripts(wheel: Path, tmp_path: Path) -> None:
    """Unpacked as installed (no checkout beside it), the package finds lua/ inside itself."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import ponos_redis._scripts as s; "
        "print(s.lua_dir()); "
        "assert all(s.script_source(n) for n in s.SCRIPT_NAMES)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site)},
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert Path(result.stdout.strip()) == site / "ponos_redis" / "lua"
