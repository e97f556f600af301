"""dogctl's SageMaker settings: one file, the environment, then options; tags merged in that
order and checked before anything is sent."""

from __future__ import annotations

import pytest

from orchestration.sagemaker.settings import AwsError, Settings


@pytest.fixture
def clean(monkeypatch):
    for name in ("DOGCTL_CONFIG", "DOGCTL_TAGS", "DOGCTL_PREFIX", "DOGCTL_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_tags_from_the_file_the_environment_then_the_options(clean, tmp_path):
    config = tmp_path / "dogctl.toml"
    config.write_text('prefix = "p1"\n[tags]\nteam = "vision"\nstage = "dev"\n')
    clean.setenv("DOGCTL_TAGS", "stage=test, owner=ana")
    settings = Settings.load({"tags": {"owner": "bo"}}, config)
    assert settings.tags == {"team": "vision", "stage": "test", "owner": "bo"}
    assert settings.resource_tags() == {"managed-by": "dogctl", "dogctl:prefix": "p1", "team": "vision",
                                        "stage": "test", "owner": "bo"}
    clean.delenv("DOGCTL_TAGS")
    clean.chdir(tmp_path / "..")  # no ./dogctl.toml
    assert Settings.load({}, None).resource_tags() == {"managed-by": "dogctl", "dogctl:prefix": "dogbreed"}


@pytest.mark.parametrize("text,says", [
    ('tags = "team=vision"\n', "tags is a table"),
    ('[tags]\n"aws:x" = "1"\n', "keys starting aws: are AWS's"),
    ('[tags]\n"dogctl:prefix" = "q"\n', "dogctl's own"),
    ('[tags]\nteam = "a;b"\n', "letters, digits, spaces"),
    ('[tags]\nteam = "' + "v" * 257 + '"\n', "values at most 256"),
    ("[tags]\n" + "".join(f't{i} = "v"\n' for i in range(49)), "SageMaker takes 48"),
])
def test_a_bad_tag_is_refused_in_one_line(clean, tmp_path, text, says):
    config = tmp_path / "dogctl.toml"
    config.write_text(text)
    with pytest.raises(AwsError, match=says):
        Settings.load({}, config)


def test_a_malformed_dogctl_tags_is_refused(clean, tmp_path):
    clean.chdir(tmp_path)
    clean.setenv("DOGCTL_TAGS", "team")
    with pytest.raises(AwsError, match=r"DOGCTL_TAGS='team': expected KEY=VALUE"):
        Settings.load({}, None)
