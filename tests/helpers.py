"""Helpers for tests that run the real programs."""

from __future__ import annotations

import contextlib
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
TRAIN = BIN / "train"
# Small and fast: 3 classes at 48 px, CPU.
FAST_HP = {"epochs": "2", "batch_size": "8", "image_size": "48", "pretrained": "false",
           "progress_seconds": "0", "lr": "0.003"}


def run_train(root: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `train` console script on ``root`` as its /opt/ml."""
    return subprocess.run([str(TRAIN)], env={**env, "OPT_ML": str(root)}, capture_output=True,
                          text=True, timeout=timeout)


def failure_reason(root: Path) -> str:
    return (root / "output" / "failure").read_text().splitlines()[0]


def read_metadata(root: Path) -> dict:
    return json.loads((root / "model" / "metadata.json").read_text())


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.payload`` at any path, honouring ``Range: bytes=N-``."""

    def do_GET(self):
        self.server.ranges.append(self.headers.get("Range") or "")
        payload = self.server.payload
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
            self.send_response(206)
        else:
            self.send_response(200)
        body = payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def file_server(payload: bytes) -> Iterator[http.server.ThreadingHTTPServer]:
    """A real HTTP server on loopback serving ``payload``; ``.url`` and ``.ranges`` (the Range
    headers received, "" for none) are attributes of the yielded server."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    server.payload, server.ranges = payload, []
    server.url = f"http://127.0.0.1:{server.server_port}/file"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
