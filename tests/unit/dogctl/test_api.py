"""The requests dogctl sends, as SageMaker's API names them (botocore's model of the API)."""

from __future__ import annotations

import pytest
from sagemaker.core import shapes

from orchestration.sagemaker.api import as_api


def test_fields_take_the_apis_own_spelling_and_unset_ones_are_left_out():
    variant = shapes.ProductionVariant(variant_name="AllTraffic", model_name="m", serverless_config=(
        shapes.ProductionVariantServerlessConfig(memory_size_in_mb=2048, max_concurrency=0)))
    sent = as_api("CreateEndpointConfig", {"endpoint_config_name": "e", "production_variants": [variant]})
    # sagemaker-core's own serializer writes MemorySizeInMb (aws/sagemaker-core#225) and drops 0.
    assert sent == {"EndpointConfigName": "e", "ProductionVariants": [
        {"VariantName": "AllTraffic", "ModelName": "m",
         "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 0}}]}


def test_map_keys_are_data_and_stay_as_they_are():
    sent = as_api("CreateTrainingJob", {"hyper_parameters": {"weight_decay": "0.01", "Lr": "1"},
                                        "resource_config": shapes.ResourceConfig(volume_size_in_gb=30)})
    assert sent == {"HyperParameters": {"weight_decay": "0.01", "Lr": "1"},
                    "ResourceConfig": {"VolumeSizeInGB": 30}}


def test_a_field_the_api_does_not_have_is_refused_before_sending():
    with pytest.raises(ValueError, match="CreateModelInput has no field 'model_nme'"):
        as_api("CreateModel", {"model_nme": "m"})
