"""Helpers for tests that run the real programs."""

from __future__ import annotations

import base64
import contextlib
import http.server
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
TRAIN = BIN / "train"
# NVIDIA's NVML as a g4dn host shows it (driver 470, too old for CUDA 13): on PYTHONPATH, it makes
# train and serve see a GPU that CUDA cannot start on.
NVML_T4_DRIVER_470 = '''"""A stand-in for pynvml: one Tesla T4 with driver 470."""
def nvmlInit(): pass
def nvmlShutdown(): pass
def nvmlDeviceGetCount(): return 1
def nvmlSystemGetDriverVersion(): return "470.256.02"
def nvmlDeviceGetHandleByIndex(index): return index
def nvmlDeviceGetName(handle): return "Tesla T4"
'''


def with_old_driver(env: dict[str, str], folder: Path) -> dict[str, str]:
    """``env`` with the stand-in NVML (written to ``folder``) first on PYTHONPATH."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pynvml.py").write_text(NVML_T4_DRIVER_470)
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))}


# Small and fast: 3 classes at 48 px, CPU.
FAST_HP = {"epochs": "2", "batch_size": "4", "image_size": "48", "pretrained": "false",
           "progress_seconds": "0", "lr": "0.001"}


def run_train(root: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `train` console script on ``root`` as its /opt/ml."""
    return subprocess.run([str(TRAIN)], env={**env, "OPT_ML": str(root)}, capture_output=True,
                          text=True, timeout=timeout)


def train_until(root: Path, env: dict[str, str], marker: str) -> tuple[subprocess.Popen, list[str]]:
    """Start the real `train` on ``root`` and read its output up to the first line containing
    ``marker``; (the running process, the lines read). The caller signals or waits."""
    proc = subprocess.Popen([str(TRAIN)], env={**env, "OPT_ML": str(root)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return proc, seen
    proc.wait()
    raise AssertionError(f"train ended (code {proc.returncode}) before {marker!r}:\n" + "".join(seen))


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
def loopback_server(handler: type[http.server.BaseHTTPRequestHandler],
                    **attributes: object) -> Iterator[http.server.ThreadingHTTPServer]:
    """A real threaded HTTP server on a free loopback port with ``handler``, ``attributes`` set on
    it (for the handler to read), serving in a thread until the block ends."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    for name, value in attributes.items():
        setattr(server, name, value)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def file_server(payload: bytes) -> Iterator[http.server.ThreadingHTTPServer]:
    """A real HTTP server on loopback serving ``payload``; ``.url`` and ``.ranges`` (the Range
    headers received, "" for none) are attributes of the yielded server."""
    with loopback_server(_RangeHandler, payload=payload, ranges=[]) as server:
        server.url = f"http://127.0.0.1:{server.server_port}/file"
        yield server


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60, what: str = "server") -> None:
    """Poll ``url`` until it answers (any status below 500); fail if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        assert proc.poll() is None, f"{what} exited with code {proc.returncode}"
        assert time.monotonic() < deadline, f"{what} did not answer {url} within {timeout:.0f} s"
        time.sleep(0.2)


def zip_folder(folder: Path, archive: Path, prefix: str = "dogImages") -> Path:
    """``folder``'s files in a zip under ``prefix``/, as dogImages.zip lays them out."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{prefix}/{path.relative_to(folder)}")
    return archive


# Ports for the servers tests start: each pytest-xdist worker takes its own block below the
# kernel's ephemeral range (32768-60999 on Linux), so a port one worker picked, then freed for a
# server to bind, is never handed to another worker (or to a client socket) meanwhile.
PORT_BLOCK = 1000
PORT_BASE = 20000
_next_port = [0]
_port_lock = threading.Lock()


def wait_until(condition, timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.02)


def slowest_ping(url: str, until: float, every: float) -> float:
    """Poll ``url``/ping every ``every`` seconds until monotonic time ``until`` (each must be a
    200); the slowest answer's seconds."""
    worst = 0.0
    while time.monotonic() < until:
        started = time.monotonic()
        with urllib.request.urlopen(url + "/ping", timeout=10) as resp:
            assert resp.status == 200
        worst = max(worst, time.monotonic() - started)
        time.sleep(every)
    return worst


def free_port() -> int:
    """A loopback port nothing listens on, from this xdist worker's own block, never the same
    twice in one worker (a server started on it does not race another test for it)."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    start = PORT_BASE + (worker % 12) * PORT_BLOCK
    with _port_lock:
        for _ in range(PORT_BLOCK):
            port = start + _next_port[0] % PORT_BLOCK
            _next_port[0] += 1
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError(f"no free port in {start}-{start + PORT_BLOCK - 1}")


class Server:
    """The real `serve` (gunicorn) as a process on a free loopback port; output in ``log``."""

    def __init__(self, model_dir: Path, *, workers: int | None = 1, env: dict[str, str] | None = None,
                 log: Path):
        """``workers``: SAGEMAKER_MODEL_SERVER_WORKERS; None leaves it unset (serve's default)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **(env or {}), "SAGEMAKER_BIND_TO_PORT": str(self.port), "PYTHONUNBUFFERED": "1"}
        env.pop("SAGEMAKER_MODEL_SERVER_WORKERS", None)
        if workers is not None:
            env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(workers)
        self.started = time.monotonic()
        self.proc = subprocess.Popen([str(BIN / "serve"), "--model-dir", str(model_dir)], env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60, expect: int = 200) -> float:
        """Seconds from start until /ping answers ``expect``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=2) as resp:
                    if resp.status == expect:
                        return time.monotonic() - self.started
            except urllib.error.HTTPError as exc:
                if exc.code == expect:
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"serve not ready in {timeout}s:\n{self.log()}")

    def __enter__(self) -> Server:
        """Started and answering /ping; stopped when the ``with`` block ends."""
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def post(url: str, body: bytes, content_type: str | None = "image/jpeg",
         headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, dict]:
    """POST and return (status, JSON body) whatever the status."""
    hdrs = dict(headers or {})
    if content_type is not None:
        hdrs["Content-Type"] = content_type
    req = urllib.request.Request(url, data=body, headers=hdrs, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def encode(img, fmt: str, **kw) -> bytes:
    """A PIL image saved in ``fmt`` as bytes."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid grayscale PNG whose header claims ``width`` x ``height`` with a tiny body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
            + chunk(b"IEND", b""))


def use_credentials(aws, region: str | None = "eu-west-1") -> None:
    """Fake credentials (and a region) for the moto server of the ``aws`` fixture."""
    aws.setenv("AWS_ACCESS_KEY_ID", "testing")
    aws.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    if region:
        aws.setenv("AWS_DEFAULT_REGION", region)


# A SageMaker setup as the tests' moto server holds it.
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/dogbreed:latest"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
BUCKET = "dogbreed-jobs"


def recorded(moto: str, action: str) -> list[dict]:
    """The bodies of the JSON requests for ``action`` (e.g. CreateTrainingJob) moto recorded."""
    text = urllib.request.urlopen(moto + "/moto-api/recorder/download-recording").read().decode()
    found = []
    for line in text.splitlines():
        entry = json.loads(line)
        if entry.get("headers", {}).get("X-Amz-Target", "").endswith("." + action):
            body = entry["body"]
            found.append(json.loads(base64.b64decode(body) if entry.get("body_encoded") else body))
    return found
