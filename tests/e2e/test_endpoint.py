"""dogctl deploy / invoke / evaluate / teardown on the local backend: the real `serve`, over HTTP."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import BIN, free_port

pytestmark = pytest.mark.e2e


def dogctl(work, *args, timeout=180):
    return subprocess.run([str(BIN / "dogctl"), "--workdir", str(work), *args], capture_output=True,
                          text=True, timeout=timeout)


def test_deploy_invoke_evaluate_teardown(tmp_path, trained_model, trained_data, sample_photos):
    work = tmp_path / "work"
    port = str(free_port())
    up = dogctl(work, "deploy", "--model", str(trained_model.parent), "--port", port,
                "--env", "SAGEMAKER_MODEL_SERVER_WORKERS=2")
    assert up.returncode == 0, up.stderr
    assert f"ready at http://127.0.0.1:{port}" in up.stdout
    log = re.search(r"\(log (.+)\)", up.stdout).group(1)
    assert "2 worker(s)" in Path(log).read_text()  # --env reached the server
    try:
        again = dogctl(work, "deploy", "--model", str(trained_model), "--port", port)
        assert again.returncode == 2 and "is already up" in again.stderr

        out = dogctl(work, "invoke", str(sample_photos[0]), str(sample_photos[1]), "--top-k", "2")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.strip().splitlines()
        assert len(lines) == 2 and lines[0].startswith(f"{sample_photos[0]}: ")
        assert len(re.findall(r"\d+\.\d%", lines[0])) == 2

        out = dogctl(work, "evaluate", "--data", str(trained_data / "test"))
        assert out.returncode == 0, out.stderr
        # The endpoint's accuracy is the training program's own test accuracy: same model,
        # same preprocessing, bit for bit.
        test_acc = json.loads((trained_model / "metadata.json").read_text())["metrics"]["test_acc"]
        images = sum(1 for _ in (trained_data / "test").rglob("*.jpg"))
        assert f"accuracy {100 * test_acc:.1f}% ({round(test_acc * images)} of {images} images" in out.stdout
        assert "hardest breeds (of 3):" in out.stdout
    finally:
        down = dogctl(work, "teardown")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert dogctl(work, "teardown").stdout.strip() == "teardown: endpoint 'dogbreed-local' was not running"
    gone = dogctl(work, "invoke", str(sample_photos[0]))
    assert gone.returncode == 2 and "run `dogctl deploy` first" in gone.stderr


def test_deploy_errors_are_one_line(tmp_path):
    work = tmp_path / "work"
    no_model = dogctl(work, "deploy")
    assert no_model.returncode == 2 and "no trained model under" in no_model.stderr
    not_model = dogctl(work, "deploy", "--model", str(tmp_path))
    assert not_model.returncode == 2 and "holds no model written by train" in not_model.stderr
    for result in (no_model, not_model):
        assert "Traceback" not in result.stderr
