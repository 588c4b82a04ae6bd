"""Where complexes come from: one module per input format, and the registry that picks one.

Each format module offers ``detect(path) -> bool`` (does this path hold data in my format?)
and ``iter_records(paths, grid, options)``, which yields a `ComplexRecord` or a `Skipped`
entry for every complex it finds (and `SourceNote`s about the whole source), so that nothing
is dropped silently. `READERS` maps each `SourceFormat` to its module's two functions; the
order of `READERS` is the order in which ``--format auto`` tries them.

A new format: a module here with ``detect`` and ``iter_records``, a value in
`lba_cli.choices.SourceFormat`, and one entry in `READERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lba_cli.choices import SourceFormat
from lba_cli.config import GridConfig
from lba_cli.data.atoms import is_structure_file
from lba_cli.data.records import SourceItem, SourceOptions
from lba_cli.data.sources import atom3d, csv_manifest, folders_csv, pdbbind, sdf_series
from lba_cli.errors import DataError

__all__ = ["Reader", "READERS", "resolve_sources", "iter_complexes"]

_SEARCH_DEPTH = 3  # folders below a path too high up that are searched for data roots
_SEARCH_WIDTH = 200  # folders searched per level


@dataclass(frozen=True)
class Reader:
    """How one input format is recognised and read.

    Attributes:
        detect: ``detect(path) -> bool``: whether ``path`` holds data in this format.
        iter_records: ``iter_records(paths, grid, options)`` -> records, skips and notes.
        after_protein: the source is two paths, a protein structure file and then the path
            ``detect`` recognises (e.g. ``PROTEIN LIGANDS.sdf``); named in messages as
            ``second_path``.
        second_path: how messages name the second path of such a source.
    """

    detect: Callable[[Path], bool]
    iter_records: Callable[..., Iterator[SourceItem]]
    after_protein: bool = False
    second_path: str = ""


READERS: dict[SourceFormat, Reader] = {
    SourceFormat.atom3d: Reader(atom3d.detect, atom3d.iter_records),
    SourceFormat.pdbbind: Reader(pdbbind.detect, pdbbind.iter_records),
    SourceFormat.folders_csv: Reader(folders_csv.detect, folders_csv.iter_records),
    SourceFormat.csv: Reader(csv_manifest.detect, csv_manifest.iter_records),
    SourceFormat.sdf_series: Reader(sdf_series.detect, sdf_series.iter_records, after_protein=True,
                                    second_path="LIGANDS.sdf"),
}


def _detect_one(path: Path) -> SourceFormat:
    """The format of a single-path source, or ``auto`` when no reader recognises it."""
    return next((fmt for fmt, reader in READERS.items() if not reader.after_protein and reader.detect(path)),
                SourceFormat.auto)


def _candidate_roots(path: Path) -> list[tuple[Path, SourceFormat]]:
    """Data roots at most `_SEARCH_DEPTH` levels below ``path`` (for a user who pointed too high)."""
    found: list[tuple[Path, SourceFormat]] = []
    frontier = [path]
    for _ in range(_SEARCH_DEPTH):
        nxt = []
        for folder in frontier:
            for child in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
                fmt = _detect_one(child)
                if fmt is SourceFormat.auto:
                    nxt.append(child)
                else:
                    found.append((child, fmt))
        frontier = nxt[:_SEARCH_WIDTH]
    # an LMDB split folder (data/test) is found below its split root too: keep the outermost
    return [(candidate, fmt) for candidate, fmt in found
            if not any(candidate != other and other in candidate.parents for other, _ in found)]


def _paired_source(paths: list[Path], fmt: SourceFormat) -> tuple[tuple[Path, ...], SourceFormat] | None:
    """The one source made of ``PROTEIN SECOND`` when ``fmt`` names such a format or ``auto``
    recognises one; None otherwise."""
    for candidate, reader in READERS.items():
        if not reader.after_protein:
            continue
        looks_paired = len(paths) == 2 and is_structure_file(paths[0]) and reader.detect(paths[1])
        if fmt is candidate:
            if not looks_paired:
                raise DataError(f"--format {candidate.value} takes two sources: PROTEIN (pdb/cif/pdbqt) and "
                                f"{reader.second_path}")
            return (paths[0], paths[1]), candidate
        if fmt is SourceFormat.auto and looks_paired:
            return (paths[0], paths[1]), candidate
    return None


def resolve_sources(paths: list[Path], fmt: SourceFormat,
                    options: SourceOptions = SourceOptions()) -> list[tuple[tuple[Path, ...], SourceFormat]]:
    """Decide what each source is: [(paths, format)], one entry per source.

    ``auto`` asks each reader's ``detect`` in the order of `READERS`: a ``.csv`` file is a
    manifest; a structure file followed by an ``.sdf`` is a series (protein, ligands);
    ``data.mdb`` or a folder holding LMDB data is ATOM3D; a folder with an ``INDEX_*`` file is
    PDBbind; a folder of ``<id>/`` subfolders with a label table is ``folders-csv`` (also
    whenever ``options.labels`` names the table). A folder above exactly one data root is taken
    as that root (with a note); above several, the error lists them.

    Raises:
        DataError: naming the path and what was expected.
    """
    paths = [Path(p) for p in paths]
    for path in paths:
        if not path.exists():
            raise DataError(f"source not found: {path}")
    if options.labels is not None and fmt not in (SourceFormat.auto, SourceFormat.folders_csv):
        raise DataError(f"--labels names the label table of a folder of <id>/ subfolders (--format "
                        f"{SourceFormat.folders_csv.value}), not of --format {fmt.value}")
    paired = _paired_source(paths, fmt)
    if paired is not None:
        return [paired]
    out = []
    for path in paths:
        if options.labels is not None and fmt is SourceFormat.auto and folders_csv.complex_folders(path):
            out.append(((path,), SourceFormat.folders_csv))
            continue
        kind = _detect_one(path) if fmt is SourceFormat.auto else fmt
        if kind is SourceFormat.auto:
            roots = _candidate_roots(path)
            if len(roots) == 1:
                path, kind = roots[0]
            else:
                listed = "\n  ".join(f"{p}  ({f.value})" for p, f in roots[:10])
                hint = f"\nfound data below it; give one of:\n  {listed}" if roots else ""
                if not roots and any(r.after_protein and r.detect(path) for r in READERS.values()):
                    hint = (f"\n{path.name} looks like the ligands of a series: give the protein first, "
                            f"lba voxelize PROTEIN.pdb {path} --label-field NAME")
                raise DataError(
                    f"cannot tell what {path} holds\n"
                    "expected: an ATOM3D LBA folder (data/{train,val,test}/data.mdb or one LMDB folder), a PDBbind "
                    "folder (<id>/<id>_protein.pdb and an index/INDEX_* file), a folder of <id>/ subfolders with a "
                    "label table (labels.csv with id and pK columns, or --labels FILE) or a CSV manifest" + hint)
        out.append(((path,), kind))
    if options.labels is not None and not any(kind is SourceFormat.folders_csv for _, kind in out):
        raise DataError(f"--labels {options.labels}: no source is a folder of <id>/ subfolders "
                        "(<id>/<id>_protein.pdb or _pocket.pdb)")
    return out


def iter_complexes(paths: tuple[Path, ...], fmt: SourceFormat, grid: GridConfig,
                   options: SourceOptions = SourceOptions()) -> Iterator[SourceItem]:
    """Read one resolved source (see `resolve_sources`) with its format's reader."""
    return READERS[fmt].iter_records(paths, grid, options)
