"""The ``ponos-redis`` command never prints a traceback: every error is one ``error: ...`` line
on stderr, without any part of a password, and the exit code is 2 for invalid input, 3 for
what does not exist, 4 for an unreachable Redis, 1 for anything else. Each case runs the real
command in subprocesses, all commands at once."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD_PARTS = ("s3cr", "etpw")  # a password with an unencoded "/": "s3cr/etpw"
PASSWORD = "s3cretpw"
UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1
EXIT_ERROR = 1
EXIT_INVALID = 2
EXIT_NOT_FOUND = 3
EXIT_UNREACHABLE = 4


def _command() -> list[str]:
    script = Path(sys.executable).with_name("ponos-redis")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from ponos_redis.cli import main; main()"]


def _invocations(store: str) -> dict[str, list[str]]:
    """Every command, given ``store``."""
    return {
        "status": ["status", "--store", store],
        "pending": ["pending", "--store", store],
        "show": ["show", "--store", store, "task-1"],
        "events": ["events", "--store", store],
        "reap": ["reap", "--store", store],
        "doctor": ["doctor", "--store", store],
        "namespace create": ["namespace", "create", "--store", store],
        "tasks list": ["tasks", "list", "--store", store, "--json"],
        "leases": ["leases", "--store", store],
        "chains": ["chains", "--store", store],
        "performers": ["performers", "--store", store],
        "inflight": ["inflight", "--store", store],
        "deployments list": ["deployments", "list", "--store", store],
        "deployments show": ["deployments", "show", "--store", store, "dep-1"],
        "tasks requeue": ["tasks", "requeue", "--store", store, "task-1", "--yes"],
        "tasks fail (bulk)": ["tasks", "fail", "--store", store, "--status", "pending"],
        "rewind": ["rewind", "--store", store, "1", "1"],
        "check": ["check", "--store", store, "--timeout", "3"],
    }


def _with_demo(store: str) -> dict[str, list[str]]:
    return {**_invocations(store), "demo": ["demo", "--redis-url", store]}


@dataclass
class Outcome:
    argv: list[str]
    code: int
    stdout: str
    stderr: str


def _run_all(invocations: dict[str, list[str]], timeout_s: float = 60.0) -> dict[str, Outcome]:
    """Run the commands concurrently (most of their time is spent waiting)."""
    env = {k: val for k, val in os.environ.items() if k != "PONOS_STORE"}
    env["COLUMNS"] = "200"
    procs = {
        name: subprocess.Popen(
            [*_command(), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        for name, argv in invocations.items()
    }
    outcomes: dict[str, Outcome] = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=timeout_s)
            outcomes[name] = Outcome(invocations[name], proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return outcomes


def _assert_clean_error(
    outcome: Outcome, code: int, *, mentions: str = "", secrets: tuple[str, ...] = ()
) -> None:
    both = outcome.stdout + outcome.stderr
    where = f"{outcome.argv}: exit {outcome.code}\nstdout: {outcome.stdout}\nstderr: {outcome.stderr}"
    assert "Traceback" not in both, where
    assert outcome.code == code, where
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert lines, where
    assert lines[-1].startswith("error: "), where
    assert mentions in lines[-1], where
    assert "error:" not in outcome.stdout, where
    for secret in secrets:
        assert secret not in both, where


def test_garbage_store_is_invalid_input() -> None:
    for name, outcome in _run_all(_with_demo("garbage")).items():
        mentions = "Redis URL" if name == "demo" else "store must be"
        _assert_clean_error(outcome, EXIT_INVALID, mentions=mentions)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("redis://:s3cr/etpw@127.0.0.1:6379/0", id="slash-in-password"),
        pytest.param("redis://user:s3cr/etpw@127.0.0.1:abc/0", id="bad-port"),
        pytest.param("redis+sentinel://:s3cr/etpw@127.0.0.1:26379/ponos", id="sentinel"),
    ],
)
def test_malformed_url_is_invalid_input_without_the_password(url: str) -> None:
    for outcome in _run_all(_with_demo(url)).values():
        _assert_clean_error(outcome, EXIT_INVALID, mentions="redis.url", secrets=PASSWORD_PARTS)


def test_unreachable_redis_from_a_config_file(tmp_path: Path) -> None:
    # A short retry budget, so each command gives up at once (the URL form retries for longer).
    config = tmp_path / "config.yaml"
    config.write_text(
        "storage:\n"
        "  redis:\n"
        f"    url: redis://:{PASSWORD}@{UNREACHABLE}/0\n"
        "    retry: {attempts: 2, max_backoff_ms: 50}\n",
        encoding="utf-8",
    )
    for outcome in _run_all(_invocations(str(config))).values():
        _assert_clean_error(outcome, EXIT_UNREACHABLE, mentions="StoreUnavailableError", secrets=(PASSWORD,))


def test_unreachable_redis_url() -> None:
    # The default retry budget: every command waits for it (concurrently), then gives up.
    url = f"redis://:{PASSWORD}@{UNREACHABLE}/0"
    for outcome in _run_all(_with_demo(url), timeout_s=90.0).values():
        _assert_clean_error(outcome, EXIT_UNREACHABLE, mentions="StoreUnavailableError", secrets=(PASSWORD,))


def test_config_file_errors_do_not_quote_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        f"storage:\n  redis:\n    url: redis://:{PASSWORD}@h:1/0\n   bad: [\n", encoding="utf-8"
    )
    bad_field = tmp_path / "bad-field.yaml"
    bad_field.write_text(f"storage:\n  redis:\n    url: redis://:{PASSWORD}@h:abc/0\n", encoding="utf-8")
    for path in (broken, bad_field):
        for outcome in _run_all(_invocations(str(path))).values():
            _assert_clean_error(outcome, EXIT_INVALID, secrets=(PASSWORD,))


def test_invalid_arguments_on_memory() -> None:
    outcomes = _run_all(
        {
            "namespace": ["status", "--store", "memory", "--namespace", "bad namespace"],
            "task-id": ["show", "--store", "memory", "a b"],
            "limit": ["pending", "--store", "memory", "--limit", "-1"],
            "avs": ["pending", "--store", "memory", "--avs", "0x12"],
            "event-id": ["events", "--store", "memory", "--after", "garbage"],
            "list-avs": ["tasks", "list", "--store", "memory", "--avs", "0x12"],
            "list-limit": ["tasks", "list", "--store", "memory", "--limit", "-1"],
            "leases-limit": ["leases", "--store", "memory", "--limit", "-5"],
            "requeue-id": ["tasks", "requeue", "--store", "memory", "a b", "--yes"],
            "long-store": ["status", "--store", "x" * 5000],
        }
    )
    for outcome in outcomes.values():
        _assert_clean_error(outcome, EXIT_INVALID, mentions="InvalidInputError")


def test_not_found_has_its_own_exit_code() -> None:
    outcomes = _run_all(
        {
            "show": ["show", "--store", "memory", "no-such-task"],
            "deployment": ["deployments", "show", "--store", "memory", "no-such-deployment"],
            "requeue": ["tasks", "requeue", "--store", "memory", "no-such-task", "--yes"],
        }
    )
    for outcome in outcomes.values():
        _assert_clean_error(outcome, EXIT_NOT_FOUND, mentions="NotFoundError")


def test_missing_store_is_a_usage_error() -> None:
    [outcome] = _run_all({"status": ["status"]}).values()
    assert "Traceback" not in outcome.stdout + outcome.stderr
    assert outcome.code == EXIT_INVALID
    assert "--store" in outcome.stderr
    assert outcome.stdout == ""
