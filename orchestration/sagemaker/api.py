"""The one seam between dogctl and the SageMaker Python SDK v3 (sagemaker-core).

Every request is built from sagemaker-core's shapes (typed, and checked when built, before
anything is sent) and sent with a boto3 SageMaker client. Not v3's ModelTrainer: it
cannot express what dogctl sends (the Debugger's hook, rules and profiler; a transform's AMI) and
pulls mlflow 3 into the CLI. Not the resource classes' ``create()``: it re-reads each resource and
validates SageMaker's answer strictly, so an answer that differs from its model (a field it does
not know yet, moto's empty VpcConfig) reports a created resource as a failure, and its serializer
misspells some of the API's names (``MemorySizeInMb``, aws/sagemaker-core#225). See
docs/architecture.md.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

Request = dict[str, Any]  # a Create* call's arguments: snake_case names, sagemaker-core shapes as values


@functools.cache
def _service() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def _named(value: Any, shape: Any) -> Any:
    """``value`` with each field under the name ``shape`` (botocore's model of the API) gives it."""
    from pydantic import BaseModel
    from sagemaker.core.utils.utils import Unassigned

    if isinstance(value, BaseModel | dict) and shape.type_name == "structure":
        # The API's own spelling: field names match members case-insensitively, underscores aside.
        members = {name.lower(): name for name in shape.members}
        fields = vars(value) if isinstance(value, BaseModel) else value
        named = {}
        for key, field in fields.items():
            if field is None or isinstance(field, Unassigned):
                continue
            member = members.get(key.replace("_", "").lower())
            if member is None:
                raise ValueError(f"{shape.name} has no field {key!r}")
            named[member] = _named(field, shape.members[member])
        return named
    if isinstance(value, list):
        return [_named(item, shape.member) for item in value]
    if isinstance(value, dict):  # a map: its keys are data (hyperparameters, environment)
        return {key: _named(item, shape.value) for key, item in value.items()}
    return value


def as_api(operation: str, request: Request) -> dict[str, Any]:
    """``request`` as SageMaker's ``operation`` (e.g. ``CreateTrainingJob``) names it, unset fields
    left out: what is sent, what the SDK's local mode takes (local_test/sdk_local_mode.py), what
    moto records."""
    return _named(request, _service().operation_model(operation).input_shape)


def tagged(request: Request, tags: Mapping[str, str]) -> Request:
    """``request`` with ``tags`` (e.g. :meth:`.settings.Settings.resource_tags`) as its Tags."""
    from sagemaker.core import shapes

    return {**request, "tags": [shapes.Tag(key=key, value=value) for key, value in tags.items()]}


def create(client: Any, resource: str, request: Request, *, tags: Mapping[str, str] | None) -> dict[str, Any]:
    """``Create<resource>`` (e.g. ``TrainingJob``) with the boto3 SageMaker ``client``, tagged with
    ``tags`` (every resource dogctl creates is: `dogctl resources` lists them by their tags; None
    only where SageMaker refuses tags, a model package version); SageMaker's answer. Raises
    botocore's ClientError when SageMaker refuses it."""
    from botocore import xform_name

    operation = f"Create{resource}"
    sent = request if tags is None else tagged(request, tags)
    return getattr(client, xform_name(operation))(**as_api(operation, sent))
