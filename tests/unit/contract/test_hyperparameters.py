from dataclasses import asdict, fields

import pytest

from dogbreed.contract import hyperparameters as H
from dogbreed.contract.hyperparameters import AUTO, HyperparameterError, Hyperparameters, parse


def test_empty_gives_defaults():
    assert parse({}) == Hyperparameters()


def test_string_values_are_typed():
    params = parse({"lr": "0.01", "batch_size": "128", "augment": "False", "finetune": "HEAD",
                    "workers": "3", "processes_per_host": "auto"})
    assert params.lr == 0.01 and isinstance(params.lr, float)
    assert params.batch_size == 128 and isinstance(params.batch_size, int)
    assert params.augment is False
    assert params.finetune == "head"
    assert params.workers == 3
    assert params.processes_per_host == AUTO


def test_json_encoded_strings_are_accepted():
    # The SageMaker SDK JSON-encodes values for some estimators.
    assert parse({"finetune": '"head"', "lr": '"0.002"'}).finetune == "head"
    assert parse({"lr": '"0.002"'}).lr == 0.002


def test_integer_written_as_float():
    assert parse({"epochs": "3.0"}).epochs == 3


@pytest.mark.parametrize("key,value,fragment", [
    ("lr", "fast", "a number from"),
    ("lr", "0", "a number from"),
    ("lr", "nan", "a number from"),
    ("lr", "inf", "a number from"),
    ("batch_size", "3.5", "an integer from 1 to 4096"),
    ("batch_size", "0", "an integer from 1 to 4096"),
    ("epochs", "-1", "an integer from 1 to 1000"),
    ("augment", "maybe", "true or false"),
    ("finetune", "partial", "one of 'full', 'head'"),
    ("workers", "many", "or 'auto'"),
    ("label_smoothing", "0.9", "a number from 0.0 to 0.5"),
])
def test_bad_values_name_the_key_and_what_is_allowed(key, value, fragment):
    with pytest.raises(HyperparameterError) as err:
        parse({key: value})
    message = str(err.value)
    assert f"'{key}'" in message and repr(value) in message and fragment in message


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(HyperparameterError, match=r"unknown hyperparameter 'learning_rat'"):
        parse({"learning_rat": "0.1"})
    with pytest.raises(HyperparameterError, match=r"did you mean 'batch_size'"):
        parse({"batchsize": "32"})


def test_reserved_keys_are_ignored_and_reported():
    ignored: list[str] = []
    params = parse({"_tuning_objective_metric": "valid_acc", "sagemaker_region": '"us-east-1"',
                    "epochs": "2"}, ignored=ignored)
    assert params.epochs == 2
    assert ignored == ["_tuning_objective_metric", "sagemaker_region"]


def test_head_only_needs_pretrained_weights():
    with pytest.raises(HyperparameterError, match="finetune"):
        parse({"finetune": "head", "pretrained": "false"})


def test_round_trip_through_strings():
    params = Hyperparameters(lr=0.0123, augment=False, finetune="head", workers=2)
    assert parse(params.to_strings()) == params


def test_every_default_is_valid():
    for name, value in asdict(Hyperparameters()).items():
        assert H.parse_value(name, H.format_value(value)) == value


def test_search_space_covers_the_reference_set():
    space = H.search_space()
    assert set(space) == {"lr", "eps", "weight_decay", "batch_size", "epochs"}
    assert space["lr"].log and space["eps"].log and space["weight_decay"].log
    assert space["batch_size"].values == (32, 64, 128, 256)
    for name, tune in space.items():
        spec = H.SPECS[name]
        bounds = tune.values if tune.values is not None else (tune.low, tune.high)
        for value in bounds:  # every point of the search space is itself a valid value
            H.parse_value(name, str(value))
        assert spec.low <= min(bounds) and max(bounds) <= spec.high
    with pytest.raises(HyperparameterError, match="not tunable: seed"):
        H.search_space(["lr", "seed"])


def test_markdown_table_lists_every_hyperparameter():
    table = H.markdown_table()
    for f in fields(Hyperparameters):
        assert f"| `{f.name}` |" in table
    assert table.count("\n") == len(fields(Hyperparameters)) + 2
