"""Pieces every command shares: option aliases, consoles, error handling, output formats."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from lba_cli.cli.tables import Layout, TableView
from lba_cli.errors import LbaError

__all__ = ["stdout", "stderr", "friendly_errors", "dump_json", "RunsDir", "Quiet", "OutputFormat",
           "render_frame", "store_from", "reading_status", "print_reading_report", "Columns", "Metrics", "Ci",
           "TableLayout", "table_view", "known_run_ids"]

_TABLE_WIDTH_WHEN_PIPED = 10_000  # never wrap a cell (a run id) when the output goes to a file or a pipe


def _stdout_console() -> Console:
    """The terminal's width on a terminal (or where FORCE_COLOR / TTY_COMPATIBLE say there is
    one); piped output is read by tools and wide logs, not 80-column terminals: no fitting."""
    console = Console()
    return console if console.is_terminal else Console(width=_TABLE_WIDTH_WHEN_PIPED)


stdout = _stdout_console()
stderr = Console(stderr=True, soft_wrap=True)  # messages are never re-wrapped mid-path

RunsDir = Annotated[Optional[Path], typer.Option(
    "--runs-dir", envvar="LBA_RUNS_DIR", file_okay=False, help="Runs directory (default: ./runs).",
    rich_help_panel="System", show_default=False)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.", rich_help_panel="System")]
Columns = Annotated[Optional[list[str]], typer.Option(
    "--columns", help="Table columns to show, by name or glob ('val/*'), comma-separated or repeated; the run and "
                      "its name come first (csv and json: the same columns, unrounded).", rich_help_panel="Output",
    show_default=False)]
Metrics = Annotated[Optional[list[str]], typer.Option(
    "--metrics", help="Metrics to show, e.g. rmse,pearson (every split's), or columns such as val/rmse.",
    rich_help_panel="Output", show_default=False)]
Ci = Annotated[bool, typer.Option("--ci", help="Show the 95 % bootstrap intervals in the table (csv and json "
                                               "always have them).", rich_help_panel="Output")]
TableLayout = Annotated[Layout, typer.Option(
    "--layout", help="rows (one line per run), columns (runs as columns, one line per field) or auto (columns when "
                     "few runs do not fit as rows).", rich_help_panel="Output")]


class OutputFormat(str, Enum):
    """Result formats for stdout."""

    table = "table"
    json = "json"
    csv = "csv"


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an `LbaError` into a red message on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LbaError as error:  # the message is text, not markup: "[train]" must stay
            stderr.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            stderr.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


def store_from(runs_dir: Path | None):
    """The run store of ``--runs-dir`` / ``LBA_RUNS_DIR`` / ``./runs``."""
    from lba_cli.runs import RunStore

    return RunStore(runs_dir)


def _json_safe(value: Any) -> Any:
    """NaN and infinities have no JSON form: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def dump_json(value: Any) -> str:
    """Strict JSON (no NaN) for stdout."""
    return json.dumps(_json_safe(value), indent=2, default=str, allow_nan=False)


def table_view(columns: list[str] | None = None, metrics: list[str] | None = None, ci: bool = False,
               layout: Layout = Layout.auto) -> TableView:
    """The reader's `TableView` from ``--columns``, ``--metrics`` (comma-separated or repeated),
    ``--ci`` and ``--layout``."""

    def split(values: list[str] | None) -> tuple[str, ...]:
        return tuple(v.strip() for value in values or () for v in value.split(",") if v.strip())

    return TableView(columns=split(columns), metrics=split(metrics), ci=ci, layout=layout)


def known_run_ids(store: Any) -> list[str]:
    """Every run id in the store: a shortened id must not be the prefix of any of them."""
    return [row["id"] for row in store.index_rows()]


def render_frame(frame: Any, fmt: OutputFormat, title: str | None = None, *, view: Any = None,
                 known_ids: Iterable[str] = (), hide_first: Sequence[str] = (), notes: Sequence[str] = (),
                 keep: Sequence[str] | None = None, strict: bool = True) -> None:
    """Print a polars frame to stdout: a table fitted to the terminal, JSON records or CSV.

    JSON and CSV carry every row and column unrounded (only ``view``'s ``--columns`` and
    ``--metrics`` pick); the table is fitted by `lba_cli.cli.tables.make_table`, which takes
    ``view``, ``known_ids``, ``hide_first``, ``notes``, ``strict`` and ``keep`` (default: the
    identity columns, `lba_cli.cli.tables.IDENTITY_COLUMNS`).
    """
    from lba_cli.cli.tables import IDENTITY_COLUMNS, make_table, pick_columns

    view = view or TableView()
    keep = IDENTITY_COLUMNS if keep is None else keep
    if fmt is OutputFormat.json:
        sys.stdout.write(dump_json(pick_columns(frame, view, keep).to_dicts()) + "\n")
    elif fmt is OutputFormat.csv:
        sys.stdout.write(pick_columns(frame, view, keep).write_csv())
    else:
        stdout.print(make_table(frame, stdout.width, title=title, view=view, known_ids=known_ids,
                                hide_first=hide_first, notes=notes, keep=keep, strict=strict))


@contextlib.contextmanager
def reading_status(quiet: bool) -> Iterator[Callable[[str], None]]:
    """A live "reading complexes: N (id)" line on a terminal; yields the callback that counts."""
    live = not quiet and stderr.is_terminal
    with stderr.status("reading complexes") if live else contextlib.nullcontext() as status:
        count = 0

        def seen(complex_id: str) -> None:
            nonlocal count
            count += 1
            if status is not None:
                status.update(f"reading complexes: {count} ({escape(complex_id)})")

        yield seen


def print_reading_report(messages: list[str], notes: list[tuple[str, str]], skipped: list[Any]) -> None:
    """What reading sources found, on stderr: messages, per-complex notes and each skipped
    complex with its stage and reason (as text: a path or id with "[...]" is printed whole)."""
    for message in messages:
        stderr.print(f"[cyan]note:[/] {escape(message)}", highlight=False)
    for complex_id, note in notes:
        stderr.print(f"[dim]{escape(complex_id)}: {escape(note)}[/]", highlight=False)
    for item in skipped:
        stderr.print(f"[yellow]skipped[/] {escape(item.complex_id)} ({item.stage}): {escape(item.reason)}",
                     highlight=False)
