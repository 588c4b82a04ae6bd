"""Seeding: one call seeds every global generator; augmentation uses per-sample generators.

Per-sample generators are keyed by (seed, stream, epoch, index), so what a sample looks
like does not depend on the number of loader workers or on which worker draws it (the
original neighbor-location work could not reproduce its own pre-training results).
"""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["seed_everything", "sample_rng", "Stream"]


class Stream:
    """Stream numbers that keep the random draws of different purposes apart."""

    TRAIN = 0
    VAL = 1
    SPLIT = 2
    ORDER = 3
    TTA = 4  # test-time augmentation: the rotations `lba predict --tta N` averages over
    PILOT = 5


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python's `random`, NumPy's legacy global generator, torch and CUDA.

    Args:
        seed: any non-negative integer.
        deterministic: also ask torch for deterministic algorithms (slower on CUDA).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # third-party code may still use the legacy global generator
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def sample_rng(seed: int, stream: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample: ``np.random.default_rng([seed, stream, epoch, index])``."""
    return np.random.default_rng([seed, stream, epoch, index])
