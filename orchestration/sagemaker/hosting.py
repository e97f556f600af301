"""SageMaker hosting: the trained model and the same image behind a real-time or serverless
endpoint, invoked through sagemaker-runtime, and torn down completely (endpoint, endpoint
config, model) so nothing keeps costing money.

The endpoint and its endpoint config share one name; each deploy creates a Model of its own,
named after the endpoint and the time (see :func:`model_name`). A model trained with the
Debugger on deploys as is: its model.tar.gz holds only what ``serve`` loads.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..invocation import EndpointError, Send
from . import api
from .polling import POLL_SECONDS, poll
from .settings import AwsError, Settings

DEFAULT_NAME = "dogbreed"
CREATING = ("Creating", "Updating", "SystemUpdating")
WORKERS_ENV = "SAGEMAKER_MODEL_SERVER_WORKERS"
# Asynchronous endpoints take payloads up to 1 GB and an hour per request
# (https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference.html): serve is told so.
ASYNC_ENV = {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1024", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "3600"}
ASYNC_TIMEOUT_SECONDS = 3600  # InvokeEndpointAsync's InvocationTimeoutSeconds, at most 3600
# GPU hosts run NVIDIA driver 470 (CUDA 11.4) unless the endpoint asks for another AMI, and the
# image is CUDA 13.0 (driver >= 580, or 535+ through the image's forward-compatibility libraries):
# https://docs.aws.amazon.com/sagemaker/latest/dg/inference-gpu-drivers.html and ProductionVariant's
# InferenceAmiVersion (API reference). The AMIs able to run it, by driver:
AMI_DRIVERS = {
    "al2023-ami-sagemaker-inference-gpu-4-1": 580,  # CUDA 13.0 natively: the default
    "al2-ami-sagemaker-inference-gpu-3-1": 550,  # forward compatibility (compat mounting off)
    "al2-ami-sagemaker-inference-gpu-2-1": 535,  # forward compatibility (compat mounting off)
}
DEFAULT_AMI = "al2023-ami-sagemaker-inference-gpu-4-1"
GPU_FAMILIES = ("ml.g4dn.", "ml.g5.", "ml.g6.", "ml.g6e.", "ml.p4d.", "ml.p4de.", "ml.p5.", "ml.p5e.",
                "ml.p5en.")
VOLTA = ("ml.p3.", "ml.p3dn.")  # CUDA 13 dropped Volta


def inference_ami(instance_type: str, requested: str | None = None) -> str | None:
    """The InferenceAmiVersion for ``instance_type``: on a GPU instance ``requested`` (checked)
    or :data:`DEFAULT_AMI`; None on CPU instances. Refuses what cannot run the image's CUDA."""
    if instance_type.startswith(VOLTA):
        raise AwsError(f"{instance_type} has V100 GPUs, which the image's CUDA 13 no longer supports: "
                       "deploy on ml.g4dn, g5, g6 or p4d/p5 (or rebuild the image for CUDA 12.6, see README)")
    if not instance_type.startswith(GPU_FAMILIES):
        if requested:
            raise AwsError(f"--ami-version applies to GPU instances, not {instance_type}")
        return None
    ami = requested or DEFAULT_AMI
    if ami not in AMI_DRIVERS:
        raise AwsError(f"InferenceAmiVersion {ami!r} cannot run this image's CUDA 13.0 (driver 470 by "
                       f"default, or unknown): use one of {', '.join(AMI_DRIVERS)}")
    return ami


@dataclass(frozen=True)
class Capture:
    """Data capture: ``percent`` of requests and their answers, as JSON Lines under ``destination``
    (SageMaker writes photos base64-encoded; JSON bodies as text)."""

    percent: int
    destination: str  # an S3 prefix

    def config(self) -> Any:
        from sagemaker.core import shapes

        return shapes.DataCaptureConfig(
            enable_capture=True, initial_sampling_percentage=self.percent,
            destination_s3_uri=self.destination,
            capture_options=[shapes.CaptureOption(capture_mode=mode) for mode in ("Input", "Output")],
            capture_content_type_header=shapes.CaptureContentTypeHeader(
                json_content_types=["application/json", "application/jsonlines"]))


