"""Pieces every command shares: option aliases, consoles, error handling, output formats."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sys
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lba_cli.errors import LbaError

__all__ = ["stdout", "stderr", "friendly_errors", "dump_json", "RunsDir", "Quiet", "OutputFormat",
           "render_frame", "store_from", "reading_status", "print_reading_report"]

_TABLE_WIDTH_WHEN_PIPED = 10_000  # never wrap a cell (a run id) when the output goes to a file or a pipe
# Piped output is read by tools and wide logs, not 80-column terminals: do not squeeze tables.
stdout = Console(width=None if sys.stdout.isatty() else _TABLE_WIDTH_WHEN_PIPED)
stderr = Console(stderr=True, soft_wrap=True)  # messages are never re-wrapped mid-path

RunsDir = Annotated[Optional[Path], typer.Option(
    "--runs-dir", envvar="LBA_RUNS_DIR", file_okay=False, help="Runs directory (default: ./runs).",
    rich_help_panel="System", show_default=False)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.", rich_help_panel="System")]


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


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


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


def render_frame(frame: Any, fmt: OutputFormat, title: str | None = None) -> None:
    """Print a polars frame to stdout as a Rich table, JSON records or CSV."""
    if fmt is OutputFormat.json:
        sys.stdout.write(dump_json(frame.to_dicts()) + "\n")
    elif fmt is OutputFormat.csv:
        sys.stdout.write(frame.write_csv())
    else:
        table = Table(title=title, show_lines=False)
        for column in frame.columns:
            table.add_column(column, overflow="fold")
        for row in frame.iter_rows():
            table.add_row(*(_fmt(v) for v in row))
        stdout.print(table)


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
