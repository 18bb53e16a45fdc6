"""The BullMQ comparison: the same lifecycle (add, process, complete) from one Node process.

Run only when ``node`` and ``npm`` are on PATH and ``npm install bullmq`` succeeds in a
temporary directory within two minutes; otherwise the report says why it was skipped.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["bullmq_lifecycle"]

_SCRIPT = """
const { Queue, Worker } = require('bullmq');
const [host, port, n, concurrency] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];
const connection = { host, port };
const name = 'ponos-bench-' + Date.now();
const payload = 'x'.repeat(1024);
(async () => {
  const queue = new Queue(name, { connection });
  let done = 0;
  const t0 = process.hrtime.bigint();
  const finished = new Promise((resolve) => {
    const worker = new Worker(name, async () => {}, { connection, concurrency });
    worker.on('completed', () => { if (++done === n) resolve(worker); });
  });
  const adders = [];
  for (let a = 0; a < concurrency; a++) {
    adders.push((async () => {
      for (let i = a; i < n; i += concurrency) await queue.add('t', { i, payload });
    })());
  }
  await Promise.all(adders);
  const worker = await finished;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ rate: n / seconds, seconds }));
  await worker.close(); await queue.obliterate({ force: true }); await queue.close();
})().catch((e) => { console.error(String(e)); process.exit(1); });
"""


def _install(folder: Path) -> str | None:
    """Install bullmq into ``folder``; the reason it could not be, or None."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node or npm is not on PATH"
    try:
        done = subprocess.run(
            # BullMQ 6 takes its Redis client (ioredis) as a peer dependency.
            ["npm", "install", "bullmq", "ioredis", "--no-audit", "--no-fund", "--silent"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        return "npm install bullmq ioredis took more than 120 s"
    if done.returncode != 0:
        return f"npm install bullmq ioredis failed: {done.stderr.strip()[-200:]}"
    return None


def _run(host: str, port: int, n: int, concurrency: int) -> tuple[float | None, str]:
    with tempfile.TemporaryDirectory(prefix="ponos-bench-bullmq-") as tmp:
        folder = Path(tmp)
        problem = _install(folder)
        if problem is not None:
            return None, f"BullMQ comparison skipped: {problem}"
        (folder / "bench.js").write_text(_SCRIPT, encoding="utf-8")
        done = subprocess.run(
            ["node", "bench.js", host, str(port), str(n), str(concurrency)],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            return None, f"BullMQ comparison failed: {done.stderr.strip()[-200:]}"
        version = json.loads((folder / "node_modules" / "bullmq" / "package.json").read_text())["version"]
        rate = float(json.loads(done.stdout.strip().splitlines()[-1])["rate"])
        return (
            rate,
            f"BullMQ {version}: {n:,} jobs added by {concurrency} adders, Worker concurrency {concurrency}",
        )


async def bullmq_lifecycle(host: str, port: int, n: int, concurrency: int) -> tuple[float | None, str]:
    """Jobs/s of BullMQ's add -> process -> complete on the same server, and a note saying what ran."""
    return await asyncio.to_thread(_run, host, port, n, concurrency)
