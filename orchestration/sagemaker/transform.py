"""SageMaker batch transform: every photo under an S3 prefix through the model, one request per
photo (SplitType None, SingleRecord), each answer to ``<photo>.out`` under the job's output path.

The job gets a Model of its own (deleted when the job ends, so nothing is left behind). GPU
transform hosts run NVIDIA driver 470 unless the job asks for another AMI; the only other one is
``al2-ami-sagemaker-batch-gpu-535`` (CreateTransformJob's TransformResources.TransformAmiVersion),
on which the image's CUDA 13 runs through its forward-compatibility libraries (see the Dockerfile).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dogbreed.errors import UserError

from .. import dataset
from ..backend import Reporter, TransformRequest, TransformResult
from ..transform import RAW_CONTENT_TYPE, summarise
from . import api
from .hosting import GPU_FAMILIES, VOLTA, model_request
from .polling import poll
from .s3 import download_prefix, list_prefix, upload_channel
from .settings import AwsError, Settings

DEFAULT_INSTANCE = "ml.m5.xlarge"  # CPU: the default GPU transform host's driver cannot run CUDA 13
GPU_AMI = "al2-ami-sagemaker-batch-gpu-535"
MAX_PAYLOAD_ENV = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
RUNNING = ("InProgress", "Stopping")


def transform_ami(instance_type: str) -> str | None:
    """TransformAmiVersion for ``instance_type``: the driver-535 AMI on GPUs, None on CPUs."""
    if instance_type.startswith(VOLTA):
        raise AwsError(f"{instance_type} has V100 GPUs, which the image's CUDA 13 no longer supports: "
                       f"transform on {DEFAULT_INSTANCE} (CPU) or ml.g4dn/g5")
    return GPU_AMI if instance_type.startswith(GPU_FAMILIES) else None


@dataclass(frozen=True)
class TransformJob:
    """One batch transform: its name, the model, where photos come from and answers go."""

    name: str
    model_data: str
    input_uri: str  # an S3 prefix of photos
    output_uri: str
    instance_type: str = DEFAULT_INSTANCE
    instance_count: int = 1
    max_payload_mb: int = 20  # the largest photo; SageMaker allows 1..100
    environment: dict[str, str] = field(default_factory=dict)

    def container_env(self) -> dict[str, str]:
        """The container's environment: the payload limit serve must honour (SageMaker sets it
        too), under the user's."""
        return {MAX_PAYLOAD_ENV: str(self.max_payload_mb), **self.environment}


def transform_request(job: TransformJob) -> api.Request:
    """CreateTransformJob: every photo under the input prefix, one raw request each, answers as JSON."""
    from sagemaker.core import shapes

    return {
        "transform_job_name": job.name, "model_name": job.name, "batch_strategy": "SingleRecord",
        "max_payload_in_mb": job.max_payload_mb, "environment": job.container_env(),
        "transform_input": shapes.TransformInput(
            data_source=shapes.TransformDataSource(s3_data_source=shapes.TransformS3DataSource(
                s3_data_type="S3Prefix", s3_uri=job.input_uri)),
            content_type=RAW_CONTENT_TYPE, split_type="None", compression_type="None"),
        "transform_output": shapes.TransformOutput(s3_output_path=job.output_uri, accept="application/json",
                                                   assemble_with="None"),
        "transform_resources": shapes.TransformResources(instance_type=job.instance_type,
                                                         instance_count=job.instance_count,
                                                         transform_ami_version=transform_ami(job.instance_type)),
    }


def start(settings: Settings, client: Any, job: TransformJob) -> None:
    """Create the job's Model and the transform job (not waiting)."""
    from botocore.exceptions import ClientError

    if not 1 <= job.max_payload_mb <= 100:
        raise AwsError(f"--max-payload must be 1..100 MB (SageMaker's limit), got {job.max_payload_mb}")
    request = transform_request(job)  # an instance that cannot run the image is refused here
    try:
        tags = settings.resource_tags()
        api.create(client, "Model", model_request(settings, job.name, job.model_data, job.container_env()),
                   tags=tags)
        api.create(client, "TransformJob", request, tags=tags)
    except ClientError as exc:
        delete_model(client, job.name)
        raise AwsError(f"SageMaker refused the transform job {job.name!r}: {exc}") from exc


def wait(client: Any, name: str, progress: Callable[[str, float], None], *,
         poll_every: float | None = None) -> dict[str, Any]:
    """Wait for the transform job to end; its description."""
    return poll(lambda: client.describe_transform_job(TransformJobName=name),
                lambda job: job["TransformJobStatus"] not in RUNNING,
                lambda job, seconds: progress(job["TransformJobStatus"], seconds),
                what=f"transform job {name!r}", every=poll_every,
                resume_hint=f"`dogctl transform --sagemaker --attach {name}` goes on waiting")


def delete_model(client: Any, name: str) -> bool:
    """Delete the job's Model; False if there was none."""
    from botocore.exceptions import ClientError

    try:
        client.delete_model(ModelName=name)
    except ClientError as exc:
        if "Could not find" in str(exc) or "does not exist" in str(exc):
            return False
        raise AwsError(f"cannot delete model {name!r}: {exc}") from exc
    return True


def input_uri(settings: Settings, workdir: Path, request: TransformRequest, name: str,
              report: Reporter) -> str:
    """The S3 prefix of photos: --input, or --data uploaded, or the prepared --split's channel."""
    if request.input:
        if not request.input.startswith("s3://"):
            raise UserError(f"--input takes an S3 prefix (s3://bucket/photos/), got {request.input!r}")
        return request.input
    if request.data:
        with report.bar("transform: uploading photos") as bar:
            uploaded = upload_channel(settings.session(), request.data,
                                      settings.s3_uri("transform", name, "input"),
                                      lambda done, total: bar.advance_to(done, total))
        return uploaded.uri
    channels = dataset.load_s3_channels(workdir)
    if request.split not in channels:
        raise UserError(f"no {request.split!r} channel in S3 (there are {', '.join(channels)}): "
                        "pass --split, --data FOLDER or --input S3_URI")
    return channels[request.split]


def report_submitted(job: TransformJob, report: Reporter) -> None:
    ami = transform_ami(job.instance_type)
    report.line(f"transform: SageMaker transform job {job.name} submitted: {job.input_uri} -> "
                f"{job.output_uri} ({job.instance_count} x {job.instance_type}"
                f"{f', AMI {ami}' if ami else ''}, one request per photo, up to {job.max_payload_mb} MB)")


def collect(s3: Any, name: str, described: dict[str, Any], output: Path, report: Reporter) -> TransformResult:
    """A transform job that ended: its outputs downloaded to ``output`` and summarised."""
    status = described["TransformJobStatus"]
    source = described["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    inputs = [p.as_posix() for p in list_prefix(s3, source)]
    output.mkdir(parents=True, exist_ok=True)
    with report.bar("transform: downloading outputs"):
        download_prefix(s3, described["TransformOutput"]["S3OutputPath"], output)
    return TransformResult(name, status=status,
                           reason=described.get("FailureReason", "no reason given"),
                           summary=summarise(inputs, output), output=output)
