"""The HDF5 file `lba voxelize` writes: atoms, labels, splits and one grid per complex.

Layout (format ``lba-grids``, version 1). M complexes, A atoms in all, C channels, L voxels:

    /                      attributes: format, format_version, lba_version, created,
                           box_size_voxels, resolution_A, radius_A, channels (e.g.
                           "C;N;O;P;S,SE;*"), channel_names (JSON list), protein_channel,
                           keep_hydrogens, keep_water, sources (JSON list of paths)
    /complexes/id              (M,)      str      complex id, unique
    /complexes/affinity_pk     (M,)      float32  -log10(Kd or Ki / M)
    /complexes/split           (M,)      str      train | val | test
    /complexes/protein_group   (M,)      str      protein identity used for splitting ("" if none)
    /complexes/source          (M,)      str      file or folder the complex came from
    /complexes/affinity_measure (M,)     str      Kd, Ki, IC50, ... ("" if the source does not say)
    /complexes/affinity_operator (M,)    str      =, <, >, <=, >=, ~ ("" if unknown)
    /complexes/ligand_smiles   (M,)      str      canonical SMILES ("" if unknown), for leakage checks
    /complexes/chain_sequences (M,)      str      the receptor's polymer chain sequences (one-letter,
                                                  chains of >= 10 residues) joined by ";", for
                                                  sequence-identity checks (absent from older
                                                  files: re-run lba voxelize)
    /complexes/center_A        (M, 3)    float32  box centre = ligand centroid, Å
    /complexes/atom_offset     (M + 1,)  int64    complex i owns atoms [offset[i], offset[i+1])
    /atoms/xyz_A               (A, 3)    float32  coordinates in the structure's frame, Å
    /atoms/atomic_number       (A,)      uint8    0 = unknown element
    /atoms/is_protein          (A,)      bool     receptor (True) or ligand (False)
    /grids                     (M, C, L, L, L) float32, gzip, one chunk per complex:
                                          the complex voxelized in the structure's own
                                          orientation (no rotation), for inspection and
                                          fixed-orientation evaluation

Atoms are those within `GridConfig.reach_A` of the centre (attribute ``atom_extent`` =
"ligand_reach"; a file holding whole proteins would say "whole"; files without the attribute
are cropped), so that the box in any rotation is filled exactly as from the full
structure; hydrogens and waters are already removed unless the attributes say they were
kept. Only `write_grids` writes this file, to a
temporary name that is renamed when complete; readers open it read-only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from lba_cli.atomic import atomic_path
from lba_cli.choices import ALL_COMPLEXES
from lba_cli.config import GridConfig, format_channels, parse_channels
from lba_cli.errors import ConfigError, DataError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "GridSet",
    "write_grids",
    "read_grid_set",
    "read_grid_config",
    "open_grids",
    "read_chain_sequences",
    "read_atom_extent",
    "ATOM_EXTENT_CROPPED",
    "ATOM_EXTENT_WHOLE",
]

FORMAT_NAME = "lba-grids"
FORMAT_VERSION = 1
ATTR_FORMAT = "format"
ATTR_VERSION = "format_version"
GROUP_COMPLEXES = "complexes"
GROUP_ATOMS = "atoms"
DATASET_GRIDS = "grids"
DATASET_SEQUENCES = "chain_sequences"
ATTR_ATOM_EXTENT = "atom_extent"
ATOM_EXTENT_CROPPED = "ligand_reach"
ATOM_EXTENT_WHOLE = "whole"
SEQUENCE_SEPARATOR = ";"
_GRID_ATTRS = ("box_size_voxels", "resolution_A", "radius_A", "protein_channel", "keep_hydrogens", "keep_water")


@dataclass
class GridSet:
    """Everything of an `lba voxelize` file except the grids, in memory.

    Attributes:
        ids: str array of shape (M,).
        affinity_pk: float32 array of shape (M,).
        split: str array of shape (M,).
        protein_group: str array of shape (M,).
        source: str array of shape (M,).
        center_A: float32 array of shape (M, 3), Å.
        atom_offset: int64 array of shape (M + 1,).
        xyz_A: float32 array of shape (A, 3), Å.
        atomic_number: uint8 array of shape (A,).
        is_protein: bool array of shape (A,).
        grid: the voxelization settings the file was written with.
    """

    ids: np.ndarray
    affinity_pk: np.ndarray
    split: np.ndarray
    protein_group: np.ndarray
    source: np.ndarray
    center_A: np.ndarray
    atom_offset: np.ndarray
    xyz_A: np.ndarray
    atomic_number: np.ndarray
    is_protein: np.ndarray
    grid: GridConfig

    def __len__(self) -> int:
        return len(self.ids)

    def atoms(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Atoms of complex ``index``: xyz_A (N, 3) float32, atomic_number (N,), is_protein (N,)."""
        lo, hi = self.atom_offset[index], self.atom_offset[index + 1]
        return self.xyz_A[lo:hi], self.atomic_number[lo:hi], self.is_protein[lo:hi]

    def indices(self, split: str) -> np.ndarray:
        """Row indices of one split (``all``: every row), int64 array."""
        if split == ALL_COMPLEXES:
            return np.arange(len(self.ids), dtype=np.int64)
        return np.flatnonzero(self.split == split)


