"""Sources -> one `lba voxelize` HDF5 file, with a full account of what was skipped."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lba_cli.atomic import atomic_path, check_writable
from lba_cli.choices import SPLITS, LabelUnit, SourceFormat, SplitKind
from lba_cli.config import GridConfig
from lba_cli.data.atoms import LIGAND_COPY_TOLERANCE_A, drop_ligand_copy
from lba_cli.data.dataset import collate_atoms
from lba_cli.data.grids_h5 import SEQUENCE_SEPARATOR, GridSet, write_grids
from lba_cli.data.records import ComplexRecord, Skipped, SourceNote, SourceOptions
from lba_cli.data.sources import iter_complexes, resolve_sources
from lba_cli.data.splits import assign_splits, shared_between_splits
from lba_cli.errors import DataError
from lba_cli.voxel import make_channel_lookup, voxelize_batch

__all__ = ["BuildReport", "SourceReadout", "BoxedComplexes", "build_dataset", "read_sources", "place_in_boxes",
           "make_grid_set", "crop_complex", "write_skip_report", "nothing_usable", "SKIP_REPORT_COLUMNS"]

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
        ligand_leakage: ligands (canonical SMILES) shared between splits.
        unknown_proteins: complexes whose protein identity is unknown (no UniProt id, no
            sequence): the protein leakage check cannot see them.
        messages: what the user should know about the sources and the split.
        split_kind: the split that was applied.
    """

    output: Path
    counts: dict[str, int]
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    leakage: dict[str, int] = field(default_factory=dict)
    ligand_leakage: dict[str, int] = field(default_factory=dict)
    unknown_proteins: int = 0
    messages: list[str] = field(default_factory=list)
    split_kind: str = ""

    @property
    def num_written(self) -> int:
        return sum(self.counts.values())


def crop_complex(record: ComplexRecord, grid: GridConfig) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]]:
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
    items = [{"xyz_A": (coords - center).astype(np.float32), "channel": lookup[numbers], "is_protein": flags}
             for (coords, numbers, flags), center in zip(atoms, centers)]
    out = []
    for start in range(0, len(items), _VOXELIZE_CHUNK):
        batch = collate_atoms(items[start:start + _VOXELIZE_CHUNK])
        out.append(voxelize_batch(batch["xyz_A"], batch["channel"], batch["is_protein"], grid).numpy())
    return np.concatenate(out)


def protein_groups(records: list[ComplexRecord]) -> list[str]:
    """Protein identity of each complex, for leakage-free splits.

    A UniProt id (or a manifest's ``group``) is used when given. Otherwise complexes that
    share any identical chain sequence are one protein (union-find over sequences). A
    complex with neither gets "" (unknown).
    """
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for record in records:
        keys = [f"seq:{s}" for s in record.sequences]
        for a, b in zip(keys, keys[1:]):
            parent[find(a)] = find(b)
    groups = []
    for record in records:
        if record.protein_group:
            groups.append(record.protein_group)
        elif record.sequences:
            root = find(f"seq:{record.sequences[0]}")
            groups.append("sequence:" + hashlib.sha1(root.encode()).hexdigest()[:12])  # stable across runs
        else:
            groups.append("")
    return groups


@dataclass
class SourceReadout:
    """Every complex read from some sources, before voxelization.

    Attributes:
        records: the complexes read, each id once, in source order.
        skipped: every complex that could not be read, with stage and reason.
        messages: what the user should know about the sources (see `BuildReport`).
    """

    records: list[ComplexRecord]
    skipped: list[Skipped]
    messages: list[str]


