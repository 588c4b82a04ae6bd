"""The only module that reads and writes model weights: torch.save / torch.load for run
checkpoints, safetensors for exported models.

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

Exported weights (`lba export`) are a safetensors file (`save_weights`, `load_weights`): the
state_dict's tensors and a flat str -> str metadata header, no pickle, so that anyone can load
them without running code from the file.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from lba_cli.atomic import atomic_path
from lba_cli.errors import DataError

__all__ = ["save_checkpoint", "copy_checkpoint", "load_checkpoint", "strip_prefixes", "save_weights", "load_weights",
           "CHECKPOINT_FORMAT_VERSION"]

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


def save_weights(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a state_dict as a safetensors file, atomically.

    Args:
        path: the ``.safetensors`` file.
        state: tensor name -> tensor (moved to the CPU and made contiguous; prefixes stripped).
        metadata: text stored in the file's header (e.g. the lba version).
    """
    from safetensors.torch import save_file

    tensors = {key: value.detach().to("cpu").contiguous() for key, value in strip_prefixes(state).items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=dict(metadata or {}))


def load_weights(path: Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor],
                                                                                 dict[str, str]]:
    """Read a safetensors file written by `save_weights`.

    Returns:
        (state_dict, the header's metadata).

    Raises:
        DataError: if the file is missing or not a safetensors file.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise DataError(f"weights not found: {path}")
    device = str(map_location)
    try:
        with safe_open(str(path), framework="pt", device=device) as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise DataError(f"cannot read weights {path}: {error}\nexpected: a .safetensors file written by lba "
                        "export") from None
