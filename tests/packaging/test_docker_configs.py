"""The shipped ``docker/`` configs: the compose file is valid and everything it
refers to exists, every secret comes from the environment and reaches Redis
through the rendered files only, the configs keep their protections, the
shipped ``entrypoint.sh`` renders exactly as ``ponos_redis._acl.render`` (which
the test topologies use), and the pytest plugin's container rung (a ``redis``
container from the shipped ``redis.conf`` and ``users.acl``) works where a
Docker daemon answers.

Without a Docker daemon (or without the compose tool) those tests are skipped,
saying so; the static checks run everywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from ponos_redis import StaleLeaseError, StorageConfig, TaskStatus
from ponos_redis._acl import APP_PASSWORD_ENV, APP_USER, generate_secrets, placeholders, render
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


def _command(service: dict[str, Any]) -> str:
    """A service's entrypoint and command as one line."""
    parts = []
    for key in ("entrypoint", "command"):
        value = service.get(key, "")
        parts.append(" ".join(value) if isinstance(value, list) else str(value))
    return " ".join(parts)


def _is_sentinel(command: str) -> bool:
    return "redis-sentinel" in command or "--sentinel" in command


def test_every_config_a_command_reads_is_mounted() -> None:
    """A config path in a service's entrypoint or command is a mounted file or lies in a
    mounted folder; every Redis data node and sentinel reads one of the shipped files."""
    for name, service in _compose()["services"].items():
        command = _command(service)
        targets = [PurePosixPath(target) for _, target in _mounts(service)]
        paths = re.findall(r"(/[\w./-]+\.(?:conf|ya?ml|json|acl|sh))\b", command)
        if "redis-server" in command or "redis-sentinel" in command:
            assert paths, f"{name}: runs Redis without a config file"
        for path in map(PurePosixPath, paths):
            assert any(path == t or t in path.parents for t in targets), f"{name}: {path} is not mounted"


def test_compose_topology_matches_sentinel_conf() -> None:
    """The sentinels monitor the master's port, with a quorum the sentinels can reach."""
    commands = {name: _command(service) for name, service in _compose()["services"].items()}
    sentinel_conf = docker_file("sentinel.conf").read_text(encoding="utf-8")
    monitor = re.search(r"^sentinel monitor (\S+) (\S+) (\d+) (\d+)$", sentinel_conf, re.M)
    assert monitor is not None
    master_port = re.search(r"--port (\d+)", commands["redis-master"])
    assert master_port is not None
    assert master_port[1] == monitor[3], "the sentinels monitor another port than the master's"
    sentinels = [name for name, command in commands.items() if _is_sentinel(command)]
    assert 0 < int(monitor[4]) <= len(sentinels)
    replicas = [
        name
        for name, command in commands.items()
        if "redis-server" in command and not _is_sentinel(command) and name != "redis-master"
    ]
    assert replicas
    for name in replicas:
        assert f"--replicaof 127.0.0.1 {monitor[3]}" in commands[name], name


SECRET_VALUE = re.compile(r"\$\{(PONOS_[A-Z0-9_]+):\?[^}]+\}")


def _rendered_templates(service: dict[str, Any]) -> list[Path]:
    """The shipped templates a service's entrypoint renders (``/etc/ponos/<name>=<output>``)."""
    found = re.findall(r"/etc/ponos/([\w.]+)=", _command(service))
    return [docker_file(name) for name in found]


def test_compose_takes_every_secret_from_the_environment() -> None:
    """No password is written in the compose file or on a command line: each is
    ``${NAME:?...}`` (compose refuses to start without it), handed to the containers'
    environment, and every variable a service's templates need is handed to it."""
    for name, service in _compose()["services"].items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: environment as a mapping"
        for key, value in environment.items():
            if "PASSWORD" in key:
                match = SECRET_VALUE.fullmatch(str(value))
                assert match is not None, f"{name}: {key} is not taken from the environment"
        command = _command(service)
        for flag in ("requirepass", "masterauth", "auth-pass", "password", "--pass", "-a "):
            assert flag not in command, f"{name}: {flag!r} on a command line"
        needed = {
            var for template in _rendered_templates(service) for var in placeholders(template.read_text())
        }
        given = {
            SECRET_VALUE.fullmatch(str(v))[1]
            for k, v in environment.items()
            if SECRET_VALUE.fullmatch(str(v))
        }
        assert needed <= given, f"{name}: its templates need {sorted(needed - given)}"
        if "redis-server" in command:
            assert _rendered_templates(service), f"{name}: runs Redis on a config it does not render"


