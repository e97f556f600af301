"""What dogctl stops when it is interrupted (Ctrl-C, SIGTERM): each part that starts processes
registers how to stop them, and the command line's signal handler calls them all, without knowing
which backend or module started what."""

from __future__ import annotations

import threading
from collections.abc import Callable

_handlers: list[Callable[[], object]] = []
_lock = threading.Lock()


def on_interrupt(handler: Callable[[], object]) -> None:
    """Call ``handler`` when dogctl is interrupted (once per handler, however often registered)."""
    with _lock:
        if handler not in _handlers:
            _handlers.append(handler)


def interrupt_all() -> None:
    """Run every registered handler (from the signal handler: trials run in threads, which a signal
    does not interrupt, so their processes are stopped here)."""
    with _lock:
        handlers = list(_handlers)
    for handler in handlers:
        handler()
