#!/usr/bin/env python3
"""Render docs/img/observability-run.png from a real scrape of a real run.

    .venv/bin/python scripts/observability_plot.py [--duration 60] [--out docs/img/observability-run.png]

It starts a private redis-server (AOF on, on loopback), runs the metrics workload
(ponos_redis/metrics/_workload.py: two replicas, each with a ChainPoller, a
TaskWorker and a Reaper on a FakeChain, every store instrumented, and one
NamespaceCollector as `ponos-redis metrics serve` would run) with a slowdown
(handlers 6x slower) and a stalled replica, serves /metrics on a free loopback
port, has a private `prometheus` scrape it every second, then reads the series
back through the Prometheus HTTP API (query_range) and draws them. Everything it
starts is stopped by PID at the end.

Needs redis-server and prometheus on PATH (Debian: redis-server, prometheus) and
the metrics extra. The PNG is written by a small writer below (zlib + a 5x7
bitmap font), so no plotting library is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import struct
import sys
import time
import zlib
from pathlib import Path

from prometheus_client import CollectorRegistry

from ponos_redis import open_aggregator_store
from ponos_redis._redis_server import RedisServer
from ponos_redis.metrics import start_metrics_server
from ponos_redis.metrics._prometheus import PrometheusServer
from ponos_redis.metrics._workload import Workload, WorkloadSettings

ROOT = Path(__file__).resolve().parent.parent

# -- a tiny raster: RGB canvas, lines, rectangles, 5x7 text, PNG encoding ---------------

_FONT_ROWS = {
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11110 00001 00001 01110 00001 00001 11110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    "A": "01110 10001 10001 11111 10001 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11100 10010 10001 10001 10001 10010 11100",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 10001 01010 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    " ": "00000 00000 00000 00000 00000 00000 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    "_": "00000 00000 00000 00000 00000 00000 11111",
    "/": "00000 00001 00010 00100 01000 10000 00000",
    "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000",
    "%": "11000 11001 00010 00100 01000 10011 00011",
    "=": "00000 00000 11111 00000 11111 00000 00000",
    "+": "00000 00100 00100 11111 00100 00100 00000",
    "'": "01100 00100 01000 00000 00000 00000 00000",
    "x": "00000 00000 10001 01010 00100 01010 10001",
}
FONT = {ch: [int(row, 2) for row in rows.split()] for ch, rows in _FONT_ROWS.items()}

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
BLACK: Color = (30, 30, 30)
GREY: Color = (200, 200, 200)
LIGHT: Color = (235, 235, 235)
PALETTE: list[Color] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
]


class Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(WHITE * (width * height))

    def dot(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = 3 * (y * self.width + x)
            self.pixels[i : i + 3] = bytes(color)

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        for y in range(max(0, y0), min(self.height, y1)):
            for x in range(max(0, x0), min(self.width, x1)):
                self.dot(x, y, color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: Color, width: int = 1) -> None:
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        for _ in range(dx - dy + 1):  # bounded: one step per pixel of the longer axis
            for ox in range(width):
                for oy in range(width):
                    self.dot(x0 + ox, y0 + oy, color)
            if x0 == x1 and y0 == y1:
                break
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x: int, y: int, text: str, color: Color = BLACK, scale: int = 1) -> int:
        """Draw ``text`` with its top-left at (x, y); returns the x after it."""
        for ch in text:
            rows = FONT.get(ch, FONT.get(ch.upper(), FONT[" "]))
            for r, bits in enumerate(rows):
                for c in range(5):
                    if bits & (1 << (4 - c)):
                        self.rect(
                            x + c * scale, y + r * scale, x + (c + 1) * scale, y + (r + 1) * scale, color
                        )
            x += 6 * scale
        return x

    def png(self) -> bytes:
        raw = b"".join(
            b"\x00" + bytes(self.pixels[3 * y * self.width : 3 * (y + 1) * self.width])
            for y in range(self.height)
        )

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def _nice(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k" if value % 1000 == 0 else f"{value / 1000:.1f}k"
    return f"{value:g}" if value == int(value) else f"{value:.2f}".rstrip("0").rstrip(".")


def _ticks(top: float) -> list[float]:
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(top / step) + 2)]


Series = list[tuple[float, float]]


def chart(
    canvas: Canvas, box: tuple[int, int, int, int], title: str, series: dict[str, Series], duration: float
) -> None:
    x0, y0, x1, y1 = box
    canvas.text(x0, y0, title, scale=2)
    left, top, right, bottom = x0 + 50, y0 + 24, x1 - 10, y1 - 40
    values = [v for points in series.values() for _, v in points]
    ticks = _ticks(max(values, default=1.0))
    ymax = ticks[-1] if ticks[-1] > 0 else 1.0
    for tick in ticks:
        y = bottom - round((bottom - top) * tick / ymax)
        canvas.line(left, y, right, y, LIGHT)
        label = _nice(tick)
        canvas.text(left - 6 - 6 * len(label), y - 3, label)
    step = 10 if duration <= 90 else 30
    for second in range(0, int(duration) + 1, step):
        x = left + round((right - left) * second / duration)
        canvas.line(x, bottom, x, bottom + 4, BLACK)
        canvas.text(x - 3 * len(str(second)) * 1, bottom + 7, str(second))
    canvas.text(right - 6 * 9, bottom + 7 + 10, "seconds")
    canvas.line(left, top, left, bottom, BLACK)
    canvas.line(left, bottom, right, bottom, BLACK)
    legend_x = left + 4
    for i, (name, points) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        previous = None
        for t, v in points:
            x = left + round((right - left) * min(max(t, 0.0), duration) / duration)
            y = bottom - round((bottom - top) * v / ymax)
            if previous is not None:
                canvas.line(previous[0], previous[1], x, y, color, width=2)
            previous = (x, y)
        canvas.rect(legend_x, bottom + 22, legend_x + 8, bottom + 30, color)
        legend_x = canvas.text(legend_x + 12, bottom + 23, name) + 12


# -- the run --------------------------------------------------------------------------------


def one(series: dict[str, Series], name: str) -> dict[str, Series]:
    """The one series of a query, under ``name`` (none if the query returned nothing)."""
    first = next(iter(series.values()), None)
    return {} if first is None else {name: first}


def _points(result: list[dict[str, object]], label: str | None, start: float) -> dict[str, Series]:
    out: dict[str, Series] = {}
    for item in result:
        metric = item["metric"]
        assert isinstance(metric, dict)
        name = str(metric.get(label, "")) if label else "value"
        values = item["values"]
        assert isinstance(values, list)
        out[name] = [(float(t) - start, float(v)) for t, v in values if v not in ("NaN", "+Inf")]
    return out


async def run(duration: float) -> Canvas:
    settings = WorkloadSettings(
        replicas=2,
        slowdown=(duration * 0.25, duration * 0.5),
        stall_at_s=duration * 0.4,
        task_sla_s=8.0,
        reorg_every=None,
    )
    registry = CollectorRegistry()
    with RedisServer(
        extra={"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}
    ) as redis_server:

        async def open_store():  # type: ignore[no-untyped-def]
            return await open_aggregator_store(redis_server.url, namespace="observability-run")

        with (
            start_metrics_server(0, registry) as metrics,
            PrometheusServer({"ponos": [f"127.0.0.1:{metrics.port}"]}, scrape_interval_s=1.0) as prometheus,
        ):
            async with Workload(open_store, registry, settings) as workload:
                start = time.time()
                await workload.run(duration)
                await asyncio.sleep(3.0)  # the last scrapes
                end = start + duration + 2.0
            print(f"ran {duration:g} s; reading the series back from prometheus", file=sys.stderr)

            def q(expr: str, label: str | None) -> dict[str, Series]:
                return _points(prometheus.query_range(expr, start, end, 1.0), label, start)

            panels = [
                (
                    "Tasks pending and processing (ponos_tasks)",
                    q('ponos_tasks{status=~"pending|processing"}', "status"),
                ),
                (
                    "Tasks completed and failed (ponos_tasks)",
                    q('ponos_tasks{status=~"completed|failed"}', "status"),
                ),
                (
                    "Oldest pending age vs SLA, seconds",
                    {
                        **one(q("ponos_oldest_pending_task_age_seconds", None), "oldest pending"),
                        **one(q("ponos_task_sla_seconds", None), "sla"),
                    },
                ),
                (
                    "Transitions per second (ponos_events_total)",
                    q(
                        "sum by (kind) (rate(ponos_events_total"
                        '{kind=~"task.claimed|task.completed|task.saved"}[5s]))',
                        "kind",
                    ),
                ),
                (
                    "Store latency p99, ms",
                    {
                        k: [(t, v * 1000) for t, v in pts]
                        for k, pts in q(
                            "histogram_quantile(0.99, sum by (le, operation) (rate("
                            'ponos_store_operation_duration_seconds_bucket{operation=~"claim_tasks|complete_task|renew_task_lease"}[5s])))',
                            "operation",
                        ).items()
                    },
                ),
                (
                    "Leases reaped, stale completions (total)",
                    {
                        **one(q("sum(ponos_leases_reaped_total)", None), "reaped"),
                        **one(q("sum(ponos_stale_completions_total)", None), "stale"),
                    },
                ),
            ]
    canvas = Canvas(1200, 960)
    canvas.text(
        20,
        10,
        f"ponos-redis: a {duration:g} s run scraped by Prometheus (a slowdown, a stalled replica)",
        scale=2,
    )
    for i, (title, series) in enumerate(panels):
        col, row = i % 2, i // 2
        box = (20 + col * 590, 40 + row * 305, 20 + col * 590 + 570, 40 + row * 305 + 295)
        chart(canvas, box, title, series, duration + 2.0)
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of workload")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "observability-run.png")
    args = parser.parse_args()
    canvas = asyncio.run(run(args.duration))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(canvas.png())
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
