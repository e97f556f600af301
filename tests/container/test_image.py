"""The real image in a real container engine: build, train, serve, push, pull back (the
engine and the image: conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest

from dogbreed import __version__
from local_test.testdata import make_dataset
from orchestration.registry import DOCKER_V2, RegistryError, Target, check_manifest
from tests.container.support import ROOT, inspect, need, sh
from tests.helpers import BIN, free_port, wait_http, zip_folder

pytestmark = pytest.mark.container
LOCAL_TEST = ROOT / "local_test"
REGISTRY = "127.0.0.1:5000"
DOGCTL = str(BIN / "dogctl")


def test_image_is_labelled_and_runs_commands_as_sagemaker_does(engine, image):
    info = inspect(engine, image)
    config = info.get("Config") or info["ContainerConfig"]
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.multi-models"] == "false"
    # The base it was built on is named (from a registry, its digest is labelled too).
    base = config["Labels"]["org.opencontainers.image.base.name"]
    assert sh(engine, "image", "inspect", base, check=False).returncode == 0, base
    assert config["Entrypoint"] == ["/usr/local/bin/dogbreed-entrypoint"]  # exec form
    assert (info["Os"], info["Architecture"]) == ("linux", "amd64")  # what SageMaker runs
    if engine == "podman":
        manifest = sh(engine, "image", "inspect", "--format", "{{.ManifestType}}", image).stdout.strip()
        assert manifest == DOCKER_V2
    # Any other command passes through; no build tools are left in the image.
    out = sh(engine, "run", "--rm", image, "dogbreed", "hyperparameters").stdout
    assert "| `lr` |" in out
    tools = sh(engine, "run", "--rm", image, "bash", "-c", "command -v gcc cc pip3 apt-get || true").stdout
    assert "gcc" not in tools and "/cc" not in tools


@pytest.fixture(scope="module")
def trained(image, tmp_path_factory) -> tuple[Path, str]:
    """local_test/train_local.sh on a generated test_dir: (test_dir, what it printed)."""
    test_dir = tmp_path_factory.mktemp("container") / "test_dir"
    out = sh(str(LOCAL_TEST / "train_local.sh"), image, str(test_dir), timeout=900)
    return test_dir, out.stdout + out.stderr


def test_a_build_pinned_to_the_digest_it_printed_uses_that_base(engine, image):
    labels = (inspect(engine, image).get("Config") or {}).get("Labels") or {}
    base = labels["org.opencontainers.image.base.name"]
    digest = labels.get("org.opencontainers.image.base.digest")
    if not digest:
        need("a base with a registry digest", f"{engine} knows no digest for {base}")
    pinned = base.rsplit(":", 1)[0] + "@" + digest
    env = {"BUILDAH_ISOLATION": os.environ.get("BUILDAH_ISOLATION", "chroot"), "BASE_IMAGE": pinned}
    if "dogbreed-base" in pinned:  # the stand-in base: as the image fixture builds on it
        env.update(CUDA_COMPAT="", PRETRAINED_WEIGHTS="false")
    tag = f"localhost/dogbreed-pinned:{uuid.uuid4().hex[:8]}"
    try:
        built = sh("bash", "docker/build.sh", tag, env=env, timeout=1800)
        assert f"build: base pinned by digest: {pinned}" in built.stderr
        again = inspect(engine, tag)["Config"]["Labels"]
        assert again["org.opencontainers.image.base.name"] == pinned
        assert again["org.opencontainers.image.base.digest"] == digest
    finally:
        sh(engine, "rmi", "-f", tag, check=False)


def test_train_in_the_container_writes_the_model_on_the_host(trained):
    test_dir, printed = trained
    model = test_dir / "model"
    assert {"model.pt", "classes.json", "metadata.json"} <= {p.name for p in model.iterdir()}, printed
    assert json.loads((model / "classes.json").read_text())[0] == "001.Affenpinscher"
    assert "final selected_epoch=" in printed
    assert not (test_dir / "output" / "failure").exists()


def test_pretrained_weights_missing_fails_clearly(engine, image, tmp_path):
    if os.environ.get("BASE_IMAGE"):
        pytest.skip("the real base image carries the weights")
    test_dir = tmp_path / "test_dir"
    sh(str(ROOT / ".venv" / "bin" / "python"), str(LOCAL_TEST / "testdata.py"), str(test_dir),
       "--hyperparameters", '{"epochs": "1", "pretrained": "true"}')
    run = sh(engine, "run", "--rm", "-v", f"{test_dir}:/opt/ml", image, "train", check=False)
    assert run.returncode != 0
    reason = (test_dir / "output" / "failure").read_text().splitlines()[0]
    assert "weights" in reason.lower() and "Traceback" not in run.stdout + run.stderr


# uid:gid:supplementary groups of serve's master (pid 1), then of each other process (its workers).
PROCESS_IDS = """
import pathlib
def ids(status):
    f = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return ":".join([f["Uid"].split()[0], f["Gid"].split()[0], ",".join(f["Groups"].split())])
