"""dogctl's argparse types: each checks one option's value, or says in one line what it expects."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from dogbreed.errors import UserError

from .packages import check_group


def env_item(item: str) -> tuple[str, str]:
    """--env NAME=VALUE, NAME a valid environment variable name."""
    name, sep, value = item.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with a variable name, got {item!r}")
    return name, value


def whole_number(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``, else one line naming ``what``."""

    def parse(text: str) -> int:
        value = int(text) if text.strip().isdigit() else None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def tag_item(item: str) -> tuple[str, str]:
    """``--tag KEY=VALUE``: one tag (checked with the rest when the settings are read)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
    return key.strip(), value.strip()


def model_group(text: str) -> str:
    try:
        return check_group(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def bounds(text: str) -> tuple[int, int]:
    """``--autoscale MIN:MAX``: 0 <= MIN <= MAX, 1 <= MAX <= 100 instances."""
    low, sep, high = text.partition(":")
    if sep and low.strip().isdigit() and high.strip().isdigit():
        found = int(low), int(high)
        if found[0] <= found[1] and 1 <= found[1] <= 100:
            return found
    raise argparse.ArgumentTypeError(f"expected MIN:MAX instances, 0 <= MIN <= MAX <= 100, e.g. 1:4, "
                                     f"got {text!r}")


def above_zero(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


percent = whole_number(1, 100, "a whole percentage from 1 to 100")
keep_alive = whole_number(1, 3600, "seconds from 1 to 3600 (SageMaker's limit)")
