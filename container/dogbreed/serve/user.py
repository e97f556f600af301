"""Which user ``serve``'s workers run as: not root, when started as root (as SageMaker does).

The workers parse every client's bytes, so in the image they run as its unprivileged user
(``dogbreed``, or ``DOGBREED_SERVE_USER``): each worker loads the model as started (SageMaker
extracts model.tar.gz as root, keeping the archive's modes), then switches user and group, with
no supplementary groups left, before it takes a connection (gunicorn's ``user``/``group``
settings, and ``serve.worker.Worker.init_process`` for the groups, which gunicorn keeps). The
master, which only binds the port and watches the workers, stays as started. ``serve`` run as
another user, or where the user does not exist (outside the image), changes nothing; the log
says which.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

DEFAULT_USER = "dogbreed"


@dataclass(frozen=True)
class WorkerUser:
    """The user and group to switch the workers to (None: stay as started), and why."""

    uid: int | None
    gid: int | None
    reason: str


def worker_user(name: str, euid: int | None = None) -> WorkerUser:
    """The workers' user: ``name``'s ids when started as root (``euid`` 0). A user named
    explicitly (not :data:`DEFAULT_USER`) that does not exist is a ValueError."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        return WorkerUser(None, None, f"workers run as uid {euid}, as started")
    if name == "root":
        return WorkerUser(None, None, "workers run as root (DOGBREED_SERVE_USER=root)")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if name != DEFAULT_USER:
            raise ValueError(f"DOGBREED_SERVE_USER={name!r}: no such user") from None
        return WorkerUser(None, None, f"workers run as root: no user {name!r} here (the image has one)")
    group = grp.getgrgid(entry.pw_gid).gr_name
    return WorkerUser(entry.pw_uid, entry.pw_gid, f"workers run as {name}:{group}, not root")
