"""Tables that people write by hand or export from spreadsheets (CSV manifests, label tables).

They are read as written, not as a strict CSV reader would want them:

- text in UTF-8 (with or without the byte-order mark spreadsheets put first), else in
  Windows-1252 (a note says so);
- separated by ``,``, ``;`` (spreadsheets in many locales) or tabs, whichever the header uses;
- header names compared without case, spaces, ``_``, ``-``, ``/``, brackets or a leading ``-``
  (`column_key`), so ``PDB ID``, ``pdb_id`` and ``pdbid`` are one name;
- whitespace around every cell ignored;
- paths in cells resolved as spreadsheets and other operating systems write them
  (`resolve_cell_path`).

Label columns are recognised by the names that PDBbind and its common re-releases use
(`PK_COLUMNS`, `MEASUREMENT_COLUMNS`, `CONCENTRATION_COLUMNS`).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from urllib.parse import unquote, urlparse

import polars as pl

from lba_cli.data.affinity import UNIT_MOLAR, Affinity, parse_affinity, pk_from_molar
from lba_cli.errors import DataError

__all__ = ["UserTable", "read_user_table", "column_key", "find_column", "resolve_cell_path", "LabelColumn",
           "find_label_columns", "row_label", "read_label", "ID_COLUMNS", "PK_COLUMNS", "MEASUREMENT_COLUMNS",
           "CONCENTRATION_COLUMNS", "SPLIT_ALIASES"]

# Column names (as `column_key` writes them) of a complex id, in order of preference.
ID_COLUMNS = ("id", "complexid", "complex", "pdbid", "pdbcode", "pdb", "code", "name")
# Columns holding pK = -log10(K / M) as a number (PDBbind's "-logKd/Ki", ATOM3D's "neglog_aff", ...).
PK_COLUMNS = ("affinitypk", "pk", "pkd", "pki", "pkdpki", "pkikd", "pkdki", "logkdki", "logkikd", "logkd", "logki",
              "neglogaff", "pkdkiic50", "pic50")
# Columns holding measurements as PDBbind writes them ("Kd=10nM"); a plain number there is a pK.
MEASUREMENT_COLUMNS = ("affinity", "affinitydata", "bindingdata", "binding", "measurement", "kdki", "kikd", "label")
# Columns holding one kind of constant: a value with its unit ("10nM"), or a number whose unit
# the column name gives (Kd_nM, Ki (uM), IC50 [M]).
CONCENTRATION_COLUMNS = ("kd", "ki", "ic50", "ec50")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}
_UNIT_IN_NAME = re.compile(r"^(?P<kind>kd|ki|ic50|ec50)(?P<unit>fm|pm|nm|um|µm|μm|mm|m)?$")
_UNITS_BY_KEY = {unit.lower(): unit for unit in UNIT_MOLAR}


def column_key(name: str) -> str:
    """A header name reduced for comparison: ``"-logKd/Ki"`` -> ``"logkdki"``, ``"PDB ID"`` -> ``"pdbid"``."""
    return re.sub(r"[\s_\-/()\[\].,:]+", "", name.strip().lstrip("\ufeff").lower())


@dataclass
class UserTable:
    """A table read by `read_user_table`.

    Attributes:
        frame: every column as text (Utf8), cells stripped of surrounding whitespace;
            column names as written (stripped).
        path: the file.
        notes: how it was read when that matters (encoding, separator).
        raw: the same cells as written (for messages that quote them).
    """

    frame: pl.DataFrame
    path: Path
    notes: list[str]
    raw: pl.DataFrame

    def column(self, *keys: str) -> str | None:
        """The first column whose `column_key` is one of ``keys`` (in the order of ``keys``)."""
        return find_column(self.frame.columns, keys)


def find_column(columns: list[str], keys: tuple[str, ...]) -> str | None:
    """The column (as named in ``columns``) whose `column_key` comes first in ``keys``."""
    by_key: dict[str, str] = {}
    for name in columns:
        by_key.setdefault(column_key(name), name)
    return next((by_key[key] for key in keys if key in by_key), None)


def read_user_table(path: Path) -> UserTable:
    """Read a CSV (or semicolon- or tab-separated) table as text, as people write them.

    Raises:
        DataError: naming the file when it cannot be read or parsed.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None
    notes = []
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
        notes.append(f"{path.name} is not UTF-8: read as Windows-1252")
    if not text.strip():
        raise DataError(f"{path} is empty\nexpected: a header line and one row per complex")
    if "\x00" in text:
        raise DataError(f"{path} is not a text table (it holds binary data)\nexpected: a CSV file")
    header = text.lstrip().splitlines()[0]
    separator = max((",", ";", "\t"), key=lambda s: (header.count(s), s == ","))
    if separator != ",":
        notes.append(f"{path.name} is {'tab' if separator == chr(9) else 'semicolon'}-separated")
    try:
        frame = pl.read_csv(io.BytesIO(text.encode("utf-8")), separator=separator, infer_schema_length=0)
    except pl.exceptions.PolarsError as error:
        raise DataError(f"cannot read {path} as a table: {_table_problem(text, separator, error)}") from None
    raw = frame.rename({name: name.strip().lstrip("\ufeff").strip() for name in frame.columns})
    frame = raw.with_columns(pl.col(name).str.strip_chars() for name in raw.columns)
    return UserTable(frame, path, notes, raw)


