"""A private network of Linux network namespaces, for partition tests.

Each node (a Redis host with its sentinel, or an aggregator replica) is a
network namespace of its own with one address on a private /24. Every node's
link ends on a hub namespace holding two bridges: all links start on the
"main" bridge; :meth:`Network.partition` moves the named nodes' links to the
"cut" bridge, so the nodes on each side still reach each other but nothing
crosses (packets are dropped silently, as in a real partition: no RST, no
ICMP); :meth:`Network.heal` moves them back. :meth:`Network.drop_replies`
makes a one-way partition: the first node's packets to the second are
dropped (a blackhole route in the first node), the second's to the first
still arrive.

Nothing here touches the machine's own namespace: the addresses exist only
inside the namespaces the network creates, and :meth:`Network.close` kills
every process it started and deletes every namespace (their links go with
them). Needs root and iproute2 (``ip netns``, veth, bridge).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

_IP_TIMEOUT_S = 10.0


def unavailable_reason() -> str | None:
    """Why partition tests cannot run here, or None when they can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (run the test command as root)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not on PATH"
    for tool in ("redis-server", "redis-sentinel", "redis-cli"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH"
    probe = f"ponos-probe-{secrets.token_hex(3)}"
    try:
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, timeout=_IP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` failed: {exc}"
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.decode(errors='replace').strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=_IP_TIMEOUT_S)
    return None


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *(("-n", netns) if netns else ()), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=_IP_TIMEOUT_S)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")
    return done


@dataclass
class Node:
    name: str
    netns: str
    address: str
    port_link: str  # the link's end on the hub
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


class Network:
    """Namespaces on a private /24 (``10.<a>.<b>.0/24``, picked at random), joined by a hub."""

    def __init__(self, base_dir: Path) -> None:
        self._id = secrets.token_hex(3)
        self._subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
        self.base_dir = base_dir
        self.hub = f"ponos-{self._id}-hub"
        self.nodes: dict[str, Node] = {}
        self._cut: set[str] = set()
        self._blackholes: list[tuple[str, str]] = []
        self._made: list[str] = []

    # -- building -----------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            _ip("netns", "add", self.hub)
            self._made.append(self.hub)
            _ip("link", "set", "lo", "up", netns=self.hub)
            for bridge in ("brmain", "brcut"):
                _ip("link", "add", bridge, "type", "bridge", netns=self.hub)
                _ip("link", "set", bridge, "up", netns=self.hub)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def add(self, name: str) -> Node:
        """A new node on the main bridge, with the next address of the subnet."""
        index = len(self.nodes) + 1
        netns = f"ponos-{self._id}-{name}"
        port_link = f"p{self._id}{index}"
        inner = f"i{self._id}{index}"
        _ip("netns", "add", netns)
        self._made.append(netns)
        _ip("link", "set", "lo", "up", netns=netns)
        _ip("link", "add", port_link, "type", "veth", "peer", "name", inner, netns=self.hub)
        _ip("link", "set", inner, "netns", netns, netns=self.hub)
        _ip("link", "set", inner, "name", "eth0", netns=netns)
        address = f"{self._subnet}.{index}"
        _ip("addr", "add", f"{address}/24", "dev", "eth0", netns=netns)
        _ip("link", "set", "eth0", "up", netns=netns)
        _ip("link", "set", port_link, "master", "brmain", netns=self.hub)
        _ip("link", "set", port_link, "up", netns=self.hub)
        node = Node(name, netns, address, port_link)
        self.nodes[name] = node
        return node

    # -- processes ------------------------------------------------------------

    def spawn(
        self, node: str, argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Run ``argv`` inside the node's namespace (``ip netns exec`` execs it: same PID)."""
        target = self.nodes[node]
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", target.netns, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        target.procs.append(proc)
        return proc

    def run(
        self, node: str, argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None
    ) -> str:
        """Run ``argv`` inside the node's namespace to its end; its stdout (it must exit 0)."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.nodes[node].netns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{argv[0]} in {node} exited with {done.returncode}:\n"
                f"{done.stdout[-2000:]}{done.stderr[-4000:]}"
            )
        return done.stdout

    def redis_cli(self, node: str, port: int, *args: str, password_env: str | None = None) -> str:
        """One redis-cli command from inside ``node`` to its own server (the password from the env)."""
        argv = ["redis-cli", "-h", self.nodes[node].address, "-p", str(port)]
        env = None
        if password_env is not None:
            env = {"REDISCLI_AUTH": os.environ[password_env]}
        return self.run(node, [*argv, *args], timeout=10.0, env=env).strip()

    # -- faults -----------------------------------------------------------------

    def partition(self, names: Sequence[str]) -> None:
        """Cut ``names`` off from every other node (they still reach each other)."""
        for name in names:
            _ip("link", "set", self.nodes[name].port_link, "master", "brcut", netns=self.hub)
            self._cut.add(name)

    def heal(self) -> None:
        """Undo :meth:`partition` and :meth:`drop_replies`."""
        for name in sorted(self._cut):
            _ip("link", "set", self.nodes[name].port_link, "master", "brmain", netns=self.hub)
        self._cut.clear()
        for at, to in self._blackholes:
            _ip("route", "del", "blackhole", f"{self.nodes[to].address}/32", netns=self.nodes[at].netns)
        self._blackholes.clear()

    def drop_replies(self, sender: str, to: str) -> None:
        """A one-way partition: what ``sender`` sends to ``to`` is dropped; the other way still works."""
        _ip("route", "add", "blackhole", f"{self.nodes[to].address}/32", netns=self.nodes[sender].netns)
        self._blackholes.append((sender, to))

    # -- tear-down ---------------------------------------------------------------

    def close(self) -> None:
        """Kill every process started here, then delete every namespace made here."""
        for node in self.nodes.values():
            for proc in node.procs:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
            for proc in node.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        for netns in reversed(self._made):
            _ip("netns", "del", netns, check=False)
        self._made.clear()


def wait_until(what: str, check: Any, timeout: float, interval: float = 0.2) -> Any:
    """Poll ``check()`` until it returns a truthy value (at most ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except Exception as exc:  # not ready yet: keep the reason for the message
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout} s (last: {last!r})")
        time.sleep(interval)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log (a torn last line, from a kill, is skipped)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
