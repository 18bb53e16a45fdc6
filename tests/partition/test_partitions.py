"""Network partitions on real network namespaces (see _netns.py), with the shipped configs.

Every Redis host (a data node with its sentinel) and every aggregator replica
is a namespace of its own; the stores run in separate processes
(_client.py) with the default settings, plus what the README tells users to
set for the topology (``durability: replicated`` with Sentinel, and
``min-replicas-to-write 1`` on the data nodes). Each client logs every call
with its answer, so "acknowledged" means what a caller was told.

- The minority side: the master is cut off together with one aggregator
  replica while the majority side (two replicas, two sentinels, the other
  aggregator replica) fails over, then the network heals. Nothing either side
  was told is stored is lost, the minority's writes during the cut were
  refused, tokens never repeat, no task is completed twice, every task sits on
  exactly the index its record names, and both replicas carry on after the
  heal without a restart.
- A client cut off for longer than its lease: another replica reaps and
  completes the task; the late completion is refused (``StaleLeaseError``).
- A one-way partition: the server's replies to one client are dropped while
  its commands still arrive (and run): the client repeats its calls, and no
  call is applied twice.

The figures each test measures are printed (``-s`` shows them) and recorded
in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _netns import Network, read_jsonl, unavailable_reason, wait_until

from ponos_redis._configs import docker_file
from ponos_redis._redis_server import _base_conf_lines

pytestmark = [pytest.mark.timeout(240)]

_REASON = unavailable_reason()
if _REASON is not None:
    pytestmark.append(pytest.mark.skip(reason=f"partition tests cannot run here: {_REASON}"))

HERE = Path(__file__).parent
REDIS_PORT = 6379
SENTINEL_PORT = 26379
SERVICE = "ponos"
CALLS = ("save", "claim", "complete")
# The servers' password, as a deployment passes it: in the environment of the processes that
# connect (the stores read it through password_env), in the config files of the servers.
PASSWORD_ENV = "PONOS_PARTITION_PASSWORD"
os.environ.setdefault(PASSWORD_ENV, secrets.token_hex(16))


def auth_lines() -> list[str]:
    password = os.environ[PASSWORD_ENV]
    return [f"requirepass {password}", f"masterauth {password}"]


def sentinel_auth_lines() -> list[str]:
    password = os.environ[PASSWORD_ENV]
    return [f"requirepass {password}", f"sentinel auth-pass {SERVICE} {password}"]


_OWN_AUTH = ("aclfile", "masteruser", "masterauth", "requirepass", "sentinel auth-user", "sentinel auth-pass")


def _without_auth(lines: list[str]) -> list[str]:
    """The base lines less its users and secrets: these servers take one password (auth_lines)."""
    return [f"# [partition test] {line}" if line.strip().startswith(_OWN_AUTH) else line for line in lines]


def redis_conf(node_dir: Path, address: str, *extra: str, replicated: bool) -> Path:
    """The shipped redis.conf, with this host's address and folder (as a user deploys it)."""
    lines = _without_auth(_base_conf_lines(docker_file("redis.conf"), None)[0])
    lines += [
        f"bind {address}",
        f"port {REDIS_PORT}",
        f'dir "{node_dir}"',
        f'logfile "{node_dir / "redis.log"}"',
        "daemonize no",
        # The README: with replicas, min-replicas-to-write 1 on every data node.
        *(["min-replicas-to-write 1"] if replicated else []),
        *auth_lines(),
        *extra,
    ]
    path = node_dir / "redis.conf"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sentinel_conf(node_dir: Path, address: str, master: str) -> Path:
    """The shipped sentinel.conf, its master re-addressed, with this host's address and folder."""
    lines = []
    for line in _without_auth(_base_conf_lines(docker_file("sentinel.conf"), None)[0]):
        words = line.split()
        if len(words) >= 5 and words[0] == "sentinel" and words[1] == "monitor":
            line = f"sentinel monitor {words[2]} {master} {REDIS_PORT} {words[5]}"
        lines.append(line)
    lines += [
        f"bind {address}",
        f"port {SENTINEL_PORT}",
        f'dir "{node_dir}"',
        f'logfile "{node_dir / "sentinel.log"}"',
        "daemonize no",
        *sentinel_auth_lines(),
    ]
    path = node_dir / "sentinel.conf"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def info_field(text: str, name: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


class Harness:
    """The network, the servers on it, and the aggregator replica processes."""

    def __init__(self, net: Network, tmp: Path) -> None:
        self.net = net
        self.tmp = tmp
        self.logs: dict[str, Path] = {}

    def start_redis(self, node: str, *, replica_of: str | None = None, replicated: bool = False) -> None:
        d = self.tmp / node
        d.mkdir(exist_ok=True)
        extra = [f"replicaof {self.net.nodes[replica_of].address} {REDIS_PORT}"] if replica_of else []
        conf = redis_conf(d, self.net.nodes[node].address, *extra, replicated=replicated)
        self.net.spawn(node, ["redis-server", str(conf)], log=d / "out.log")
        wait_until(
            f"redis on {node}",
            lambda: self.net.redis_cli(node, REDIS_PORT, "PING", password_env=PASSWORD_ENV) == "PONG",
            10,
        )

    def start_sentinel(self, node: str, master: str) -> None:
        d = self.tmp / node
        conf = sentinel_conf(d, self.net.nodes[node].address, self.net.nodes[master].address)
        self.net.spawn(node, ["redis-sentinel", str(conf)], log=d / "sentinel-out.log")

    def sentinel_master(self, node: str) -> dict[str, str]:
        reply = self.net.redis_cli(
            node, SENTINEL_PORT, "SENTINEL", "MASTER", SERVICE, password_env=PASSWORD_ENV
        ).splitlines()
        return dict(zip(reply[::2], reply[1::2], strict=False))

    def master_seen_by(self, node: str) -> str:
        reply = self.net.redis_cli(
            node, SENTINEL_PORT, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE, password_env=PASSWORD_ENV
        )
        return reply.splitlines()[0]

    def start_client(self, node: str, config: dict[str, Any], mode: str, seconds: float) -> Path:
        log = self.tmp / f"{node}-{mode}.jsonl"
        argv = [
            sys.executable,
            str(HERE / "_client.py"),
            json.dumps(config),
            str(log),
            node,
            mode,
            str(seconds),
        ]
        self.net.spawn(node, argv, log=self.tmp / f"{node}-{mode}.out")
        self.logs[node] = log
        return log

    def opened(self, node: str) -> bool:
        return any(r["op"] == "open" for r in read_jsonl(self.logs[node]))

    def acked_after(self, node: str, t: float) -> float | None:
        """When ``node`` was first told a write succeeded that it asked for after ``t``."""
        done = [r["t1"] for r in read_jsonl(self.logs[node]) if r["ok"] and r["op"] in CALLS and r["t0"] > t]
        return min(done) if done else None

    def stop_clients(self, timeout: float = 40.0) -> None:
        for log in self.logs.values():
            Path(str(log) + ".stop").touch()
        wait_until(
            "clients exit",
            lambda: all(any(r["op"] == "exit" for r in read_jsonl(log)) for log in self.logs.values()),
            timeout,
        )

    def check(self, node: str, config: dict[str, Any], ids: list[str]) -> dict[str, Any]:
        argv = [sys.executable, str(HERE / "_check.py"), json.dumps(config), json.dumps(sorted(ids))]
        result: dict[str, Any] = json.loads(self.net.run(node, argv, timeout=60))
        return result

    def client_output(self) -> str:
        parts = []
        for path in sorted(self.tmp.glob("*.out")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    with Network(tmp_path) as net:
        h = Harness(net, tmp_path)
        try:
            yield h
        finally:
            print(h.client_output())  # shown when the test fails


def namespace() -> str:
    return f"part-{os.getpid()}-{time.monotonic_ns() % 10**9}"


def assert_store_consistent(records: list[dict[str, Any]], state: dict[str, Any]) -> dict[str, int]:
    """What every partition test requires of the store afterwards; the counts, for the figures."""
    tasks = state["tasks"]
    saved = {r["id"] for r in records if r["op"] == "save" and r["ok"]}
    completed = [r["id"] for r in records if r["op"] == "complete" and r["ok"]]
    lost_saves = sorted(i for i in saved if tasks[i]["status"] is None)
    assert not lost_saves, f"acknowledged saves lost: {lost_saves[:10]}"
    lost_completions = sorted(i for i in completed if tasks[i]["status"] != "completed")
    assert not lost_completions, f"acknowledged completions lost: {lost_completions[:10]}"
    twice = sorted(i for i, n in Counter(completed).items() if n > 1)
    assert not twice, f"completions acknowledged twice: {twice[:10]}"
    events_twice = sorted(i for i, n in state["completed_events"].items() if n > 1)
    assert not events_twice, f"tasks completed twice in the event stream: {events_twice[:10]}"
    misfiled = {i: t for i, t in tasks.items() if t["status"] is not None and t["indexes"] != [t["status"]]}
    assert not misfiled, f"tasks not on exactly their status's index: {dict(list(misfiled.items())[:5])}"
    orphans = {i: t for i, t in tasks.items() if t["status"] is None and t["indexes"]}
    assert not orphans, f"index entries without a record: {orphans}"
    tokens = [r["token"] for r in records if r["op"] == "claim" and r["ok"]]
    assert len(tokens) == len(set(tokens)), "a token was handed out twice"
    return {
        "saves_acknowledged": len(saved),
        "completions_acknowledged": len(completed),
        "claims": len(tokens),
    }


def test_the_minority_side_of_a_partition_is_refused_and_nothing_acknowledged_is_lost(
    harness: Harness,
) -> None:
    net = harness.net
    for name in ("r1", "r2", "r3", "a1", "a2"):
        net.add(name)
    harness.start_redis("r1", replicated=True)
    harness.start_redis("r2", replica_of="r1", replicated=True)
    harness.start_redis("r3", replica_of="r1", replicated=True)
    for node in ("r2", "r3"):
        wait_until(
            f"{node} linked",
            lambda node=node: (
                info_field(
                    net.redis_cli(node, REDIS_PORT, "INFO", "replication", password_env=PASSWORD_ENV),
                    "master_link_status",
                )
                == "up"
            ),
            15,
        )
    for node in ("r1", "r2", "r3"):
        harness.start_sentinel(node, "r1")
    for node in ("r1", "r2", "r3"):
        wait_until(
            f"sentinel on {node} sees the others",
            lambda node=node: (
                (m := harness.sentinel_master(node)).get("num-other-sentinels") == "2"
                and m.get("num-slaves") == "2"
            ),
            30,
        )
    config = {
        "type": "redis",
        "namespace": namespace(),
        "redis": {
            "sentinel": {
                "hosts": [f"{net.nodes[n].address}:{SENTINEL_PORT}" for n in ("r1", "r2", "r3")],
                "service": SERVICE,
                "password_env": PASSWORD_ENV,
                "sentinel_password_env": PASSWORD_ENV,
            },
            # What the README asks of a Sentinel deployment.
            "durability": "replicated",
        },
    }
    harness.start_client("a1", config, "work", 150)
    harness.start_client("a2", config, "work", 150)
    wait_until("both replicas opened", lambda: harness.opened("a1") and harness.opened("a2"), 30)
    start = time.time()
    wait_until(
        "both replicas write",
        lambda: harness.acked_after("a1", start) and harness.acked_after("a2", start),
        20,
    )
    time.sleep(2)

    old_master = net.nodes["r1"].address
    net.partition(["r1", "a1"])
    cut = time.time()  # once the cut is in place: a call that began before it may be acknowledged
    promoted = wait_until(
        "the majority fails over",
        lambda: (m := harness.master_seen_by("r2")) != old_master and m,
        45,
    )
    failed_over = time.time()
    majority_resumed = wait_until(
        "the majority writes again", lambda: harness.acked_after("a2", failed_over), 30
    )
    # Stay cut past min-replicas-max-lag (10 s), so the old master refuses writes on its own too.
    time.sleep(max(0.0, cut + 13 - time.time()))
    heal = time.time()
    net.heal()
    minority_resumed = wait_until(
        "the minority replica writes again", lambda: harness.acked_after("a1", heal), 60
    )
    wait_until(
        "the old master rejoins as a replica",
        lambda: (
            info_field(
                net.redis_cli("r1", REDIS_PORT, "INFO", "replication", password_env=PASSWORD_ENV), "role"
            )
            == "slave"
        ),
        30,
    )
    time.sleep(1)
    harness.stop_clients()

    a1 = read_jsonl(harness.logs["a1"])
    a2 = read_jsonl(harness.logs["a2"])
    records = a1 + a2
    ids = [r["id"] for r in records if r["op"] == "save"]
    state = harness.check("a2", config, ids)
    figures = assert_store_consistent(records, state)

    during = [r for r in a1 if r["op"] in CALLS and cut < r["t0"] and r["t1"] < heal]
    acked_during = [r for r in during if r["ok"]]
    assert not acked_during, f"the minority side acknowledged writes during the cut: {acked_during[:5]}"
    refused = Counter(r["error"] for r in during)
    assert during, "the minority replica made no call during the cut"
    figures |= {
        "failover_s": round(failed_over - cut, 2),
        "majority_resumed_after_cut_s": round(majority_resumed - cut, 2),
        "minority_calls_refused": len(during),
        "minority_refusals": dict(refused),
        "minority_resumed_after_heal_s": round(minority_resumed - heal, 2),
        "promoted": promoted,
        "lost": 0,
    }
    print("partition figures:", json.dumps(figures))


def test_a_completion_after_a_partition_longer_than_the_lease_is_refused(harness: Harness) -> None:
    net = harness.net
    for name in ("r1", "a1", "a2"):
        net.add(name)
    harness.start_redis("r1")
    config = {
        "type": "redis",
        "namespace": namespace(),
        "redis": {"url": f"redis://{net.nodes['r1'].address}:{REDIS_PORT}/0", "password_env": PASSWORD_ENV},
    }
    late_log = harness.start_client("a1", config, "late", 60)
    wait_until("a1 claims", lambda: any(r["op"] == "claim" for r in read_jsonl(late_log)), 30)
    cut = time.time()
    net.partition(["a1"])
    Path(str(late_log) + ".go").touch()  # a1 now tries to complete, cut off
    # The other replica reaps the expired lease and completes the task.
    take_log = harness.start_client("a2", config, "takeover", 30)
    wait_until(
        "a2 completes the task",
        lambda: any(r["op"] == "complete" and r["ok"] for r in read_jsonl(take_log)),
        30,
    )
    time.sleep(max(0.0, cut + 6 - time.time()))
    heal = time.time()
    net.heal()
    answer = wait_until(
        "a1's late completion answers",
        lambda: [r for r in read_jsonl(late_log) if r["op"] == "complete"],
        30,
    )[0]
    assert answer["ok"] is False, answer
    assert answer["error"] == "StaleLeaseError", answer
    records = read_jsonl(late_log) + read_jsonl(take_log)
    state = harness.check("a2", config, ["late-1"])
    assert state["tasks"]["late-1"]["status"] == "completed"
    assert state["completed_events"] == {"late-1": 1}
    taken = [r for r in read_jsonl(take_log) if r["op"] == "claim" and r["ok"]]
    assert taken
    assert taken[0]["token"] != answer["token"]
    assert_store_consistent(records, state)
    print(
        "late completion figures:",
        json.dumps({"cut_s": round(heal - cut, 2), "refused_after_heal_s": round(answer["t1"] - heal, 2)}),
    )


def test_a_client_whose_replies_are_dropped_repeats_its_calls_without_applying_any_twice(
    harness: Harness,
) -> None:
    net = harness.net
    for name in ("r1", "a1", "a2"):
        net.add(name)
    harness.start_redis("r1")
    config = {
        "type": "redis",
        "namespace": namespace(),
        "redis": {"url": f"redis://{net.nodes['r1'].address}:{REDIS_PORT}/0", "password_env": PASSWORD_ENV},
    }
    harness.start_client("a1", config, "work", 120)
    harness.start_client("a2", config, "work", 120)
    wait_until("both replicas opened", lambda: harness.opened("a1") and harness.opened("a2"), 30)
    start = time.time()
    wait_until(
        "both replicas write",
        lambda: harness.acked_after("a1", start) and harness.acked_after("a2", start),
        20,
    )
    time.sleep(1)
    net.drop_replies("r1", "a1")
    cut = time.time()
    time.sleep(8)
    heal = time.time()
    net.heal()
    resumed = wait_until("a1 writes again", lambda: harness.acked_after("a1", heal), 40)
    time.sleep(1)
    harness.stop_clients()
    a1 = read_jsonl(harness.logs["a1"])
    records = a1 + read_jsonl(harness.logs["a2"])
    state = harness.check("a2", config, [r["id"] for r in records if r["op"] == "save"])
    figures = assert_store_consistent(records, state)
    answered_during = [r for r in a1 if cut + 0.5 < r["t0"] and r["t1"] < heal]
    assert not answered_during, (
        f"a1 got answers while the server's replies were dropped: {answered_during[:5]}"
    )
    spanning = [r for r in a1 if r["t0"] < heal < r["t1"]]
    assert spanning, "no call of a1 was waiting when the network healed"
    figures |= {
        "cut_s": round(heal - cut, 2),
        "resumed_after_heal_s": round(resumed - heal, 2),
        "calls_spanning_the_cut": len(spanning),
        "their_answers": dict(Counter("ok" if r["ok"] else r["error"] for r in spanning)),
    }
    print("one-way partition figures:", json.dumps(figures))
