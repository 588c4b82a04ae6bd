"""ATOM3D LBA: gzipped JSON records in LMDB folders, one per split.

The layout is the benchmark's own (Townshend et al., "ATOM3D: Tasks on Molecules in Three
Dimensions", NeurIPS 2021 Datasets and Benchmarks): a split root holds
``data/{train,val,test}/data.mdb``; each record has ``atoms_protein``, ``atoms_ligand``
(atom tables with x, y, z, element, resname, ...), ``scores["neglog_aff"]`` (pK), ``seq``
and ``smiles``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from lba_cli.choices import SPLITS
from lba_cli.config import GridConfig
from lba_cli.data.atoms import WATER_NAMES, atomic_number, make_atom_table
from lba_cli.data.records import ComplexRecord, Skipped, SourceItem, SourceOptions
from lba_cli.errors import DataError

__all__ = ["detect", "iter_records", "find_atom3d_lmdbs", "canonical_smiles"]


def _is_lmdb(path: Path) -> bool:
    return (path / "data.mdb").is_file()


def detect(path: Path) -> bool:
    """True for a ``data.mdb`` file, an LMDB folder, or a folder above the split LMDBs."""
    if path.is_file():
        return path.name == "data.mdb"
    return bool(find_atom3d_lmdbs(path, strict=False))


def find_atom3d_lmdbs(path: Path, *, strict: bool = True) -> dict[str | None, Path]:
    """Locate the LMDB folders of an ATOM3D LBA dataset.

    Accepts a split root (``<root>/data/{train,val,test}``), its ``data`` folder, one LMDB
    folder (its split taken from its name when that is train, val or test), or a
    ``data.mdb`` file.

    Returns:
        split name (or None) -> LMDB folder. Empty when nothing is found and not ``strict``.

    Raises:
        DataError: when ``strict`` and nothing is found, naming the LMDB folders found
            further down (the user pointed one level too high).
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
        roots = sorted({str(p.parent.parent) if p.name in SPLITS and p.parent.name == "data" else str(p)
                        for p in below})
        hint = "\nfound LMDB data below it; give one of:\n  " + "\n  ".join(roots[:10])
    raise DataError(f"no ATOM3D LMDB data in {path}\nexpected: a folder with data/train, data/val, data/test "
                    f"(each holding data.mdb) or one LMDB folder{hint}")


def _atoms(table: dict, is_protein: bool, grid: GridConfig) -> pl.DataFrame:
    """An ATOM3D atom table -> our atom table, without hydrogens and waters unless kept, and
    with only the most occupied of alternate locations."""
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


def _label(record: dict) -> tuple[float | None, str]:
    """The record's pK (``scores["neglog_aff"]``), or None and what is wrong with it."""
    try:
        pk = float(record["scores"]["neglog_aff"])
    except (KeyError, TypeError, ValueError) as error:
        return None, f"no readable label (scores.neglog_aff): {error!r}"
    if not np.isfinite(pk):
        return None, f"label is not a number: {pk!r}"
    return pk, ""


def _sequences(seq: object) -> tuple[str, ...]:
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


def iter_records(paths: tuple[Path, ...], grid: GridConfig,
                 options: SourceOptions = SourceOptions()) -> Iterator[SourceItem]:
    """Read every complex of an ATOM3D LBA dataset (read-only, no lock file).

    The receptor is ``atoms_protein`` (the whole protein, not the pocket) and the label is
    ``scores["neglog_aff"]`` (pK). The split is the LMDB folder's name.

    Args:
        paths: one path: a split root, its ``data`` folder, an LMDB folder or ``data.mdb``.
        grid: hydrogens and waters are dropped unless it keeps them.
        options: ``require_labels`` (off: a record without a readable label is read without
            a measured pK).

    Raises:
        DataError: if no LMDB is found or one cannot be opened.
    """
    import lmdb

    for split, lmdb_path in find_atom3d_lmdbs(paths[0]).items():
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
                    protein = _atoms(record["atoms_protein"], True, grid)
                    ligand = _atoms(record["atoms_ligand"], False, grid)
                except (KeyError, TypeError, ValueError) as error:
                    yield Skipped(complex_id, source, "parse", f"malformed record: {error!r}")
                    continue
                pk, problem = _label(record)
                if problem:
                    skipped = options.unlabelled(complex_id, source, problem)
                    if skipped is not None:
                        yield skipped
                        continue
                if ligand.height == 0 or protein.height == 0:
                    yield Skipped(complex_id, source, "parse",
                                  "no ligand atoms" if ligand.height == 0 else "no protein atoms")
                    continue
                yield ComplexRecord(complex_id, pk, protein, ligand, split=split, source=source,
                                    sequences=_sequences(record.get("seq")),
                                    ligand_smiles=canonical_smiles(record.get("smiles") or ""))
        env.close()
