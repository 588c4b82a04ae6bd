"""Folders of per-complex subfolders with a label table, as PDBbind's curated re-releases and
users' own subsets keep them::

    <root>/<id>/<id>_protein.pdb[.gz]   (or <id>_pocket.pdb[.gz])
    <root>/<id>/<id>_ligand.sdf          (or .mol2, gzip or not)
    <root>/labels.csv                    an id column and an affinity column

The table is found in the folder (the one CSV or TSV there with an id and an affinity column)
or named with ``lba voxelize ROOT --labels FILE``. Its columns are recognised by the names the
re-releases use (`lba_cli.data.tables`): the id as ``id``, ``pdb_id``, ``PDB``, ``pdbid``,
``code``...; the affinity as a pK (``pK``, ``pKd``, ``-logKd/Ki``, ``neglog_aff``, ...), a
measurement (``affinity``: ``Kd=10nM``, ranges and lists as in `lba_cli.data.affinity`), or one
constant (``Kd``, ``Ki``, ``IC50`` with a unit in each value or in the name: ``Kd_nM``);
optionally ``split`` and ``group``. A folder with a PDBbind ``INDEX_*`` file and no
``--labels`` is read as PDBbind (`lba_cli.data.sources.pdbbind`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from lba_cli.config import GridConfig
from lba_cli.data.affinity import Affinity
from lba_cli.data.atoms import STRUCTURE_SUFFIXES, chain_sequences
from lba_cli.data.records import ComplexRecord, Skipped, SourceItem, SourceNote, SourceOptions
from lba_cli.data.sources.pdbbind import read_complex_folder
from lba_cli.data.tables import (
    ID_COLUMNS,
    SPLIT_ALIASES,
    UserTable,
    find_column,
    find_label_columns,
    read_user_table,
    row_label,
)
from lba_cli.errors import DataError, LbaError

__all__ = ["detect", "iter_records", "find_label_tables", "complex_folders"]

_TABLE_SUFFIXES = (".csv", ".tsv")
_MAX_TABLE_BYTES = 50_000_000  # a label table is small; a bigger CSV in the folder is something else


def complex_folders(root: Path) -> list[Path]:
    """Subfolders ``<id>/`` holding ``<id>_protein`` or ``<id>_pocket`` structure files, sorted."""
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        names = (p.name.lower().removesuffix(".gz") for p in folder.glob(f"{folder.name}_p*"))
        if any(n.startswith((f"{folder.name.lower()}_protein.", f"{folder.name.lower()}_pocket."))
               and n.endswith(STRUCTURE_SUFFIXES) for n in names):
            out.append(folder)
    return out


def _is_label_table(path: Path) -> bool:
    """True for a small CSV/TSV whose header has an id column and an affinity column."""
    if not (path.is_file() and path.name.lower().endswith(_TABLE_SUFFIXES)) or path.stat().st_size > _MAX_TABLE_BYTES:
        return False
    try:
        columns = read_user_table(path).frame.columns
    except DataError:
        return False
    return find_column(columns, ID_COLUMNS) is not None and bool(find_label_columns(columns))


def find_label_tables(root: Path) -> list[Path]:
    """The label tables directly in ``root`` (see `_is_label_table`), sorted."""
    return sorted(p for p in root.iterdir() if _is_label_table(p)) if root.is_dir() else []


def detect(path: Path) -> bool:
    """True for a folder of ``<id>/`` complex subfolders with a label table beside them."""
    return path.is_dir() and bool(complex_folders(path)) and bool(find_label_tables(path))


def _labels_path(root: Path, options: SourceOptions) -> Path:
    if options.labels is not None:
        if not Path(options.labels).is_file():
            raise DataError(f"label table not found: {options.labels}")
        return Path(options.labels)
    tables = find_label_tables(root)
    if len(tables) == 1:
        return tables[0]
    if not tables:
        raise DataError(f"no label table in {root}\nexpected: a CSV with an id column (id, pdb_id, PDB, ...) and a pK "
                        "or Kd/Ki column (pK, -logKd/Ki, affinity, Kd_nM, ...), or --labels FILE")
    listed = "\n  ".join(str(t) for t in tables)
    raise DataError(f"several label tables in {root}:\n  {listed}\nexpected: one of them named with --labels FILE")


def _rows_by_id(table: UserTable, id_column: str) -> tuple[dict[str, tuple[int, dict]], dict[str, str]]:
    """Rows by lower-cased id, and ids whose rows disagree (-> why)."""
    rows: dict[str, tuple[int, dict]] = {}
    conflicts: dict[str, str] = {}
    for number, row in enumerate(table.frame.iter_rows(named=True), start=2):
        key = (row[id_column] or "").lower()
        if not key:
            continue
        if key in rows and rows[key][1] != row:
            conflicts[key] = f"{table.path.name} has several different rows for it (rows {rows[key][0]} and {number})"
        rows.setdefault(key, (number, row))
    return rows, conflicts


def iter_records(paths: tuple[Path, ...], grid: GridConfig,
                 options: SourceOptions = SourceOptions()) -> Iterator[SourceItem]:
    """Read every ``<id>/`` subfolder of a folder, labelled by its label table.

    Every folder is accounted for: one without a row in the table, with an unreadable
    label (both only when labels are required), or whose files cannot be read is skipped
    with that reason; ids of the table without a folder are named in a note.

    Args:
        paths: one path, the folder.
        grid: hydrogens and waters are dropped unless it keeps them.
        options: ``labels``, the label table (default: the one in the folder);
            ``require_labels`` (off: a folder without a readable label is read without a
            measured pK, with a note when its row holds an unreadable one).

    Raises:
        DataError: if there are no complex folders, no label table (or several), or the
            table lacks an id or affinity column.
    """
    root = paths[0]
    folders = complex_folders(root)
    if not folders:
        raise DataError(f"no complex folders in {root}\nexpected: <id>/ subfolders holding <id>_protein.pdb or "
                        "<id>_pocket.pdb (gzip or not) and <id>_ligand.sdf or .mol2")
    labels_path = _labels_path(root, options)
    table = read_user_table(labels_path)
    for note in table.notes:
        yield SourceNote(note)
    id_column = find_column(table.frame.columns, ID_COLUMNS)
    label_columns = find_label_columns(table.frame.columns)
    if id_column is None or not label_columns:
        raise DataError(f"{labels_path}: columns {table.frame.columns}\nexpected: an id column (id, pdb_id, PDB, ...) "
                        "and a pK or Kd/Ki column (pK, pKd, -logKd/Ki, affinity, Kd, Ki, Kd_nM, ...)")
    split_column = find_column(table.frame.columns, ("split", "set", "subset", "fold"))
    group_column = find_column(table.frame.columns, ("group", "uniprot", "uniprotid", "proteingroup"))
    yield SourceNote(f"labels of {root} from {labels_path}: id column {id_column!r}, "
                     + " then ".join(c.describe() for c in label_columns))
    rows, conflicts = _rows_by_id(table, id_column)
    without_folder = sorted(set(rows) - {f.name.lower() for f in folders})
    if without_folder:
        yield SourceNote(f"{len(without_folder)} ids of {labels_path.name} have no complex folder in {root} "
                         f"(e.g. {', '.join(without_folder[:3])})")
    for folder in folders:
        complex_id, source = folder.name, str(folder)
        key = complex_id.lower()
        number, row = rows.get(key, (0, {}))
        pk: float | None = None
        value: Affinity | float | None = None
        problem = ""
        if key not in rows:
            problem = f"no row in {labels_path.name}"
        elif key in conflicts:
            problem = conflicts[key]
        else:
            try:
                found = row_label(row, label_columns)
            except DataError as error:
                found, problem = None, f"unreadable label in {labels_path.name} row {number}: {error}"
            if found is not None:
                value = found[1]
                pk = value.affinity_pk if isinstance(value, Affinity) else value
                if not math.isfinite(pk):
                    pk, value, problem = None, None, f"label is not a finite number: {pk}"
            elif not problem:
                problem = f"no affinity in {labels_path.name} row {number}"
        if problem:
            skipped = options.unlabelled(complex_id, source, problem)
            if skipped is not None:
                yield skipped
                continue
        split_text = (row.get(split_column) or "").lower() if split_column else ""
        split = SPLIT_ALIASES.get(split_text) if split_text else None
        if split_text and split is None:
            yield Skipped(complex_id, source, "split", f"split {split_text!r} is not train, val or test")
            continue
        try:
            structure, protein, ligand, notes = read_complex_folder(folder, grid)
        except LbaError as error:
            yield Skipped(complex_id, source, "read", str(error))
            continue
        measure = operator = ""
        if isinstance(value, Affinity):
            measure, operator = value.measure, value.operator
            notes = ([value.note] if value.note else []) + notes
        if problem and not problem.startswith("no "):
            notes.append(f"read without a measured pK ({problem})")
        yield ComplexRecord(complex_id, None if pk is None else float(pk), protein, ligand.atoms, split=split,
                            protein_group=(row.get(group_column) or "") if group_column else "", source=source,
                            notes=notes, measure=measure, operator=operator,
                            sequences=tuple(chain_sequences(structure)), ligand_smiles=ligand.smiles or "")
