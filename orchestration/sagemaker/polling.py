"""One way to wait for SageMaker: describe, report, sleep, until a state is final.

Written by hand because boto3's waiters report nothing while they wait and have none for
tuning jobs; every wait in dogctl (training, tuning, endpoints) goes through :func:`poll`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from .settings import AwsError

POLL_SECONDS = float(os.environ.get("DOGCTL_POLL_SECONDS", "30"))
RUNNING = ("InProgress", "Stopping")  # a job's (or a rule evaluation's) status while not done


def poll(describe: Callable[[], dict[str, Any]], finished: Callable[[dict[str, Any]], bool],
         progress: Callable[[dict[str, Any], float], None], *, what: str, resume_hint: str = "",
         every: float | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Call ``describe`` every ``every`` seconds (default ``$DOGCTL_POLL_SECONDS`` or 30) and
    ``progress(state, seconds so far)`` with each answer; return the first state ``finished``
    accepts. After ``timeout`` seconds: an :class:`AwsError` naming ``what`` and how to resume."""
    interval = POLL_SECONDS if every is None else every
    started = time.monotonic()
    while True:
        state = describe()
        elapsed = time.monotonic() - started
        progress(state, elapsed)
        if finished(state):
            return state
        if timeout is not None and elapsed > timeout:
            raise AwsError(f"{what} is still not done after {timeout:.0f}s" +
                           (f"; {resume_hint}" if resume_hint else ""))
        time.sleep(interval)
