"""CSV manifests: one complex per row, ``id, protein, ligand, affinity_pk | affinity[, split, group]``.

The table is read as people write it (`lba_cli.data.tables`): any case and spacing in the
header, ``;`` or tab separators, whitespace around cells, paths with ``\\``. The label may
also sit in a column named as PDBbind's re-releases name it (``pK``, ``-logKd/Ki``, ``Kd_nM``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lba_cli.config import GridConfig
from lba_cli.data.affinity import Affinity
from lba_cli.data.atoms import chain_sequences, ligand_notes, read_complex_files
from lba_cli.data.records import ComplexRecord, Skipped, SourceItem, SourceNote, SourceOptions
from lba_cli.data.tables import SPLIT_ALIASES, find_label_columns, read_user_table, resolve_cell_path, row_label
from lba_cli.errors import DataError, LbaError

__all__ = ["detect", "iter_records", "CSV_COLUMNS"]

CSV_COLUMNS = ("id", "protein", "ligand")


def detect(path: Path) -> bool:
    """True for a ``.csv`` (or ``.tsv``) file."""
    return path.is_file() and path.name.lower().endswith((".csv", ".tsv"))


def iter_records(paths: tuple[Path, ...], grid: GridConfig,
                 options: SourceOptions = SourceOptions()) -> Iterator[SourceItem]:
    """Read a CSV manifest: ``id``, ``protein``, ``ligand``, then ``affinity_pk`` (a number) or
    ``affinity`` (e.g. ``Kd=11.3nM``, a range or a list: `lba_cli.data.affinity`), and
    optionally ``split`` and ``group`` (protein identity).

    Paths may be absolute or relative to the CSV's folder (`lba_cli.data.tables.resolve_cell_path`);
    a path that still names no file is reported as written.

    Args:
        paths: one path, the CSV file.
        grid: hydrogens and waters are dropped unless it keeps them.
        options: ``require_labels`` (off: the label columns are optional, and a row without a
            readable label is read without a measured pK).

    Raises:
        DataError: if the file cannot be parsed or lacks required columns.
    """
    path = paths[0]
    table = read_user_table(path)
    for note in table.notes:
        yield SourceNote(note)
    columns = {name: table.column(name) for name in (*CSV_COLUMNS, "split", "group")}
    labels = find_label_columns(table.frame.columns)
    missing = [c for c in CSV_COLUMNS if columns[c] is None]
    if missing or (options.require_labels and not labels):
        wanted = "affinity_pk or affinity" + ("" if options.require_labels else " (optional)")
        raise DataError(f"{path}: columns {table.frame.columns}\nexpected: id, protein, ligand, {wanted} "
                        "(and optionally split, group)")
    folder = path.parent
    for number, (row, as_written) in enumerate(zip(table.frame.iter_rows(named=True), table.raw.iter_rows(named=True)),
                                               start=2):
        complex_id = row[columns["id"]] or ""
        source = f"{path}:{number}"
        if not complex_id:
            if any(row.values()):
                yield Skipped(f"row {number}", source, "parse", "empty id")
            continue
        notes = []
        pk: float | None = None
        measure = operator = problem = ""
        try:
            found = row_label(row, labels)
        except DataError as error:
            found, problem = None, f"unreadable label: {error}"
        if found is not None:
            value = found[1]
            if isinstance(value, Affinity):
                pk, measure, operator = value.affinity_pk, value.measure, value.operator
                notes += [value.note] if value.note else []
            else:
                pk = value
            if not np.isfinite(pk):
                pk, measure, operator, problem = None, "", "", f"label is not a finite number: {pk}"
        elif not problem:
            problem = ("no value in " + " or ".join(c.describe() for c in labels) if labels
                       else "no affinity_pk or affinity column")
        if problem:
            skipped = options.unlabelled(complex_id, source, problem)
            if skipped is not None:
                yield skipped
                continue
            if not problem.startswith("no "):
                notes.append(f"read without a measured pK ({problem})")
        split_text = (row[columns["split"]] or "").lower() if columns["split"] else ""
        split = SPLIT_ALIASES.get(split_text) if split_text else None
        if split_text and split is None:
            yield Skipped(complex_id, source, "split", f"split {split_text!r} is not train, val or test")
            continue
        (protein_path, protein_note), (ligand_path, ligand_note) = (
            resolve_cell_path(row[columns[c]], folder) for c in ("protein", "ligand"))
        notes += [n for n in (protein_note, ligand_note) if n]
        if not protein_path.is_file():
            what = "is a folder, not a file" if protein_path.is_dir() else f"not found (looked for {protein_path})"
            yield Skipped(complex_id, source, "read", f"protein file {as_written[columns['protein']]!r} {what}")
            continue
        try:
            structure, protein, ligand = read_complex_files(protein_path, [ligand_path], grid)
        except LbaError as error:
            reason = str(error)
            if reason.startswith("cannot read ligand") and not ligand_path.exists():
                reason = f"ligand file {as_written[columns['ligand']]!r} not found (looked for {ligand_path})"
            yield Skipped(complex_id, source, "read", reason)
            continue
        notes += ligand_notes(ligand)
        yield ComplexRecord(complex_id, pk, protein, ligand.atoms, split=split,
                            protein_group=(row[columns["group"]] or "") if columns["group"] else "",
                            source=source, notes=notes, measure=measure, operator=operator,
                            sequences=tuple(chain_sequences(structure)), ligand_smiles=ligand.smiles or "")
