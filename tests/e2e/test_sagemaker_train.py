"""The SageMaker training job as it reaches AWS: the exact CreateTrainingJob request that
sagemaker-core sends to a moto server over real HTTP (recorded by moto's recorder)."""

from __future__ import annotations

import os
import subprocess

import pytest

from dogbreed.contract.hyperparameters import HyperparameterError
from dogbreed.contract.metrics import METRIC_DEFINITIONS
from dogbreed.debugger.hook import collections
from local_test.testdata import make_dataset
from orchestration.sagemaker import api
from orchestration.sagemaker.settings import AwsError, Settings
from orchestration.sagemaker.training import training_request
from tests.helpers import BIN, BUCKET, IMAGE, ROLE, recorded

pytestmark = pytest.mark.e2e
DEBUGGER_SERVICE = ("DebugHookConfig", "DebugRuleConfigurations", "ProfilerConfig",
                    "ProfilerRuleConfigurations")


def submit(settings: Settings, hyperparameters: dict[str, str], channels: dict[str, str], **kwargs) -> None:
    """Build the request as dogctl does and send it with sagemaker-core (nothing waits for the job)."""
    boto = settings.session()
    request = training_request(settings, hyperparameters, channels, region=boto.region_name, **kwargs)
    api.create(boto.client("sagemaker"), "TrainingJob", request, tags=settings.resource_tags())


@pytest.mark.parametrize("mode,hyperparameters", [
    ("container", {"debugger": "true", "epochs": "3"}),  # the default: the analysis runs in the job
    ("off", {"epochs": "3"}),
])
def test_by_default_no_request_names_the_debugger_service(recording, mode, hyperparameters):
    """SageMaker Debugger is closed to accounts opened since 2026-07-30: unless asked for, the
    request carries none of its parts (SDK v2 sent ProfilerConfig {DisableProfiler: true})."""
    settings = Settings(region="eu-west-1", role=ROLE, bucket=BUCKET, image=IMAGE)
    kwargs = {} if mode == "container" else {"debugger": mode}
    submit(settings, {"epochs": "3"}, {"train": f"s3://{BUCKET}/t/", "valid": f"s3://{BUCKET}/v/"},
           job_name=f"j-{mode}", **kwargs)
    (request,) = recorded(recording, "CreateTrainingJob")
    assert [key for key in DEBUGGER_SERVICE if key in request] == []
    assert request["HyperParameters"] == hyperparameters
    assert "KeepAlivePeriodInSeconds" not in request["ResourceConfig"]  # no warm pool unless asked


def test_a_warm_pool_keeps_the_instances_and_is_refused_with_spot(recording):
    settings = Settings(region="eu-west-1", role=ROLE, bucket=BUCKET, image=IMAGE)
    channels = {"train": f"s3://{BUCKET}/t/"}
    submit(settings, {"epochs": "3"}, channels, job_name="warm", keep_alive=900)
    (request,) = recorded(recording, "CreateTrainingJob")
    assert request["ResourceConfig"] == {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1,
                                         "VolumeSizeInGB": 30, "KeepAlivePeriodInSeconds": 900}
    with pytest.raises(AwsError, match="no warm pool of spot instances"):
        submit(settings, {"epochs": "3"}, channels, job_name="warm-spot", keep_alive=900, spot=True)
    assert len(recorded(recording, "CreateTrainingJob")) == 1


