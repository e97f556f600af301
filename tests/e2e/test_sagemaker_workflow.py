"""The SageMaker workflow as `dogctl` drives it, against a moto server over real HTTP: the exact
CreateHyperParameterTuningJob, CreateModel, CreateEndpointConfig and CreateEndpoint requests,
waiting, results, downloads, invocation and teardown.

The account is moto behind the proxy of tests/e2e/conftest.py (the ``sagemaker`` fixture)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
import urllib.parse
import urllib.request

import boto3
import pytest

from dogbreed.contract.hyperparameters import parse
from dogbreed.contract.metrics import METRIC_DEFINITIONS
from dogbreed.debugger.verdicts import ISSUES, NO_ISSUES, RuleResult
from tests.helpers import BIN, BUCKET, IMAGE, ROLE, recorded

pytestmark = pytest.mark.e2e
OWN_TAGS = [{"Key": "managed-by", "Value": "dogctl"}, {"Key": "dogctl:prefix", "Value": "dogbreed"}]
def test_tune_on_sagemaker_sends_the_schema_waits_and_writes_the_best(sagemaker, recording):
    dogctl, work = sagemaker
    out = dogctl("tune", "--sagemaker", "--name", "dogbreed-tune-t1", "--trials", "4", "--parallel", "2",
                 "--tune", "lr,weight_decay,batch_size", "--hp", "epochs=3", "--hp", "image_size=96",
                 "--keep-alive", "600")
    assert out.returncode == 0, out.stdout + out.stderr
    (request,) = recorded(recording, "CreateHyperParameterTuningJob")
    assert request["Tags"] == OWN_TAGS  # SageMaker puts a tuning job's tags on each of its trials
    assert request["HyperParameterTuningJobName"] == "dogbreed-tune-t1"
    config = request["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian" and config["TrainingJobEarlyStoppingType"] == "Auto"
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "valid_acc"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2}
    ranges = config["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"] == [
        {"Name": "lr", "MinValue": "1e-05", "MaxValue": "0.01", "ScalingType": "Logarithmic"},
        {"Name": "weight_decay", "MinValue": "0.0001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}]
    assert ranges["CategoricalParameterRanges"] == [
        {"Name": "batch_size", "Values": ["32", "64", "128", "256"]}]
    assert ranges.get("IntegerParameterRanges", []) == []
    definition = request["TrainingJobDefinition"]
    # A trial's model is never served: no int8 calibration in trials (not in the best file either).
    assert definition["StaticHyperParameters"] == {"epochs": "3", "image_size": "96",
                                                   "int8_calibration_images": "0"}
    assert definition["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == list(METRIC_DEFINITIONS)
    assert definition["RoleArn"] == ROLE
    # Tuning trains on train and valid; test stays out. No shared checkpoint folder between trials.
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                for c in definition["InputDataConfig"]}
    assert channels == {
        "train": f"s3://{BUCKET}/dogbreed/data/train/", "valid": f"s3://{BUCKET}/dogbreed/data/valid/"}
    assert "CheckpointConfig" not in definition
    # Each trial's instances are kept warm for the next one (a warm pool).
    assert definition["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 600

    assert "SageMaker tuning job dogbreed-tune-t1 submitted: 4 jobs, 2 in parallel" in out.stdout
    lines = out.stdout.splitlines()
    # The progress bar's last line: the failed (NonRetryableError) trial counts as finished.
    bar = [line for line in lines if line.startswith("tune: [")]
    assert bar and " 100.0% " in bar[-1], bar
    header = next(i for i, line in enumerate(lines) if line.startswith("trial "))
    table = [row.split()[:3] for row in lines[header + 1:header + 5]]
    assert table == [["t-002-bbb", "completed", "0.5500"], ["t-001-aaa", "completed", "0.4100"],
                     ["t-003-ccc", "stopped", "0.1200"], ["t-004-ddd", "failed", "-"]]
    best_file = work / "tuning" / "dogbreed-tune-t1" / "best-hyperparameters.json"
    best = json.loads(best_file.read_text())
    assert best == {"epochs": "3", "image_size": "96", "lr": "0.00031", "weight_decay": "0.002",
                    "batch_size": "32"}
    parse(best)
    assert f"tune: next: dogctl train --hyperparameters {best_file}" in out.stdout

    # The best file goes straight into a SageMaker training job.
    train = dogctl("train", "--sagemaker", "--no-wait", "--name", "dogbreed-best",
                   "--hyperparameters", str(best_file))
    assert train.returncode == 0, train.stderr
    (job,) = recorded(recording, "CreateTrainingJob")
    assert job["HyperParameters"] == {"debugger": "true", **best}  # the in-container Debugger, the default


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.slow
def test_train_waits_downloads_outputs_and_writes_the_report(sagemaker, trained_model):
    dogctl, work = sagemaker
    s3 = boto3.client("s3")
    base = "dogbreed/jobs/dogbreed-j1"
    model = {p.name: p.read_bytes() for p in trained_model.iterdir() if p.is_file()}
    s3.put_object(Bucket=BUCKET, Key=f"{base}/output/model.tar.gz", Body=_tar(model))
    verdicts = [RuleResult("Overfit", NO_ISSUES, "3 data point(s) checked").to_json(),
                RuleResult("LossNotDecreasing", ISSUES, "mean loss over 10 steps went up").to_json()]
    output = {"notes.txt": b"from the job", "rule-verdicts.json": json.dumps(verdicts).encode()}
    s3.put_object(Bucket=BUCKET, Key=f"{base}/output/output.tar.gz", Body=_tar(output))  # in-container rules
    s3.put_object(Bucket=BUCKET, Key=f"{base}/debug-output/training_job_end.ts", Body=b"")
    s3.put_object(Bucket=BUCKET, Key=f"{base}/rule-output/ProfilerReport/profiler-output/x.json", Body=b"{}")
    # Managed: SageMaker Debugger's outputs come down too; the job's own verdicts are printed.
    out = dogctl("train", "--sagemaker", "--name", "dogbreed-j1", "--hp", "epochs=2", "--debugger", "managed")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "train: job dogbreed-j1 Completed" in out.stdout
    assert "Starting: Preparing the instances for training" in out.stdout
    run = work / "runs" / "dogbreed-j1"
    assert (run / "model" / "model.pt").read_bytes() == (trained_model / "model.pt").read_bytes()
    assert (run / "output" / "data" / "notes.txt").read_text() == "from the job"
    assert (run / "debug-output" / "training_job_end.ts").is_file()
    assert (run / "rule-output" / "ProfilerReport" / "profiler-output" / "x.json").is_file()
    assert f"train: report in {run / 'output' / 'data' / 'report.html'}" in out.stdout
    assert (run / "output" / "data" / "report.html").is_file()
    assert "train: rule verdicts from the job:" in out.stdout
    assert re.search(r"LossNotDecreasing +issues found +mean loss over 10 steps went up", out.stdout)

    # The model trained with the debugger on deploys as is: the job's own model.tar.gz.
    deploy = dogctl("deploy", "--sagemaker", "--instance-type", "ml.m5.large", "--instance-count", "2")
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert "deploy: endpoint 'dogbreed' in service" in deploy.stdout
    down = dogctl("teardown", "--sagemaker")
    assert re.fullmatch(r"teardown: deleted endpoint dogbreed, endpoint config dogbreed, "
                        r"model dogbreed-\d{8}-\d{6}", down.stdout.strip()), down.stdout


def _queue_answers(moto: str, bodies: list[dict]) -> None:
    results = {"region": "eu-west-1", "results": [
        {"Body": json.dumps(b), "ContentType": "application/json"} for b in bodies]}
    urllib.request.urlopen(urllib.request.Request(
        moto + "/moto-api/static/sagemaker/endpoint-results", data=json.dumps(results).encode(),
        headers={"Content-Type": "application/json"}, method="POST"))


def _prediction(cls: str, p: float = 0.9) -> list[dict]:
    return [{"class": cls, "breed": cls.split(".")[-1].replace("_", " "), "probability": p, "index": 0}]


@pytest.mark.slow
def test_deploy_invoke_evaluate_teardown_on_sagemaker(sagemaker, recording, sample_photos):
    dogctl, work = sagemaker
    model_data = f"s3://{BUCKET}/dogbreed/jobs/x/output/model.tar.gz"
    out = dogctl("deploy", "--sagemaker", "--name", "dogs-rt", "--model-data", model_data,
                 "--env", "SAGEMAKER_MODEL_SERVER_TIMEOUT=30")
    assert out.returncode == 0, out.stdout + out.stderr
    (model,) = recorded(recording, "CreateModel")
    # A Model of its own per deploy (the SDK would silently reuse one of the same name).
    assert re.fullmatch(r"dogs-rt-\d{8}-\d{6}", model["ModelName"]) and model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == model_data
    # The user's environment, nothing more: serve sizes its workers to the instance.
    assert model["PrimaryContainer"]["Environment"] == {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "30"}
    (config,) = recorded(recording, "CreateEndpointConfig")
    (variant,) = config["ProductionVariants"]
    assert config["EndpointConfigName"] == "dogs-rt" and variant["ModelName"] == model["ModelName"]
    assert variant["InstanceType"] == "ml.g4dn.xlarge" and variant["InitialInstanceCount"] == 1
    # The default GPU host's driver (470) cannot run CUDA 13: the endpoint asks for driver 580.
    assert variant["InferenceAmiVersion"] == "al2023-ami-sagemaker-inference-gpu-4-1"
    (endpoint,) = recorded(recording, "CreateEndpoint")
    assert (endpoint["EndpointName"], endpoint["EndpointConfigName"]) == ("dogs-rt", "dogs-rt")
    again = dogctl("deploy", "--sagemaker", "--name", "dogs-rt", "--model-data", model_data)
    assert again.returncode == 2 and "endpoint 'dogs-rt' already exists" in again.stderr

    # invoke: one JSON request per photo (the answers are queued on moto).
    photo = sample_photos[0]
    _queue_answers(recording, [{"predictions": [_prediction("001.Affenpinscher", 0.625)]}])
    inv = dogctl("invoke", "--sagemaker", "--name", "dogs-rt", str(photo))
    assert inv.returncode == 0, inv.stderr
    assert inv.stdout.strip() == f"{photo}: Affenpinscher 62.5%"

    # evaluate: the test split (2 classes x 3 images at most) in one JSON batch; 2 answers wrong.
    files = sorted((work.parent / "src" / "test").rglob("*.jpg"))
    assert len(files) >= 3
    classes = [p.parent.name for p in files]
    wrong = {0, len(files) - 1}
    answers = [_prediction(c if i not in wrong else "999.Other") for i, c in enumerate(classes)]
    _queue_answers(recording, [{"predictions": answers}])
    ev = dogctl("evaluate", "--sagemaker", "--name", "dogs-rt")
    assert ev.returncode == 0, ev.stdout + ev.stderr
    right = len(files) - 2
    assert f"accuracy {100 * right / len(files):.1f}% ({right} of {len(files)} images" in ev.stdout

    # Serverless: memory and concurrency, no instances.
    sls = dogctl("deploy", "--sagemaker", "--name", "dogs-sls", "--model-data", model_data,
                 "--serverless-memory", "4096", "--max-concurrency", "3")
    assert sls.returncode == 0, sls.stdout + sls.stderr
    config = recorded(recording, "CreateEndpointConfig")[-1]
    (variant,) = config["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 4096, "MaxConcurrency": 3}
    assert "InstanceType" not in variant
    assert "InferenceAmiVersion" not in variant
    # One worker (one copy of the model) on serverless, as AWS recommends.
    model = recorded(recording, "CreateModel")[-1]
    assert model["PrimaryContainer"].get("Environment") == {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}
    bad = dogctl("deploy", "--sagemaker", "--name", "x", "--model-data", model_data, "--env", "1X=2")
    assert bad.returncode == 2 and "expected NAME=VALUE with a variable name, got '1X=2'" in bad.stderr

    sm = boto3.client("sagemaker")
    # A failed deploy's leftover Model is this endpoint's too; another endpoint's is not.
    for leftover in ("dogs-rt-20260101-000000", "dogs-rt-other-20260101-000000"):
        sm.create_model(ModelName=leftover, ExecutionRoleArn=ROLE,
                        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": model_data})
    for name in ("dogs-rt", "dogs-sls"):
        down = dogctl("teardown", "--sagemaker", "--name", name)
        assert down.returncode == 0, down.stderr
        leftover = "model dogs-rt-20260101-000000, " if name == "dogs-rt" else ""
        assert re.fullmatch(rf"teardown: deleted endpoint {name}, endpoint config {name}, "
                            rf"{leftover}model {name}-\d{{8}}-\d{{6}}", down.stdout.strip()), down.stdout
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["dogs-rt-other-20260101-000000"]
    sm.delete_model(ModelName="dogs-rt-other-20260101-000000")
    assert sm.list_endpoints()["Endpoints"] == [] and sm.list_models()["Models"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    nothing = dogctl("teardown", "--sagemaker", "--name", "dogs-rt")
    assert nothing.stdout.strip() == "teardown: nothing named 'dogs-rt' to delete"


def test_sagemaker_commands_say_what_is_missing(aws, tmp_path):
    work = str(tmp_path / "work")
    env = {k: v for k, v in os.environ.items()}
    out = subprocess.run([str(BIN / "dogctl"), "--workdir", work, "deploy", "--sagemaker", "--bucket", BUCKET,
                          "--region", "eu-west-1"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == ("dogctl deploy: error: no AWS credentials: `aws configure` (or set "
                                  "AWS_PROFILE); without AWS, use the local backend (--local)")


def test_stop_on_sagemaker_stops_training_and_tuning_jobs(sagemaker):
    dogctl, _ = sagemaker
    too_long = dogctl("train", "--sagemaker", "--no-wait", "--name", "run-0", "--keep-alive", "3601")
    assert too_long.returncode == 2 and "expected seconds from 1 to 3600" in too_long.stderr
    assert dogctl("train", "--sagemaker", "--no-wait", "--name", "run-1").returncode == 0
    assert dogctl("tune", "--sagemaker", "--no-wait", "--name", "tune-1", "--trials", "2").returncode == 0
    dogctl.server.running.add("run-1")
    out = dogctl("stop", "--sagemaker", "run-1")
    assert out.returncode == 0, out.stderr
    assert "stop: training job 'run-1': stopping" in out.stdout
    tuning = dogctl("stop", "--sagemaker", "tune-1")  # the proxy has it in progress at first
    assert tuning.returncode == 0, tuning.stderr
    assert "stop: tuning job 'tune-1': stopping" in tuning.stdout
    assert dogctl.server.stops == [("StopTrainingJob", {"TrainingJobName": "run-1"}),
                                   ("StopHyperParameterTuningJob", {"HyperParameterTuningJobName": "tune-1"})]
    dogctl.server.running.clear()
    done = dogctl("stop", "--sagemaker", "run-1")
    assert done.returncode == 0 and "already Completed; nothing to stop" in done.stdout
    missing = dogctl("stop", "--sagemaker", "no-such-job")
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("dogctl stop: error: no training or tuning job named 'no-such-job' "
                                      "in this account and region")
    assert len(dogctl.server.stops) == 2


def test_deploy_refuses_hosts_that_cannot_run_the_image(sagemaker, recording):
    dogctl, _ = sagemaker
    model_data = f"s3://{BUCKET}/dogbreed/jobs/x/output/model.tar.gz"
    volta = dogctl("deploy", "--sagemaker", "--name", "v", "--model-data", model_data,
                   "--instance-type", "ml.p3.2xlarge")
    assert volta.returncode == 2 and "V100 GPUs, which the image's CUDA 13 no longer supports" in volta.stderr
    old_ami = dogctl("deploy", "--sagemaker", "--name", "v", "--model-data", model_data,
                     "--ami-version", "al2-ami-sagemaker-inference-gpu-2")
    assert old_ami.returncode == 2 and "cannot run this image's CUDA 13.0" in old_ami.stderr
    assert recorded(recording, "CreateModel") == []  # refused before anything was created
    cpu = dogctl("deploy", "--sagemaker", "--name", "c", "--model-data", model_data,
                 "--instance-type", "ml.c5.xlarge")
    assert cpu.returncode == 0, cpu.stdout + cpu.stderr
    (variant,) = recorded(recording, "CreateEndpointConfig")[-1]["ProductionVariants"]
    assert variant["InstanceType"] == "ml.c5.xlarge" and "InferenceAmiVersion" not in variant
    compat = dogctl("deploy", "--sagemaker", "--name", "g", "--model-data", model_data,
                    "--ami-version", "al2-ami-sagemaker-inference-gpu-3-1")
    assert compat.returncode == 0, compat.stdout + compat.stderr
    (variant,) = recorded(recording, "CreateEndpointConfig")[-1]["ProductionVariants"]
    assert variant["InferenceAmiVersion"] == "al2-ami-sagemaker-inference-gpu-3-1"
    for name in ("c", "g"):
        assert dogctl("teardown", "--sagemaker", "--name", name).returncode == 0


def test_deploy_with_capture_records_requests_and_answers_in_s3(sagemaker, recording):
    dogctl, _ = sagemaker
    model_data = f"s3://{BUCKET}/dogbreed/jobs/x/output/model.tar.gz"
    plain = dogctl("deploy", "--sagemaker", "--name", "plain", "--model-data", model_data,
                   "--instance-type", "ml.c5.xlarge")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "DataCaptureConfig" not in recorded(recording, "CreateEndpointConfig")[-1]  # only when asked
    out = dogctl("deploy", "--sagemaker", "--name", "cap", "--model-data", model_data,
                 "--instance-type", "ml.c5.xlarge", "--capture", "20")
    assert out.returncode == 0, out.stdout + out.stderr
    where = f"s3://{BUCKET}/dogbreed/capture/cap"
    assert f"capturing 20% of requests to {where}" in out.stdout
    assert recorded(recording, "CreateEndpointConfig")[-1]["DataCaptureConfig"] == {
        "EnableCapture": True, "InitialSamplingPercentage": 20, "DestinationS3Uri": where,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json", "application/jsonlines"]}}
    models = len(recorded(recording, "CreateModel"))
    serverless = dogctl("deploy", "--sagemaker", "--name", "sls", "--model-data", model_data,
                        "--serverless-memory", "2048", "--capture", "5")
    assert serverless.returncode == 2 and "serverless endpoints cannot capture data" in serverless.stderr
    none = dogctl("deploy", "--sagemaker", "--name", "x", "--model-data", model_data, "--capture", "0")
    assert none.returncode == 2 and "expected a whole percentage from 1 to 100, got '0'" in none.stderr
    assert len(recorded(recording, "CreateModel")) == models  # refused before anything was created
    for name in ("plain", "cap"):
        assert dogctl("teardown", "--sagemaker", "--name", name).returncode == 0


@pytest.mark.slow
def test_transform_on_sagemaker_sends_the_job_then_summarises_its_outputs(sagemaker, recording,
                                                                          sample_photos):
    dogctl, work = sagemaker
    s3 = boto3.client("s3")
    model_data = f"s3://{BUCKET}/dogbreed/jobs/x/output/model.tar.gz"
    channel = "dogbreed/data/test/"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=channel)["Contents"]
    keys = sorted(o["Key"][len(channel):] for o in listed)
    assert len(keys) >= 3
    # The answers the job would write (moto runs nothing): one per photo, the first one wrong.
    for i, rel in enumerate(keys):
        cls = "999.Other" if i == 0 else rel.split("/")[0]
        s3.put_object(Bucket=BUCKET, Key=f"dogbreed/transform/dogs-bt/output/{rel}.out",
                      Body=json.dumps({"predictions": [_prediction(cls)]}).encode())
    out = dogctl("transform", "--sagemaker", "--name", "dogs-bt", "--model-data", model_data,
                 "--instance-type", "ml.g4dn.xlarge", "--env", "SAGEMAKER_MODEL_SERVER_TIMEOUT=30")
    assert out.returncode == 0, out.stdout + out.stderr
    (model,) = recorded(recording, "CreateModel")
    assert model["ModelName"] == "dogs-bt" and model["PrimaryContainer"]["ModelDataUrl"] == model_data
    env = {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "20", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30"}
    assert model["PrimaryContainer"]["Environment"] == env
    (job,) = recorded(recording, "CreateTransformJob")
    assert job["Tags"] == recorded(recording, "CreateModel")[-1]["Tags"] == OWN_TAGS
    assert job["TransformJobName"] == "dogs-bt" and job["ModelName"] == "dogs-bt"
    assert (job["BatchStrategy"], job["MaxPayloadInMB"], job["Environment"]) == ("SingleRecord", 20, env)
    assert job["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{channel}"}},
        "ContentType": "application/x-image", "SplitType": "None", "CompressionType": "None"}
    assert job["TransformOutput"] == {"S3OutputPath": f"s3://{BUCKET}/dogbreed/transform/dogs-bt/output",
                                      "Accept": "application/json", "AssembleWith": "None"}
    # GPU transform hosts run driver 470 by default: the job asks for the driver-535 AMI.
    assert job["TransformResources"] == {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1,
                                         "TransformAmiVersion": "al2-ami-sagemaker-batch-gpu-535"}
    folder = work / "transforms" / "dogs-bt"
    assert sorted(p.relative_to(folder / "output").as_posix() for p in folder.rglob("*.out")) == \
        [k + ".out" for k in keys]
    n = len(keys)
    assert f"transform: {n} of {n} photos answered" in out.stdout
    assert f"accuracy {100 * (n - 1) / n:.1f}% ({n - 1} of {n} photos labelled by their class" in out.stdout
    assert "transform: model dogs-bt deleted (the job has ended)" in out.stdout
    assert boto3.client("sagemaker").list_models()["Models"] == []  # nothing left behind

    # A local folder is uploaded first; the default host is a CPU one (no AMI); no output: failed.
    photos = work.parent / "photos"
    photos.mkdir()
    (photos / "dog.jpg").write_bytes(sample_photos[0].read_bytes())
    up = dogctl("transform", "--sagemaker", "--name", "dogs-bt2", "--model-data", model_data,
                "--data", str(photos))
    assert up.returncode == 1, up.stdout + up.stderr
    job = recorded(recording, "CreateTransformJob")[-1]
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == \
        f"s3://{BUCKET}/dogbreed/transform/dogs-bt2/input/"
    assert job["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}
    assert "dog.jpg: no output (the job did not transform it)" in up.stdout
    volta = dogctl("transform", "--sagemaker", "--model-data", model_data, "--instance-type", "ml.p3.2xlarge")
    assert volta.returncode == 2 and "V100 GPUs" in volta.stderr
    assert len(recorded(recording, "CreateTransformJob")) == 2


@pytest.mark.slow
def test_async_endpoint_deploy_invoke_teardown_on_sagemaker(sagemaker, recording, sample_photos):
    dogctl, work = sagemaker
    model_data = f"s3://{BUCKET}/dogbreed/jobs/x/output/model.tar.gz"
    out = dogctl("deploy", "--sagemaker", "--name", "dogs-async", "--model-data", model_data, "--async",
                 "--max-concurrency", "2", "--env", "SAGEMAKER_MODEL_SERVER_TIMEOUT=1800")
    assert out.returncode == 0, out.stdout + out.stderr
    where = f"s3://{BUCKET}/dogbreed/async/dogs-async"
    assert f"asynchronous: answers in {where}, up to 2 requests per instance" in out.stdout
    (config,) = recorded(recording, "CreateEndpointConfig")
    assert config["AsyncInferenceConfig"] == {
        "OutputConfig": {"S3OutputPath": f"{where}/output", "S3FailurePath": f"{where}/failures"},
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 2}}
    assert config["ProductionVariants"][0]["InferenceAmiVersion"] == "al2023-ami-sagemaker-inference-gpu-4-1"
    # serve is told of the 1 GB payloads and the hour per request; the user's value wins.
    (model,) = recorded(recording, "CreateModel")
    assert model["PrimaryContainer"]["Environment"] == {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1024",
                                                       "SAGEMAKER_MODEL_SERVER_TIMEOUT": "1800"}

    # invoke goes through S3: the request put there, InvokeEndpointAsync, the answer read back.
    answers = [{"data": json.dumps({"predictions": [_prediction("001.Affenpinscher", 0.5)]})},
               {"is_failure": True, "data": '{"error": "image 0: not an image", "status": 400}'}]
    urllib.request.urlopen(urllib.request.Request(
        recording + "/moto-api/static/sagemaker/async-endpoint-results", method="POST",
        data=json.dumps({"region": "eu-west-1", "results": answers}).encode(),
        headers={"Content-Type": "application/json"}))
    photo = sample_photos[0]
    inv = dogctl("invoke", "--sagemaker", "--name", "dogs-async", str(photo))
    assert inv.returncode == 0, inv.stdout + inv.stderr
    assert inv.stdout.strip() == f"{photo}: Affenpinscher 50.0%"
    failed = dogctl("invoke", "--sagemaker", "--name", "dogs-async", str(sample_photos[1]))
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert "the endpoint refused the request: {\"error\": \"image 0: not an image\"" in failed.stderr
    s3 = boto3.client("s3")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="dogbreed/async/dogs-async/input/")["KeyCount"] == 0

    both = dogctl("deploy", "--sagemaker", "--name", "x", "--model-data", model_data, "--async",
                  "--serverless-memory", "2048")
    assert both.returncode == 2 and "serverless or asynchronous, not both" in both.stderr
    down = dogctl("teardown", "--sagemaker", "--name", "dogs-async")
    assert down.returncode == 0 and "endpoint dogs-async, endpoint config dogs-async" in down.stdout