def write_grids(
    path: Path,
    grid: GridConfig,
    *,
    ids: list[str],
    affinity_pk: np.ndarray,
    split: list[str],
    protein_group: list[str],
    source: list[str],
    center_A: np.ndarray,
    atoms: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    grids: np.ndarray,
    sources: list[str],
    lba_version: str,
    extra_text: dict[str, list[str]] | None = None,
    atom_extent: str = ATOM_EXTENT_CROPPED,
) -> None:
    """Write a complete file atomically (temporary file, then rename).

    Args:
        path: destination ``.h5``.
        grid: the voxelization settings.
        ids, split, protein_group, source: one entry per complex (see the module layout).
        affinity_pk: float array of shape (M,).
        center_A: float array of shape (M, 3), Å.
        atoms: per complex (xyz_A (N, 3), atomic_number (N,), is_protein (N,)).
        grids: float32 array of shape (M, C, L, L, L).
        sources: the source paths given to `lba voxelize`.
        lba_version: recorded in the attributes.
        extra_text: more per-complex text columns under /complexes (affinity_measure,
            affinity_operator, ligand_smiles, chain_sequences).
        atom_extent: `ATOM_EXTENT_CROPPED` (atoms within reach of the box) or
            `ATOM_EXTENT_WHOLE` (whole receptors).

    Raises:
        DataError: if the ids are not unique or there is nothing to write.
    """
    import h5py

    if not ids:
        raise DataError("no complexes to write")
    if len(set(ids)) != len(ids):
        raise DataError("complex ids must be unique in one file")
    text = h5py.string_dtype("utf-8")
    offsets = np.concatenate([[0], np.cumsum([len(a[0]) for a in atoms])]).astype(np.int64)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs[ATTR_FORMAT] = FORMAT_NAME
        f.attrs[ATTR_VERSION] = FORMAT_VERSION
        f.attrs["lba_version"] = lba_version
        f.attrs["created"] = datetime.now(UTC).isoformat(timespec="seconds")
        for name in _GRID_ATTRS:
            f.attrs[name] = getattr(grid, name)
        f.attrs["channels"] = format_channels(grid.channels)
        f.attrs["channel_names"] = json.dumps(list(grid.channel_names))
        f.attrs["sources"] = json.dumps([str(s) for s in sources])
        f.attrs[ATTR_ATOM_EXTENT] = atom_extent
        c = f.create_group(GROUP_COMPLEXES)
        c.create_dataset("id", data=np.array(ids, dtype=object), dtype=text)
        c.create_dataset("affinity_pk", data=np.asarray(affinity_pk, dtype=np.float32))
        c.create_dataset("split", data=np.array(split, dtype=object), dtype=text)
        c.create_dataset("protein_group", data=np.array(protein_group, dtype=object), dtype=text)
        c.create_dataset("source", data=np.array(source, dtype=object), dtype=text)
        c.create_dataset("center_A", data=np.asarray(center_A, dtype=np.float32).reshape(-1, 3))
        for name, values in (extra_text or {}).items():
            c.create_dataset(name, data=np.array(values, dtype=object), dtype=text)
        c.create_dataset("atom_offset", data=offsets)
        a = f.create_group(GROUP_ATOMS)
        a.create_dataset("xyz_A", data=np.concatenate([x[0] for x in atoms]).astype(np.float32), compression="gzip")
        a.create_dataset("atomic_number", data=np.concatenate([x[1] for x in atoms]).astype(np.uint8),
                         compression="gzip")
        a.create_dataset("is_protein", data=np.concatenate([x[2] for x in atoms]).astype(bool), compression="gzip")
        f.create_dataset(DATASET_GRIDS, data=np.asarray(grids, dtype=np.float32),
                         chunks=(1, *grids.shape[1:]), compression="gzip", compression_opts=4, shuffle=True)


