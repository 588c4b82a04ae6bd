"""Errors raised for user mistakes and bad data.

The CLI catches `LbaError` in one place, prints its message in red and exits with code 1;
anything else is a bug and propagates with a traceback.
"""

from __future__ import annotations

__all__ = [
    "LbaError",
    "ConfigError",
    "DataError",
    "RunNotFoundError",
    "CheckpointMismatchError",
    "StoreError",
    "OutputError",
]


class LbaError(Exception):
    """Base class of every error that is the user's to fix."""


class ConfigError(LbaError):
    """A configuration value is out of range or inconsistent."""


class DataError(LbaError):
    """Input data is missing, unreadable or unusable (bad structures, empty boxes)."""


class RunNotFoundError(LbaError):
    """A run reference matches no run, or several."""


class CheckpointMismatchError(LbaError):
    """A checkpoint's architecture or channels differ from what was asked for."""


class StoreError(LbaError):
    """The run store is in a state that prevents the operation."""


class OutputError(LbaError):
    """A file cannot be written where asked (its folder is a file, no permission, disk full)."""
