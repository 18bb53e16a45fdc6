"""The built wheel and sdist carry what the package reads at run time (the Lua
scripts, the shipped ``docker/`` configs, the licence), and the wheel works
once installed into a fresh virtual environment: the command, a store round
trip (memory, and Redis from the shipped ``redis.conf``) and the pytest plugin.

The fresh environment installs its dependencies from the package index (with
pip's cache: about 15 s here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from ponos_redis._redis_server import redis_server_available
from ponos_redis._scripts import SCRIPT_NAMES

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
DOCKER_FILES = ("redis.conf", "users.acl", "sentinel.conf", "entrypoint.sh", "compose.yaml")
NO_REDIS_SERVER = "redis-server is not on PATH: the Redis half of the installed package is not checked"


def _build(source: Path, out: Path, *targets: str) -> None:
    """Build with hatchling, the build backend, from ``source`` (a checkout or an unpacked sdist)."""
    command = [sys.executable, "-m", "hatchling", "build", "-d", str(out)]
    for target in targets:
        command += ["-t", target]
    subprocess.run(command, cwd=source, check=True, timeout=120, capture_output=True)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and the sdist of the checkout."""
    out = tmp_path_factory.mktemp("dist")
    _build(ROOT, out, "wheel", "sdist")
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (built,) = dist.glob("ponos_redis-*.whl")
    return built


@pytest.fixture(scope="module")
def sdist(dist: Path) -> Path:
    (built,) = dist.glob("ponos_redis-*.tar.gz")
    return built


def test_wheel_carries_every_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for script in (*SCRIPT_NAMES, "_lib"):
        assert f"ponos_redis/lua/{script}.lua" in names, f"{script}.lua missing from {wheel.name}"
    assert "ponos_redis/py.typed" in names


def test_wheel_carries_the_configs_and_the_licence(wheel: Path) -> None:
    dist_info = f"ponos_redis-{VERSION}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        configs = {name: archive.read(f"ponos_redis/docker/{name}") for name in DOCKER_FILES}
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    for name, carried in configs.items():
        assert carried == (ROOT / "docker" / name).read_bytes(), f"docker/{name} differs from the checkout's"
    assert f"{dist_info}/licenses/LICENSE" in names
    for line in (
        f"Version: {VERSION}",
        "License-Expression: Apache-2.0",
        "Author: ponos-redis developers",
        "Provides-Extra: testing",
        "Provides-Extra: dev",
        "Provides-Extra: metrics",
        "Requires-Dist: prometheus-client>=0.19; extra == 'metrics'",
    ):
        assert line in metadata.splitlines(), line
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    base = [line for line in requires if "extra ==" not in line]
    assert not [line for line in base if "prometheus" in line or "pytest" in line]
    assert "ponos_redis = ponos_redis.pytest_plugin" in entry_points


def test_sdist_builds_a_complete_wheel(sdist: Path, tmp_path: Path) -> None:
    """The sdist has the sources, configs, docs and licence, and a wheel built from it alone is complete."""
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        archive.extractall(tmp_path, filter="data")
    for name in ("LICENSE", "README.md", "pyproject.toml", "mkdocs.yml", "lua/_lib.lua", "docs/index.md"):
        assert name in names, f"{name} missing from {sdist.name}"
    assert {f"docker/{name}" for name in DOCKER_FILES} <= names
    (source,) = tmp_path.glob("ponos_redis-*")
    _build(source, tmp_path / "out", "wheel")
    (rebuilt,) = (tmp_path / "out").glob("*.whl")
    with zipfile.ZipFile(rebuilt) as archive:
        rebuilt_names = set(archive.namelist())
    assert {f"ponos_redis/docker/{name}" for name in DOCKER_FILES} <= rebuilt_names
    assert {f"ponos_redis/lua/{name}.lua" for name in (*SCRIPT_NAMES, "_lib")} <= rebuilt_names


def test_installed_layout_finds_the_scripts(wheel: Path, tmp_path: Path) -> None:
    """Unpacked as installed (no checkout beside it), the package finds lua/ and docker/ inside itself."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    code = (
        "import ponos_redis._scripts as s, ponos_redis._configs as c, ponos_redis._topology as t; "
        "print(s.lua_dir()); "
        "assert all(s.script_source(n) for n in s.SCRIPT_NAMES); "
        "assert c.docker_dir() == s.lua_dir().parent / 'docker'; "
        "assert t.docker_conf('sentinel.conf').read_text()"
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


def test_version_comes_from_pyproject(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed: the distribution's metadata; a checkout not installed: its pyproject.toml."""
    import importlib.metadata

    import ponos_redis

    assert ponos_redis.__version__ == VERSION

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert ponos_redis._version() == VERSION


# --- the wheel installed into a fresh virtual environment ---------------------------------------


_CHECKOUT_ENV = {"PYTHONPATH", "PONOS_TEST_REDIS_URL", "VIRTUAL_ENV"}