@dataclass(frozen=True)
class Hosting:
    """Where the endpoint runs: instances, or serverless memory and concurrency."""

    instance_type: str = "ml.g4dn.xlarge"
    instance_count: int = 1
    serverless_memory_mb: int | None = None  # set: a serverless endpoint (1024..6144, steps of 1024)
    max_concurrency: int = 5
    environment: dict[str, str] = field(default_factory=dict)  # the user's --env NAME=VALUE
    ami_version: str | None = None  # the user's --ami-version (GPU instances)
    async_output: str | None = None  # set: an asynchronous endpoint writing answers under this S3 prefix
    capture: Capture | None = None  # set: requests and answers captured to S3

    def __post_init__(self) -> None:
        if self.async_output and self.serverless_memory_mb:
            raise AwsError("an endpoint is serverless or asynchronous, not both: drop --async or "
                           "--serverless-memory")
        if self.capture and self.serverless_memory_mb:
            raise AwsError("serverless endpoints cannot capture data (a SageMaker limit): drop --capture "
                           "or --serverless-memory")

    def inference_ami(self) -> str | None:
        return None if self.serverless_memory_mb else inference_ami(self.instance_type, self.ami_version)

    def container_env(self) -> dict[str, str]:
        """The model container's environment: the user's, over one worker on serverless
        endpoints (one copy of the model in their memory, as AWS recommends) and the payload
        and time limits of asynchronous ones."""
        return {**({WORKERS_ENV: "1"} if self.serverless_memory_mb else {}),
                **(ASYNC_ENV if self.async_output else {}), **self.environment}

    def async_config(self) -> Any:
        """AsyncInferenceConfig (answers and failures under :attr:`async_output`), or None."""
        if not self.async_output:
            return None
        from sagemaker.core import shapes

        return shapes.AsyncInferenceConfig(
            output_config=shapes.AsyncInferenceOutputConfig(s3_output_path=f"{self.async_output}/output",
                                                            s3_failure_path=f"{self.async_output}/failures"),
            client_config=shapes.AsyncInferenceClientConfig(
                max_concurrent_invocations_per_instance=self.max_concurrency))

    def variant(self, model: str) -> Any:
        """The endpoint's one ProductionVariant: instances (with the inference AMI on GPUs), or
        serverless memory and concurrency."""
        from sagemaker.core import shapes

        if self.serverless_memory_mb:
            serverless = shapes.ProductionVariantServerlessConfig(memory_size_in_mb=self.serverless_memory_mb,
                                                                  max_concurrency=self.max_concurrency)
            return shapes.ProductionVariant(variant_name="AllTraffic", model_name=model,
                                            serverless_config=serverless)
        return shapes.ProductionVariant(variant_name="AllTraffic", model_name=model,
                                        initial_instance_count=self.instance_count,
                                        instance_type=self.instance_type, initial_variant_weight=1.0,
                                        inference_ami_version=self.inference_ami())

    def describe(self) -> str:
        if self.serverless_memory_mb:
            return f"serverless, {self.serverless_memory_mb} MB, up to {self.max_concurrency} concurrent"
        ami = self.inference_ami()
        return (f"{self.instance_count} x {self.instance_type}" + (f", AMI {ami}" if ami else "")
                + (f", asynchronous: answers in {self.async_output}, up to {self.max_concurrency} "
                   "requests per instance" if self.async_output else "")
                + (f", capturing {self.capture.percent}% of requests to {self.capture.destination}"
                   if self.capture else ""))


