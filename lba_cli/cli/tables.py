"""Result tables that fit the terminal: every table lba prints is drawn here.

A command hands `render_frame` a polars frame with all its rows and columns, unrounded. For
``--format csv`` and ``--format json`` the frame is written as it is (only ``--columns`` and
``--metrics`` pick from it). For a table, `make_table` fits it into the console's width the way
results tables in the field are written, stopping as soon as the table fits:

1. only the columns picked (`TableView`); interval columns (``<metric>_ci_low`` /
   ``<metric>_ci_high``) only with ``--ci``, as one ``<metric> CI`` column; a ``<metric> mean``
   and ``<metric> std`` pair as one ``<metric>`` column of ``mean ± std``; empty columns
   left out;
2. a column whose value is the same in every row is said once, under the table;
3. run ids are cut to their shortest prefix that no other known run shares (a prefix is a
   valid reference: ``lba runs show PREFIX``);
4. numbers at 4 significant figures, right-aligned and never wrapped; long headers break after
   ``/``, ``_``, ``.`` or a space;
5. numbers at 3 significant figures;
6. with few rows, runs as columns (the transposed layout: one line per field);
7. the least useful columns hidden (named under the table, with the option that shows them);
8. text cells wrap; a number never does.

``--layout rows`` or ``--layout columns`` fixes the layout instead of step 6.
"""

from __future__ import annotations

import fnmatch
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from lba_cli.errors import ConfigError

__all__ = ["Layout", "TableView", "make_table", "pick_columns", "short_ids", "format_number", "is_measure",
           "IDENTITY_COLUMNS"]

IDENTITY_COLUMNS = ("run", "id", "name", "label")
"""Columns that say which row is which: never hidden or moved under the table."""

_RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-z]+$")
_ID_COLUMNS = ("run", "id", "parent", "run_id")
_MIN_PREFIX = 11  # "YYYYMMDD-HH": a prefix that still reads as a time
_INTERVAL = ("_ci_low", "_ci_high")
_MEASURE_SUFFIXES = (" mean", " std", *_INTERVAL)
_MEASURE_WORDS = ("loss", "accuracy", "shortcut_accuracy", "slab_shortcut_accuracy")
_TRANSPOSE_MAX_ROWS = 6  # "few runs": more than this as columns reads worse than hidden fields
_HEADER_BREAK = re.compile(r"(?<=[/_. ])")
_SEP = " · "


class Layout(str, Enum):
    """How a table is laid out: ``auto`` (rows, or runs as columns when that fits better)."""

    auto = "auto"
    rows = "rows"
    columns = "columns"


@dataclass(frozen=True)
class TableView:
    """What the reader asked to see.

    Attributes:
        columns: column names or globs (``val/*``) to show after the identity columns, in
            this order; empty: all.
        metrics: metric names (``rmse``) or columns (``val/rmse``) to show; other measured
            columns are left out; empty: all.
        ci: show the interval columns.
        layout: rows, runs as columns, or auto.
    """

    columns: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    ci: bool = False
    layout: Layout = Layout.auto


def _metric_names() -> set[str]:
    from lba_cli.metrics import REGRESSION_METRICS

    return {m.name for m in REGRESSION_METRICS} | set(_MEASURE_WORDS)


def _metric_of(column: str) -> str:
    """``"val/rmse mean"`` -> ``"rmse"``; ``"rmse_ci_low"`` -> ``"rmse"``."""
    base = column.rsplit("/", 1)[-1]
    for suffix in (*_MEASURE_SUFFIXES, "_ci"):
        base = base.removesuffix(suffix)
    return base


def is_measure(column: str) -> bool:
    """Whether a column holds a measured value (a metric, its spread or interval) rather than
    a setting: ``val/rmse``, ``rmse``, ``val/rmse mean``, ``rmse_ci_low``."""
    return "/" in column or _metric_of(column) in _metric_names() or column.endswith(_MEASURE_SUFFIXES)


def _interval_of(column: str) -> str | None:
    for suffix in _INTERVAL:
        if column.endswith(suffix):
            return column.removesuffix(suffix)
    return None


