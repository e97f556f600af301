"""The image run by the SageMaker SDK v3's own local mode (local_test/sdk_local_mode.py): /opt/ml as
the SDK lays it out for SageMaker, docker-compose through the engine's Docker API, the SDK's
local runtime client. With podman, its API is `podman system service` (DOCKER_HOST); two hosts need the
dnsname CNI plugin for algo-2 to resolve algo-1 (.ci/container-engine.sh installs both)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dogbreed.contract.metrics import METRIC_DEFINITIONS
from dogbreed.debugger.verdicts import RULE_NAMES
from tests.container.support import ROOT, need, sh

pytestmark = pytest.mark.container
SHARED_ZIP = ROOT.parent / "shared" / "data" / "dogs120-90px.zip"
BREEDS = 3  # the first three of the zip's 120
FAST = ["--hp", "epochs=2", "--hp", "image_size=48", "--hp", "batch_size=16", "--hp", "pretrained=false"]


@pytest.fixture(scope="module")
def docker_api(engine: str, tmp_path_factory) -> Iterator[dict[str, str]]:
    """The environment that points docker-compose (and the SDK) at a Docker API."""
    if shutil.which("docker-compose") is None:
        need("no docker-compose", "docker-compose is not installed (Debian's package: docker-compose)")
    if engine == "docker":
        yield {}
        return
    sock = tmp_path_factory.mktemp("podman-api") / "podman.sock"
    service = subprocess.Popen([engine, "system", "service", "--time=0", f"unix://{sock}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not _answers(sock):
        assert service.poll() is None and time.monotonic() < deadline, "podman system service did not start"
        time.sleep(0.2)
    yield {"DOCKER_HOST": f"unix://{sock}"}
    service.terminate()
    service.wait(timeout=30)


def _answers(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b" 200 " in s.recv(64)
    except OSError:
        return False


@pytest.fixture(scope="module")
def dogs(tmp_path_factory) -> Path:
    """:data:`BREEDS` breeds of the shared real photos (train/ and valid/)."""
    assert SHARED_ZIP.is_file(), f"{SHARED_ZIP} is missing: ../shared must be beside the checkout"
    root = tmp_path_factory.mktemp("dogs")
    with zipfile.ZipFile(SHARED_ZIP) as archive:
        files = [Path(n).parts for n in archive.namelist() if not n.endswith("/")]
        breeds = sorted({p[2] for p in files if len(p) == 4})[:BREEDS]  # dogImages/<split>/<breed>/<file>
        for parts in files:
            if len(parts) == 4 and parts[2] in breeds and ".." not in parts:
                name = "/".join(parts)
                target = root.joinpath(*parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(name))
    return root


def local_mode(image: str, data: Path, work: Path, env: dict[str, str], *args: str) -> tuple[int, str, dict]:
    """Run local_test/sdk_local_mode.py: (exit status, everything it printed, its JSON summary)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DOGBREED_", "OPT_ML"))}
    # No AWS at all: no credentials, no instance metadata, a region for the SDK's clients.
    clean.update(env, AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION="eu-west-1",
                 AWS_CONFIG_FILE=str(work / "aws-config"),
                 AWS_SHARED_CREDENTIALS_FILE=str(work / "aws-credentials"))
    work.mkdir(parents=True, exist_ok=True)
    script = [sys.executable, "-m", "local_test.sdk_local_mode", image, str(data), str(work)]
    run = subprocess.run([*script, *args], env=clean, cwd=ROOT, capture_output=True, text=True, timeout=900)
    printed = run.stdout + run.stderr
    last = (run.stdout.strip().splitlines() or ["{}"])[-1]
    summary = json.loads(last) if last.startswith("{") else {}
    return run.returncode, printed, summary


def containers(engine: str, image: str) -> dict[str, int]:
    """The image's containers (running or exited): id -> exit code."""
    out = sh(engine, "ps", "-a", "--filter", f"ancestor={image}", "--format", "{{.ID}} {{.ExitCode}}").stdout
    return {cid: int(code) for cid, code in (line.split() for line in out.splitlines())}


