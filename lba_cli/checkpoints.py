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
import re
import shutil
import warnings
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


def _why_unreadable(path: Path, error: BaseException) -> str:
    """One line saying what ``path`` is instead of a checkpoint (never advice to unpickle it)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(512)
    if size == 0:
        return f"{path} is empty (0 bytes), not a checkpoint: copy the file again"
    if head.startswith(b"version https://git-lfs"):
        return (f"{path} is not a checkpoint but a Git LFS pointer ({size} bytes, the placeholder a clone without "
                "large-file support leaves): fetch the real file with `git lfs pull`")
    unsupported = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    if unsupported or head.startswith(b"\x80"):
        what = f" (it holds {unsupported.group(1)})" if unsupported else ""
        return (f"{path} is not an lba checkpoint but a Python pickle of another program{what}; lba loads weights "
                "only and does not run code stored in a file")
    if head.startswith(b"PK\x03\x04"):
        return (f"{path} is a damaged or truncated checkpoint ({size} bytes; the torch archive is incomplete): copy "
                "it again, or use the run's other checkpoint (best.pt, last.pt)")
    try:
        first = head.decode("utf-8").strip().splitlines()[0][:60]
    except (UnicodeDecodeError, IndexError):
        return f"{path} is not a checkpoint ({size} bytes of unrecognised content)"
    return f"{path} is not a checkpoint but a text file (starting {first!r})"


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint` (``weights_only=True``: no code in the file runs).

    Raises:
        DataError: if the file is missing or not a readable lba checkpoint, in one line that
            names the file and says what it is instead (empty, a Git LFS pointer, truncated,
            another program's pickle, text).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise DataError(f"cannot read checkpoint {path}: permission denied") from None
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, AttributeError, ImportError,
            IndexError, KeyError, TypeError) as error:
        raise DataError(_why_unreadable(path, error)) from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        kind = "a bare state_dict" if isinstance(payload, dict) and all(
            isinstance(v, torch.Tensor) for v in payload.values()) else f"a {type(payload).__name__}"
        raise DataError(f"{path} is not an lba checkpoint: it holds {kind}, without the model and config entries "
                        "lba writes")
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
        DataError: if the file is missing or not a safetensors file (naming an empty file or
            a Git LFS pointer as such).
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
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(64)
        if size == 0:
            raise DataError(f"{path} is empty (0 bytes), not weights: copy the file again") from None
        if head.startswith(b"version https://git-lfs"):
            raise DataError(f"{path} is not weights but a Git LFS pointer ({size} bytes, the placeholder a clone "
                            "without large-file support leaves): fetch the real file with `git lfs pull`") from None
        raise DataError(f"cannot read weights {path}: {error}\nexpected: a .safetensors file written by lba "
                        "export") from None