def pick_columns(frame: Any, view: TableView, keep: Sequence[str] = IDENTITY_COLUMNS, *, strict: bool = True) -> Any:
    """The columns ``--columns`` and ``--metrics`` pick, for every output format.

    Args:
        frame: a polars frame.
        view: the reader's choice.
        keep: identity columns, always kept first when present.
        strict: raise for a name that matches nothing (off for one of several tables that
            were checked together).

    Raises:
        ConfigError: for a name or glob that matches no column (listing those there are).
    """
    columns = list(frame.columns)
    if view.metrics:
        wanted = set(view.metrics)

        def chosen(column: str) -> bool:
            if not is_measure(column) or column in keep:
                return True
            return (_metric_of(column) in wanted or column in wanted
                    or any(fnmatch.fnmatchcase(column, w) for w in wanted)
                    or (_interval_of(column) or "") in wanted)

        unknown = [w for w in view.metrics if not any(
            is_measure(c) and (_metric_of(c) == w or c == w or fnmatch.fnmatchcase(c, w)) for c in columns)]
        if unknown and strict:
            measured = sorted({_metric_of(c) for c in columns if is_measure(c) and c not in keep})
            raise ConfigError(f"--metrics {', '.join(unknown)}: no such metric in this table\n"
                              f"expected one of: {', '.join(measured)} (or a column: "
                              f"{', '.join(c for c in columns if is_measure(c) and c not in keep)})")
        columns = [c for c in columns if chosen(c)]
    if view.columns:
        picked = [c for c in keep if c in columns]
        for pattern in view.columns:
            matches = [c for c in columns if fnmatch.fnmatchcase(c, pattern) or c == pattern]
            if not matches and strict:
                raise ConfigError(f"--columns {pattern}: no such column in this table\n"
                                  f"expected one of: {', '.join(columns)} (globs such as 'val/*' work)")
            picked += [c for c in matches if c not in picked]
        # a picked metric brings its interval along (shown with --ci)
        picked += [c for c in columns if c not in picked and _interval_of(c) in picked]
        columns = picked
    return frame.select(columns)


def short_ids(ids: Sequence[str], known: Iterable[str] = ()) -> list[str]:
    """The shortest prefix of each run id that no other known run id starts with.

    Args:
        ids: run ids (``YYYYMMDD-HHMMSS-xxxx``); other strings are returned unchanged.
        known: every run id the prefix must not be confused with (the store's); ``ids`` are
            always included.

    Returns:
        One prefix per id, at least ``YYYYMMDD-HH`` long, so that it still reads as a time.
    """
    universe = sorted({*known, *(i for i in ids if isinstance(i, str))})
    out = []
    for value in ids:
        if not isinstance(value, str) or not _RUN_ID.match(value):
            out.append(value)
            continue
        others = [u for u in universe if u != value]
        length = _MIN_PREFIX
        while length < len(value) and any(o.startswith(value[:length]) for o in others):
            length += 1
        out.append(value[:length])
    return out


