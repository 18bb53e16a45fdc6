"""A private ``prometheus`` server on loopback, for the end-to-end test and the plot
script: its own temp data dir and config, a short scrape interval, queried through
the HTTP API, stopped by PID. Not part of the public API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .._redis_server import HOST, find_free_port

__all__ = ["PrometheusServer", "prometheus_available"]

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0


def prometheus_available(binary: str = "prometheus") -> bool:
    """Whether a ``prometheus`` binary is on PATH."""
    return shutil.which(binary) is not None


class PrometheusServer:
    """Prometheus scraping ``targets`` (job name -> ``host:port`` list) every ``scrape_interval_s``.

    Args:
        targets: the scrape jobs.
        scrape_interval_s: the global scrape and evaluation interval.
        rule_files: alert or recording rule files to load.
        binary: the prometheus executable.
    """

    def __init__(
        self,
        targets: Mapping[str, Sequence[str]],
        *,
        scrape_interval_s: float = 1.0,
        rule_files: Sequence[Path] = (),
        binary: str = "prometheus",
    ) -> None:
        self.targets = dict(targets)
        self.scrape_interval_s = scrape_interval_s
        self.rule_files = list(rule_files)
        self.binary = binary
        self.port = 0
        self.directory: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _config(self) -> str:
        interval = f"{max(1, round(self.scrape_interval_s * 1000))}ms"
        lines = ["global:", f"  scrape_interval: {interval}", f"  evaluation_interval: {interval}"]
        if self.rule_files:
            lines.append("rule_files:")
            lines += [f"  - {json.dumps(str(path))}" for path in self.rule_files]
        lines.append("scrape_configs:")
        for job, addresses in self.targets.items():
            lines += [
                f"  - job_name: {json.dumps(job)}",
                "    static_configs:",
                f"      - targets: {json.dumps(list(addresses))}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Start it and wait until it reports ready (at most 30 s)."""
        self.directory = Path(tempfile.mkdtemp(prefix="ponos-prometheus-"))
        config = self.directory / "prometheus.yml"
        config.write_text(self._config())
        self.port = find_free_port()
        log = (self.directory / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address={HOST}:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.directory,
        )
        log.close()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus was not ready within {_START_TIMEOUT_S} s")

    def log_tail(self, lines: int = 20) -> str:
        if self.directory is None:
            return ""
        path = self.directory / "prometheus.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data`` (raises on an error status)."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10.0) as reply:
            body = json.load(reply)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus API {path}: {body}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        result: list[dict[str, Any]] = self.api("query", **params)["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
        """A range query's result matrix."""
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step_s:g}")
        result: list[dict[str, Any]] = data["result"]
        return result

    def stop(self) -> None:
        """Stop the process it started (SIGTERM, then SIGKILL) and remove its directory."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=_STOP_TIMEOUT_S)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