def model_name(endpoint: str, now: float | None = None) -> str:
    """The Model of one deploy of ``endpoint``: its name and the deploy's UTC time (<= 63 chars)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{endpoint[:47]}-{stamp}"


def _deploys_models(client: Any, endpoint: str) -> set[str]:
    """Models named as :func:`model_name` names them for ``endpoint`` (a failed deploy's leftovers)."""
    pattern = re.compile(rf"{re.escape(endpoint[:47])}-\d{{8}}-\d{{6}}")
    pages = client.get_paginator("list_models").paginate(NameContains=endpoint[:47])
    return {m["ModelName"] for page in pages for m in page["Models"] if pattern.fullmatch(m["ModelName"])}


def _absent(exc: Exception) -> bool:
    return "Could not find" in str(exc) or "does not exist" in str(exc)


def model_data(client: Any, job_name: str) -> str:
    """The S3 URI of a finished training job's model.tar.gz."""
    from botocore.exceptions import ClientError

    try:
        job = client.describe_training_job(TrainingJobName=job_name)
    except ClientError as exc:
        raise AwsError(f"training job {job_name!r}: {exc}") from exc
    if job["TrainingJobStatus"] != "Completed":
        raise AwsError(f"training job {job_name!r} is {job['TrainingJobStatus']}, not Completed: "
                       "deploy a finished job (--job NAME)")
    return job["ModelArtifacts"]["S3ModelArtifacts"]


def model_request(settings: Settings, name: str, data: str, environment: dict[str, str], *,
                  package: str | None = None) -> api.Request:
    """CreateModel: the project image serving ``data`` (a model.tar.gz in S3), or the model
    package ``package`` (its image and model data)."""
    from sagemaker.core import shapes

    source = ({"model_package_name": package} if package else
              {"image": settings.need("image"), "model_data_url": data})
    return {"model_name": name, "execution_role_arn": settings.need("role"),
            "primary_container": shapes.ContainerDefinition(**source, environment=environment or None)}


def deploy(settings: Settings, client: Any, data: str, name: str, hosting: Hosting,
           progress: Callable[[str, float], None], poll_every: float | None = None,
           timeout: float = 3600, package: str | None = None) -> dict:
    """Create the model (of ``data``, or of the model package ``package``), endpoint config and
    endpoint; wait until InService (or fail clearly)."""
    from botocore.exceptions import ClientError

    try:
        existing = client.describe_endpoint(EndpointName=name)
        raise AwsError(f"endpoint {name!r} already exists ({existing['EndpointStatus']}): "
                       f"`dogctl teardown --sagemaker --name {name}` first, or pick another --name")
    except ClientError as exc:
        if not _absent(exc):
            raise AwsError(f"cannot check endpoint {name!r}: {exc}") from exc
    # A Model of its own per deploy: a fixed name could serve a stale artefact.
    model = model_name(name)
    hosting.inference_ami()  # a host that cannot run the image is refused before anything is created
    try:
        tags = settings.resource_tags()
        api.create(client, "Model", model_request(settings, model, data, hosting.container_env(),
                                                  package=package), tags=tags)
        api.create(client, "EndpointConfig", {
            "endpoint_config_name": name, "production_variants": [hosting.variant(model)],
            "async_inference_config": hosting.async_config(),
            "data_capture_config": hosting.capture and hosting.capture.config()}, tags=tags)
        api.create(client, "Endpoint", {"endpoint_name": name, "endpoint_config_name": name}, tags=tags)
    except ClientError as exc:
        raise AwsError(f"SageMaker refused the deployment of {name!r}: {exc} "
                       f"(`dogctl teardown --sagemaker --name {name}` removes what was created)") from exc

    def finished(endpoint: dict[str, Any]) -> bool:
        status = endpoint["EndpointStatus"]
        if status not in CREATING and status != "InService":
            reason = endpoint.get("FailureReason", "no reason given")
            raise AwsError(f"endpoint {name!r} is {status}: {reason} "
                           f"(`dogctl teardown --sagemaker --name {name}` cleans up)")
        return status == "InService"

    return poll(lambda: client.describe_endpoint(EndpointName=name), finished,
                lambda endpoint, seconds: progress(endpoint["EndpointStatus"], seconds),
                what=f"endpoint {name!r}", every=poll_every, timeout=timeout,
                resume_hint=f"`dogctl teardown --sagemaker --name {name}` removes it")


def runtime_send(boto: Any, name: str) -> Send:
    """Send bodies to the endpoint with sagemaker-runtime's invoke_endpoint."""
    from botocore.exceptions import BotoCoreError, ClientError

    runtime = boto.client("sagemaker-runtime")

    def send(body: bytes, content_type: str) -> dict:
        try:
            answer = runtime.invoke_endpoint(EndpointName=name, ContentType=content_type,
                                             Accept="application/json", Body=body)
        except ClientError as exc:
            message = str(exc)
            if "ModelError" in message or "Received client error" in message:
                raise EndpointError(f"the endpoint refused the request: {message}") from exc
            raise EndpointError(f"endpoint {name!r}: {message} "
                                "(is it deployed? `dogctl deploy --sagemaker`)") from exc
        except BotoCoreError as exc:
            raise EndpointError(f"endpoint {name!r}: {exc}") from exc
        raw = answer["Body"].read()
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise EndpointError(f"endpoint {name!r} answered something that is not JSON: "
                                f"{raw[:200]!r}") from exc

    return send


def async_config(client: Any, name: str) -> dict[str, Any] | None:
    """The endpoint's AsyncInferenceConfig, or None for a real-time or serverless endpoint."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        endpoint = client.describe_endpoint(EndpointName=name)
        config = client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    except (ClientError, BotoCoreError) as exc:
        raise EndpointError(f"endpoint {name!r}: {exc} "
                            "(is it deployed? `dogctl deploy --sagemaker`)") from exc
    return config.get("AsyncInferenceConfig")


def async_send(boto: Any, name: str, input_prefix: str, *, timeout: float = ASYNC_TIMEOUT_SECONDS,
               every: float | None = None) -> Send:
    """Send bodies to an asynchronous endpoint: each one put under ``input_prefix`` in S3,
    InvokeEndpointAsync, then the answer (or the failure) read where SageMaker writes it."""
    import uuid

    from botocore.exceptions import BotoCoreError, ClientError

    from .s3 import s3_parts

    s3 = boto.client("s3")
    runtime = boto.client("sagemaker-runtime")

    def read(uri: str | None) -> bytes | None:
        if not uri:
            return None
        bucket, key = s3_parts(uri)
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return None
            raise

    def send(body: bytes, content_type: str) -> dict:
        bucket, key = s3_parts(f"{input_prefix.rstrip('/')}/{uuid.uuid4().hex}")
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            sent = runtime.invoke_endpoint_async(
                EndpointName=name, InputLocation=f"s3://{bucket}/{key}", ContentType=content_type,
                Accept="application/json", InvocationTimeoutSeconds=ASYNC_TIMEOUT_SECONDS)
            answered = poll(lambda: {"output": read(sent["OutputLocation"]),
                                     "failure": read(sent.get("FailureLocation"))},
                            lambda state: state["output"] is not None or state["failure"] is not None,
                            lambda state, seconds: None, what=f"the answer of endpoint {name!r}",
                            every=min(POLL_SECONDS, 2.0) if every is None else every, timeout=timeout,
                            resume_hint=f"it will be at {sent['OutputLocation']}")
            s3.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise EndpointError(f"asynchronous endpoint {name!r}: {exc}") from exc
        if answered["output"] is None:
            failure = answered["failure"][:500].decode(errors="replace")
            raise EndpointError(f"the endpoint refused the request: {failure}")
        try:
            return json.loads(answered["output"])
        except ValueError as exc:
            raise EndpointError(f"endpoint {name!r} answered something that is not JSON: "
                                f"{answered['output'][:200]!r}") from exc

    return send


def teardown(client: Any, name: str) -> list[str]:
    """Delete the endpoint, its endpoint config and its model(s), and any leftovers of a failed
    deployment under ``name``; the list of what was deleted."""
    from botocore.exceptions import ClientError

    deleted: list[str] = []

    def attempt(kind: str, call: Callable[[], Any], what: str) -> Any:
        try:
            result = call()
        except ClientError as exc:
            if _absent(exc):
                return None
            raise AwsError(f"cannot delete {kind} {what!r}: {exc}") from exc
        return result if result is not None else True

    configs, models = {name}, {name} | _deploys_models(client, name)
    endpoint = attempt("endpoint", lambda: client.describe_endpoint(EndpointName=name), name)
    if endpoint:
        configs.add(endpoint["EndpointConfigName"])
        attempt("endpoint", lambda: client.delete_endpoint(EndpointName=name), name)
        deleted.append(f"endpoint {name}")
    for config in sorted(configs):
        described = attempt("endpoint config", lambda c=config: client.describe_endpoint_config(
            EndpointConfigName=c), config)
        if described:
            models.update(v["ModelName"] for v in described.get("ProductionVariants", []))
            attempt("endpoint config", lambda c=config: client.delete_endpoint_config(EndpointConfigName=c),
                    config)
            deleted.append(f"endpoint config {config}")
    for model in sorted(models):
        if attempt("model", lambda m=model: client.describe_model(ModelName=m), model):
            attempt("model", lambda m=model: client.delete_model(ModelName=m), model)
            deleted.append(f"model {model}")
    return deleted
