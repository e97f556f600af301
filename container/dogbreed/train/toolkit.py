"""Users' own training scripts: the hand-over to the SageMaker training toolkit.

A training job whose hyperparameters set ``sagemaker_program`` (what SDK v2's Estimator with
``entry_point``/``source_dir`` sends), or whose environment sets ``SAGEMAKER_PROGRAM``, names a
script. Such a job runs the user's script through ``sagemaker-training`` (which downloads
``sagemaker_submit_directory``, passes the hyperparameters as arguments and ``SM_*`` variables,
and writes the failure file), with this image's torch, torchvision and smdebug importable.
Without it, ``train`` runs the built-in dog-breed trainer.

Both packages install a console script named ``train``; the image keeps ours (see
docker/Dockerfile), which calls :func:`hand_over` when a job names a script.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import PurePosixPath
from typing import NoReturn

from dogbreed.contract.environment import BASE_DIR
from dogbreed.contract.opt_ml import OptML
from dogbreed.errors import UserError

log = logging.getLogger(__name__)
PROGRAM = "sagemaker_program"  # the hyperparameter the SDK sets from entry_point


class ToolkitMissing(UserError):
    """The job names its own script but the SageMaker training toolkit is not installed."""


def user_program(opt: OptML, program_env: str | None = None) -> str | None:
    """The user's script the job names (its ``sagemaker_program`` hyperparameter, else the
    ``SAGEMAKER_PROGRAM`` variable, ``program_env``), or None: the built-in trainer runs.

    The SDK JSON-encodes every hyperparameter value (``"\\"train.py\\""``); a plain string is
    accepted too.
    """
    raw = opt.raw_hyperparameters().get(PROGRAM) or program_env
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    program = str(value)
    if not program:
        return None
    path = PurePosixPath(program)
    if path.is_absolute() or ".." in path.parts or "\0" in program:
        raise UserError(f"{PROGRAM}={program!r}: the script must be a path inside the job's source "
                        "directory (the SDK's entry_point), not an absolute path or one with '..'")
    return program


def hand_over(opt: OptML, program: str) -> NoReturn:
    """Run ``program`` through the toolkit's trainer; it exits with the script's outcome."""
    os.environ.setdefault(BASE_DIR, str(opt.root))  # read when the toolkit is imported
    # SageMaker creates model/ and output/; elsewhere the toolkit, unable to write its failure
    # file, would exit 0 after a failed script.
    opt.prepare_outputs()
    try:
        from sagemaker_training import trainer
    except ImportError as exc:
        raise ToolkitMissing(f"this job names its own script ({PROGRAM}={program}) but the "
                             "SageMaker training toolkit (sagemaker-training) is not installed "
                             "in this image") from exc
    log.info("train: the job names its own script (%s=%s): handing over to the SageMaker "
             "training toolkit", PROGRAM, program)
    trainer.train()  # exits: 0, or the toolkit's failure code after writing output/failure
    raise SystemExit(0)  # (only if a future toolkit returns instead of exiting)
