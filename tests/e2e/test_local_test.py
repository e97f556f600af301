"""local_test/serve_model.sh and predict.sh, run as a user runs them."""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_http

pytestmark = pytest.mark.e2e
LOCAL_TEST = Path(__file__).resolve().parents[2] / "local_test"


def test_serve_model_and_predict(trained_model, sample_photos, tmp_path):
    port = free_port()
    env = {**os.environ, "PORT": str(port)}
    server = subprocess.Popen([str(LOCAL_TEST / "serve_model.sh"), str(trained_model)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", server, what="serve_model.sh")
        out = subprocess.run([str(LOCAL_TEST / "predict.sh"), str(sample_photos[0]), "2"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        predictions = json.loads(out.stdout)["predictions"]
        assert len(predictions) == 1 and len(predictions[0]) == 2
        assert {"breed", "class", "index", "probability"} == set(predictions[0][0])

        text = tmp_path / "notes.txt"
        text.write_text("not a photo")
        bad = subprocess.run([str(LOCAL_TEST / "predict.sh"), str(text)], env=env,
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and "not an image format" in bad.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def test_serve_model_without_a_model_says_what_to_do(tmp_path):
    out = subprocess.run([str(LOCAL_TEST / "serve_model.sh"), str(tmp_path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2 and "not a model folder written by train" in out.stderr


def test_predict_without_a_server_says_so(sample_photos):
    env = {**os.environ, "PORT": str(free_port())}
    out = subprocess.run([str(LOCAL_TEST / "predict.sh"), str(sample_photos[0])], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "is the server running?" in out.stderr
