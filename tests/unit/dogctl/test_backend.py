"""dogctl's backends implement :class:`orchestration.backend.Backend`: every verb, with the
protocol's own signature (requests in, results out); the command line prints the results."""

from __future__ import annotations

import inspect
import io
import signal
import typing

import pytest

from dogbreed.errors import UserError
from orchestration import backend as B
from orchestration import cli, interrupts, operations
from orchestration.local import LocalBackend
from orchestration.sagemaker import SageMakerBackend, Settings


def _hints(function) -> dict:
    return typing.get_type_hints(function)


@pytest.mark.parametrize("cls", [LocalBackend, SageMakerBackend])
def test_each_backend_implements_every_verb_with_the_protocols_signature(cls, tmp_path):
    assert B.Backend in cls.__mro__  # declared, not only alike
    for verb in B.VERBS:
        assert verb in vars(cls), f"{cls.__name__}.{verb} is the protocol's stub, not its own"
        mine, theirs = getattr(cls, verb), getattr(B.Backend, verb)
        assert list(inspect.signature(mine).parameters) == list(inspect.signature(theirs).parameters)
        assert _hints(mine) == _hints(theirs), f"{cls.__name__}.{verb}"
    made = LocalBackend(tmp_path) if cls is LocalBackend else SageMakerBackend(tmp_path, Settings())
    assert isinstance(made, B.Backend) and made.workdir == tmp_path


def test_the_protocol_names_every_verb_and_returns_no_exit_code():
    methods = {name for name, _ in inspect.getmembers(B.Backend, inspect.isfunction)
               if not name.startswith("_")}
    assert methods == set(B.VERBS)
    for verb in B.VERBS:
        hints = _hints(getattr(B.Backend, verb))
        assert hints["return"] not in (int, type(None), dict, tuple)
        request = hints["request"]
        assert request.__dataclass_params__.frozen, f"{verb}'s request is frozen"


def test_progress_goes_to_the_reporter(tmp_path, monkeypatch):
    monkeypatch.delenv("DOGBREED_FEATURE_CACHE", raising=False)
    out = io.StringIO()
    local = LocalBackend(tmp_path, reporter=B.Reporter(out))
    folder = local.feature_cache({"finetune": "head"}, "train")
    assert out.getvalue() == (f"train: the frozen backbone's features are cached in {folder}, "
                              "shared by every run\n")
    assert local.teardown(B.EndpointRequest()) == B.TeardownResult("dogbreed-local", ())


def test_the_command_line_builds_typed_requests_from_its_options():
    args = cli.build_parser().parse_args(["train", "--name", "t1", "--hp", "epochs=2", "--no-debugger"])
    assert cli.train_request(args) == B.TrainRequest({"epochs": "2"}, name="t1", debugger="off")
    bad = cli.build_parser().parse_args(["train", "--hp", "epochs=zero"])
    with pytest.raises(UserError, match="epochs"):  # checked before any backend is asked
        cli.train_request(bad)
    # A hyperparameter must not hand the built-in trainer over to a script (issue 22).
    for key in ("sagemaker_program", "_tuning_objective_metric"):
        handover = cli.build_parser().parse_args(["train", "--hp", f"{key}=x.py"])
        with pytest.raises(UserError, match=f"{key}: SageMaker's own keys"):
            cli.train_request(handover)


def test_the_command_line_prints_results_and_chooses_exit_codes(capsys, tmp_path):
    failed = B.TrainResult("t1", ok=False, failure="weights are not here", seconds=3.2, log=tmp_path / "l")
    assert cli.print_train(failed) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"train: failed after 3s: weights are not here\ntrain: full log in {tmp_path / 'l'}\n"

    assert cli.print_stop(B.StopResult("long", "stopped", pid=7)) == 0
    assert capsys.readouterr().out == (
        "stop: 'long' stopped; its checkpoints are kept (the same command resumes it)\n")
    cli.print_stop(B.StopResult("run-1", "ended", kind="training job", status="Completed"))
    assert capsys.readouterr().out == "stop: training job 'run-1': already Completed; nothing to stop\n"

    assert cli.print_teardown(B.TeardownResult("dogbreed-local"), "local") == 0
    assert capsys.readouterr().out == "teardown: endpoint 'dogbreed-local' was not running\n"
    cli.print_teardown(B.TeardownResult("ep", ("endpoint ep", "model ep")), "sagemaker")
    assert capsys.readouterr().out == "teardown: deleted endpoint ep, model ep\n"

    tuned = B.TuneResult("s", headline="study 's': 1 trials",
                         trials=({"name": "trial-000", "status": "fail", "objective": None,
                                  "hyperparameters": {"lr": "0.1"}},))
    assert cli.print_tune(tuned, ["lr"]) == 1
    out, err = capsys.readouterr()
    assert err == "tune: no trial completed\n"
    assert out.splitlines()[0] == "tune: study 's': 1 trials" and "trial-000  fail" in out


def test_a_signal_stops_what_was_started_without_knowing_which_backend(monkeypatch):
    import orchestration.local.training as training

    assert training.stop_all in interrupts._handlers  # the local backend registered its runs
    stopped = []
    monkeypatch.setattr(interrupts, "_handlers", [lambda: stopped.append(True)])
    with pytest.raises(cli.Terminated):
        cli._on_signal(signal.SIGTERM, None)
    with pytest.raises(KeyboardInterrupt):
        cli._on_signal(signal.SIGINT, None)
    assert stopped == [True, True]


def test_every_verb_of_the_command_line_is_dispatched():
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    assert set(sub.choices) == set(cli.COMMANDS)


def test_local_resources_are_the_runs_and_studies_a_live_dogctl_works_on(tmp_path):
    import os
    import subprocess

    ended = subprocess.Popen(["true"])
    ended.wait()
    for folder, pid in (("runs/r1", os.getpid()), ("tuning/s1", os.getpid()), ("tuning/old", ended.pid)):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "dogctl.pid").write_text(f"{pid}\n")
    result = LocalBackend(tmp_path).resources(B.ResourcesRequest())
    assert [(r.kind, r.name, r.detail) for r in result.found] == [
        ("training run", "r1", f"dogctl pid {os.getpid()}"), ("study", "s1", f"dogctl pid {os.getpid()}")]
    assert result.where == f"this machine, {tmp_path}"


@pytest.mark.parametrize("seconds,shown", [(-3, "0s"), (45, "45s"), (720, "12m"), (11100, "3h05m"),
                                           (187200, "2d04h")])
def test_resources_show_a_short_age(seconds, shown):
    assert operations.age(seconds) == shown


def test_a_local_endpoint_refuses_autoscale(tmp_path):
    with pytest.raises(UserError, match="--autoscale scales SageMaker endpoints"):
        LocalBackend(tmp_path).deploy(B.DeployRequest(autoscale=(1, 2)))


def test_a_local_deploy_takes_a_package_or_a_model_not_both(tmp_path):
    with pytest.raises(UserError, match=r"\(--package\) or a model \(--model\), not both"):
        LocalBackend(tmp_path).deploy(B.DeployRequest(package="latest-approved", model=tmp_path))
