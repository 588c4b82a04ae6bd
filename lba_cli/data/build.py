"""Sources -> one `lba voxelize` HDF5 file, with a full account of what was skipped."""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lba_cli.config import GridConfig
from lba_cli.data.grids_h5 import write_grids
from lba_cli.data.sources import ComplexRecord, Skipped, SourceFormat, iter_complexes
from lba_cli.data.splits import SplitKind, assign_splits, shared_between_splits
from lba_cli.errors import DataError
from lba_cli.voxelize import make_channel_lookup, voxelize_batch

__all__ = ["BuildReport", "build_dataset", "crop_complex", "write_skip_report", "SKIP_REPORT_COLUMNS"]

SKIP_REPORT_COLUMNS = ("id", "source", "stage", "reason")
_VOXELIZE_CHUNK = 32


@dataclass
class BuildReport:
    """What `build_dataset` did.

    Attributes:
        output: the file written.
        counts: complexes per split.
        skipped: every complex not written, with stage and reason.
        notes: (id, note) for complexes read in a non-default way.
        leakage: proteins shared between splits, e.g. {"train/test": 0, ...}.
    """

    output: Path
    counts: dict[str, int]
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    leakage: dict[str, int] = field(default_factory=dict)

    @property
    def num_written(self) -> int:
        return sum(self.counts.values())


def crop_complex(record: ComplexRecord, grid: GridConfig) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Centre a complex on its ligand and keep the atoms that can reach the box.

    Returns:
        center_A: float64 array of shape (3,), the ligand centroid, Å.
        atoms: (xyz_A (N, 3) float32, atomic_number (N,) uint8, is_protein (N,) bool),
            ligand atoms first, only those within ``grid.reach_A`` of the centre.
    """
    ligand_xyz = record.ligand.select("x_A", "y_A", "z_A").to_numpy().astype(np.float64)
    center = ligand_xyz.mean(axis=0)
    xyz = np.concatenate([ligand_xyz, record.protein.select("x_A", "y_A", "z_A").to_numpy()])
    numbers = np.concatenate([record.ligand["atomic_number"].to_numpy(), record.protein["atomic_number"].to_numpy()])
    flags = np.concatenate([np.zeros(record.ligand.height, bool), np.ones(record.protein.height, bool)])
    keep = np.linalg.norm(xyz - center, axis=1) <= grid.reach_A
    return center, (xyz[keep].astype(np.float32), numbers[keep].astype(np.uint8), flags[keep])


def _voxelize_fixed(centers: list[np.ndarray], atoms: list[tuple], grid: GridConfig) -> np.ndarray:
    """Voxelize complexes in their own orientation, in chunks: (M, C, L, L, L) float32."""
    lookup = make_channel_lookup(grid)
    out = []
    for start in range(0, len(atoms), _VOXELIZE_CHUNK):
        chunk = atoms[start:start + _VOXELIZE_CHUNK]
        width = max(len(a[0]) for a in chunk)
        xyz = np.zeros((len(chunk), width, 3), np.float32)
        channel = np.full((len(chunk), width), -1, np.int64)
        protein = np.zeros((len(chunk), width), bool)
        for row, ((coords, numbers, flags), center) in enumerate(zip(chunk, centers[start:start + _VOXELIZE_CHUNK])):
            xyz[row, :len(coords)] = coords - center
            channel[row, :len(coords)] = lookup[numbers]
            protein[row, :len(coords)] = flags
        out.append(voxelize_batch(torch.from_numpy(xyz), torch.from_numpy(channel), torch.from_numpy(protein), grid).numpy())
    return np.concatenate(out)


def build_dataset(
    sources: list[Path],
    output: Path,
    grid: GridConfig,
    *,
    fmt: SourceFormat = SourceFormat.auto,
    split: SplitKind | None = None,
    seed: int = 0,
    on_complex: Callable[[str], None] | None = None,
) -> BuildReport:
    """Read complexes from every source, voxelize them and write one HDF5 file.

    Args:
        sources: ATOM3D LBA folders or PDBbind folders.
        output: the ``.h5`` to write (atomically).
        grid: voxelization settings.
        fmt: the layout of every source (detected per source when ``auto``).
        split: how to split; None keeps the sources' splits when all have one, else splits
            by protein.
        seed: seed of the protein or random split.
        on_complex: called with each complex id as it is read (for progress).

    Returns:
        A `BuildReport`. Later duplicates of an id are skipped with that reason.

    Raises:
        DataError: if no complex could be read (nothing is written then).
    """
    records: list[ComplexRecord] = []
    skipped: list[Skipped] = []
    seen: dict[str, str] = {}
    for source in sources:
        for item in iter_complexes(Path(source), fmt, grid):
            if on_complex is not None:
                on_complex(item.complex_id)
            if isinstance(item, Skipped):
                skipped.append(item)
            elif item.complex_id in seen:
                skipped.append(Skipped(item.complex_id, item.source, "dedupe", f"duplicate id, first read from {seen[item.complex_id]}"))
            else:
                seen[item.complex_id] = item.source
                records.append(item)
    if not records:
        reasons = Counter(s.reason for s in skipped).most_common(3)
        detail = "; ".join(f"{n} x {r}" for r, n in reasons) or "the sources hold no complexes"
        raise DataError(f"no complex could be read from {', '.join(map(str, sources))}\n{detail}")

    centers, atoms, kept = [], [], []
    for record in records:
        center, complex_atoms = crop_complex(record, grid)
        centers.append(center)
        atoms.append(complex_atoms)
        kept.append(record)

    ids = [r.complex_id for r in kept]
    groups = [r.protein_group for r in kept]
    predefined = [r.split for r in kept]
    if split is None:
        split = SplitKind.predefined if all(s is not None for s in predefined) else SplitKind.protein
    splits = assign_splits(ids, groups, split, seed, predefined)
    grids = _voxelize_fixed(centers, atoms, grid)

    from lba_cli import __version__

    write_grids(
        output, grid, ids=ids, affinity_pk=np.array([r.affinity_pk for r in kept]), split=splits,
        protein_group=groups, source=[r.source for r in kept], center_A=np.array(centers), atoms=atoms,
        grids=grids, sources=[str(s) for s in sources], lba_version=__version__,
    )
    counts = Counter(splits)
    return BuildReport(
        output=Path(output),
        counts={s: counts.get(s, 0) for s in ("train", "val", "test")},
        skipped=skipped,
        notes=[(r.complex_id, note) for r in kept for note in r.notes],
        leakage=shared_between_splits(splits, groups),
    )


def write_skip_report(path: Path, skipped: list[Skipped]) -> None:
    """Write the skipped complexes as CSV (columns `SKIP_REPORT_COLUMNS`), atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SKIP_REPORT_COLUMNS)
        writer.writerows((s.complex_id, s.source, s.stage, s.reason) for s in skipped)
    os.replace(tmp, path)
