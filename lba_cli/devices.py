"""The training device, chosen once and passed explicitly."""

from __future__ import annotations

import contextlib

import torch

from lba_cli.errors import ConfigError

__all__ = ["resolve_device", "autocast_context"]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else the CPU.

    Raises:
        ConfigError: when CUDA is asked for and not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine\nexpected: --device cpu or auto")
    return device


def autocast_context(device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA; nothing on the CPU (nanoGPT's rule)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