def read_sources(sources: list[Path], grid: GridConfig, *, fmt: SourceFormat = SourceFormat.auto,
                 options: SourceOptions = SourceOptions(),
                 on_complex: Callable[[str], None] | None = None, report: Path | None = None) -> SourceReadout:
    """Read every complex of the sources, as `lba voxelize` does (and `lba predict`, with
    ``options.require_labels`` off).

    Args:
        sources: ATOM3D LBA folders, PDBbind folders, folders of ``<id>/`` subfolders with a
            label table, CSV manifests, or PROTEIN + LIGANDS.sdf (see
            `lba_cli.data.sources.resolve_sources`).
        grid: hydrogens and waters are dropped unless it keeps them.
        fmt: the layout of every source (detected per source when ``auto``).
        options: label field, unit, label table and whether labels are required.
        on_complex: called with each complex id as it is read (for progress).
        report: when no complex can be read, the skipped complexes are written to this CSV
            (`write_skip_report`) before the error; otherwise writing it is the caller's, once
            it knows every complex left out.

    Returns:
        A `SourceReadout`. Later duplicates of an id are skipped with that reason. Receptor
        atoms that are a copy of the ligand's (`lba_cli.data.atoms.drop_ligand_copy`) are
        dropped, with a note.

    Raises:
        DataError: if no complex could be read, listing the first skipped ones.
    """
    records: list[ComplexRecord] = []
    skipped: list[Skipped] = []
    messages: list[str] = []
    seen: dict[str, str] = {}
    given = {Path(s) for s in sources}
    for paths, kind in resolve_sources([Path(s) for s in sources], fmt, options):
        if paths[0] not in given:  # the user pointed above the data: say where it was found
            messages.append(f"reading {paths[0]} ({kind.value} data found there)")
        for item in iter_complexes(paths, kind, grid, options):
            if isinstance(item, SourceNote):
                messages.append(item.text)
                continue
            if on_complex is not None:
                on_complex(item.complex_id)
            if isinstance(item, Skipped):
                skipped.append(item)
            elif item.complex_id in seen:
                skipped.append(Skipped(item.complex_id, item.source, "dedupe",
                                       f"duplicate id, first read from {seen[item.complex_id]}"))
            else:
                seen[item.complex_id] = item.source
                item.protein, dropped = drop_ligand_copy(item.protein, item.ligand)
                if dropped:
                    item.notes.append(f"{dropped} atoms of the receptor file coincide with ligand atoms (same element "
                                      f"within {LIGAND_COPY_TOLERANCE_A:g} Å): dropped as the ligand's copy")
                records.append(item)
    if not records:
        raise nothing_usable(f"no complex could be read from {', '.join(map(str, sources))}", skipped, report,
                             "the sources hold no complexes")
    return SourceReadout(records, skipped, messages)


@dataclass
class BoxedComplexes:
    """Complexes whose box around the ligand holds protein, ready to voxelize.

    Attributes:
        records: the complexes kept (notes about ligand atoms outside the box added).
        centers_A: per complex, the box centre (ligand centroid), float64 (3,), Å.
        atoms: per complex, the atoms that can reach the box (see `crop_complex`).
        skipped: complexes left out (stage ``box``), with the reason.
    """

    records: list[ComplexRecord]
    centers_A: list[np.ndarray]
    atoms: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    skipped: list[Skipped]


def place_in_boxes(records: list[ComplexRecord], grid: GridConfig) -> BoxedComplexes:
    """Crop each complex to its box (`crop_complex`); skip a complex whose box holds no protein
    atom (its ligand is likely in another coordinate frame) and note ligand atoms outside it."""
    out = BoxedComplexes([], [], [], [])
    for record in records:
        center, complex_atoms = crop_complex(record, grid)
        xyz, _, flags = complex_atoms
        inside = np.abs(xyz - center).max(axis=1) < grid.box_size_A / 2
        if not (inside & flags).any():
            out.skipped.append(Skipped(record.complex_id, record.source, "box",
                                       f"no protein atom in the {grid.box_size_A:g} Å box around the ligand: is the "
                                       "ligand in the receptor's coordinate frame?"))
            continue
        ligand_xyz = record.ligand.select("x_A", "y_A", "z_A").to_numpy()
        outside = int((np.abs(ligand_xyz - center).max(axis=1) >= grid.box_size_A / 2).sum())
        if outside:
            record.notes.append(f"{outside} of {record.ligand.height} ligand atoms lie outside the box")
        out.records.append(record)
        out.centers_A.append(center)
        out.atoms.append(complex_atoms)
    return out


