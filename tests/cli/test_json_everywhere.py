"""The commands that are not about one namespace's records have --json too: demo,
namespace create, metrics serve (its start line); and every command lists --json."""

from __future__ import annotations

import json

import click
import pytest
from _cli_support import EXIT_OK, invoke, run

from ponos_redis.cli import main


def _commands(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*prefix, name)))
        else:
            found.append(((*prefix, name), command))
    return found


def test_every_command_has_json() -> None:
    for path, command in _commands(main):
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert "--json" in options, f"ponos-redis {' '.join(path)} has no --json"


def test_demo_json_on_the_fake() -> None:
    outcome = invoke("demo", "--memory", "--json")
    assert outcome.code == EXIT_OK, outcome.where()
    report = json.loads(outcome.stdout)
    assert report["ok"] is True
    assert report["backend"].startswith("memory")
    assert report["lines"]


@pytest.mark.redis_only
def test_namespace_create_json(redis_url: str, redis_namespace: str) -> None:
    store = ["--store", redis_url, "--namespace", redis_namespace]
    first = invoke("namespace", "create", *store, "--json").json()
    assert first["created"] is True
    assert first["namespace"] == redis_namespace
    again = invoke("namespace", "create", *store, "--json").json()
    assert again == {**first, "created": False}
    assert invoke("namespace", "create", "--store", "memory", "--json").json()["created"] is False


def test_metrics_serve_json_start_line() -> None:
    pytest.importorskip("prometheus_client")
    outcome = run("metrics", "serve", "--store", "memory", "--port", "0", "--duration", "0.5", "--json")
    assert outcome.code == EXIT_OK, outcome.where()
    first = json.loads(outcome.stdout.splitlines()[0])
    assert first["url"].startswith("http://127.0.0.1:")
    assert first["namespaces"] == ["default"]
