"""Complexes listed by the user: CSV manifests and SDF series (one protein, many ligands)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from lba_cli.config import GridConfig
from lba_cli.data.atoms import chain_sequences, read_structure, structure_atoms
from lba_cli.choices import SPLITS, LabelUnit
from lba_cli.data.sources import ComplexRecord, Skipped, read_complex_files
from lba_cli.errors import DataError, LbaError

__all__ = ["CSV_COLUMNS", "iter_csv_manifest", "iter_sdf_series", "series_label_to_pk"]


CSV_COLUMNS = ("id", "protein", "ligand")


def iter_csv_manifest(path: Path, grid: GridConfig) -> Iterator[ComplexRecord | Skipped]:
    """Read a CSV manifest: ``id``, ``protein``, ``ligand``, then ``affinity_pk`` (a number) or
    ``affinity`` (e.g. ``Kd=11.3nM``), and optionally ``split`` and ``group`` (protein identity).

    Paths may be absolute or relative to the CSV's folder.

    Raises:
        DataError: if the file cannot be parsed or lacks required columns.
    """
    from lba_cli.data.affinity import parse_affinity

    try:
        table = pl.read_csv(path, infer_schema_length=0)  # every column as text; we convert
    except (pl.exceptions.PolarsError, OSError) as error:
        raise DataError(f"cannot read CSV manifest {path}: {error}") from None
    missing = [c for c in CSV_COLUMNS if c not in table.columns]
    if missing or not ({"affinity_pk", "affinity"} & set(table.columns)):
        raise DataError(f"{path}: columns {table.columns}\nexpected: id, protein, ligand, affinity_pk or affinity "
                        "(and optionally split, group)")
    folder = path.parent
    for number, row in enumerate(table.iter_rows(named=True), start=2):
        complex_id = (row["id"] or "").strip()
        source = f"{path}:{number}"
        if not complex_id:
            yield Skipped(f"row {number}", source, "parse", "empty id")
            continue
        measure = operator = ""
        try:
            if row.get("affinity_pk") not in (None, ""):
                pk = float(row["affinity_pk"])
            elif row.get("affinity") not in (None, ""):
                parsed = parse_affinity(row["affinity"])
                pk, measure, operator = parsed.affinity_pk, parsed.measure, parsed.operator
            else:
                yield Skipped(complex_id, source, "label", "no affinity_pk or affinity value")
                continue
        except (ValueError, DataError) as error:
            yield Skipped(complex_id, source, "label", f"unreadable label: {error}")
            continue
        if not np.isfinite(pk):
            yield Skipped(complex_id, source, "label", f"label is not a finite number: {pk}")
            continue
        split = (row.get("split") or "").strip().lower() or None
        if split is not None and split not in SPLITS:
            yield Skipped(complex_id, source, "split", f"split {split!r} is not train, val or test")
            continue
        protein_path, ligand_path = folder / (row["protein"] or ""), folder / (row["ligand"] or "")
        try:
            structure, protein, ligand = read_complex_files(protein_path, [ligand_path], grid)
        except LbaError as error:
            yield Skipped(complex_id, source, "read", str(error))
            continue
        notes = [] if ligand.sanitized else [f"ligand read without sanitisation from {ligand.path.name}"]
        yield ComplexRecord(complex_id, pk, protein, ligand.atoms, split=split, protein_group=(row.get("group") or ""),
                            source=source, notes=notes, measure=measure, operator=operator,
                            sequences=tuple(chain_sequences(structure)), ligand_smiles=ligand.smiles or "")


def series_label_to_pk(value: str, unit: str) -> float:
    """Convert one SDF property value to pK.

    Args:
        value: the property's text (a number, or a PDBbind-style string like ``Ki=5nM``).
        unit: ``pK``; a concentration unit (``M`` .. ``pM``) for Kd/Ki/IC50 values; or a
            binding free energy in ``kcal/mol`` or ``kJ/mol`` (converted at 298.15 K).

    Raises:
        DataError: for a non-numeric value or an unknown unit.
    """
    from lba_cli.data.affinity import UNIT_MOLAR, parse_affinity, pk_from_delta_g, pk_from_molar

    text = value.strip()
    units = [u.value for u in LabelUnit]
    if unit not in units:
        raise DataError(f"unknown --label-unit {unit!r}\nexpected one of: {', '.join(units)}")
    try:
        number = float(text)
    except ValueError:
        if unit != "pK" and not unit.endswith("/mol"):
            return parse_affinity(text).affinity_pk
        raise DataError(f"label {text!r} is not a number") from None
    if unit == "pK":
        return number
    if unit == "kcal/mol":
        return pk_from_delta_g(number)
    if unit == "kJ/mol":
        return pk_from_delta_g(number / 4.184)
    return pk_from_molar(number * UNIT_MOLAR[unit])


def iter_sdf_series(protein_path: Path, sdf_path: Path, grid: GridConfig, label_field: str | None,
                    label_unit: str) -> Iterator[ComplexRecord | Skipped]:
    """One protein and a multi-record SDF (a congeneric series, as in free-energy benchmarks).

    Each record is one complex, with id ``<title>_<n>`` (n counts records from 1) and the
    affinity from its ``label_field`` property in ``label_unit``.

    Raises:
        DataError: if the protein cannot be read or ``label_field`` is not given.
    """
    from rdkit import Chem, RDLogger

    from lba_cli.data.atoms import mol_atoms

    if not label_field:
        raise DataError("--format sdf-series needs --label-field NAME (the SDF property holding the affinity)")
    RDLogger.DisableLog("rdApp.*")
    structure = read_structure(protein_path)
    protein = structure_atoms(structure, keep_hydrogens=grid.keep_hydrogens, keep_water=grid.keep_water)
    if protein.height == 0:
        raise DataError(f"no protein atoms in {protein_path}")
    sequences = tuple(chain_sequences(structure))
    sanitized = Chem.SDMolSupplier(str(sdf_path), sanitize=True, removeHs=False)
    raw = Chem.SDMolSupplier(str(sdf_path), sanitize=False, removeHs=False)
    for index in range(len(raw)):
        mol, notes = sanitized[index], []
        if mol is None:
            mol, notes = raw[index], ["ligand read without sanitisation"]
        source = f"{sdf_path}#{index + 1}"
        if mol is None:
            yield Skipped(f"record_{index + 1}", source, "read", "RDKit could not read this SDF record")
            continue
        title = (mol.GetProp("_Name").strip() if mol.HasProp("_Name") else "") or "mol"
        complex_id = f"{title.replace(' ', '_')}_{index + 1}"
        if not mol.HasProp(label_field):
            yield Skipped(complex_id, source, "label", f"no {label_field!r} property")
            continue
        try:
            pk = series_label_to_pk(mol.GetProp(label_field), label_unit)
        except DataError as error:
            yield Skipped(complex_id, source, "label", str(error))
            continue
        atoms = mol_atoms(mol, keep_hydrogens=grid.keep_hydrogens)
        if atoms.height == 0:
            yield Skipped(complex_id, source, "read", "no ligand atoms")
            continue
        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol)) if not notes else ""
        yield ComplexRecord(complex_id, pk, protein, atoms, split=None, protein_group=f"series:{protein_path.name}",
                            source=source, notes=notes, sequences=sequences, ligand_smiles=smiles)