def make_grid_set(boxed: BoxedComplexes, grid: GridConfig) -> GridSet:
    """The complexes in memory, laid out as `lba voxelize` stores them (no split; a complex
    without a measured affinity has ``affinity_pk`` NaN), for a dataset that never was a file."""
    atoms = boxed.atoms
    return GridSet(
        ids=np.array([r.complex_id for r in boxed.records], dtype=str),
        affinity_pk=np.array([np.nan if r.affinity_pk is None else r.affinity_pk for r in boxed.records],
                             dtype=np.float32),
        split=np.full(len(boxed.records), "", dtype=str),
        protein_group=np.array([r.protein_group for r in boxed.records], dtype=str),
        source=np.array([r.source for r in boxed.records], dtype=str),
        center_A=np.array(boxed.centers_A, dtype=np.float32).reshape(-1, 3),
        atom_offset=np.concatenate([[0], np.cumsum([len(a[0]) for a in atoms])]).astype(np.int64),
        xyz_A=np.concatenate([a[0] for a in atoms]).astype(np.float32).reshape(-1, 3),
        atomic_number=np.concatenate([a[1] for a in atoms]).astype(np.uint8),
        is_protein=np.concatenate([a[2] for a in atoms]).astype(bool),
        grid=grid,
    )


def build_dataset(
    sources: list[Path],
    output: Path,
    grid: GridConfig,
    *,
    fmt: SourceFormat = SourceFormat.auto,
    split: SplitKind | None = None,
    seed: int = 0,
    on_complex: Callable[[str], None] | None = None,
    label_field: str | None = None,
    label_unit: LabelUnit | str = LabelUnit.pk,
    labels: Path | None = None,
    report: Path | None = None,
) -> BuildReport:
    """Read complexes from every source, voxelize them and write one HDF5 file.

    Args:
        sources: see `read_sources`.
        output: the ``.h5`` to write (atomically).
        grid: voxelization settings.
        fmt: the layout of every source (detected per source when ``auto``).
        split: how to split; None keeps the sources' splits when all have one, else splits
            by protein.
        seed: seed of the protein or random split.
        on_complex: called with each complex id as it is read (for progress).
        label_field, label_unit: the affinity property of an SDF series and its unit.
        labels: a label table for folders of per-complex subfolders (``folders-csv``).
        report: write the skipped complexes to this CSV (`write_skip_report`), also when
            none could be used and nothing else is written.

    Returns:
        A `BuildReport`. Every complex needs a measured affinity (training data): one
        without is skipped (stage ``label``). Receptor atoms that are a copy of the ligand's
        are dropped, with a note (`read_sources`).

    Raises:
        DataError: if no complex could be used (only the report is written then).
    """
    for path in (output, report):
        if path is not None:
            check_writable(path)
    options = SourceOptions(label_field, label_unit, labels=Path(labels) if labels is not None else None)
    readout = read_sources(sources, grid, fmt=fmt, options=options, on_complex=on_complex, report=report)
    skipped, messages = readout.skipped, readout.messages
    boxed = place_in_boxes(readout.records, grid)
    skipped.extend(boxed.skipped)
    if not boxed.records:
        raise nothing_usable(f"no complex could be used from {', '.join(map(str, sources))}", skipped, report)
    records, centers, atoms = boxed.records, boxed.centers_A, boxed.atoms

    ids = [r.complex_id for r in records]
    groups = protein_groups(records)
    predefined = [r.split for r in records]
    if split is None:
        with_split = sum(s is not None for s in predefined)
        split = SplitKind.predefined if with_split == len(records) else SplitKind.protein
        if 0 < with_split < len(records):
            messages.append(f"{with_split} of {len(records)} complexes come with a split and the rest do not: "
                            "all are split anew by protein (--split predefined to refuse)")
    unknown = sum(1 for g in groups if not g)
    if unknown and split is SplitKind.protein:
        messages.append(f"{unknown} complexes have no protein identity (no UniProt id, no chain sequence): each is "
                        "its own group, so the protein split cannot keep them apart from their relatives")
    splits = assign_splits(ids, groups, split, seed, predefined)
    grids = _voxelize_fixed(centers, atoms, grid)
    empty = [name for name, total in zip(grid.channel_names, grids.sum(axis=(0, 2, 3, 4))) if total == 0]
    if empty:
        hydrogen = any("H" in n.split(",") for n in empty)
        messages.append(f"channel(s) {', '.join(empty)} are empty in every complex"
                        + (" (hydrogens are removed unless --keep-hydrogens)" if hydrogen else ""))

    from lba_cli import __version__

    write_grids(
        output, grid, ids=ids, affinity_pk=np.array([r.affinity_pk for r in records]), split=splits,
        protein_group=groups, source=[r.source for r in records], center_A=np.array(centers), atoms=atoms,
        grids=grids, sources=[str(s) for s in sources], lba_version=__version__,
        extra_text={"affinity_measure": [r.measure for r in records],
                    "affinity_operator": [r.operator for r in records],
                    "ligand_smiles": [r.ligand_smiles for r in records],
                    "chain_sequences": [SEQUENCE_SEPARATOR.join(r.sequences) for r in records]},
    )
    if report is not None:
        write_skip_report(report, skipped)
    counts = Counter(splits)
    return BuildReport(
        output=Path(output),
        counts={s: counts.get(s, 0) for s in SPLITS},
        skipped=skipped,
        notes=[(r.complex_id, note) for r in records for note in r.notes],
        leakage=shared_between_splits(splits, groups),
        ligand_leakage=shared_between_splits(splits, [r.ligand_smiles for r in records]),
        unknown_proteins=unknown,
        messages=messages,
        split_kind=split.value,
    )


