"""The one base of every error that is the user's to fix: printed as one line, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Something the user gave or set up is wrong; the message says what to do about it."""