def test_managed_debugger_carries_hook_profiler_rules_checkpoints_and_spot(recording):
    settings = Settings(region="eu-west-1", role=ROLE, bucket=BUCKET, image=IMAGE)
    channels = {"train": "s3://dogbreed-jobs/dogbreed/data/train/", "valid": "s3://dogbreed-jobs/dogbreed/data/valid/"}
    submit(settings, {"epochs": "3", "lr": "0.001"}, channels, job_name="j1", spot=True, debugger="managed")
    (request,) = recorded(recording, "CreateTrainingJob")

    assert request["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == list(METRIC_DEFINITIONS)
    assert request["RoleArn"] == ROLE
    assert request["HyperParameters"] == {"debugger": "true", "epochs": "3", "lr": "0.001"}
    assert {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
            for c in request["InputDataConfig"]} == channels
    assert request["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    assert request["EnableManagedSpotTraining"] is True
    stopping = request["StoppingCondition"]
    assert stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"]
    assert request["CheckpointConfig"]["S3Uri"] == "s3://dogbreed-jobs/dogbreed/checkpoints/j1"

    hook = request["DebugHookConfig"]
    assert hook["S3OutputPath"] == "s3://dogbreed-jobs/dogbreed/jobs"
    # What train saves is what the local runs save (losses at every step), not the rules' defaults,
    # with whole tensors (no reductions) for SageMaker's own rule containers.
    saved = {c["CollectionName"]: c["CollectionParameters"] for c in hook["CollectionConfigurations"]}
    assert saved == collections(100, full=True)
    assert not any("reductions" in params for params in saved.values())
    assert "reductions" in collections(100)["gradients"]
    assert [r["RuleConfigurationName"] for r in request["DebugRuleConfigurations"]] == [
        "VanishingGradient", "PoorWeightInitialization", "ExplodingTensor", "Overfit", "Overtraining",
        "LossNotDecreasing"]
    rules = request["DebugRuleConfigurations"] + request["ProfilerRuleConfigurations"]
    # Each rule runs in SageMaker's rule evaluator image of the job's region, on its built-in rule.
    assert {r["RuleEvaluatorImage"] for r in rules} == {
        "929884845733.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-debugger-rules:latest"}
    assert all(r["RuleParameters"]["rule_to_invoke"] == r["RuleConfigurationName"] for r in rules)
    assert request["ProfilerConfig"]["ProfilingIntervalInMilliseconds"] == 500
    assert {r["RuleConfigurationName"].split("-")[0] for r in request["ProfilerRuleConfigurations"]} >= {
        "LowGPUUtilization", "ProfilerReport"}


def test_a_bad_hyperparameter_never_reaches_aws(recording):
    settings = Settings(region="eu-west-1", role=ROLE, bucket=BUCKET, image=IMAGE)
    with pytest.raises(HyperparameterError, match="'lr'"):
        submit(settings, {"lr": "fast"}, {"train": f"s3://{BUCKET}/t/"}, job_name="j2")
    assert recorded(recording, "CreateTrainingJob") == []


def test_dogctl_train_sagemaker_submits_the_job(recording, tmp_path):
    src = make_dataset(tmp_path / "src", classes=2, per_class=2, size=32)
    work = tmp_path / "work"

    def dogctl(*args):
        return subprocess.run([str(BIN / "dogctl"), "--workdir", str(work), *args], capture_output=True,
                              text=True, timeout=300, env=dict(os.environ))

    not_uploaded = dogctl("data", "--source", str(src))
    assert not_uploaded.returncode == 0
    early = dogctl("train", "--sagemaker", "--bucket", BUCKET)
    assert early.returncode == 2 and "run `dogctl data --sagemaker`" in early.stderr
    assert dogctl("data", "--source", str(src), "--sagemaker", "--bucket", BUCKET).returncode == 0
    no_role = dogctl("train", "--sagemaker", "--bucket", BUCKET, "--image", IMAGE)
    assert no_role.returncode == 2 and "no role: pass --role" in no_role.stderr
    out = dogctl("train", "--sagemaker", "--bucket", BUCKET, "--image", IMAGE, "--role", ROLE, "--spot",
                 "--name", "dogbreed-test-1", "--hp", "epochs=2")
    assert out.returncode == 0, out.stderr
    assert "SageMaker training job dogbreed-test-1 submitted (ml.g4dn.xlarge, spot)" in out.stdout
    (request,) = recorded(recording, "CreateTrainingJob")
    assert request["TrainingJobName"] == "dogbreed-test-1"
    assert request["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/dogbreed/checkpoints/dogbreed-test-1"
    assert request["HyperParameters"] == {"debugger": "true", "epochs": "2"}
    assert [key for key in DEBUGGER_SERVICE if key in request] == []
    assert set(c["ChannelName"] for c in request["InputDataConfig"]) == {"train", "valid", "test"}