def nothing_usable(headline: str, skipped: list[Skipped], report: Path | None, if_none: str = "") -> DataError:
    """The error for sources of which no complex can be used, after writing ``report`` (when
    given) with every skipped complex, so the reasons are on disk even though nothing else is.

    Args:
        headline: what failed, e.g. "no complex could be read from a.csv".
        skipped: every complex left out so far.
        report: the skip report to write (`write_skip_report`), or None.
        if_none: what to say when nothing was skipped either.

    Returns:
        A `DataError` naming the first ten skipped complexes (for the caller to raise).

    Raises:
        DataError: if the report cannot be written.
    """
    if report is not None:
        write_skip_report(report, skipped)
    return DataError(f"{headline}\n" + _skip_summary(skipped, report, if_none))


def _skip_summary(skipped: list[Skipped], report: Path | None, if_none: str) -> str:
    """The skipped complexes in a few lines for an error message (the report has them all)."""
    if not skipped:
        return if_none
    shown = [f"  {s.complex_id} ({s.stage}): {s.reason.splitlines()[0]}" for s in skipped[:10]]
    more = f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    where = f"\nall {len(skipped)} listed with their reasons in {report}" if report is not None else (
        "\n(--report FILE lists them all)" if len(skipped) > 10 else "")
    return f"{len(skipped)} skipped:\n" + "\n".join(shown) + more + where


def write_skip_report(path: Path, skipped: list[Skipped]) -> None:
    """Write the skipped complexes as CSV (columns `SKIP_REPORT_COLUMNS`), atomically.

    Raises:
        DataError: if the file cannot be written.
    """
    try:
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(SKIP_REPORT_COLUMNS)
            writer.writerows((s.complex_id, s.source, s.stage, s.reason) for s in skipped)
    except OSError as error:
        raise DataError(f"cannot write the skip report {path}: {error.strerror or error}") from None
