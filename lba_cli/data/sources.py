"""Where complexes come from: ATOM3D LBA LMDB files and PDBbind folders.

Every reader yields, for each complex it finds, either a `ComplexRecord` or a `Skipped`
entry with the stage and the reason, so that nothing is dropped silently.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from lba_cli.choices import SPLITS, SourceFormat
from lba_cli.config import GridConfig
from lba_cli.data.affinity import parse_affinity
from lba_cli.data.atoms import (
    WATER_NAMES,
    atomic_number,
    chain_sequences,
    make_atom_table,
    read_ligand_atoms,
    read_structure,
    structure_atoms,
)
from lba_cli.errors import DataError, LbaError

__all__ = [
    "ComplexRecord",
    "Skipped",
    "SourceNote",
    "find_atom3d_lmdbs",
    "iter_atom3d",
    "iter_pdbbind",
    "read_pdbbind_index",
    "iter_complexes",
    "resolve_sources",
    "canonical_smiles",
    "read_complex_files",
]

@dataclass
class ComplexRecord:
    """One protein-ligand complex, read and filtered, before voxelization.

    Attributes:
        complex_id: e.g. the PDB code ``1a30``.
        affinity_pk: -log10 of Kd/Ki in mol/L.
        protein: atom table of the receptor (see `lba_cli.data.atoms.ATOM_SCHEMA`).
        ligand: atom table of the ligand.
        split: ``train``, ``val``, ``test`` or None when the source defines none.
        protein_group: the protein's identity for leakage-free splits (UniProt id), or "".
        source: the file or folder it was read from.
        notes: how it was read when that matters (e.g. "ligand read unsanitised").
        measure: ``Kd``, ``Ki``, ``IC50``, ... when known ("" otherwise).
        operator: ``=``, ``<``, ``>``, ``<=``, ``>=`` or ``~`` when known.
        sequences: the receptor's chain sequences (one-letter), for sequence-identity splits.
        ligand_smiles: canonical SMILES of the ligand when known (leakage check).
    """

    complex_id: str
    affinity_pk: float
    protein: pl.DataFrame
    ligand: pl.DataFrame
    split: str | None = None
    protein_group: str = ""
    source: str = ""
    notes: list[str] = field(default_factory=list)
    measure: str = ""
    operator: str = ""
    sequences: tuple[str, ...] = ()
    ligand_smiles: str = ""


@dataclass(frozen=True)
class SourceNote:
    """Something about a whole source the user should know (e.g. index entries without files)."""

    text: str


@dataclass(frozen=True)
class Skipped:
    """A complex that could not be used, and why."""

    complex_id: str
    source: str
    stage: str
    reason: str


def _candidate_roots(path: Path, depth: int = 3) -> list[tuple[Path, SourceFormat]]:
    """Data roots at most ``depth`` levels below ``path`` (for a user who pointed too high)."""
    found: list[tuple[Path, SourceFormat]] = []
    frontier = [path]
    for _ in range(depth):
        nxt = []
        for folder in frontier:
            for child in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
                if find_atom3d_lmdbs(child, strict=False):
                    found.append((child, SourceFormat.atom3d))
                elif _is_pdbbind_root(child):
                    found.append((child, SourceFormat.pdbbind))
                else:
                    nxt.append(child)
        frontier = nxt[:200]
    # an LMDB split folder (data/test) is found below its split root too: keep the outermost
    roots = []
    for candidate, fmt in found:
        if not any(candidate != other and other in candidate.parents for other, _ in found):
            roots.append((candidate, fmt))
    return roots


def resolve_sources(paths: list[Path], fmt: SourceFormat) -> list[tuple[tuple[Path, ...], SourceFormat]]:
    """Decide what each source is: [(paths, format)], one entry per source.

    ``auto`` rules: a ``.csv`` file is a manifest; a structure file followed by an ``.sdf``
    is a series (protein, ligands); ``data.mdb`` or a folder holding LMDB data is ATOM3D; a
    folder with an ``INDEX_*`` file is PDBbind. A folder above exactly one data root is
    taken as that root (with a note); above several, the error lists them.

    Raises:
        DataError: naming the path and what was expected.
    """
    from lba_cli.data.atoms import is_structure_file

    paths = [Path(p) for p in paths]
    for path in paths:
        if not path.exists():
            raise DataError(f"source not found: {path}")
    if fmt is SourceFormat.sdf_series or (fmt is SourceFormat.auto and len(paths) == 2 and is_structure_file(paths[0])
                                          and paths[1].name.lower().endswith(".sdf")):
        if len(paths) != 2 or not paths[1].name.lower().endswith((".sdf", ".sdf.gz")):
            raise DataError("--format sdf-series takes two sources: PROTEIN (pdb/cif/pdbqt) and LIGANDS.sdf")
        return [((paths[0], paths[1]), SourceFormat.sdf_series)]
    out = []
    for path in paths:
        kind = fmt
        if fmt is SourceFormat.auto:
            kind = _detect_one(path)
        if kind is SourceFormat.auto:
            roots = _candidate_roots(path)
            if len(roots) == 1:
                path, kind = roots[0]
            else:
                listed = "\n  ".join(f"{p}  ({f.value})" for p, f in roots[:10])
                hint = f"\nfound data below it; give one of:\n  {listed}" if roots else ""
                raise DataError(
                    f"cannot tell what {path} holds\n"
                    "expected: an ATOM3D LBA folder (data/{train,val,test}/data.mdb or one LMDB folder), a PDBbind "
                    "folder (<id>/<id>_protein.pdb and an index/INDEX_* file) or a CSV manifest" + hint)
        out.append(((path,), kind))
    return out


def _detect_one(path: Path) -> SourceFormat:
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".csv"):
            return SourceFormat.csv
        if name == "data.mdb":
            return SourceFormat.atom3d
        return SourceFormat.auto
    if find_atom3d_lmdbs(path, strict=False):
        return SourceFormat.atom3d
    if _is_pdbbind_root(path):
        return SourceFormat.pdbbind
    return SourceFormat.auto


def _is_pdbbind_root(path: Path) -> bool:
    """An INDEX_* file and at least one <id>/<id>_protein|pocket.pdb[.gz] folder."""
    if _find_pdbbind_index(path) is None:
        return False
    for folder in path.iterdir():
        if folder.is_dir() and _CODE.match(folder.name.lower()) and any(folder.glob(f"{folder.name}_p*.pdb*")):
            return True
    return False


# ---------------------------------------------------------------------------- ATOM3D


def _is_lmdb(path: Path) -> bool:
    return (path / "data.mdb").is_file()


def find_atom3d_lmdbs(path: Path, *, strict: bool = True) -> dict[str | None, Path]:  # noqa: C901
    """Locate the LMDB folders of an ATOM3D LBA dataset.

    Accepts a split root (``<root>/data/{train,val,test}``), its ``data`` folder, one LMDB
    folder (its split taken from its name when that is train, val or test), or a
    ``data.mdb`` file.

    Returns:
        split name (or None) -> LMDB folder. Empty when nothing is found and not ``strict``.

    Raises:
        DataError: when ``strict`` and nothing is found, naming the LMDB folders found
            further down (the user pointed one level too high) or the folder above.
    """
    path = path.parent if path.name == "data.mdb" else path
    if _is_lmdb(path):
        return {path.name if path.name in SPLITS else None: path}
    for root in (path / "data", path):
        found = {split: root / split for split in SPLITS if _is_lmdb(root / split)}
        if found:
            return found
    if not strict:
        return {}
    below = sorted(p.parent for p in path.glob("*/*/*/data.mdb")) + sorted(p.parent for p in path.glob("*/*/data.mdb"))
    hint = ""
    if below:
        roots = sorted({str(p.parent.parent) if p.name in SPLITS and p.parent.name == "data" else str(p) for p in below})
        hint = "\nfound LMDB data below it; give one of:\n  " + "\n  ".join(roots[:10])
    raise DataError(f"no ATOM3D LMDB data in {path}\nexpected: a folder with data/train, data/val, data/test "
                    f"(each holding data.mdb) or one LMDB folder{hint}")


def _atom3d_atoms(table: dict, is_protein: bool, grid: GridConfig) -> pl.DataFrame:
    columns, rows = table["columns"], table["data"]
    col = {name: i for i, name in enumerate(columns)}
    ix, iy, iz, ie, ir = col["x"], col["y"], col["z"], col["element"], col["resname"]
    ia, iocc = col.get("altloc"), col.get("occupancy")
    keep_rows = []
    best_altloc: dict[tuple, int] = {}
    for row in rows:
        element = str(row[ie]).strip().upper()
        if element in ("H", "D") and not grid.keep_hydrogens:
            continue
        resname = row[ir]
        if not grid.keep_water and isinstance(resname, str) and resname.strip().upper() in WATER_NAMES:
            continue
        if ia is not None and isinstance(row[ia], str) and row[ia].strip():
            key = (row[col["chain"]], row[col["residue"]], row[col["insertion_code"]], row[col["name"]])
            seen = best_altloc.get(key)
            if seen is not None:
                if iocc is not None and row[iocc] > keep_rows[seen][iocc]:
                    keep_rows[seen] = row
                continue
            best_altloc[key] = len(keep_rows)
        keep_rows.append(row)
    xyz = np.array([(r[ix], r[iy], r[iz]) for r in keep_rows], dtype=np.float64).reshape(-1, 3)
    numbers = np.array([atomic_number(str(r[ie]).strip().upper()) for r in keep_rows], dtype=np.uint8)
    return make_atom_table(xyz, numbers, is_protein)


def _atom3d_sequences(seq: object) -> tuple[str, ...]:
    """ATOM3D stores [[chain description, sequence], ...]; keep the sequences."""
    if not isinstance(seq, list):
        return ()
    return tuple(item[1] for item in seq if isinstance(item, list) and len(item) == 2 and isinstance(item[1], str)
                 and len(item[1]) >= 10)


def canonical_smiles(smiles: str) -> str:
    """RDKit canonical SMILES without explicit hydrogens ("" when unreadable)."""
    if not smiles:
        return ""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    return Chem.MolToSmiles(Chem.RemoveHs(mol)) if mol is not None else ""


def iter_atom3d(path: Path, grid: GridConfig) -> Iterator[ComplexRecord | Skipped]:
    """Read every complex of an ATOM3D LBA dataset (read-only, no lock file).

    The receptor is ``atoms_protein`` (the whole protein, not the pocket) and the label is
    ``scores["neglog_aff"]`` (pK). The split is the LMDB folder's name.
    """
    import lmdb

    for split, lmdb_path in find_atom3d_lmdbs(path).items():
        try:
            env = lmdb.open(str(lmdb_path), readonly=True, lock=False, subdir=True, readahead=False)
        except lmdb.Error as error:
            raise DataError(f"cannot open LMDB {lmdb_path}: {error}") from None
        with env.begin(write=False) as txn:
            raw_count = txn.get(b"num_examples")
            if raw_count is None:
                raise DataError(f"{lmdb_path} is an LMDB but not an ATOM3D dataset (no num_examples key)")
            for index in range(int(raw_count)):
                key = str(index)
                source = f"{lmdb_path}#{key}"
                value = txn.get(key.encode())
                if value is None:
                    yield Skipped(key, source, "read", "record missing from LMDB")
                    continue
                try:
                    record = json.loads(gzip.decompress(value))
                except (OSError, ValueError) as error:
                    yield Skipped(key, source, "read", f"undecodable record: {error}")
                    continue
                complex_id = str(record.get("id", key))
                try:
                    pk = float(record["scores"]["neglog_aff"])
                    protein = _atom3d_atoms(record["atoms_protein"], True, grid)
                    ligand = _atom3d_atoms(record["atoms_ligand"], False, grid)
                except (KeyError, TypeError, ValueError) as error:
                    yield Skipped(complex_id, source, "parse", f"malformed record: {error!r}")
                    continue
                if not np.isfinite(pk):
                    yield Skipped(complex_id, source, "label", f"label is not a number: {pk!r}")
                    continue
                if ligand.height == 0 or protein.height == 0:
                    yield Skipped(complex_id, source, "parse", "no ligand atoms" if ligand.height == 0 else "no protein atoms")
                    continue
                yield ComplexRecord(complex_id, pk, protein, ligand, split=split, source=source,
                                    sequences=_atom3d_sequences(record.get("seq")),
                                    ligand_smiles=canonical_smiles(record.get("smiles") or ""))
        env.close()


# --------------------------------------------------------------------------- PDBbind


def _find_pdbbind_index(root: Path) -> Path | None:
    candidates = sorted(root.glob("index/INDEX_*data*")) + sorted(root.glob("INDEX_*data*"))
    candidates += sorted(root.glob("index/INDEX_*")) + sorted(root.glob("INDEX_*"))
    return next((p for p in candidates if p.is_file() and "name" not in p.name.lower()), None)


_CODE = re.compile(r"^[0-9][0-9a-z]{3}$")


def read_pdbbind_index(path: Path) -> pl.DataFrame:
    """Read a PDBbind affinity index (standard with a pK column, or the 2021 demo variant).

    Returns:
        Frame with columns complex_id (Utf8), affinity_pk (Float64), measure (Utf8),
        operator (Utf8), raw (Utf8). With a ``-logKd/Ki`` column, its value is the pK;
        otherwise the pK is computed from the measurement (``Ki=50uM`` -> 4.30).

    Raises:
        DataError: naming the line that cannot be read.
    """
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("//")[0].split()
        if len(fields) < 4 or not _CODE.match(fields[0].lower()):
            raise DataError(f"{path}:{number}: cannot read index line {line!r}\n"
                            "expected: PDB code, resolution, year, [pK,] measurement such as Kd=10nM")
        measurement = fields[4] if len(fields) >= 5 and _is_number(fields[3]) else fields[3]
        try:
            affinity = parse_affinity(measurement)
        except DataError as error:
            raise DataError(f"{path}:{number}: {error}") from None
        pk = float(fields[3]) if len(fields) >= 5 and _is_number(fields[3]) else affinity.affinity_pk
        rows.append((fields[0].lower(), pk, affinity.measure, affinity.operator, measurement))
    return pl.DataFrame(rows, schema={"complex_id": pl.Utf8, "affinity_pk": pl.Float64, "measure": pl.Utf8,
                                      "operator": pl.Utf8, "raw": pl.Utf8}, orient="row")


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


def read_complex_files(protein_path: Path, ligand_paths: list[Path], grid: GridConfig):
    """Receptor (structure and atoms) and ligand of one complex, filtered as ``grid`` says.

    Raises:
        DataError: the reason the complex cannot be used.
    """
    structure = read_structure(protein_path)
    protein = structure_atoms(structure, keep_hydrogens=grid.keep_hydrogens, keep_water=grid.keep_water)
    if protein.height == 0:
        raise DataError(f"no protein atoms in {protein_path.name}")
    return structure, protein, read_ligand_atoms(ligand_paths, keep_hydrogens=grid.keep_hydrogens)


def _first_existing(*paths: Path) -> Path | None:
    return next((p for p in paths if p.exists()), None)


def iter_pdbbind(root: Path, grid: GridConfig) -> Iterator[ComplexRecord | Skipped | SourceNote]:
    """Read a PDBbind folder: ``<root>/<id>/<id>_protein.pdb[.gz]`` + ``<id>_ligand.{sdf,mol2}``.

    The receptor is the whole protein file (the pocket file only when there is no protein
    file, with a note). Every folder is accounted for: a folder without an index entry is
    skipped with that reason.

    Raises:
        DataError: if the folder has no index file.
    """
    index_path = _find_pdbbind_index(root)
    if index_path is None:
        raise DataError(f"no PDBbind index in {root}\nexpected: index/INDEX_*data* (e.g. INDEX_refined_data.2019)")
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
        if complex_id not in index:
            yield Skipped(complex_id, source, "label", f"no entry in {index_path.name}")
            continue
        stem = folder / folder.name
        protein_path = _first_existing(*(Path(f"{stem}_{part}.pdb{gz}") for part in ("protein", "pocket") for gz in ("", ".gz")))
        if protein_path is None:
            yield Skipped(complex_id, source, "read", "no <id>_protein.pdb[.gz] or <id>_pocket.pdb[.gz]")
            continue
        try:
            structure, protein, ligand = read_complex_files(
                protein_path, [Path(f"{stem}_ligand.sdf"), Path(f"{stem}_ligand.mol2")], grid)
        except LbaError as error:
            yield Skipped(complex_id, source, "read", str(error))
            continue
        notes = []
        if "pocket" in protein_path.name:
            notes.append("receptor from the pocket file")
        if not ligand.sanitized:
            notes.append(f"ligand read unsanitised from {ligand.path.name}")
        elif not ligand.path.name.endswith(".sdf"):
            notes.append(f"ligand read from {ligand.path.name}")
        entry = index[complex_id]
        yield ComplexRecord(complex_id, entry["affinity_pk"], protein, ligand.atoms, split=None,
                            protein_group=groups.get(complex_id, ""), source=source, notes=notes,
                            measure=entry["measure"], operator=entry["operator"],
                            sequences=tuple(chain_sequences(structure)), ligand_smiles=ligand.smiles or "")


def iter_complexes(paths: tuple[Path, ...], fmt: SourceFormat, grid: GridConfig, *, label_field: str | None = None,
                   label_unit: str = "pK") -> Iterator[ComplexRecord | Skipped]:
    """Dispatch one resolved source (see `resolve_sources`) to its reader."""
    from lba_cli.data.manifests import iter_csv_manifest, iter_sdf_series

    if fmt is SourceFormat.atom3d:
        return iter_atom3d(paths[0], grid)
    if fmt is SourceFormat.csv:
        return iter_csv_manifest(paths[0], grid)
    if fmt is SourceFormat.sdf_series:
        return iter_sdf_series(paths[0], paths[1], grid, label_field, label_unit)
    return iter_pdbbind(paths[0], grid)