def test_the_shipped_configs_hold_no_secret_and_keep_their_protections() -> None:
    redis_conf = docker_file("redis.conf").read_text(encoding="utf-8")
    sentinel_conf = docker_file("sentinel.conf").read_text(encoding="utf-8")
    acl = docker_file("users.acl").read_text(encoding="utf-8")

    def directives(text: str, name: str) -> list[str]:
        return [line.split(None, 1)[1] for line in text.splitlines() if line.split(None, 1)[:1] == [name]]

    for text in (redis_conf, sentinel_conf):
        assert directives(text, "protected-mode") == ["yes"]
        (bind,) = directives(text, "bind")
        assert not {"0.0.0.0", "*", "-::*", "::"} & set(bind.split()), f"bind {bind}: explicit addresses only"
    assert directives(redis_conf, "aclfile") == ["/data/users.acl"]
    assert directives(redis_conf, "masteruser") == ["ponos-replication"]
    assert directives(redis_conf, "masterauth") == ['"${PONOS_REDIS_REPLICATION_PASSWORD}"']
    assert directives(sentinel_conf, "requirepass") == ['"${PONOS_SENTINEL_PASSWORD}"']
    assert "auth-user ponos ponos-sentinel" in directives(sentinel_conf, "sentinel")
    assert 'auth-pass ponos "${PONOS_REDIS_SENTINEL_PASSWORD}"' in directives(sentinel_conf, "sentinel")
    users = [line for line in acl.splitlines() if not line.startswith("#")]
    assert users[0].split()[:4] == ["user", "default", "reset", "off"]
    for line in users:
        words = line.split()
        assert not any(w.startswith(">") or w == "nopass" for w in words), f"a clear-text password: {line}"
        if words[1] != "default":
            assert re.fullmatch(r"#\$\{PONOS_[A-Z_]+_PASSWORD\}", words[4]), line
    app = next(line for line in users if line.split()[1] == APP_USER).split()
    assert [w for w in app if w.startswith(("~", "%", "&"))] == ["~ponos:{*}:*"], "its keys only, no channel"
    for command in ("flushall", "flushdb", "keys", "debug", "config|set", "script|flush", "shutdown", "eval"):
        assert f"+{command}" not in app
    assert "+@all" not in app
    assert "allcommands" not in app


def _sh_render(templates: list[Path], out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    pairs = [f"{t}={out / t.name}" for t in templates]
    return subprocess.run(
        ["sh", str(docker_file("entrypoint.sh")), *pairs, "--", "env"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


needs_sh = pytest.mark.skipif(
    shutil.which("sh") is None or shutil.which("sha256sum") is None, reason="needs sh and sha256sum"
)


@needs_sh
def test_the_entrypoint_renders_as_the_library_does(tmp_path: Path) -> None:
    """docker/entrypoint.sh (what the containers run) and ponos_redis._acl.render (what the
    test topologies run) give the same files, and Redis gets no password in its environment."""
    secrets = generate_secrets()
    templates = [docker_file(name) for name in ("redis.conf", "users.acl", "sentinel.conf")]
    done = _sh_render(templates, tmp_path, secrets)
    assert done.returncode == 0, done.stderr
    for template in templates:
        rendered = tmp_path / template.name
        assert rendered.read_text(encoding="utf-8") == render(template.read_text(encoding="utf-8"), secrets)
        assert rendered.stat().st_mode & 0o077 == 0, f"{rendered.name} is readable by others"
    assert "PASSWORD" not in done.stdout, "the command ran with a password in its environment"
    for value in secrets.values():
        assert value not in done.stdout + done.stderr


@needs_sh
@pytest.mark.parametrize("problem", ["missing", "short", "quote"])
def test_the_entrypoint_refuses_a_missing_or_unusable_secret(tmp_path: Path, problem: str) -> None:
    secrets = generate_secrets()
    if problem == "missing":
        del secrets[APP_PASSWORD_ENV]
    else:
        secrets[APP_PASSWORD_ENV] = "short" if problem == "short" else 'a"' + "b" * 20
    done = _sh_render([docker_file("users.acl")], tmp_path, secrets)
    assert done.returncode != 0
    assert APP_PASSWORD_ENV in done.stderr
    assert list(tmp_path.iterdir()) == [], "nothing written, not even in part"


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
    """Valid with every password in the environment; refused while one is missing."""
    tool = _compose_tool()
    if tool is None:
        pytest.skip("no `docker compose` or `docker-compose` here: compose.yaml is only checked statically")
    bare = {k: v for k, v in os.environ.items() if not re.fullmatch(r"PONOS_[A-Z0-9_]*PASSWORD", k)}
    secrets = generate_secrets()
    result = subprocess.run(
        [*tool, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**bare, **secrets},
    )
    assert result.returncode == 0, result.stderr
    del secrets[APP_PASSWORD_ENV]
    refused = subprocess.run(
        [*tool, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**bare, **secrets},
    )
    assert refused.returncode != 0
    assert APP_PASSWORD_ENV in refused.stderr


@pytest.mark.timeout(300)
async def test_container_from_the_shipped_redis_conf(redis_secrets: dict[str, str]) -> None:
    """The plugin's container rung, with docker/redis.conf mounted, runs contract operations."""
    if not _docker_answers():
        pytest.skip("no Docker daemon answered within 2 s: the plugin's container rung is not run here")
    assert (docker_dir() / "redis.conf").is_file()
    url, stop = _start_container(secrets=redis_secrets)
    try:
        # durability aof, strict: the open refuses unless the container runs the shipped
        # settings (appendonly yes, appendfsync always, noeviction); as the library's user,
        # its password read from the environment.
        plain = re.sub(r"//[^@/]*@", "//", url)
        config = StorageConfig.from_dict(
            {
                "namespace": "container",
                "redis": {
                    "url": plain,
                    "username": APP_USER,
                    "password_env": APP_PASSWORD_ENV,
                    "durability": "aof",
                    "strict": True,
                },
            }
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
