"""Series: one protein file and a multi-record SDF whose records carry an affinity property,
the layout of public free-energy benchmarks (a congeneric series against one target)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lba_cli.choices import LabelUnit
from lba_cli.config import GridConfig
from lba_cli.data.affinity import UNIT_MOLAR, parse_affinity, pk_from_delta_g, pk_from_molar
from lba_cli.data.atoms import chain_sequences, mol_atoms, read_structure, read_text, structure_atoms
from lba_cli.data.records import ComplexRecord, Skipped, SourceItem, SourceOptions
from lba_cli.errors import DataError

__all__ = ["detect", "iter_records", "series_label_to_pk"]

_KJ_PER_KCAL = 4.184


def detect(path: Path) -> bool:
    """True for an ``.sdf`` (or ``.sdf.gz``) file: the ligands of a series (its protein comes before it)."""
    return path.is_file() and path.name.lower().endswith((".sdf", ".sdf.gz"))


def series_label_to_pk(value: str, unit: LabelUnit | str) -> float:
    """Convert one SDF property value to pK.

    Args:
        value: the property's text (a number, or a PDBbind-style string like ``Ki=5nM``).
        unit: ``pK``; a concentration unit (``M`` .. ``pM``) for Kd/Ki/IC50 values; or a
            binding free energy in ``kcal/mol`` or ``kJ/mol`` (converted at 298.15 K).

    Raises:
        DataError: for a non-numeric value or an unknown unit.
    """
    try:
        unit = LabelUnit(unit)
    except ValueError:
        raise DataError(f"unknown --label-unit {unit!r}\n"
                        f"expected one of: {', '.join(u.value for u in LabelUnit)}") from None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        if unit not in (LabelUnit.pk, LabelUnit.kcal_per_mol, LabelUnit.kj_per_mol):
            return parse_affinity(text).affinity_pk
        raise DataError(f"label {text!r} is not a number") from None
    if unit is LabelUnit.pk:
        return number
    if unit is LabelUnit.kcal_per_mol:
        return pk_from_delta_g(number)
    if unit is LabelUnit.kj_per_mol:
        return pk_from_delta_g(number / _KJ_PER_KCAL)
    return pk_from_molar(number * UNIT_MOLAR[unit.value])


def iter_records(paths: tuple[Path, ...], grid: GridConfig,
                 options: SourceOptions = SourceOptions()) -> Iterator[SourceItem]:
    """One protein and a multi-record SDF: each record is one complex.

    A record's id is ``<title>_<n>`` (n counts records from 1); its affinity is the
    ``options.label_field`` property in ``options.label_unit``.

    Args:
        paths: the protein file (PDB, mmCIF or PDBQT), then the SDF.
        grid: hydrogens and waters are dropped unless it keeps them.
        options: ``label_field`` (required unless ``require_labels`` is off: then records
            without it are read without a measured pK) and ``label_unit``.

    Raises:
        DataError: if the protein cannot be read, or ``label_field`` is not given while
            labels are required.
    """
    from rdkit import Chem, RDLogger

    protein_path, sdf_path = paths
    if not options.label_field and options.require_labels:
        raise DataError("--format sdf-series needs --label-field NAME (the SDF property holding the affinity)")
    RDLogger.DisableLog("rdApp.*")
    structure = read_structure(protein_path)
    protein = structure_atoms(structure, keep_hydrogens=grid.keep_hydrogens, keep_water=grid.keep_water)
    if protein.height == 0:
        raise DataError(f"no protein atoms in {protein_path}")
    sequences = tuple(chain_sequences(structure))
    try:
        text = read_text(sdf_path)
    except (OSError, EOFError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise DataError(f"cannot read {sdf_path}: {reason}") from None
    if not text.strip():
        raise DataError(f"{sdf_path} is empty\nexpected: SDF records, each with a {options.label_field!r} property")
    sanitized, raw = Chem.SDMolSupplier(), Chem.SDMolSupplier()
    sanitized.SetData(text, sanitize=True, removeHs=False)
    raw.SetData(text, sanitize=False, removeHs=False)
    if len(raw) == 0:
        raise DataError(f"no SDF records in {sdf_path}\nexpected: an SDF file (molecule blocks ending in $$$$)")
    for index in range(len(raw)):
        mol, notes = sanitized[index], []
        was_sanitized = mol is not None
        if mol is None:
            mol, notes = raw[index], ["ligand read without sanitisation"]
        source = f"{sdf_path}#{index + 1}"
        if mol is None:
            yield Skipped(f"record_{index + 1}", source, "read", "RDKit could not read this SDF record")
            continue
        title = (mol.GetProp("_Name").strip() if mol.HasProp("_Name") else "") or "mol"
        complex_id = f"{title.replace(' ', '_')}_{index + 1}"
        pk: float | None = None
        if not options.label_field:
            pass  # predicting without labels: nothing to read
        elif not mol.HasProp(options.label_field):
            skipped = options.unlabelled(complex_id, source, f"no {options.label_field!r} property")
            if skipped is not None:
                yield skipped
                continue
        else:
            try:
                pk = series_label_to_pk(mol.GetProp(options.label_field), options.label_unit)
            except DataError as error:
                skipped = options.unlabelled(complex_id, source, str(error))
                if skipped is not None:
                    yield skipped
                    continue
                notes.append(f"read without a measured pK ({error})")
        atoms = mol_atoms(mol, keep_hydrogens=grid.keep_hydrogens)
        if atoms.height == 0:
            yield Skipped(complex_id, source, "read", "no ligand atoms")
            continue
        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol)) if was_sanitized else ""
        yield ComplexRecord(complex_id, pk, protein, atoms, split=None, protein_group=f"series:{protein_path.name}",
                            source=source, notes=notes, sequences=sequences, ligand_smiles=smiles)
