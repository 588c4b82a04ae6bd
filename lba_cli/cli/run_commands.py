"""`lba runs list|show|rm|reindex`."""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Annotated, Optional

import typer
from rich.markup import escape

from lba_cli.choices import RunKind, RunStatus
from lba_cli.cli.common import (
    Columns,
    OutputFormat,
    RunsDir,
    TableLayout,
    dump_json,
    friendly_errors,
    known_run_ids,
    render_frame,
    stderr,
    stdout,
    store_from,
    table_view,
)
from lba_cli.cli.tables import Layout, format_number

runs_app = typer.Typer(no_args_is_help=True, help="List, inspect, tag, remove and re-index runs.")


class ShowFormat(str, Enum):
    table = "table"
    json = "json"


@runs_app.command("list")
@friendly_errors
def list_runs(
    kind: Annotated[Optional[RunKind], typer.Option("--kind", help="Only runs of this kind.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Only runs whose name contains this.")] = None,
    tag: Annotated[Optional[list[str]], typer.Option("--tag",
                                                     help="Only runs with this tag (repeat: all of them).")] = None,
    status: Annotated[Optional[RunStatus], typer.Option("--status", help="Only runs with this status.")] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
    columns: Columns = None,
    layout: TableLayout = Layout.rows,
    runs_dir: RunsDir = None,
) -> None:
    """List runs, oldest first.

    Example: [bold]lba runs list --kind finetune[/]
    """
    import polars as pl

    rows = []
    store = store_from(runs_dir)
    found = store.index_rows(kind=kind.value if kind else None, name_contains=name, tags=tag or (),
                                            status=status.value if status else None)
    for row in found:
        metrics = json.loads(row["metrics_json"] or "{}")
        rows.append({"id": row["id"], "kind": row["kind"], "name": row["name"] or "", "status": row["status"],
                     "created_at": row["created_at"], "best_epoch": row["best_epoch"], "parent": row["parent_id"] or "",
                     "tags": " ".join(row["tags"]),
                     "val/loss": metrics.get("val/loss"), "test/rmse": metrics.get("test/rmse")})
    render_frame(pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame({"id": []}), fmt, title="runs",
                 view=table_view(columns, layout=layout), known_ids=known_run_ids(store),
                 hide_first=("created_at", "tags", "parent"))
    _warn_damaged(found)


def _warn_damaged(rows: list[dict]) -> None:
    """Name each damaged run and what is wrong with it (stderr)."""
    for row in rows:
        if row.get("problem"):
            name = f" ({row['name']})" if row.get("name") else ""
            stderr.print(f"[yellow]warning:[/] run {row['id']}{escape(name)} is damaged: {escape(row['problem'])}; "
                         "repair or remove it, then `lba runs reindex`", highlight=False, soft_wrap=True)


@runs_app.command("show")
@friendly_errors
def show(
    run: Annotated[str, typer.Argument(help="Run id, prefix, name or directory.")],
    fmt: Annotated[ShowFormat, typer.Option("--format", help="table or json.")] = ShowFormat.table,
    runs_dir: RunsDir = None,
) -> None:
    """Config, status, best epoch, metrics, parent run and files of one run.

    Example: [bold]lba runs show 20261130-101500-ab12[/]
    """
    found = store_from(runs_dir).resolve(run)
    info = {"id": found.id, "path": str(found.path), "config": found.config, "status": found.status,
            "files": sorted(str(p.relative_to(found.path)) for p in found.path.rglob("*") if p.is_file()
                            and not p.name.startswith("."))}
    if fmt is ShowFormat.table:
        import polars as pl

        from lba_cli.compare import flatten_config

        status = info["status"]
        rows = [(key, " ".join(status[key]) if isinstance(status[key], list) else str(status[key]))
                for key in ("status", "created_at", "started_at", "finished_at", "parent_id", "parent_label",
                            "best_epoch", "epochs_done", "tags") if status.get(key) not in (None, [], "")]
        rows += [(key, format_number(value)) for key, value in sorted(status.get("metrics", {}).items())]
        rows += [(f"config.{key}", str(value)) for key, value in flatten_config(info["config"]).items()]
        rows += [("path", info["path"])] + [("files" if i == 0 else "", name) for i, name in enumerate(info["files"])]
        render_frame(pl.DataFrame(rows, schema={"field": pl.Utf8, "value": pl.Utf8}, orient="row"), OutputFormat.table,
                     title=f"run {found.id}", keep=("field", "value"))
    else:
        sys.stdout.write(dump_json(info) + "\n")


@runs_app.command("rm")
@friendly_errors
def remove(
    runs: Annotated[list[str], typer.Argument(help="Runs to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Delete runs (their directories and index rows).

    Example: [bold]lba runs rm 20261130-101500-ab12 --yes[/]
    """
    store = store_from(runs_dir)
    found = [store.resolve(r) for r in runs]
    if not yes:
        if not sys.stdin.isatty():
            raise typer.BadParameter("refusing to delete without a terminal to confirm; add --yes", param_hint="--yes")
        if not typer.confirm(f"delete {len(found)} run(s): {', '.join(r.id for r in found)}?"):
            raise typer.Exit(1)
    for run in found:
        store.remove(run)
        stderr.print(f"removed {run.id}", highlight=False)


@runs_app.command("tag")
@friendly_errors
def tag(
    run: Annotated[str, typer.Argument(help="Run id, prefix, name or directory.")],
    tags: Annotated[list[str], typer.Argument(help="Tags to add; prefix with - to remove (e.g. -draft).")],
    runs_dir: RunsDir = None,
) -> None:
    """Add or remove tags of a run.

    Example: [bold]lba runs tag 20261130-101500-ab12 baseline paper -- -draft[/]
    """
    store = store_from(runs_dir)
    found = store.resolve(run)
    result = store.tag(found, add=[t for t in tags if not t.startswith("-")],
                       remove=[t[1:] for t in tags if t.startswith("-")])
    stdout.print(" ".join(result), highlight=False, markup=False)


@runs_app.command("reindex")
@friendly_errors
def reindex(runs_dir: RunsDir = None) -> None:
    """Rebuild index.sqlite from the run directories.

    Example: [bold]lba runs reindex --runs-dir runs[/]
    """
    store = store_from(runs_dir)
    count = store.reindex()
    damaged = store.index_rows(status="damaged")
    stdout.print(f"indexed {count} runs" + (f" ({len(damaged)} damaged)" if damaged else ""), highlight=False)
    _warn_damaged(damaged)
