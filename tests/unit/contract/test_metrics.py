import re

from dogbreed.contract import metrics as M


def epoch_line(**over):
    values = dict(train_loss=2.5, train_acc=0.25, valid_loss=2.75, valid_acc=0.125, lr=4.5e-4,
                  epoch_seconds=61.25, images_per_second=135.5)
    values.update(over)
    return M.format_epoch(3, 10, **values)


def test_every_metric_name_is_unique_and_not_inside_another():
    names = list(M.METRICS)
    for a in names:
        for b in names:
            assert a == b or f"{a}=" not in f"{b}=", (a, b)


def test_definitions_are_sagemaker_shaped():
    assert [d["Name"] for d in M.METRIC_DEFINITIONS] == list(M.METRICS)
    for d in M.METRIC_DEFINITIONS:
        assert set(d) == {"Name", "Regex"} and len(d["Regex"]) <= 500
        assert re.compile(d["Regex"]).groups == 1
    assert M.OBJECTIVE_METRIC in M.METRICS


def test_epoch_line_round_trips():
    line = "2026-01-01 00:00:00 INFO " + epoch_line()
    assert M.parse_metrics(line) == {"train_loss": 2.5, "train_acc": 0.25, "valid_loss": 2.75,
                                     "valid_acc": 0.125, "epoch_seconds": 61.2,
                                     "images_per_second": 135.5}
    assert M.parse_epoch(line) == (3, M.parse_metrics(line))


def test_final_line_round_trips_and_is_not_an_epoch():
    line = M.format_final(4, {"valid_loss": 1.5, "valid_acc": 0.5, "test_loss": 1.75, "test_acc": 0.375})
    assert M.parse_metrics(line) == {"valid_loss": 1.5, "valid_acc": 0.5, "test_loss": 1.75,
                                     "test_acc": 0.375}
    assert M.parse_epoch(line) is None and M.is_final(line)
    assert not M.is_final(epoch_line())


def test_scientific_and_tiny_values_parse():
    assert M.parse_metrics("train_loss=1e-05")["train_loss"] == 1e-5
    assert M.parse_metrics(epoch_line(valid_acc=0.0))["valid_acc"] == 0.0


def test_non_finite_values_are_not_reported():
    assert "train_loss" not in M.parse_metrics(epoch_line(train_loss=float("nan")))