def format_number(value: Any, digits: int = 4) -> str:
    """A cell: floats at ``digits`` significant figures, integers whole, None blank."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 10**digits:
            return str(int(value))  # a count stored as a float (test/n): 38, not 38.00
        text = f"{value:#.{digits}g}"  # '#' keeps trailing zeros: 3.00, not 3
        return text.rstrip(".") if "e" not in text else text
    return str(value)


def _interval(low: float | None, high: float | None, digits: int) -> str:
    if low is None or high is None:
        return ""
    if math.isnan(low) and math.isnan(high):
        return "nan"
    return f"{format_number(low, digits)}–{format_number(high, digits)}"


@dataclass
class _Column:
    name: str
    values: list[Any]
    numeric: bool
    interval: tuple[list[Any], list[Any]] | None = None
    spread: list[Any] | None = None

    def cells(self, digits: int) -> list[str]:
        if self.interval is not None:
            return [_interval(lo, hi, digits) for lo, hi in zip(*self.interval)]
        if self.spread is not None:
            # a std that is undefined (one run) is left blank, not shown as "± nan"
            return [format_number(m, digits) + ("" if s is None or s != s else f" ± {format_number(s, 2)}")
                    for m, s in zip(self.values, self.spread)]
        return [format_number(v, digits) for v in self.values]


def _header(name: str, width: int) -> str:
    """Break a header after ``/ _ .`` or a space so that no line is wider than needed."""
    parts = [p for p in _HEADER_BREAK.split(name) if p]
    width = max(width, *(len(p.rstrip()) for p in parts))
    lines = [""]
    for part in parts:
        if lines[-1] and len(lines[-1] + part.rstrip()) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(line.rstrip() for line in lines)


def _columns(frame: Any, view: TableView) -> list[_Column]:
    data = frame.to_dict(as_series=False)
    names = list(frame.columns)
    out = []
    for name in names:
        base = _interval_of(name)
        if base is not None:
            if not view.ci or not name.endswith("_ci_low"):
                continue
            high = f"{base}_ci_high"
            out.append(_Column(f"{base} CI", data[name], True, (data[name], data.get(high, [None] * len(data[name])))))
            continue
        values = data[name]
        if name.endswith(" std") and f"{name.removesuffix(' std')} mean" in data:
            continue
        if name.endswith(" mean") and f"{name.removesuffix(' mean')} std" in data:
            out.append(_Column(name.removesuffix(" mean"), values, True, spread=data[f"{name[:-5]} std"]))
            continue
        numeric = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)
        out.append(_Column(name, values, numeric))
    if view.ci:  # an interval right after its metric
        ordered: list[_Column] = []
        for column in out:
            if column.interval is None:
                ordered.append(column)
                ordered += [c for c in out if c.interval is not None and c.name == f"{column.name} CI"]
        ordered += [c for c in out if c not in ordered]
        out = ordered
    return [c for c in out if any(v is not None and v != "" for v in c.values)]


def _same_everywhere(column: _Column) -> bool:
    if column.interval is not None or len(column.values) < 2:
        return False
    first = column.values[0]
    return all(v == first or (isinstance(v, float) and isinstance(first, float) and math.isnan(v)
                              and math.isnan(first)) for v in column.values)


def _measure(console: Console, renderable: RenderableType) -> tuple[int, int]:
    measured = console.measure(renderable)
    return measured.minimum, measured.maximum


def _table(title: str | None) -> Table:
    # every string is text, never Rich markup: a label or path with "[...]" prints whole
    # two spaces between columns (adjacent padding collapsed), a rule under the header
    return Table(title=Text(title) if title else None, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                 collapse_padding=True, title_justify="left")


def _rows_table(columns: list[_Column], digits: int, title: str | None, wrap_text: bool) -> Table:
    table = _table(title)
    cells = [c.cells(digits) for c in columns]
    for column, values in zip(columns, cells):
        width = max((len(v) for v in values), default=1)
        table.add_column(Text(_header(column.name, width)), justify="right" if column.numeric else "left",
                         no_wrap=column.numeric or not wrap_text, overflow="fold")
    for row in zip(*cells):
        table.add_row(*map(Text, row))
    return table


def _transposed_table(columns: list[_Column], keys: list[_Column], digits: int, title: str | None,
                      wrap_text: bool) -> Table:
    table = _table(title)
    num_rows = len(columns[0].values) if columns else len(keys[0].values)
    heads = ["\n".join(filter(None, (k.cells(digits)[i] for k in keys))) for i in range(num_rows)]
    table.add_column(Text("\n".join(k.name for k in keys)), style="bold", no_wrap=True)
    cells = [c.cells(digits) for c in columns]
    for i, head in enumerate(heads):
        numeric = all(c.numeric or not cell[i] for c, cell in zip(columns, cells))
        table.add_column(Text(head or str(i + 1)), justify="right", no_wrap=numeric or not wrap_text,
                         overflow="fold")
    for column, values in zip(columns, cells):
        table.add_row(Text(column.name), *map(Text, values))
    return table


def _hide_order(columns: list[_Column], keep: Sequence[str], hide_first: Sequence[str]) -> list[str]:
    """Least useful first: the caller's list, then text columns, then settings, then measures,
    each from the right."""
    names = [c.name for c in columns if c.name not in keep]
    first = [n for pattern in hide_first for n in names if fnmatch.fnmatchcase(n, pattern)]
    text = [c.name for c in reversed(columns) if not c.numeric and c.name in names]
    settings = [n for n in reversed(names) if not is_measure(n)]
    measures = [n for n in reversed(names) if is_measure(n)]
    return list(dict.fromkeys([*first, *text, *settings, *measures]))


def make_table(frame: Any, width: int, *, title: str | None = None, view: TableView = TableView(),
               keep: Sequence[str] = IDENTITY_COLUMNS, hide_first: Sequence[str] = (),
               known_ids: Iterable[str] = (), notes: Sequence[str] = (), strict: bool = True) -> RenderableType:
    """Fit a frame into ``width`` terminal columns (the steps are in the module docstring).

    Args:
        frame: a polars frame: one row per run (or baseline, group, field), any columns;
            floats unrounded. Interval columns are ``<metric>_ci_low`` and ``<metric>_ci_high``.
        width: terminal columns available.
        title: the table's title.
        view: the reader's choice of columns, intervals and layout.
        keep: identity columns: never hidden nor moved under the table; in the transposed
            layout they head the runs' columns.
        hide_first: column names or globs to hide first when the table is too wide.
        known_ids: every run id a shortened id must not be confused with (the store's).
        notes: lines to print under the table.
        strict: see `pick_columns`.

    Returns:
        A Rich renderable: the table and, under it, the values shared by all rows, the columns
        hidden and ``notes``.
    """
    frame = pick_columns(frame, view, keep, strict=strict)
    columns = _columns(frame, view)
    shared = []
    if frame.height >= 2:
        shared = [c for c in columns if c.name not in keep and not is_measure(c.name) and _same_everywhere(c)]
        columns = [c for c in columns if c not in shared]
    known = list(known_ids)
    shortened = False
    for column in columns:
        if column.name in _ID_COLUMNS:
            short = short_ids(column.values, known)
            shortened |= short != column.values
            column.values = short
    # measured on a console wide enough that Rich never squeezes: the natural width
    console = Console(file=io.StringIO(), width=100_000, color_system=None)

    def fits(table: Table, wrapped: bool) -> bool:
        minimum, maximum = _measure(console, table)
        return (minimum if wrapped else maximum) <= width

    keys = [c for c in columns if c.name in keep]
    fields = [c for c in columns if c.name not in keep]

    def build(layout: Layout, shown: list[_Column], digits: int, wrap_text: bool) -> Table:
        if layout is Layout.columns:
            return _transposed_table([c for c in shown if c.name not in keep], keys, digits, title, wrap_text)
        return _rows_table(shown, digits, title, wrap_text)

    if view.layout is Layout.auto:
        few = 1 <= frame.height <= _TRANSPOSE_MAX_ROWS and bool(keys) and bool(fields)
        layouts = [Layout.rows, Layout.columns] if few else [Layout.rows]
    else:
        layouts = [view.layout if keys else Layout.rows]
    hidden: list[str] = []
    table = next((t for layout in layouts for digits in (4, 3)
                  if fits(t := build(layout, columns, digits, False), False)), None)
    if table is None and not view.columns:  # columns the reader picked are never hidden
        for name in _hide_order(columns, keep, hide_first):
            hidden.append(name)
            candidate = build(layouts[0], [c for c in columns if c.name not in hidden], 3, False)
            if fits(candidate, False):
                table = candidate
                break
        else:
            hidden = []
    if table is None:
        table = build(layouts[0], columns, 3, True)
    lines = []
    if shared:
        lines.append("same in every row: " + _SEP.join(f"{c.name} {format_number(c.values[0])}" for c in shared))
    if hidden:
        lines.append("not shown (too wide): " + ", ".join(sorted(hidden, key=[c.name for c in columns].index))
                     + " — --columns picks, --format csv has all")
    if shortened:
        lines.append("run: shortest unique id prefix")
    lines += list(notes)
    if not lines:
        return table
    return Group(table, *(Text(line, style="dim", overflow="fold") for line in lines))