me = str(__import__("os").getpid())
procs = sorted((p for p in pathlib.Path("/proc").iterdir() if p.name.isdigit() and p.name != me),
               key=lambda p: int(p.name) != 1)
print(*(ids((p / "status").read_text()) for p in procs))
"""


@pytest.mark.parametrize("hardening", ["", "--read-only --tmpfs /tmp --user 65534:65534"],
                         ids=["as-sagemaker-runs-it", "non-root-read-only-root"])
def test_serve_in_the_container_answers_ping_and_a_real_photo(engine, image, trained, sample_photos,
                                                              hardening):
    # Also as a hardened host would run it: another user, nothing writable but /tmp (and /opt/ml).
    test_dir, _ = trained
    port = free_port()
    name = f"dogbreed-serve-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PORT": str(port), "RUN_FLAGS": f"--name {name} {hardening}"}
    server = subprocess.Popen([str(LOCAL_TEST / "serve_local.sh"), image, str(test_dir)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", server, timeout=120, what="serve in the container")
        out = sh(str(LOCAL_TEST / "predict.sh"), str(sample_photos[0]), "3", env={"PORT": str(port)})
        predictions = json.loads(out.stdout)["predictions"]
        assert len(predictions[0]) == 3 and predictions[0][0]["breed"]
        # The workers never run as root: the image's user (no groups of root's) or the one given.
        listing = sh(engine, "exec", name, "python", "-c", PROCESS_IDS).stdout
        ids = [process.split(":") for process in listing.split()]
        (master_uid, _, _), workers = ids[0], ids[1:]
        user = "65534" if hardening else "10001"
        assert workers and all(uid == gid == user and set(groups.split(",")) <= {user, ""}
                               for uid, gid, groups in workers), ids
        assert master_uid == ("65534" if hardening else "0"), ids
    finally:
        sh(engine, "stop", "-t", "25", name, check=False)
        try:  # `run --rm` removes the stopped container, then exits: a signal now could stop that
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    assert sh(engine, "ps", "-a", "--filter", f"name={name}", "-q").stdout.strip() == ""


@pytest.fixture
def registry(tmp_path):
    """Debian's docker-registry on 127.0.0.1:5000, storage in tmp_path."""
    binary = shutil.which("docker-registry")
    if binary is None:
        need("no docker-registry", "docker-registry is not installed (.ci/container-engine.sh installs it)")
    config = tmp_path / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
                      f"http:\n  addr: {REGISTRY}\n")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    wait_http(f"http://{REGISTRY}/v2/", proc, timeout=30, what="docker-registry (is port 5000 taken?)")
    yield REGISTRY
    proc.terminate()
    proc.wait(timeout=30)


def test_push_to_a_registry_in_docker_v2_format_and_pull_back(engine, image, registry):
    tag = uuid.uuid4().hex[:8]
    out = sh("make", "--no-print-directory", "push", f"IMAGE={image}", f"REGISTRY={registry}",
             "REPOSITORY=dogbreed-ci", f"TAG={tag}")
    # Printed: the immutable tag (version and image ID), what to deploy; `tag` was pushed too.
    remote = out.stdout.strip().splitlines()[-1]
    image_id = inspect(engine, image)["Id"].removeprefix("sha256:")
    assert remote == f"{registry}/dogbreed-ci:{__version__}-{image_id[:12]}"
    for pushed in (tag, remote.rpartition(":")[2]):
        request = urllib.request.Request(f"http://{registry}/v2/dogbreed-ci/manifests/{pushed}",
                                         headers={"Accept": DOCKER_V2})
        with urllib.request.urlopen(request, timeout=30) as r:
            assert r.headers["Content-Type"] == DOCKER_V2
            manifest = json.loads(r.read())
        assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == DOCKER_V2
    sh(engine, "rmi", remote, f"{registry}/dogbreed-ci:{tag}")
    sh(engine, "pull", remote)
    assert inspect(engine, remote)["Id"] == inspect(engine, image)["Id"]
    if engine == "podman":  # an OCI manifest (what BuildKit's defaults push) is refused clearly
        oci = f"{registry}/dogbreed-ci:oci-{tag}"
        sh(engine, "push", "--format", "oci", remote, oci)
        with pytest.raises(RegistryError, match="which SageMaker rejects"):
            check_manifest(Target(registry, "dogbreed-ci"), f"oci-{tag}")
    sh(engine, "rmi", remote)


