"""Running ``ponos-redis`` as a user does, and a namespace worth looking at.

``invoke`` runs a command in this process with click's CliRunner (sync tests
only: the commands call ``asyncio.run``); ``run`` runs the installed
``ponos-redis`` script in a subprocess. Both return stdout, stderr and the exit
code, and both refuse a traceback anywhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from ponos_redis import StorageConfig, open_aggregator_store, open_executor_store
from ponos_redis.models import DeploymentStatus, EnvironmentVar
from ponos_redis.testing import make_deployment, make_inflight, make_performer, make_task

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
AVS = "0x" + "ab" * 20
OTHER_AVS = "0x" + "cd" * 20


@dataclass
class Outcome:
    argv: list[str]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def where(self) -> str:
        return f"{self.argv}: exit {self.code}\nstdout: {self.stdout}\nstderr: {self.stderr}"


def _checked(outcome: Outcome) -> Outcome:
    assert "Traceback" not in outcome.stdout + outcome.stderr, outcome.where()
    return outcome


def invoke(*args: str) -> Outcome:
    """Run ``ponos-redis ARGS`` in this process (CliRunner)."""
    from ponos_redis.cli import main

    result = CliRunner().invoke(main, list(args), env={"PONOS_STORE": None, "COLUMNS": "250"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return _checked(Outcome(list(args), result.exit_code, result.stdout, result.stderr))


def command() -> list[str]:
    script = Path(sys.executable).with_name("ponos-redis")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from ponos_redis.cli import main; main()"]


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PONOS_STORE"}
    env["COLUMNS"] = "250"
    env.update(extra)
    return env


def run(*args: str, timeout: float = 60.0, env: dict[str, str] | None = None) -> Outcome:
    """Run the installed ``ponos-redis ARGS`` in a subprocess."""
    proc = subprocess.run(
        [*command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env or user_env(),
        check=False,
    )
    return _checked(Outcome(list(args), proc.returncode, proc.stdout, proc.stderr))


def assert_error(outcome: Outcome, code: int, mentions: str = "") -> None:
    """One ``error:`` line, last on stderr, and the exit code."""
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert outcome.code == code, outcome.where()
    assert lines, outcome.where()
    assert lines[-1].startswith("error: "), outcome.where()
    assert mentions in lines[-1], outcome.where()


def config(url: str, namespace: str, **redis: Any) -> StorageConfig:
    return StorageConfig.from_dict(
        {"namespace": namespace, "redis": {"url": url, "durability": "none", **redis}}
    )


@dataclass
class Seeded:
    """What :func:`seed` made: the namespace and the tokens of what it claimed."""

    namespace: str
    claimed: dict[str, int]


def seed(cfg: StorageConfig | str, namespace: str) -> Seeded:
    """A namespace with a bit of everything: 6 tasks (2 processing under r1, 1 failed,
    3 pending, one of another AVS), chain 17000 at block 100 leased by r1, a runner
    lease, a performer with a secret environment value, an interrupted inflight task, a
    deployment with history."""

    async def go() -> Seeded:
        async with open_aggregator_store(cfg, namespace=namespace) as agg:
            await agg.save_tasks(
                [make_task(f"t{i}", payload=bytes(range(i * 3))) for i in range(5)]
                + [make_task("t-other", avs_address=OTHER_AVS, payload=b"\x00\xff")]
            )
            claimed = {c.task.task_id: c.token for c in await agg.claim_tasks("r1", limit=3, lease_s=300)}
            await agg.fail_task("t0", claimed["t0"], "upstream down")
            lease = await agg.acquire_chain_lease(17000, "r1", ttl_s=300)
            assert lease is not None
            await agg.set_last_processed_block(17000, 100, fence=lease.token)
            assert await agg.try_runner_lease("reaper", "r2", ttl_s=300)
        async with open_executor_store(cfg, namespace=namespace) as exe:
            await exe.save_performer_state(
                make_performer(
                    "perf-1",
                    status="running",
                    container_healthy=True,
                    environment_vars=[EnvironmentVar(name="API_KEY", value="s3cret-value")],
                )
            )
            await exe.save_inflight_task(make_inflight("inflight-1", status="interrupted"))
            await exe.save_deployment(make_deployment("dep-1"))
            await exe.update_deployment_status("dep-1", DeploymentStatus.DEPLOYING)
        return Seeded(namespace=namespace, claimed=claimed)

    return asyncio.run(go())
