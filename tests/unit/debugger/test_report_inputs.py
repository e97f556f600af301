"""The report and the artefact take file names from files the job wrote: only bare names inside
their own folder are used, so a crafted evaluation.json or metadata.json cannot put another file
of this machine (e.g. ~/.aws/credentials) into a page made to be shared."""

from __future__ import annotations

import base64
import json

import pytest

from dogbreed.contract.artifact import (
    METADATA_FILE,
    ArtifactError,
    ModelArtifact,
    ModelMetadata,
    Preprocessing,
)
from dogbreed.contract.hyperparameters import DEFAULTS
from dogbreed.contract.jobdir import EVALUATION_FILE, EXAMPLES_DIR
from dogbreed.debugger.report import write_report
from dogbreed.files import inside
from dogbreed.train import evaluation

SECRET = b"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"


def _job(tmp_path):
    job = tmp_path / "job"
    history = [{"epoch": 1, "train_loss": 1.0, "valid_loss": 1.1, "train_acc": 0.5, "valid_acc": 0.4,
                "images_per_second": 10.0}]
    metadata = ModelMetadata(
        architecture="resnet18", num_classes=2, preprocessing=Preprocessing.for_size(32),
        hyperparameters=dict(DEFAULTS), metrics={"selected_epoch": 1, "valid_acc": 0.4, "test_acc": 0.5},
        history=history, data={"train": {"images": 8, "skipped": 0}},
        training={"seconds": 6.0, "processes": 1, "device": "cpu", "finished_at": "today"})
    classes = ["001.Beagle", "002.Boxer"]
    ModelArtifact(job / "model", metadata, classes).write(b"")
    out = job / "output" / "data"
    evaluation.write(out, {"test": evaluation.summarize(classes, [("a.jpg", 0, 1), ("b.jpg", 1, 0)])})
    return job, out


def test_the_report_embeds_only_the_jobs_own_example_photos(tmp_path):
    secret = tmp_path / "credentials"
    secret.write_bytes(SECRET)
    job, out = _job(tmp_path)
    (out / EXAMPLES_DIR).mkdir(exist_ok=True)
    (out / EXAMPLES_DIR / "ok.jpg").write_bytes(b"a real thumbnail")
    (out / EXAMPLES_DIR / "link.jpg").symlink_to(secret)
    (out / "credentials").symlink_to(secret)
    details = json.loads((out / EVALUATION_FILE).read_text())
    details["test"]["confusions"][0]["thumbnails"] = [
        str(secret), "../../credentials", f"{EXAMPLES_DIR}/../../../credentials", "credentials",
        f"{EXAMPLES_DIR}/link.jpg", f"{EXAMPLES_DIR}/sub/../ok.jpg", 7, None, f"{EXAMPLES_DIR}/ok.jpg"]
    (out / EVALUATION_FILE).write_text(json.dumps(details))

    html = write_report(job).read_text()
    assert base64.b64encode(SECRET).decode() not in html
    assert html.count(base64.b64encode(b"a real thumbnail").decode()) == 1  # the one listed plainly


@pytest.mark.parametrize("key,value", [("weights_file", "../../../../etc/passwd"),
                                       ("weights_file", "/etc/passwd"), ("classes_file", "../classes.json"),
                                       ("classes_file", ""), ("weights_file", 3)])
def test_metadata_naming_a_file_outside_the_model_folder_is_refused(tmp_path, key, value):
    job, _ = _job(tmp_path)
    path = job / "model" / METADATA_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))
    with pytest.raises(ArtifactError, match=f"{key} must be a file name in the model folder"):
        ModelArtifact.read(job / "model")


def test_inside_admits_bare_names_only(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "out").symlink_to(tmp_path)
    assert inside(tmp_path / "a", "x.jpg") == tmp_path / "a" / "x.jpg"
    for names in [(), ("",), (".",), ("..",), ("b/c",), ("b\\c",), ("x\0",), (None,), ("out",)]:
        assert inside(tmp_path / "a", *names) is None, names
