"""``dogbreed COMMAND``: one entry point for everything the package does."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable

USAGE = """usage: dogbreed COMMAND [ARGS]

commands:
  train             train on /opt/ml (or $SAGEMAKER_BASE_DIR), as SageMaker runs it
  serve             answer /ping and /invocations on port 8080, as SageMaker runs it
  hyperparameters   print the hyperparameter reference (Markdown)
  metrics           print SageMaker metric definitions (JSON)
  weights           fetch (--download DIR) or check the ImageNet weights
  report JOB_DIR    the HTML report of a training job (rules, curves, profile, breeds)
"""


def _train(argv: list[str]) -> int:
    from dogbreed.train.main import main

    return main(argv)


def _serve(argv: list[str]) -> int:
    from dogbreed.serve.server import main

    return main(argv)


def _quiet_on_closed_pipe() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `dogbreed metrics | head` ends quietly


def _hyperparameters(_argv: list[str]) -> int:
    from dogbreed.contract.hyperparameters import markdown_table

    _quiet_on_closed_pipe()
    sys.stdout.write(markdown_table())
    return 0


def _metrics(_argv: list[str]) -> int:
    from dogbreed.contract.metrics import METRIC_DEFINITIONS

    _quiet_on_closed_pipe()
    print(json.dumps(METRIC_DEFINITIONS, indent=1))
    return 0


def _weights(argv: list[str]) -> int:
    from dogbreed.model.weights import main

    return main(argv)


def _report(argv: list[str]) -> int:
    from dogbreed.debugger.report import main

    return main(argv)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": _train,
    "serve": _serve,
    "hyperparameters": _hyperparameters,
    "metrics": _metrics,
    "weights": _weights,
    "report": _report,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"dogbreed: unknown command '{argv[0]}'\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    return command(argv[1:])
