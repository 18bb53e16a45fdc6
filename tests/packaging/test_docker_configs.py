"""The shipped ``docker/`` configs: the compose file is valid and everything it
refers to exists, and the pytest plugin's container rung (a ``redis`` container
from the shipped ``redis.conf``) works where a Docker daemon answers.

Without a Docker daemon (or without the compose tool) those tests are skipped,
saying so; the static check of the compose file runs everywhere.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from ponos_redis import StaleLeaseError, StorageConfig, TaskStatus
from ponos_redis._configs import docker_dir, docker_file
from ponos_redis.backends.redis import RedisAggregatorStore, RedisExecutorStore
from ponos_redis.pytest_plugin import _docker_answers, _start_container
from ponos_redis.testing import make_task

COMPOSE = docker_file("compose.yaml")


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), "compose.yaml is not a mapping"
    assert doc.get("services"), "compose.yaml has no services"
    return doc


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each of a service's volumes, short or long syntax."""
    mounts = []
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            source, target = entry.split(":")[:2]
        else:
            source, target = entry.get("source", ""), entry["target"]
        mounts.append((source, target))
    return mounts


def _refs(entries: list[Any]) -> list[str]:
    """Names of a service's ``secrets:`` / ``configs:`` entries, short or long syntax."""
    return [entry if isinstance(entry, str) else entry["source"] for entry in entries]


def test_compose_refers_only_to_what_exists() -> None:
    """Every bind-mounted file, named volume, secret, config and dependency exists."""
    doc = _compose()
    volumes = set(doc.get("volumes") or {})
    services = doc["services"]
    for name, service in services.items():
        assert service.get("image"), f"{name}: no image"
        for source, target in _mounts(service):
            if source.startswith((".", "/")):
                path = (COMPOSE.parent / source).resolve()
                assert path.exists(), f"{name}: mounts {source}, which does not exist next to compose.yaml"
            else:
                assert source in volumes, f"{name}: volume {source!r} is not declared under volumes:"
            assert target.startswith("/"), f"{name}: mount target {target!r} is not absolute"
        for kind in ("secrets", "configs"):
            declared = doc.get(kind) or {}
            for ref in _refs(service.get(kind, [])):
                assert ref in declared, f"{name}: {kind[:-1]} {ref!r} is not declared under {kind}:"
                file = declared[ref].get("file")
                if file is not None:
                    assert (COMPOSE.parent / file).is_file(), f"{kind} {ref!r}: {file} does not exist"
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name}: depends on {dependency!r}, which is not a service"


def test_every_config_a_command_reads_is_mounted() -> None:
    """A config path in a service's command is a mounted file or lies in a mounted folder;
    every Redis data node and sentinel reads one of the shipped files."""
    for name, service in _compose()["services"].items():
        command = str(service.get("command", ""))
        targets = [PurePosixPath(target) for _, target in _mounts(service)]
        paths = re.findall(r"(/[\w./-]+\.(?:conf|ya?ml|json))\b", command)
        if "redis-server" in command or "redis-sentinel" in command:
            assert paths, f"{name}: runs Redis without a config file"
        for path in map(PurePosixPath, paths):
            assert any(path == t or t in path.parents for t in targets), f"{name}: {path} is not mounted"


def test_compose_topology_matches_sentinel_conf() -> None:
    """The sentinels monitor the master's port, with a quorum the sentinels can reach."""
    commands = {name: str(service.get("command", "")) for name, service in _compose()["services"].items()}
    sentinel_conf = docker_file("sentinel.conf").read_text(encoding="utf-8")
    monitor = re.search(r"^sentinel monitor (\S+) (\S+) (\d+) (\d+)$", sentinel_conf, re.M)
    assert monitor is not None
    master_port = re.search(r"--port (\d+)", commands["redis-master"])
    assert master_port is not None
    assert master_port[1] == monitor[3], "the sentinels monitor another port than the master's"
    sentinels = [name for name, command in commands.items() if "redis-sentinel" in command]
    assert 0 < int(monitor[4]) <= len(sentinels)
    replicas = [
        name for name, command in commands.items() if "redis-server" in command and name != "redis-master"
    ]
    assert replicas
    for name in replicas:
        assert f"--replicaof 127.0.0.1 {monitor[3]}" in commands[name], name


def _compose_tool() -> list[str] | None:
    """``docker compose`` or ``docker-compose``, if one is installed (no daemon needed)."""
    candidates = [["docker", "compose"], ["docker-compose"]]
    for command in candidates:
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return command
    return None


def test_compose_config_validates() -> None:
    tool = _compose_tool()
    if tool is None:
        pytest.skip("no `docker compose` or `docker-compose` here: compose.yaml is only checked statically")
    result = subprocess.run(
        [*tool, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.timeout(300)
async def test_container_from_the_shipped_redis_conf() -> None:
    """The plugin's container rung, with docker/redis.conf mounted, runs contract operations."""
    if not _docker_answers():
        pytest.skip("no Docker daemon answered within 2 s: the plugin's container rung is not run here")
    assert (docker_dir() / "redis.conf").is_file()
    url, stop = _start_container()
    try:
        # durability aof, strict: the open refuses unless the container runs the shipped
        # settings (appendonly yes, appendfsync always, noeviction).
        config = StorageConfig.from_dict(
            {"namespace": "container", "redis": {"url": url, "durability": "aof", "strict": True}}
        )
        async with await RedisAggregatorStore.open(config) as store:
            assert await store.save_task(make_task("t-1"))
            assert not await store.save_task(make_task("t-1"))
            [claimed] = await store.claim_tasks("replica-1", limit=1, lease_s=30)
            with pytest.raises(StaleLeaseError):
                await store.complete_task("t-1", claimed.token - 1)
            await store.complete_task("t-1", claimed.token)
            await store.complete_task("t-1", claimed.token)  # a replay is a no-op
            assert (await store.get_task("t-1")).status is TaskStatus.COMPLETED
        async with await RedisExecutorStore.open(config) as executor:
            assert await executor.mark_task_processed("t-1")
            assert not await executor.mark_task_processed("t-1")
    finally:
        stop()