def open_grids(path: Path):
    """Open an `lba voxelize` file read-only and check its format; the caller closes it.

    Returns:
        An open ``h5py.File``.

    Raises:
        DataError: if the file is missing, not HDF5, or not in this format.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}\nexpected: the .h5 file written by `lba voxelize`")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise DataError(f"cannot open {path} as HDF5: {error}") from None
    if f.attrs.get(ATTR_FORMAT) != FORMAT_NAME:
        f.close()
        raise DataError(f"{path} is HDF5 but not an lba grids file\nexpected: a file written by `lba voxelize`")
    if int(f.attrs.get(ATTR_VERSION, -1)) > FORMAT_VERSION:
        f.close()
        raise DataError(f"{path} has format version {f.attrs.get(ATTR_VERSION)}; this lba reads up to {FORMAT_VERSION}")
    return f


def _grid_config(f) -> GridConfig:
    values = {name: f.attrs[name].item() if hasattr(f.attrs[name], "item") else f.attrs[name] for name in _GRID_ATTRS}
    return GridConfig(channels=parse_channels(str(f.attrs["channels"])), **values)


def read_grid_config(path: Path) -> GridConfig:
    """The voxelization settings an `lba voxelize` file was written with.

    Raises:
        DataError: if the file is not a complete `lba voxelize` file.
    """
    with open_grids(path) as f, _incomplete(path):
        return _grid_config(f)


@contextmanager
def _incomplete(path: Path) -> Iterator[None]:
    """Turn h5py's errors about missing or unreadable parts of a file into a DataError naming it."""
    try:
        yield
    except (KeyError, OSError) as error:
        detail = str(error).strip("\"'")
        raise DataError(f"{path} is not a complete lba voxelize file ({detail})\nexpected: the file as `lba "
                        "voxelize` wrote it; write it again") from None
    except ConfigError as error:
        raise DataError(f"{path} holds invalid voxelization settings: {error}") from None


def read_grid_set(path: Path) -> GridSet:
    """Load an `lba voxelize` file's labels, splits and atoms (not the grids) into memory.

    Raises:
        DataError: if the file is missing, not an `lba voxelize` file or incomplete.
    """
    with open_grids(path) as f, _incomplete(path):
        c, a = f[GROUP_COMPLEXES], f[GROUP_ATOMS]

        def text(name: str) -> np.ndarray:
            return c[name].asstr()[...].astype(str)

        return GridSet(
            ids=text("id"), affinity_pk=c["affinity_pk"][...], split=text("split"),
            protein_group=text("protein_group"), source=text("source"), center_A=c["center_A"][...],
            atom_offset=c["atom_offset"][...], xyz_A=a["xyz_A"][...], atomic_number=a["atomic_number"][...],
            is_protein=a["is_protein"][...], grid=_grid_config(f),
        )


def read_atom_extent(path: Path) -> str:
    """`ATOM_EXTENT_CROPPED` or `ATOM_EXTENT_WHOLE` (files without the attribute are cropped)."""
    with open_grids(path) as f:
        return str(f.attrs.get(ATTR_ATOM_EXTENT, ATOM_EXTENT_CROPPED))


def read_chain_sequences(path: Path) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Ids, splits and receptor chain sequences of every complex of an `lba voxelize` file.

    Returns:
        ids (M,) str, split (M,) str, and per complex its list of one-letter chain sequences.

    Raises:
        DataError: if the file has no sequences (written by an older lba).
    """
    with open_grids(path) as f:
        c = f[GROUP_COMPLEXES]
        if DATASET_SEQUENCES not in c:
            raise DataError(f"{path} holds no chain sequences (written before lba voxelize stored them)\n"
                            "expected: a file whose /complexes/chain_sequences lists each receptor's chains\n"
                            f"do: re-run lba voxelize on its sources ({f.attrs.get('sources', '?')})")
        ids = c["id"].asstr()[...].astype(str)
        split = c["split"].asstr()[...].astype(str)
        text = c[DATASET_SEQUENCES].asstr()[...].astype(str)
    return ids, split, [[s for s in t.split(SEQUENCE_SEPARATOR) if s] for t in text]
