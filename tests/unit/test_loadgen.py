"""bench/loadgen.py, the serving benchmarks' shared pieces, against a real HTTP server on loopback.
No timing is asserted: benchmarks are scripts, not tests."""

from __future__ import annotations

import contextlib
import http.server
import math
import os
import threading
import time
from pathlib import Path

import pytest

from bench.loadgen import Run, TreeMemory, drive, first_answer, percentile, untrained_model
from tests.helpers import loopback_server


class _Handler(http.server.BaseHTTPRequestHandler):
    """POST: 503 for the first ``server.refuse`` requests and every ``server.fail_every``-th one,
    else 200; the bodies received go to ``server.bodies``."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the benchmarks' servers

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.bodies.append((self.path, self.headers["Content-Type"], body))
            n = len(self.server.bodies)
        every = self.server.fail_every
        self.send_response(503 if n <= self.server.refuse or (every and n % every == 0) else 200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def server(refuse: int = 0, fail_every: int = 0) -> contextlib.AbstractContextManager:
    return loopback_server(_Handler, lock=threading.Lock(), bodies=[], refuse=refuse, fail_every=fail_every)


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]  # 1..100, shuffled order must not matter
    assert percentile(values[::-1], 0.5) == 51.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile(values, 0.0) == 1.0
    assert percentile([3.0], 0.99) == 3.0
    assert math.isnan(percentile([], 0.5))


def test_run_rate_and_quantiles():
    run = Run(2.0, [0.1, 0.2, 0.3, 0.4])
    assert run.rate == 2.0 and run.p50 == 0.3 and run.p99 == 0.4
    assert Run(0.0).rate == 0.0


def test_drive_sends_every_request_in_turn_over_each_connection():
    with server() as srv:
        run = drive(srv.server_port, [b"a", b"bb"], 3, total=10, path="/predictions/dog")
    assert len(run.latencies) == 10 and run.errors == 0 and run.seconds > 0
    assert sorted(body for _, _, body in srv.bodies) == [b"a"] * 5 + [b"bb"] * 5
    assert {(path, ctype) for path, ctype, _ in srv.bodies} == {("/predictions/dog", "image/jpeg")}


def test_drive_counts_refusals_as_errors_not_answers():
    with server(fail_every=4) as srv:
        run = drive(srv.server_port, [b"x"], 2, total=12)
    assert run.errors == 3 and len(run.latencies) == 9 and run.first_error == "HTTP 503"


def test_drive_for_a_duration_stops_and_reconnects_after_failed_connections():
    with server() as srv:
        run = drive(srv.server_port, [b"x"], 2, seconds=0.3)
    assert run.latencies and run.errors == 0 and len(srv.bodies) == len(run.latencies)
    with server() as srv:
        port = srv.server_port
    run = drive(port, [b"x"], 2, seconds=0.2)  # nothing listens any more
    assert not run.latencies and run.errors > 0 and "ConnectionRefusedError" in run.first_error
    with pytest.raises(ValueError):
        drive(port, [b"x"], 1)


def test_first_answer_waits_past_refusals():
    with server(refuse=2) as srv:
        seconds = first_answer(srv.server_port, b"photo", time.monotonic(), lambda: True)
    assert seconds > 0 and len(srv.bodies) == 3


def test_first_answer_fails_when_the_server_dies():
    with server() as srv:
        port = srv.server_port
    with pytest.raises(RuntimeError, match="exited"):
        first_answer(port, b"photo", time.monotonic(), lambda: False)


def test_tree_memory_samples_this_process():
    with TreeMemory(lambda: os.getpid(), interval=0.01) as memory:
        memory.sample()
    assert memory.peak_rss > 0 and memory.peak_pss > 0 and memory.processes >= 1


def test_untrained_model_is_an_artifact_the_predictor_loads(tmp_path: Path):
    from dogbreed.contract.artifact import ModelArtifact
    from dogbreed.serve.predictor import Predictor

    folder = untrained_model(tmp_path / "model", classes=5, image_size=32)
    artifact = ModelArtifact.read(folder)
    assert artifact.metadata.num_classes == 5 and artifact.metadata.preprocessing.image_size == 32
    assert Predictor(folder).num_classes == 5
    assert Predictor(folder, precision="int8").num_classes == 5  # its int8 model too


def test_torchserve_gets_its_own_openmp_defaults_though_serve_sets_them_when_imported(monkeypatch):
    import bench.serve_vs_torchserve as svt  # imports dogbreed.serve.server, which sets GOMP_SPINCOUNT

    monkeypatch.setenv("GOMP_SPINCOUNT", "10000")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    env = svt.clean_env(OMP_NUM_THREADS="1")
    assert "GOMP_SPINCOUNT" not in env and "OMP_WAIT_POLICY" not in env
    assert env["OMP_NUM_THREADS"] == "1"  # what a row asks for stays
