"""dogctl deploy / invoke / evaluate / teardown on the local backend: the real `serve`, over HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import BIN, free_port

pytestmark = pytest.mark.e2e


def dogctl(work, *args, timeout=180, env=None):
    return subprocess.run([str(BIN / "dogctl"), "--workdir", str(work), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def listening(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp writes them) with a socket listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_deploy_invoke_evaluate_teardown(tmp_path, trained_model, trained_data, sample_photos):
    work = tmp_path / "work"
    port = str(free_port())
    secrets = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example-secret",
               "GITHUB_TOKEN": "example-token"}
    up = dogctl(work, "deploy", "--model", str(trained_model.parent), "--port", port,
                "--env", "SAGEMAKER_MODEL_SERVER_WORKERS=2", env={**os.environ, **secrets})
    assert up.returncode == 0, up.stderr
    assert f"ready at http://127.0.0.1:{port}" in up.stdout
    log = re.search(r"\(log (.+)\)", up.stdout).group(1)
    assert "2 worker(s)" in Path(log).read_text()  # --env reached the server
    try:
        # Loopback only, and none of the caller's secrets in the server's environment.
        assert listening(int(port)) == {"0100007F"}, "serve listens beyond 127.0.0.1"
        pid = json.loads(next((work / "endpoints").glob("*.json")).read_text())["pid"]
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"DOGBREED_BIND_HOST=127.0.0.1" in environ
        assert not [v for v in environ if any(s.encode() in v for s in secrets.values())]
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


def test_transform_a_folder_through_the_real_serve(tmp_path, trained_model, trained_data, sample_photos):
    work = tmp_path / "work"
    out = dogctl(work, "transform", "--model", str(trained_model), "--data", str(trained_data / "test"),
                 "--name", "t1")
    assert out.returncode == 0, out.stdout + out.stderr
    split = trained_data / "test"
    photos = sorted(p.relative_to(split).as_posix() for p in split.rglob("*.jpg"))
    folder = work / "transforms" / "t1"
    # SageMaker's layout: one <photo>.out per input, holding the container's JSON answer.
    outputs = sorted(p.relative_to(folder / "output").as_posix() for p in (folder / "output").rglob("*.out"))
    assert outputs == [p + ".out" for p in photos]
    answer = json.loads((folder / "output" / outputs[0]).read_text())
    assert len(answer["predictions"]) == 1 and answer["predictions"][0][0]["class"]
    # The same accuracy as `train`'s own test evaluation: same model, same preprocessing.
    test_acc = json.loads((trained_model / "metadata.json").read_text())["metrics"]["test_acc"]
    right = round(test_acc * len(photos))
    assert f"transform: {len(photos)} of {len(photos)} photos answered" in out.stdout
    assert f"accuracy {100 * test_acc:.1f}% ({right} of {len(photos)} photos labelled" in out.stdout
    rows = (folder / "predictions.csv").read_text().splitlines()
    assert rows[0] == "photo,class,breed,probability,label" and len(rows) == len(photos) + 1
    assert re.search(r"\d+ requests in flight", out.stdout)
    assert not (work / "endpoints" / "transform-t1.json").exists()  # serve stopped

    # A file that is no photo fails alone (the server's 400, named); the others are answered.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "notes.txt").write_text("not a photo")
    (mixed / "dog.jpg").write_bytes(sample_photos[0].read_bytes())
    bad = dogctl(work, "transform", "--model", str(trained_model), "--data", str(mixed), "--name", "t2")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "transform: 1 of 2 photos answered" in bad.stdout
    assert re.search(r"notes\.txt: HTTP 400: .*image", bad.stdout), bad.stdout
    assert "accuracy" not in bad.stdout  # no class folders, no labels
    again = dogctl(work, "transform", "--model", str(trained_model), "--data", str(mixed), "--name", "t2")
    assert again.returncode == 2 and "exists already: pick another --name" in again.stderr