def _table_problem(text: str, separator: str, error: Exception) -> str:
    """Why a table did not parse, in the user's terms: the first line whose cell count differs
    from the header's (the usual cause), else the parser's own first line."""
    import csv

    rows = csv.reader(io.StringIO(text), delimiter=separator)
    width = None
    for row in rows:
        if not any(cell.strip() for cell in row):
            continue
        if width is None:
            width = len(row)
        elif len(row) != width:
            return (f"line {rows.line_num} has {len(row)} cells, the header {width}\nexpected: as many cells in "
                    "every row as in the header (quote cells that hold the separator)")
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def resolve_cell_path(cell: str | None, folder: Path) -> tuple[Path, str | None]:
    """The file a table cell names, as spreadsheets and other operating systems write paths.

    Tried in turn, the first that exists wins: the text as written (whitespace and quotes
    around it removed, ``~`` expanded, a ``file://`` URL read as its path) relative to
    ``folder`` unless absolute; the same with ``\\`` as ``/``; a Windows absolute path
    (``C:\\data\\x.pdb``) as its file name in ``folder``; the file name in another case
    (``4LZS_Pocket.PDB``) when exactly one file matches.

    Args:
        cell: the cell's text.
        folder: the folder relative paths start from (the table's).

    Returns:
        The path (the first form when none exists, for the error message) and a note when
        the file was found by a guess (another case, a Windows path), else None.
    """
    text = (cell or "").strip().strip("\"'").strip()
    if text.lower().startswith("file://"):
        text = unquote(urlparse(text).path)
    text = os.path.expanduser(text)
    forms = [text]
    if "\\" in text:
        forms.append(text.replace("\\", "/"))
    first = None
    for form in forms:
        path = Path(form) if Path(form).is_absolute() else folder / form
        first = first or path
        if path.exists():
            return path, None
    windows = PureWindowsPath(text)
    if windows.drive and (folder / windows.name).exists():
        return folder / windows.name, f"{text!r} is a Windows path: read {windows.name} beside the table"
    wanted = Path(forms[-1]) if Path(forms[-1]).is_absolute() else folder / forms[-1]
    if wanted.parent.is_dir() and wanted.name:
        matches = [p for p in wanted.parent.iterdir() if p.name.lower() == wanted.name.lower()]
        if len(matches) == 1:
            return matches[0], f"{text!r} read as {matches[0].name} (another case)"
    return first, None


@dataclass(frozen=True)
class LabelColumn:
    """Where a table keeps its affinities and how to read them.

    Attributes:
        name: the column, as named in the table.
        kind: ``pk`` (a number), ``measurement`` (``Kd=10nM``, or a number read as pK), or
            ``concentration`` (a value of one measure: ``10nM``, or a number in ``unit``).
        measure: for ``concentration``, ``Kd``, ``Ki``, ``IC50`` or ``EC50``.
        unit: for ``concentration``, the unit the column name gives ("" if none).
    """

    name: str
    kind: str
    measure: str = ""
    unit: str = ""

    def describe(self) -> str:
        """How messages name it: ``pK column 'pK'``, ``Kd column 'Kd_nM' (nM)``."""
        if self.kind == "pk":
            return f"pK column {self.name!r}"
        if self.kind == "measurement":
            return f"measurement column {self.name!r}"
        return f"{self.measure} column {self.name!r}" + (f" ({self.unit})" if self.unit else "")


def find_label_columns(columns: list[str]) -> list[LabelColumn]:
    """The affinity columns of a table, in the order a row's label is taken from them: a pK
    column, then a measurement column, then Kd, Ki, IC50 and EC50 columns; [] if none."""
    found = []
    name = find_column(columns, PK_COLUMNS)
    if name is not None:
        found.append(LabelColumn(name, "pk"))
    name = find_column(columns, MEASUREMENT_COLUMNS)
    if name is not None:
        found.append(LabelColumn(name, "measurement"))
    for measure in CONCENTRATION_COLUMNS:
        for name in columns:
            match = _UNIT_IN_NAME.match(column_key(name))
            if match and match["kind"] == measure:
                unit = _UNITS_BY_KEY.get(match["unit"] or "", "")
                pretty = {"kd": "Kd", "ki": "Ki", "ic50": "IC50", "ec50": "EC50"}[measure]
                found.append(LabelColumn(name, "concentration", pretty, unit))
    return found


def row_label(row: dict[str, str | None], columns: list[LabelColumn]) -> tuple[LabelColumn, Affinity | float] | None:
    """A row's label from the first of ``columns`` (`find_label_columns`) with a value in it;
    None when all are empty.

    Raises:
        DataError: when that value cannot be read (see `read_label`).
    """
    for column in columns:
        if row.get(column.name):
            return column, read_label(row[column.name], column)
    return None


def read_label(value: str, column: LabelColumn) -> Affinity | float:
    """One cell of a label column: a pK (float), or an `Affinity` when it is a measurement.

    Raises:
        DataError: saying what the cell holds and what was expected.
    """
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if column.kind in ("pk", "measurement") and number is not None:
        return number
    if column.kind == "pk":
        raise DataError(f"{column.describe()}: {text!r} is not a number\nexpected: pK = -log10(K / M), e.g. 6.5")
    if column.kind == "measurement":
        return parse_affinity(text)
    if number is not None:
        if not column.unit:
            raise DataError(f"{column.describe()}: {text!r} has no unit\nexpected: a unit in the value (12.5nM) or in "
                            f"the column name ({column.measure}_nM, {column.measure} (uM))")
        return Affinity(column.measure, "=", number * UNIT_MOLAR[column.unit],
                        pk_from_molar(number * UNIT_MOLAR[column.unit]))
    if not re.match(r"^\s*(?i:kd|ki|ic50|ec50|ka)\s*(<=|>=|=|<|>|~)", text):  # "10nM", "<10nM": add the measure
        text = column.measure + ("" if re.match(r"^(<=|>=|=|<|>|~)", text) else "=") + text
    return parse_affinity(text)