def dogctl_env(engine: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOGBREED_", "DOGCTL_", "OPT_ML"))}
    return {**env, "ENGINE": engine, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A dogctl work folder with a small generated dataset prepared (`dogctl data` from a zip)."""
    root = tmp_path_factory.mktemp("dogctl")
    data = make_dataset(root / "src", classes=3, per_class=8, size=32)
    archive = zip_folder(data, root / "dogImages.zip")
    sh(DOGCTL, "--workdir", str(root / "work"), "data", "--source", str(archive))
    return root / "work"


FAST = ["--hp", "pretrained=false", "--hp", "image_size=32", "--hp", "batch_size=8"]


def test_dogctl_trains_in_the_image_when_an_engine_and_the_image_are_there(engine, image, workdir):
    out = sh(DOGCTL, "--workdir", str(workdir), "train", "--local-image", image, "--name", "boxed",
             *FAST, "--hp", "epochs=2", "--debug-interval", "2", env=dogctl_env(engine))
    assert f"train: running in the container {image} ({engine}): image " in out.stdout
    opt_ml = workdir / "runs" / "boxed" / "opt_ml"
    assert (opt_ml / "model" / "model.pt").is_file() and "epoch=2/2" in out.stdout
    # The debugger's tensors (the hook's path is the container's /opt/ml), verdicts and report.
    assert any((opt_ml / "output" / "tensors").rglob("*.tfevents"))
    assert (opt_ml / "output" / "data" / "report.html").is_file()
    # Channels are mounted, never copied into the run folder.
    assert not any((opt_ml / "input" / "data" / "train").iterdir())
    assert sh(engine, "ps", "-a", "--filter", "name=dogctl-boxed", "-q").stdout.strip() == ""


def test_dogctl_tunes_with_trials_in_parallel_containers(engine, image, workdir):
    out = sh(DOGCTL, "--workdir", str(workdir), "tune", "--runner", "container", "--local-image", image,
             "--name", "boxed", "--trials", "2", "--parallel", "2", "--tune", "lr", *FAST,
             "--hp", "epochs=1", env=dogctl_env(engine))
    assert f"tune: trials run in the container {image} ({engine})" in out.stdout
    assert out.stdout.count(" done: valid_acc=") == 2, out.stdout
    best = json.loads((workdir / "tuning" / "boxed" / "best-hyperparameters.json").read_text())
    assert best["epochs"] == "1" and float(best["lr"]) > 0


@pytest.mark.parametrize("signum,code,said", [(signal.SIGINT, 130, "interrupted"),
                                              (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_a_stopped_run_stops_its_container_and_keeps_its_checkpoint(engine, image, workdir, signum,
                                                                     code, said):
    name = f"stopped-{signum}"
    proc = subprocess.Popen([DOGCTL, "--workdir", str(workdir), "train", "--runner", "container",
                             "--local-image", image, "--name", name, "--no-debugger", *FAST,
                             "--hp", "epochs=100", "--hp", "patience=0"], env=dogctl_env(engine),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            # Ctrl-C as in a terminal, even where this test runs with SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if "epoch=2/100" in line:  # epoch 1 checkpointed by now
            proc.send_signal(signum)  # to dogctl alone: it stops the container
            break
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == code, "".join(seen) + rest
    assert f"dogctl train: {said}" in rest
    assert sh(engine, "ps", "-a", "--filter", f"name=dogctl-{name}", "-q").stdout.strip() == ""
    assert any((workdir / "runs" / name / "opt_ml" / "checkpoints").iterdir())