@pytest.fixture
def new_containers(engine: str, image: str) -> Iterator[Callable[[], dict[str, int]]]:
    """A function: the containers left since the test began (id -> exit code); removed after it."""
    before = set(containers(engine, image))

    def since() -> dict[str, int]:
        return {cid: code for cid, code in containers(engine, image).items() if cid not in before}

    yield since
    for cid in since():
        sh(engine, "rm", "-f", cid, check=False)


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_two_hosts_train_with_the_in_container_debugger_then_deploy_and_predict(
        engine, image, docker_api, dogs, tmp_path, sample_photos, new_containers):
    photo = next(p for p in sample_photos if p.suffix == ".jpg")
    batch = tmp_path / "batch"  # two photos of each breed (local mode reads a folder's top level)
    batch.mkdir()
    for breed in sorted((dogs / "valid").iterdir()):
        for src in sorted(breed.iterdir())[:2]:
            shutil.copy(src, batch / src.name)
    code, printed, summary = local_mode(image, dogs, tmp_path, docker_api, "--instances", "2", *FAST,
                                        "--hp", "debugger=true", "--photo", str(photo),
                                        "--transform", str(batch))
    assert code == 0 and summary["failure"] is None, printed
    # Two hosts as SageMaker lays them out: one process each, rendezvous at algo-1 by name.
    assert re.search(r"launched 1 worker\(s\) on algo-2-\w+ \(world size 2, master algo-1-\w+:", printed)
    # The metric definitions the tuner and the console use read the job's real log (no test split).
    for definition in METRIC_DEFINITIONS:
        if definition["Name"].startswith("test_"):
            continue
        assert re.search(definition["Regex"], printed), definition["Name"]
    model = members(tmp_path / "out" / "model.tar.gz")
    assert set(model) == {"model.pt", "model_int8.pt", "classes.json", "metadata.json"}  # int8 ships too
    breeds = sorted(p.name for p in (dogs / "train").iterdir())
    assert json.loads(model["classes.json"]) == breeds and len(breeds) == BREEDS
    metadata = json.loads(model["metadata.json"])  # typed, as the schema parses them
    assert metadata["hyperparameters"]["epochs"] == 2 and metadata["hyperparameters"]["image_size"] == 48
    # Local mode sends no DebugHookConfig: the analysis ran inside the job, its results in the output.
    output = members(tmp_path / "out" / "output.tar.gz")
    verdicts = json.loads(output["data/rule-verdicts.json"])
    assert {v["rule"] for v in verdicts} == set(RULE_NAMES)
    assert b"<html" in output["data/report.html"] and "failure" not in output
    # The SDK's runtime client: a raw JPEG and the JSON form give the same answer, top 3 of 3 breeds.
    answers = summary["predictions"]
    jpeg, as_json = answers["jpeg"]["predictions"], answers["json"]["predictions"]
    assert [p["class"] for p in jpeg[0]] == [p["class"] for p in as_json[0]]
    assert sorted(p["class"] for p in jpeg[0]) == breeds
    assert abs(sum(p["probability"] for p in jpeg[0]) - 1) < 1e-3
    # The SDK's batch transform, as `dogctl transform --sagemaker` configures it: one request per
    # photo, <photo>.out in SageMaker's layout, read back by dogctl's summary.
    batched = summary["transform"]
    photos = sorted(p.relative_to(batch).as_posix() for p in batch.rglob("*.jpg"))
    assert batched["outputs"] == [p + ".out" for p in photos] and len(photos) == 2 * BREEDS
    assert (batched["answered"], batched["failed"]) == (len(photos), {})
    assert set(batched["predicted"]) <= set(breeds) and sum(batched["predicted"].values()) == len(photos)
    # Both training containers ended well; the serving ones were stopped with the endpoint and
    # at the end of the transform.
    assert sorted(new_containers().values())[:2] == [0, 0] and len(new_containers()) == 4


def test_a_failed_job_is_failed_whatever_docker_compose_says(engine, image, docker_api, dogs, tmp_path,
                                                               new_containers):
    # A job the request cannot catch (the backend refuses a bad hyperparameter before sending):
    # the splits' classes differ, which only the container sees.
    mismatched = tmp_path / "mismatched"
    shutil.copytree(dogs, mismatched)
    shutil.rmtree(sorted((mismatched / "valid").iterdir())[0])
    code, printed, summary = local_mode(image, mismatched, tmp_path / "work", docker_api, *FAST)
    # docker-compose 1.29 with podman often exits 0 here, and the SDK then reports the job as
    # completed; the container's exit status and the failure file in output.tar.gz say otherwise.
    assert code == 1 and summary, printed
    assert summary["failure"].startswith("'train' and 'valid' must have the same class folders"), summary
    assert list(new_containers().values()) == [1]
    assert "Traceback" not in printed


def test_a_users_own_script_runs_through_the_training_toolkit(engine, image, docker_api, dogs, tmp_path,
                                                              new_containers):
    code, printed, summary = local_mode(image, dogs, tmp_path, docker_api, "--entry-point", "train.py",
                                        "--source-dir", str(ROOT / "local_test" / "user_script"),
                                        "--hp", "epochs=2")
    assert code == 0 and summary["failure"] is None, printed
    photos = sum(1 for p in (dogs / "train").rglob("*.jpg"))
    assert "handing over to the SageMaker training toolkit" in printed
    assert f"user-script: photos={photos} accuracy=0.70" in printed
    assert set(members(tmp_path / "out" / "model.tar.gz")) == {"model.pt"}
