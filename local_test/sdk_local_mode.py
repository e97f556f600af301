"""The image through the sagemaker SDK's own local mode (``instance_type="local"``).

The SDK lays out /opt/ml exactly as it does for SageMaker (JSON-encoded hyperparameters,
inputdataconfig, resourceconfig, file:// channels, model.tar.gz) and runs the containers with
docker-compose; this script trains, judges the job, deploys the model, sends a JPEG and a JSON
request through the SDK's Predictor and deletes the endpoint, and runs a batch transform of a
folder of photos as `dogctl transform --sagemaker` asks SageMaker for one:

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

from orchestration.sagemaker.training import NO_TELEMETRY  # also quiets the SDK's v2 warning

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"  # local mode never assumes it


def local_session(work: Path) -> Any:
    """A LocalSession with the code kept local, its containers' files under ``work``, no
    telemetry (it would try to reach AWS)."""
    from sagemaker.local import LocalSession

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the SDK wants one; nothing is called
    (work / "containers").mkdir(parents=True, exist_ok=True)
    session = LocalSession(sagemaker_config=NO_TELEMETRY)
    session.config = {"local": {"local_code": True, "container_root": str(work / "containers")}}
    return session


def fit(image: str, data: Path, work: Path, job: str, *, instances: int = 1,
        hyperparameters: dict[str, str] | None = None, entry_point: str | None = None,
        source_dir: str | None = None) -> Any:
    """Train job ``job`` on ``data``'s splits; the Estimator, whatever the job's outcome (see
    :func:`job_failure`)."""
    from sagemaker.estimator import Estimator

    estimator = Estimator(image_uri=image, role=ROLE, instance_count=instances, instance_type="local",
                          output_path=f"file://{work / 'out'}", hyperparameters=hyperparameters or {},
                          entry_point=entry_point, source_dir=source_dir,
                          sagemaker_session=local_session(work))
    channels = {split: f"file://{data / split}" for split in ("train", "valid", "test")
                if (data / split).is_dir()}
    try:
        estimator.fit(channels, logs=True, job_name=job)
    except RuntimeError as exc:  # docker-compose's own non-zero exit; the output says why
        print(f"sdk_local_mode: {exc}", file=sys.stderr)
    return estimator


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


def predict(estimator: Any, photo: Path, top_k: int = 3) -> dict[str, Any]:
    """Deploy locally, send ``photo`` raw and as JSON through the SDK's Predictor, delete the
    endpoint and the model; the two answers."""
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.serializers import IdentitySerializer, JSONSerializer

    predictor = estimator.deploy(initial_instance_count=1, instance_type="local",
                                 serializer=IdentitySerializer("image/jpeg"), deserializer=JSONDeserializer())
    try:
        raw = predictor.predict(photo.read_bytes(), initial_args={"CustomAttributes": f"top_k={top_k}"})
        predictor.serializer = JSONSerializer()
        as_json = predictor.predict({"images": [base64.b64encode(photo.read_bytes()).decode()],
                                     "top_k": top_k})
    finally:
        predictor.delete_model()  # first: it looks the model up through the endpoint's configuration
        predictor.delete_endpoint()
    return {"jpeg": raw, "json": as_json}


def transform(estimator: Any, folder: Path, work: Path) -> dict[str, Any]:
    """A batch transform of ``folder``'s photos with the settings `dogctl transform --sagemaker`
    sends (one raw request per photo), its output read back by dogctl's own summary. Local mode
    reads only the folder's top level (SageMaker's S3Prefix takes every key under it)."""
    from orchestration.transform import RAW_CONTENT_TYPE, photos, summarise

    out = work / "transform" / "output"
    transformer = estimator.transformer(instance_count=1, instance_type="local", strategy="SingleRecord",
                                        assemble_with="None", output_path=f"file://{out}",
                                        accept="application/json", max_payload=20)
    transformer.transform(f"file://{folder}", content_type=RAW_CONTENT_TYPE, wait=True, logs=False)
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
    from sagemaker.utils import name_from_base

    hyperparameters = dict(item.split("=", 1) for item in args.hp)
    job = name_from_base("dogbreed-local")
    estimator = fit(args.image, args.data.resolve(), args.work.resolve(), job, instances=args.instances,
                    hyperparameters=hyperparameters, entry_point=args.entry_point, source_dir=args.source_dir)
    summary: dict[str, Any] = {"job": job, "failure": job_failure(args.work.resolve())}
    if summary["failure"] is None and args.photo:
        summary["predictions"] = predict(estimator, args.photo)
    if summary["failure"] is None and args.transform:
        summary["transform"] = transform(estimator, args.transform.resolve(), args.work.resolve())
    print(json.dumps(summary))
    return 1 if summary["failure"] else 0


if __name__ == "__main__":
    sys.exit(main())
