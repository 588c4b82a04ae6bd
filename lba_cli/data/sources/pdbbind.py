"""PDBbind folders: ``<root>/<id>/<id>_protein.pdb[.gz]``, ``<id>_ligand.{sdf,mol2}`` and an
affinity index (``index/INDEX_*data*``: the standard one with a pK column, or the 2021 demo
variant without), optionally a name index with UniProt ids (``INDEX_*name*``)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from lba_cli.config import GridConfig
from lba_cli.data.affinity import parse_affinity
from lba_cli.data.atoms import chain_sequences, ligand_notes, read_complex_files
from lba_cli.data.records import ComplexRecord, Skipped, SourceItem, SourceNote, SourceOptions
from lba_cli.errors import DataError, LbaError

__all__ = ["detect", "iter_records", "read_pdbbind_index", "read_complex_folder"]

_CODE = re.compile(r"^[0-9][0-9a-z]{3}$")


def _find_index(root: Path) -> Path | None:
    candidates = sorted(root.glob("index/INDEX_*data*")) + sorted(root.glob("INDEX_*data*"))
    candidates += sorted(root.glob("index/INDEX_*")) + sorted(root.glob("INDEX_*"))
    return next((p for p in candidates if p.is_file() and "name" not in p.name.lower()), None)


def detect(path: Path) -> bool:
    """True for a folder with an INDEX_* file and at least one <id>/<id>_protein|pocket.pdb[.gz]."""
    if not path.is_dir() or _find_index(path) is None:
        return False
    for folder in path.iterdir():
        if folder.is_dir() and _CODE.match(folder.name.lower()) and any(folder.glob(f"{folder.name}_p*.pdb*")):
            return True
    return False


def read_pdbbind_index(path: Path) -> pl.DataFrame:
    """Read a PDBbind affinity index (standard with a pK column, or the 2021 demo variant).

    Returns:
        Frame with columns complex_id (Utf8), affinity_pk (Float64), measure (Utf8),
        operator (Utf8), raw (Utf8), note (Utf8: how a range or list of measurements was
        read, `lba_cli.data.affinity.AFFINITY_RULE`), problem (Utf8: why the measurement
        cannot be read; "" when it can, else affinity_pk is NaN). With a ``-logKd/Ki``
        column, its value is the pK; otherwise the pK is computed from the measurement
        (``Ki=50uM`` -> 4.30).

    Raises:
        DataError: naming the line that is not an index line at all.
    """
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("//")[0].split()
        if len(fields) < 4 or not _CODE.match(fields[0].lower()):
            raise DataError(f"{path}:{number}: cannot read index line {line!r}\n"
                            "expected: PDB code, resolution, year, [pK,] measurement such as Kd=10nM")
        has_pk = len(fields) >= 5 and _is_number(fields[3])
        measurement = fields[4] if has_pk else fields[3]
        try:
            affinity = parse_affinity(measurement)
        except DataError as error:
            pk = float(fields[3]) if has_pk else math.nan
            rows.append((fields[0].lower(), pk, "", "", measurement, "", "" if has_pk else f"{path.name}:{number}: "
                         + str(error)))
            continue
        pk = float(fields[3]) if has_pk else affinity.affinity_pk
        rows.append((fields[0].lower(), pk, affinity.measure, affinity.operator, measurement,
                     "" if has_pk else affinity.note, ""))
    return pl.DataFrame(rows, schema={"complex_id": pl.Utf8, "affinity_pk": pl.Float64, "measure": pl.Utf8,
                                      "operator": pl.Utf8, "raw": pl.Utf8, "note": pl.Utf8, "problem": pl.Utf8},
                        orient="row")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_name_index(root: Path) -> dict[str, str]:
    """complex id -> UniProt id from an INDEX_*name* file, when there is one."""
    for path in sorted(root.glob("index/INDEX_*name*")) + sorted(root.glob("INDEX_*name*")):
        groups = {}
        for line in path.read_text(errors="replace").splitlines():
            fields = line.split()
            if len(fields) >= 3 and not line.startswith("#") and fields[2] not in ("------", ""):
                groups[fields[0].lower()] = fields[2]
        return groups
    return {}


def _first_existing(*paths: Path) -> Path | None:
    return next((p for p in paths if p.exists()), None)


def read_complex_folder(folder: Path, grid: GridConfig) -> tuple[object, pl.DataFrame, object, list[str]]:
    """The receptor and ligand of one ``<id>/`` folder: ``<id>_protein.pdb[.gz]`` (the pocket
    file only when there is no protein file, with a note) and ``<id>_ligand.sdf`` or
    ``.mol2`` (gzip or not; `lba_cli.data.atoms.read_ligand_atoms`).

    Returns:
        The receptor's gemmi structure, its atom table, the `LigandRead` and notes.

    Raises:
        DataError: saying which file is missing or unreadable.
    """
    stem = folder / folder.name
    protein_path = _first_existing(*(Path(f"{stem}_{part}.{suffix}{gz}") for part in ("protein", "pocket")
                                     for suffix in ("pdb", "cif", "ent") for gz in ("", ".gz")))
    if protein_path is None:
        raise DataError(f"no {folder.name}_protein.pdb[.gz] or {folder.name}_pocket.pdb[.gz] in {folder}")
    ligand_paths = [Path(f"{stem}_ligand.{suffix}{gz}") for suffix in ("sdf", "mol2") for gz in ("", ".gz")]
    existing = [p for p in ligand_paths if p.exists()]
    if not existing:
        raise DataError(f"no {folder.name}_ligand.sdf or .mol2 (gzip or not) in {folder}")
    structure, protein, ligand = read_complex_files(protein_path, existing, grid)
    notes = []
    if "pocket" in protein_path.name:
        notes.append("receptor from the pocket file")
    how = ligand_notes(ligand)
    notes += how or ([f"ligand read from {ligand.path.name}"] if ".sdf" not in ligand.path.name.lower() else [])
    return structure, protein, ligand, notes


def iter_records(paths: tuple[Path, ...], grid: GridConfig,
                 options: SourceOptions = SourceOptions()) -> Iterator[SourceItem]:
    """Read a PDBbind folder: ``<root>/<id>/<id>_protein.pdb[.gz]`` + ``<id>_ligand.{sdf,mol2}``.

    The receptor is the whole protein file (the pocket file only when there is no protein
    file, with a note). Every folder is accounted for: a folder without an index entry, or
    whose measurement cannot be read, is skipped with that reason (when labels are required).

    Args:
        paths: one path, the PDBbind root.
        grid: hydrogens and waters are dropped unless it keeps them.
        options: ``require_labels`` (off: a folder without an index entry, or whose
            measurement cannot be read, is read without a measured pK, the latter with a note).

    Raises:
        DataError: if the folder has no index file.
    """
    root = paths[0]
    index_path = _find_index(root)
    if index_path is None:
        raise DataError(f"no PDBbind index in {root}\nexpected: index/INDEX_*data* (e.g. INDEX_refined_data.2019), "
                        "or a label table: lba voxelize FOLDER --labels labels.csv")
    index = {row["complex_id"]: row for row in read_pdbbind_index(index_path).iter_rows(named=True)}
    groups = _read_name_index(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and _CODE.match(p.name.lower()))
    without_folder = sorted(set(index) - {f.name.lower() for f in folders})
    if without_folder:
        yield SourceNote(f"{len(without_folder)} entries of {index_path.name} have no structure folder in {root} "
                         f"(e.g. {', '.join(without_folder[:3])}); an index may list more than a folder holds")
    for folder in folders:
        complex_id = folder.name.lower()
        source = str(folder)
        entry = index.get(complex_id)
        problem = (f"no entry in {index_path.name}" if entry is None
                   else f"unreadable label: {entry['problem']}" if entry["problem"] else "")
        if problem:
            skipped = options.unlabelled(complex_id, source, problem)
            if skipped is not None:
                yield skipped
                continue
        try:
            structure, protein, ligand, notes = read_complex_folder(folder, grid)
        except LbaError as error:
            yield Skipped(complex_id, source, "read", str(error))
            continue
        if entry is not None and entry["note"]:
            notes.insert(0, entry["note"])
        if entry is not None and entry["problem"]:
            notes.append(f"read without a measured pK ({problem})")
        if entry is None or entry["problem"]:
            entry = {"affinity_pk": None, "measure": "", "operator": ""}
        yield ComplexRecord(complex_id, entry["affinity_pk"], protein, ligand.atoms, split=None,
                            protein_group=groups.get(complex_id, ""), source=source, notes=notes,
                            measure=entry["measure"], operator=entry["operator"],
                            sequences=tuple(chain_sequences(structure)), ligand_smiles=ligand.smiles or "")
