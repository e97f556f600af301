"""The real `serve` under hostile clients: /ping keeps answering within SageMaker's 2 s and the
worker's memory stays bounded (issue 22)."""

from __future__ import annotations

import struct
import threading
import time
import urllib.request
import zlib
from pathlib import Path

import psutil
import pytest

from tests.helpers import Server, post

pytestmark = pytest.mark.e2e


def rgba_png(side: int) -> bytes:
    """A complete, valid RGBA PNG of ``side`` x ``side`` transparent pixels: a few hundred KB that
    decode to ``4 * side**2`` bytes, then to RGB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" + b"\0" * (4 * side)  # filter byte, then the pixels
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def abuse(srv: Server, send, clients: int, seconds: float) -> tuple[float, list[int]]:
    """``clients`` threads call ``send()`` (a status) again and again for ``seconds`` while /ping
    is polled: (the slowest /ping, every status)."""
    stop = time.monotonic() + seconds
    statuses: list[int] = []

    def loop() -> None:
        while time.monotonic() < stop:
            try:
                statuses.append(send())
            except OSError:
                statuses.append(0)

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    worst = 0.0
    while time.monotonic() < stop:
        started = time.monotonic()
        with urllib.request.urlopen(srv.url + "/ping", timeout=10) as resp:
            assert resp.status == 200
        worst = max(worst, time.monotonic() - started)
        time.sleep(0.1)
    for t in threads:
        t.join(timeout=120)
    return worst, statuses


def peak_worker_memory(srv: Server) -> int:
    """The largest peak resident size (bytes) of the server's worker processes."""
    workers = psutil.Process(srv.proc.pid).children()
    assert workers, "no worker process"
    peaks = []
    for worker in workers:
        status = Path(f"/proc/{worker.pid}/status").read_text()
        peaks.append(int(status.split("VmHWM:")[1].split()[0]) * 1024)  # kB
    return max(peaks)


def test_decode_bombs_in_flight_keep_ping_fast_and_the_worker_within_its_memory(trained_model, tmp_path):
    side = 7_900  # 62 megapixels, under the 64-megapixel limit: accepted, and 250 MB decoded
    bomb = rgba_png(side)
    assert len(bomb) < 600_000
    srv = Server(trained_model, workers=1, log=tmp_path / "serve.log")
    try:
        srv.wait_ready()
        before = peak_worker_memory(srv)
        worst, statuses = abuse(srv, lambda: post(srv.url + "/invocations", bomb, "image/png",
                                                  timeout=120)[0], clients=6, seconds=10)
        peak = peak_worker_memory(srv)
    finally:
        srv.stop()
    print(f"\ndecode bombs: slowest /ping {worst:.2f} s; worker peak {peak / 2**20:.0f} MiB "
          f"(at rest {before / 2**20:.0f} MiB); statuses {sorted(set(statuses))} x{len(statuses)}")
    assert worst < 2.0, worst
    assert 200 in statuses and set(statuses) <= {200, 503}, statuses
    # One 62-megapixel decode at a time: RGBA, its RGB copy and the resize, about 0.8 GB over the
    # model; six at once (no budget) would be about 5 GB.
    assert peak - before < 1.2 * 2**30, f"the worker grew by {(peak - before) / 2**20:.0f} MiB"
