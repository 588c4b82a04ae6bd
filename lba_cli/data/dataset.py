"""Torch datasets of atoms in box frames, and the collate function that pads them.

Items are atoms, not grids: the training loop voxelizes whole batches on the training
device (`lba_cli.voxel.voxelize_batch`), so a fresh rotation per example costs little.
Files are opened lazily, inside whichever process first reads an item (a loader's workers
then hold no copy of the parent's file, which made memory creep in the original work).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lba_cli.config import GridConfig
from lba_cli.data.grids_h5 import GridSet, read_grid_set
from lba_cli.errors import DataError
from lba_cli.seeding import Stream, sample_rng
from lba_cli.voxel import make_channel_lookup, random_rotation

__all__ = ["AffinityDataset", "AtomBatch", "collate_atoms"]


class AtomBatch(dict):
    """A padded batch: ``xyz_A`` (B, N, 3) float32, ``channel`` (B, N) int64 (-1 = padding),
    ``is_protein`` (B, N) bool, plus per-example fields (``affinity_pk`` (B,) float32,
    ``index`` (B,) int64, ``label`` (B,) int64, ...)."""


def _pad(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(1, max(len(p[0]) for p in parts))
    xyz = np.zeros((len(parts), width, 3), np.float32)
    channel = np.full((len(parts), width), -1, np.int64)
    protein = np.zeros((len(parts), width), bool)
    for row, (coords, channels, flags) in enumerate(parts):
        xyz[row, :len(coords)] = coords
        channel[row, :len(coords)] = channels
        protein[row, :len(coords)] = flags
    return torch.from_numpy(xyz), torch.from_numpy(channel), torch.from_numpy(protein)


def collate_atoms(items: list[dict[str, Any]], prefixes: tuple[str, ...] = ("",)) -> AtomBatch:
    """Pad a list of items into an `AtomBatch`.

    Each item holds, for each prefix p, ``p + "xyz_A"`` (N, 3) float32, ``p + "channel"``
    (N,) int64 and ``p + "is_protein"`` (N,) bool; every other key must be a scalar and is
    stacked into a (B,) tensor.
    """
    batch = AtomBatch()
    for prefix in prefixes:
        parts = [(it[prefix + "xyz_A"], it[prefix + "channel"], it[prefix + "is_protein"]) for it in items]
        batch[prefix + "xyz_A"], batch[prefix + "channel"], batch[prefix + "is_protein"] = _pad(parts)
    atom_keys = {p + k for p in prefixes for k in ("xyz_A", "channel", "is_protein")}
    for key in items[0]:
        if key not in atom_keys:
            batch[key] = torch.as_tensor(np.array([it[key] for it in items]))
    return batch


class AffinityDataset(Dataset):
    """The complexes of one split of an `lba voxelize` file, as atoms in their box frame.

    Args:
        path: the HDF5 file (only named in messages when ``grid_set`` is given).
        split: ``train``, ``val``, ``test`` or ``all`` (every complex).
        grid: voxelization settings of the model (channels must be those of the file).
        seed: run seed.
        rotate: give each example a fresh uniformly random rotation every epoch, drawn from
            ``sample_rng(seed, stream, epoch, index)``; without it the file's orientation is used.
        grid_set: the file's contents already in memory (or complexes that never were in a
            file, as `lba predict` reads them).
        stream: the `lba_cli.seeding.Stream` of the rotations (``TRAIN`` for augmentation,
            ``TTA`` for test-time augmentation).

    Raises:
        DataError: if the split is empty.
    """

    def __init__(self, path: Path, split: str, grid: GridConfig, seed: int = 0, rotate: bool = False,
                 grid_set: GridSet | None = None, stream: int = Stream.TRAIN) -> None:
        self.path = Path(path)
        self.split = split
        self.grid = grid
        self.seed = seed
        self.rotate = rotate
        self.stream = stream
        self.epoch = 0
        self._data = grid_set
        data = self._load()
        self.indices = data.indices(split)
        if len(self.indices) == 0:
            raise DataError(f"split {split!r} of {self.path} is empty\nexpected: complexes in train, val and test "
                            "(re-run `lba voxelize` with --split protein or --split random)")
        self._lookup = make_channel_lookup(grid)

    def _load(self) -> GridSet:
        if self._data is None:
            self._data = read_grid_set(self.path)
        return self._data

    @property
    def data(self) -> GridSet:
        """The whole file's contents (all splits), read on first use."""
        return self._load()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_data"] = None  # each worker reads the file itself
        return state

    def rotated(self, seed: int, stream: int) -> AffinityDataset:
        """The same complexes, each turned by a uniformly random rotation per epoch drawn from
        ``sample_rng(seed, stream, epoch, row)`` (a shallow copy: the data is shared)."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)  # not copy.copy: __getstate__ drops the data for workers
        copy.rotate, copy.seed, copy.stream = True, seed, stream
        return copy

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose rotations `__getitem__` draws."""
        self.epoch = epoch

    @property
    def ids(self) -> np.ndarray:
        """Complex ids of this split, str array of shape (M,)."""
        return self._load().ids[self.indices]

    @property
    def affinity_pk(self) -> np.ndarray:
        """Measured pK of this split, float32 array of shape (M,)."""
        return self._load().affinity_pk[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        data = self._load()
        row = int(self.indices[position])
        xyz, numbers, flags = data.atoms(row)
        local = xyz.astype(np.float64) - data.center_A[row]
        if self.rotate:
            local = local @ random_rotation(sample_rng(self.seed, self.stream, self.epoch, row))
        return {"xyz_A": local.astype(np.float32), "channel": self._lookup[numbers], "is_protein": flags,
                "affinity_pk": np.float32(data.affinity_pk[row]), "index": position}
