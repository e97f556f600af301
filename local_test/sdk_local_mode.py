"""The image through the SageMaker Python SDK v3's own local mode (sagemaker-core's LocalSession).

The requests are the ones `dogctl --sagemaker` sends (orchestration/sagemaker's builders), given
to the SDK's local SageMaker client instead of AWS: it lays out /opt/ml exactly as SageMaker does
(hyperparameters, inputdataconfig, resourceconfig, file:// channels, model.tar.gz) and runs the
containers with docker-compose. This script trains, judges the job, deploys the model, sends a
JPEG and a JSON request through the SDK's local runtime client and deletes the endpoint, and runs
a batch transform of a folder of photos:

    DOCKER_HOST=unix:///run/podman/podman.sock \\
    python local_test/sdk_local_mode.py IMAGE DATA WORK [--instances 2] [--hp epochs=2 ...] \\
        [--photo dog.jpg] [--transform PHOTOS] [--entry-point train.py --source-dir DIR]

DATA is a folder with train/ and valid/ (test/ optional) class folders; WORK receives the SDK's
files and the job's model.tar.gz and output.tar.gz. The last line printed is a JSON summary; the
exit status is 1 when the job failed.

Local mode reports a failed job as completed whenever docker-compose exits 0 (docker-compose
1.29 with podman does, though the container exited non-zero): the job is judged here by the
failure file in its output.tar.gz, as SageMaker judges it by the container's exit status and
/opt/ml/output/failure.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tarfile
from pathlib import Path
from typing import Any

from orchestration.sagemaker.api import as_api
from orchestration.sagemaker.settings import Settings

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"  # local mode never assumes it
# The SDK's configuration: its telemetry (calls to AWS) off.
NO_TELEMETRY = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def local_session(work: Path) -> Any:
    """A LocalSession with the code kept local, its containers' files under ``work``, no
    telemetry (it would try to reach AWS)."""
    from sagemaker.core.local import LocalSession

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the SDK wants one; nothing is called
    (work / "containers").mkdir(parents=True, exist_ok=True)
    session = LocalSession(sagemaker_config=NO_TELEMETRY)
    session.config = {"local": {"local_code": True, "container_root": str(work / "containers")}}
    return session


def settings(image: str) -> Settings:
    return Settings(region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"), role=ROLE, bucket="local",
                    image=image, train_instance_type="local", endpoint_instance_type="local")


def fit(session: Any, image: str, data: Path, work: Path, job: str, *, instances: int = 1,
        hyperparameters: dict[str, str] | None = None, entry_point: str | None = None,
        source_dir: str | None = None) -> str | None:
    """Train job ``job`` on ``data``'s splits with the request dogctl sends (the Debugger as the
    hyperparameters say); the model's file:// URI, whatever the job's outcome (see
    :func:`job_failure`), or None when local mode raised."""
    from orchestration.sagemaker.training import OFF, training_request

    hyperparameters = dict(hyperparameters or {})
    if entry_point:  # the keys the SDK's estimators set for a script of the user's
        code = Path(source_dir or ".").resolve().as_uri()
        hyperparameters.update(sagemaker_program=json.dumps(entry_point),
                               sagemaker_submit_directory=json.dumps(code))
    channels = {split: (data / split).as_uri() for split in ("train", "valid", "test")
                if (data / split).is_dir()}
    request = training_request(settings(image), hyperparameters, channels, job_name=job,
                               region=session.boto_region_name, instance_count=instances, debugger=OFF,
                               checkpoints=False)
    api = as_api("CreateTrainingJob", request)
    api["OutputDataConfig"] = {"S3OutputPath": (work / "out").as_uri()}
    try:
        session.sagemaker_client.create_training_job(**api)  # runs the job to its end
    except RuntimeError as exc:  # docker-compose's own non-zero exit; the output says why
        print(f"sdk_local_mode: {exc}", file=sys.stderr)
        return None
    return session.sagemaker_client.describe_training_job(TrainingJobName=job)["ModelArtifacts"][
        "S3ModelArtifacts"]


def job_failure(work: Path) -> str | None:
    """The job's failure reason (the failure file's first line; details follow it there) from
    its output.tar.gz, or None if it succeeded."""
    path = work / "out" / "output.tar.gz"  # local mode writes it there, beside model.tar.gz
    if not path.is_file():
        return f"the job left no {path}"
    with tarfile.open(path) as tar:  # read one member: nothing is extracted
        member = next((m for m in tar.getmembers() if m.isfile() and m.name.lstrip("./") == "failure"), None)
        if member is None:
            return None
        text = tar.extractfile(member).read().decode(errors="replace").strip()
        return (text.splitlines() or ["(an empty failure file)"])[0]


def create_model(session: Any, image: str, name: str, model_data: str, environment: dict[str, str]) -> None:
    from orchestration.sagemaker.hosting import model_request

    request = as_api("CreateModel", model_request(settings(image), name, model_data, environment))
    request["PrimaryContainer"].setdefault("Environment", {})  # local mode's endpoint reads it unguarded
    session.sagemaker_client.create_model(**request)


def predict(session: Any, image: str, model_data: str, name: str, photo: Path,
            top_k: int = 3) -> dict[str, Any]:
    """Deploy locally as `dogctl deploy --sagemaker` does, send ``photo`` raw and as JSON through
    the SDK's local runtime client, delete the endpoint, its config and the model; the two answers."""
    from orchestration.sagemaker.hosting import Hosting

    client = session.sagemaker_client
    hosting = Hosting(instance_type="local")
    create_model(session, image, name, model_data, hosting.container_env())
    client.create_endpoint_config(**as_api("CreateEndpointConfig", {
        "endpoint_config_name": name, "production_variants": [hosting.variant(name)]}))
    client.create_endpoint(EndpointName=name, EndpointConfigName=name)  # waits for /ping
    try:
        def ask(body: bytes, content_type: str, **extra: str) -> Any:
            answer = session.sagemaker_runtime_client.invoke_endpoint(
                EndpointName=name, Body=body, ContentType=content_type, Accept="application/json", **extra)
            return json.loads(answer["Body"].read())

        raw = ask(photo.read_bytes(), "image/jpeg", CustomAttributes=f"top_k={top_k}")
        as_json = ask(json.dumps({"images": [base64.b64encode(photo.read_bytes()).decode()],
                                  "top_k": top_k}).encode(), "application/json")
    finally:
        client.delete_endpoint(EndpointName=name)
        client.delete_endpoint_config(EndpointConfigName=name)
        client.delete_model(ModelName=name)
    return {"jpeg": raw, "json": as_json}