def _clean_env() -> dict[str, str]:
    """This environment without what would point the child at the checkout or this session's Redis."""
    return {k: v for k, v in os.environ.items() if k not in _CHECKOUT_ENV}


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain virtual environment with ``ponos-redis[testing]`` installed from the wheel."""
    path = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120, capture_output=True)
    install = subprocess.run(
        [
            str(path / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-compile",
            "--disable-pip-version-check",
            f"{wheel}[testing]",
        ],
        env=_clean_env(),
        timeout=480,
        capture_output=True,
        text=True,
    )
    if install.returncode != 0:
        pytest.fail(f"installing the wheel into a fresh venv failed:\n{install.stdout}\n{install.stderr}")
    return path


def _run(venv: Path, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        cwd=cwd,
        env=_clean_env(),
        timeout=timeout,
        capture_output=True,
        text=True,
    )


ROUND_TRIP = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path

    import ponos_redis
    from ponos_redis import TaskStatus, open_aggregator_store, open_executor_store
    from ponos_redis._configs import docker_file
    from ponos_redis._redis_server import RedisServer
    from ponos_redis.testing import make_task


    async def round_trip(config):
        async with open_aggregator_store(config, namespace="installed") as store:
            await store.save_task(make_task("t-1"))
            [claimed] = await store.claim_tasks("replica-1", limit=1, lease_s=30)
            await store.complete_task("t-1", claimed.token)
            status = (await store.get_task("t-1")).status
        async with open_executor_store(config, namespace="installed") as executor:
            first = await executor.mark_task_processed("t-1")
            again = await executor.mark_task_processed("t-1")
        return {"status": str(status), "marked": [first, again], "type": type(store).__name__}


    out = {"file": ponos_redis.__file__, "version": ponos_redis.__version__}
    out["memory"] = asyncio.run(round_trip("memory"))
    if sys.argv[1:] == ["redis"]:
        # The shipped redis.conf, read from inside the installed package: AOF on, fsync always,
        # noeviction, so the strict `aof` durability check passes.
        with RedisServer(conf_file=docker_file("redis.conf")) as server:
            config = {"type": "redis", "redis": {"url": server.url, "durability": "aof", "strict": True}}
            out["redis"] = asyncio.run(round_trip(config))
    print(json.dumps(out))
    """
)

EXPECTED_ROUND_TRIP = {"status": "completed", "marked": [True, False]}


@pytest.mark.timeout(600)
def test_installed_command_reports_the_version(venv: Path, tmp_path: Path) -> None:
    result = _run(venv, "ponos-redis", "--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ponos-redis, version {VERSION}"


@pytest.mark.timeout(600)
def test_installed_memory_round_trip(venv: Path, tmp_path: Path) -> None:
    result = _run(venv, "python", "-c", ROUND_TRIP, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert Path(out["file"]).is_relative_to(venv), "imported the checkout, not the installed wheel"
    assert out["version"] == VERSION
    assert out["memory"] == {**EXPECTED_ROUND_TRIP, "type": "MemoryAggregatorStore"}


@pytest.mark.timeout(600)
def test_installed_redis_round_trip_on_the_shipped_config(venv: Path, tmp_path: Path) -> None:
    if not redis_server_available():
        pytest.skip(NO_REDIS_SERVER)
    result = _run(venv, "python", "-c", ROUND_TRIP, "redis", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["redis"] == {**EXPECTED_ROUND_TRIP, "type": "RedisAggregatorStore"}


PLUGIN_TESTS = textwrap.dedent(
    """
    import pytest

    from ponos_redis import TaskStatus
    from ponos_redis.testing import make_task


    @pytest.mark.asyncio
    async def test_memory(ponos_aggregator_store, ponos_clock):
        await ponos_aggregator_store.save_task(make_task("t-1"))
        await ponos_aggregator_store.claim_tasks("replica-1", limit=1, lease_s=30)
        ponos_clock.advance(31)
        assert await ponos_aggregator_store.reap_expired_leases() == 1


    @pytest.mark.ponos_backend("redis")
    @pytest.mark.asyncio
    async def test_redis(ponos_aggregator_store):
        await ponos_aggregator_store.save_task(make_task("t-1"))
        [claimed] = await ponos_aggregator_store.claim_tasks("replica-1", limit=1, lease_s=30)
        await ponos_aggregator_store.complete_task("t-1", claimed.token)
        assert (await ponos_aggregator_store.get_task("t-1")).status is TaskStatus.COMPLETED
    """
)


@pytest.fixture(scope="module")
def plugin_run(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The installed plugin in a project of its own: each test's outcome (Redis: a private server)."""
    project = tmp_path_factory.mktemp("users-project")
    (project / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n', encoding="utf-8"
    )
    (project / "test_users.py").write_text(PLUGIN_TESTS, encoding="utf-8")
    report = project / "report.txt"
    result = _run(
        venv,
        "python",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-W",
        "error",
        "-rA",
        f"--junitxml={report}",
        cwd=project,
        timeout=180,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in {"failure", "error", "skipped"}]
        outcomes[case.get("name", "")] = kinds[0] if kinds else "passed"
    assert outcomes.keys() == {"test_memory", "test_redis"}, result.stdout
    outcomes["output"] = result.stdout
    return outcomes


@pytest.mark.timeout(600)
def test_installed_plugin_memory_stores(plugin_run: dict[str, str]) -> None:
    assert plugin_run["test_memory"] == "passed", plugin_run["output"]


@pytest.mark.timeout(600)
def test_installed_plugin_redis_stores(plugin_run: dict[str, str]) -> None:
    if not redis_server_available():
        pytest.skip(NO_REDIS_SERVER)
    assert plugin_run["test_redis"] == "passed", plugin_run["output"]
