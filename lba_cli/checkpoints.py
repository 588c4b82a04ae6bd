"""The only module that calls torch.save and torch.load.

A checkpoint is a dict of plain values and tensors, loadable with ``weights_only=True``:

    format_version  int
    lba_version     str
    config          dict   the run's resolved `RunConfig` (architecture included)
    model           dict   state_dict, without torch.compile / DDP prefixes
    optimizer       dict   state_dict (absent in exported weights)
    epoch           int    last completed epoch (0-based)
    step            int    optimizer steps so far
    best            dict   {"epoch": int, "metric": str, "value": float}
    rng             dict   torch CPU generator state (resume keeps the random stream)
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from lba_cli.atomic import atomic_path
from lba_cli.errors import DataError

__all__ = ["save_checkpoint", "copy_checkpoint", "load_checkpoint", "strip_prefixes", "CHECKPOINT_FORMAT_VERSION"]

CHECKPOINT_FORMAT_VERSION = 1
_PREFIXES = ("_orig_mod.", "module.")


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``torch.compile`` (``_orig_mod.``) and DDP (``module.``) key prefixes."""
    out = {}
    for key, value in state.items():
        for prefix in _PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (see the module docstring) atomically: temporary file, then rename."""
    from lba_cli import __version__

    payload = {"format_version": CHECKPOINT_FORMAT_VERSION, "lba_version": __version__, **payload}
    payload["model"] = strip_prefixes(payload["model"])
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def copy_checkpoint(source: Path, destination: Path) -> None:
    """Copy a checkpoint file atomically (``best`` from the ``last`` just written, without
    serialising the model twice)."""
    with atomic_path(destination) as tmp:
        shutil.copyfile(source, tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint` (``weights_only=True``).

    Raises:
        DataError: if the file is missing or not a readable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as error:
        raise DataError(f"cannot read checkpoint {path}: {error}") from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise DataError(f"{path} is not an lba checkpoint")
    payload["model"] = strip_prefixes(payload["model"])
    return payload