def transform(session: Any, image: str, model_data: str, name: str, folder: Path,
              work: Path) -> dict[str, Any]:
    """A batch transform of ``folder``'s photos with the request `dogctl transform --sagemaker`
    sends (one raw request per photo), its output read back by dogctl's own summary. Local mode
    reads only the folder's top level (SageMaker's S3Prefix takes every key under it)."""
    from orchestration.sagemaker.transform import TransformJob, transform_request
    from orchestration.transform import photos, summarise

    out = work / "transform" / "output"
    job = TransformJob(name, model_data, folder.as_uri(), out.as_uri(), instance_type="local")
    create_model(session, image, name, model_data, job.container_env())
    try:
        session.sagemaker_client.create_transform_job(**as_api("CreateTransformJob", transform_request(job)))
    finally:
        session.sagemaker_client.delete_model(ModelName=name)
    summary = summarise(photos(folder), out)
    return {"photos": summary.photos, "answered": summary.answered, "failed": summary.failed,
            "labelled": summary.labelled, "correct": summary.correct, "predicted": dict(summary.predicted),
            "outputs": sorted(p.relative_to(out).as_posix() for p in out.rglob("*.out"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image")
    parser.add_argument("data", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--photo", type=Path, help="deploy and send this JPEG (default: no endpoint)")
    parser.add_argument("--transform", type=Path, metavar="PHOTOS",
                        help="then a batch transform of the photos in this folder (its top level)")
    parser.add_argument("--entry-point", help="your own training script, run by the training toolkit")
    parser.add_argument("--source-dir")
    args = parser.parse_args(argv)
    from sagemaker.core.common_utils import name_from_base

    hyperparameters = dict(item.split("=", 1) for item in args.hp)
    work = args.work.resolve()
    session = local_session(work)
    job = name_from_base("dogbreed-local")
    model_data = fit(session, args.image, args.data.resolve(), work, job, instances=args.instances,
                     hyperparameters=hyperparameters, entry_point=args.entry_point,
                     source_dir=args.source_dir)
    summary: dict[str, Any] = {"job": job, "failure": job_failure(work)}
    if summary["failure"] is None and model_data and args.photo:
        summary["predictions"] = predict(session, args.image, model_data, f"{job}-endpoint", args.photo)
    if summary["failure"] is None and model_data and args.transform:
        summary["transform"] = transform(session, args.image, model_data, f"{job}-transform",
                                         args.transform.resolve(), work)
    print(json.dumps(summary))
    return 1 if summary["failure"] else 0


if __name__ == "__main__":
    from dogbreed.errors import UserError

    try:
        sys.exit(main())
    except UserError as exc:  # a request the backend refuses (a bad hyperparameter, ...)
        sys.exit(f"sdk_local_mode: error: {exc}")
