"""The model artefact type: what train writes is what serve and dogctl read."""

import json

import pytest

from dogbreed.contract.artifact import (
    METADATA_FILE,
    ArtifactError,
    ModelArtifact,
    ModelMetadata,
    Preprocessing,
)


def _artifact(folder):
    meta = ModelMetadata(architecture="resnet18", num_classes=2, preprocessing=Preprocessing.for_size(64),
                         hyperparameters={"lr": 0.001}, metrics={"selected_epoch": 2, "valid_acc": 0.5},
                         history=[{"epoch": 1, "valid_acc": 0.25}, {"epoch": 2, "valid_acc": 0.5}])
    return ModelArtifact(folder, meta, ["001.Affenpinscher", "002.Afghan_hound"])


def test_written_artifact_reads_back_equal(tmp_path):
    written = _artifact(tmp_path)
    written.write(b"weights")
    read = ModelArtifact.read(tmp_path)
    assert read == written
    assert read.weights_path.read_bytes() == b"weights"
    assert read.metadata.preprocessing == Preprocessing(64, 73)
    assert read.metadata.selected_epoch == 2 and read.metadata.scores == {"valid_acc": 0.5}
    assert read.breeds == ["Affenpinscher", "Afghan hound"]


def test_unknown_keys_from_a_newer_writer_are_ignored(tmp_path):
    _artifact(tmp_path).write(b"w")
    data = json.loads((tmp_path / METADATA_FILE).read_text())
    (tmp_path / METADATA_FILE).write_text(json.dumps({**data, "calibration": {"int8": True}}))
    assert ModelArtifact.read(tmp_path).metadata.num_classes == 2


@pytest.mark.parametrize("content,fragment", [
    ("{", "not valid JSON"),
    ("[]", "must hold a JSON object"),
    (json.dumps({"architecture": "vgg"}), "unsupported architecture"),
    (json.dumps({"architecture": "resnet18"}), "not a model's metadata"),
    (json.dumps({"architecture": "resnet18", "num_classes": 2, "preprocessing": {"image_size": 8}}),
     "not a model's metadata"),
])
def test_broken_metadata_is_explained(tmp_path, content, fragment):
    _artifact(tmp_path).write(b"w")
    (tmp_path / METADATA_FILE).write_text(content)
    with pytest.raises(ArtifactError, match=fragment):
        ModelArtifact.read(tmp_path)


def test_locate_finds_the_model_in_run_and_opt_ml_folders(tmp_path):
    model = tmp_path / "run" / "opt_ml" / "model"
    model.mkdir(parents=True)
    _artifact(model).write(b"w")
    for given in (tmp_path / "run", tmp_path / "run" / "opt_ml", model):
        assert ModelArtifact.locate(given) == model
    with pytest.raises(ArtifactError, match="holds no model"):
        ModelArtifact.locate(tmp_path)
