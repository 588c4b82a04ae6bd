"""CSV manifests: one complex per row, ``id, protein, ligand, affinity_pk | affinity[, split, group]``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from lba_cli.choices import SPLITS
from lba_cli.config import GridConfig
from lba_cli.data.affinity import parse_affinity
from lba_cli.data.atoms import chain_sequences, read_complex_files
from lba_cli.data.records import ComplexRecord, Skipped, SourceItem, SourceOptions
from lba_cli.errors import DataError, LbaError

__all__ = ["detect", "iter_records", "CSV_COLUMNS"]

CSV_COLUMNS = ("id", "protein", "ligand")


def detect(path: Path) -> bool:
    """True for a ``.csv`` file."""
    return path.is_file() and path.name.lower().endswith(".csv")


def iter_records(paths: tuple[Path, ...], grid: GridConfig,
                 options: SourceOptions = SourceOptions()) -> Iterator[SourceItem]:
    """Read a CSV manifest: ``id``, ``protein``, ``ligand``, then ``affinity_pk`` (a number) or
    ``affinity`` (e.g. ``Kd=11.3nM``), and optionally ``split`` and ``group`` (protein identity).

    Paths may be absolute or relative to the CSV's folder.

    Args:
        paths: one path, the CSV file.
        grid: hydrogens and waters are dropped unless it keeps them.
        options: ``require_labels`` (off: the label columns are optional, and a row without a
            readable label is read without a measured pK).

    Raises:
        DataError: if the file cannot be parsed or lacks required columns.
    """
    path = paths[0]
    try:
        table = pl.read_csv(path, infer_schema_length=0)  # every column as text; we convert
    except (pl.exceptions.PolarsError, OSError) as error:
        raise DataError(f"cannot read CSV manifest {path}: {error}") from None
    missing = [c for c in CSV_COLUMNS if c not in table.columns]
    if missing or (options.require_labels and not ({"affinity_pk", "affinity"} & set(table.columns))):
        labels = "affinity_pk or affinity" + ("" if options.require_labels else " (optional)")
        raise DataError(f"{path}: columns {table.columns}\nexpected: id, protein, ligand, {labels} "
                        "(and optionally split, group)")
    folder = path.parent
    for number, row in enumerate(table.iter_rows(named=True), start=2):
        complex_id = (row["id"] or "").strip()
        source = f"{path}:{number}"
        if not complex_id:
            yield Skipped(f"row {number}", source, "parse", "empty id")
            continue
        measure = operator = ""
        pk: float | None = None
        problem = ""
        try:
            if row.get("affinity_pk") not in (None, ""):
                pk = float(row["affinity_pk"])
            elif row.get("affinity") not in (None, ""):
                parsed = parse_affinity(row["affinity"])
                pk, measure, operator = parsed.affinity_pk, parsed.measure, parsed.operator
            else:
                problem = "no affinity_pk or affinity value"
        except (ValueError, DataError) as error:
            problem = f"unreadable label: {error}"
        if pk is not None and not np.isfinite(pk):
            pk, problem = None, f"label is not a finite number: {pk}"
        notes = []
        if problem:
            skipped = options.unlabelled(complex_id, source, problem)
            if skipped is not None:
                yield skipped
                continue
            if not problem.startswith("no "):
                notes.append(f"read without a measured pK ({problem})")
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
        if not ligand.sanitized:
            notes.append(f"ligand read without sanitisation from {ligand.path.name}")
        yield ComplexRecord(complex_id, pk, protein, ligand.atoms, split=split, protein_group=(row.get("group") or ""),
                            source=source, notes=notes, measure=measure, operator=operator,
                            sequences=tuple(chain_sequences(structure)), ligand_smiles=ligand.smiles or "")
