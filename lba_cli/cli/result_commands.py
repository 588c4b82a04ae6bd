"""`lba evaluate`, `lba plot` and `lba compare`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from lba_cli.choices import HEADLINE_METRICS, EvaluationSplit, RunKind, SplitName
from lba_cli.cli.common import (
    Ci,
    Columns,
    Metrics,
    OutputFormat,
    RunsDir,
    TableLayout,
    friendly_errors,
    known_run_ids,
    render_frame,
    stderr,
    stdout,
    store_from,
    table_view,
)
from lba_cli.cli.options import Finetune
from lba_cli.cli.tables import Layout, pick_columns

_DEFAULT_PANELS = "Pre-training and fine-tuning runs get panels of their own (default: " + "; ".join(
    f"{kind.value}: {', '.join(names)}" for kind, names in HEADLINE_METRICS.items()) + ")."

Runs = Annotated[list[str], typer.Argument(help="Run ids, unique prefixes, names or run directories (runs/* works).",
                                           show_default=False)]


class PlotKind(str, Enum):
    curves = "curves"
    scatter = "scatter"


class XAxis(str, Enum):
    epoch = "epoch"
    step = "step"
    time = "time"


def _report_skipped(skipped: list[tuple[str, str]]) -> None:
    for ref, reason in skipped:
        stderr.print(f"[yellow]skipped[/] {escape(ref)}: {escape(reason)}", highlight=False)


@friendly_errors
def evaluate(
    runs: Runs,
    split: Annotated[Optional[EvaluationSplit], typer.Option(
        "--split", help="Split to evaluate; all: every complex of the file (default: test on the run's own data, all "
                        "on --data from elsewhere).", show_default=False)] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Another lba voxelize file (default: the run's own).",
                                                 exists=True, dir_okay=False)] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
    ensemble: Annotated[bool, typer.Option(
        "--ensemble", help="Also one row per replicate group (runs differing only in seed): the metrics of the "
                           "runs' mean prediction, and the per-run mean ± std (ddof 1).")] = False,
    device: Finetune("--device") = None,
    ci: Ci = False,
    columns: Columns = None,
    metrics: Metrics = None,
    layout: TableLayout = Layout.auto,
    runs_dir: RunsDir = None,
) -> None:
    """Whole-split MAE, RMSE, Pearson r and Spearman ρ of fine-tuned runs; saves predictions.

    Example: [bold]lba evaluate 20261130-101500-ab12 --split test[/]
    (seed replicates and their ensemble: lba evaluate rand-s0 rand-s1 rand-s2 --ensemble)
    (or, on an outside data set, every complex of it: lba evaluate RUN --data other.h5)
    """
    import polars as pl

    from lba_cli.compare import collect_runs, labels_for
    from lba_cli.errors import RunNotFoundError
    from lba_cli.evaluate import evaluate_baselines, evaluate_run
    from lba_cli.metrics import MIN_CORRELATION_SIZE

    store = store_from(runs_dir)
    found, skipped = collect_runs(store, runs)
    _report_skipped(skipped)
    if not found:
        raise RunNotFoundError("no runs to evaluate" + (f" ({len(skipped)} skipped, see above)" if skipped else ""))
    labels, _ = labels_for(found, store)
    results, scored, evaluated = [], {}, []
    for run, label in zip(found, labels):
        if run.status["status"] != "completed":
            stderr.print(f"[yellow]warning:[/] run {run.id} is {run.status['status']}: evaluating its best epoch so "
                         "far",
                         highlight=False)
        result = evaluate_run(store, str(run.path), split.value if split else None, data, device or "auto")
        stderr.print(f"predictions: {result.path}", highlight=False, markup=False)
        if result.metrics["n"] < MIN_CORRELATION_SIZE:
            stderr.print(f"[yellow]note:[/] {result.split} has {int(result.metrics['n'])} complex(es): correlations "
                         f"need at least {MIN_CORRELATION_SIZE} and are undefined (nan)", highlight=False)
        results.append((label, result))
        evaluated.append((run, result))
        own = Path(run.config["finetune"]["data_path"]).resolve()
        # the baselines are fitted on the training split the run learnt from, and scored on the same complexes
        scored.setdefault((result.data_path.resolve(), result.split, own), None)
    rows = [r.as_row(label) for label, r in results]
    if ensemble:
        from lba_cli.evaluate import ensemble_rows

        rows.extend(ensemble_rows(store, evaluated))
    for path, split_name, train_path in scored:
        rows.extend(result.as_row(result.run_id) for result in evaluate_baselines(path, split_name,
                                                                                 train_path=train_path))
    splits = sorted({str(row["split"]) for row in rows})
    render_frame(pl.DataFrame(rows, infer_schema_length=None), fmt,
                 title=f"{', '.join(splits)} metrics" + (" (95 % bootstrap intervals)" if ci else ""),
                 view=table_view(columns, metrics, ci, layout), known_ids=known_run_ids(store))


@friendly_errors
def plot(
    runs: Runs,
    output: Annotated[Path, typer.Option("--output", "-o", help="Figure file: .png, .svg or .pdf.", dir_okay=False)],
    metric: Annotated[Optional[list[str]], typer.Option(
        "--metric", help="Metric or glob, repeatable (e.g. 'val/*'). " + _DEFAULT_PANELS, show_default=False)] = None,
    color_by: Annotated[Optional[str], typer.Option("--color-by",
                                                    help="Setting that picks the colour, e.g. train.lr (default: the "
                                                         "run label).", show_default=False)] = None,
    kind: Annotated[PlotKind, typer.Option(
        "--kind", help="curves (metrics per epoch) or scatter (predicted vs measured pK).")] = PlotKind.curves,
    x: Annotated[XAxis, typer.Option("--x", help="x axis of curves.")] = XAxis.epoch,
    split: Annotated[SplitName, typer.Option("--split", help="Split of the scatter plot.")] = SplitName.test,
    width: Annotated[float, typer.Option("--width-in", help="Figure width, inches.")] = 9.0,
    height: Annotated[float, typer.Option("--height-in", help="Figure height, inches.")] = 6.0,
    runs_dir: RunsDir = None,
) -> None:
    """Learning curves (one panel per metric and run kind) or a predicted-vs-measured scatter plot.

    Example: [bold]lba plot runs/* -o curves.png --metric 'val/*'[/]
    """
    import polars as pl

    from lba_cli.compare import collect_runs, labels_for
    from lba_cli.errors import ConfigError, RunNotFoundError
    from lba_cli.metrics import regression_metrics
    from lba_cli.plots import curves_frame, plot_curves, plot_scatter, save_plot, select_panels

    if not (0 < width <= 50 and 0 < height <= 50):
        raise ConfigError(f"figure size {width} x {height} in\nexpected: --width-in and --height-in in (0, 50]")
    store = store_from(runs_dir)
    found, skipped = collect_runs(store, runs)
    _report_skipped(skipped)
    if not found:
        raise RunNotFoundError("no runs to plot")
    if kind is PlotKind.scatter:
        pretrain = [r.id for r in found if r.kind != RunKind.finetune]
        if pretrain:
            raise ConfigError(f"--kind scatter plots predicted pK of fine-tuning runs; {', '.join(pretrain)} "
                              "pre-trains\nexpected: fine-tuning runs (lba runs list --kind finetune)")
    labels, title = labels_for(found, store, color_by)
    if kind is PlotKind.curves:
        frame = curves_frame([(r.id, label, r.kind, r.read_metrics()) for r, label in zip(found, labels)])
        figure = plot_curves(frame, select_panels(frame, metric), x="elapsed_s" if x is XAxis.time else x.value,
                             color_title=title)
    else:
        parts, scores = [], []
        for run, label in zip(found, labels):
            predictions = run.read_predictions(split.value)
            parts.append(predictions.with_columns(pl.lit(label).alias("label")))
            m = regression_metrics(predictions["affinity_pk"].to_numpy(), predictions["predicted_pk"].to_numpy())
            scores.append(f"{label}: RMSE {m['rmse']:.2f}, r {m['pearson']:.2f}, ρ {m['spearman']:.2f}")
        if metric or color_by:
            stderr.print("[yellow]note:[/] --metric and --color-by apply to curves; a scatter plot shows pK",
                         highlight=False)
        figure = plot_scatter(pl.concat(parts), f"{split.value} split\n" + "\n".join(scores))
    path = save_plot(figure, output, width, height)
    stdout.print(str(path), highlight=False, markup=False)


@friendly_errors
def compare(
    runs: Runs,
    sort: Annotated[Optional[str], typer.Option("--sort", help="Column to sort by, e.g. val/rmse.",
                                                show_default=False)] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
    show_all: Annotated[bool, typer.Option("--all", help="Show every setting, not only those that differ.")] = False,
    group: Annotated[bool, typer.Option(
        "--group", help="One row per replicate group (runs differing only in seed): mean ± std.")] = False,
    columns: Columns = None,
    metrics: Metrics = None,
    layout: TableLayout = Layout.auto,
    runs_dir: RunsDir = None,
) -> None:
    """One row per run: the settings that differ, best epoch and metrics.

    Example: [bold]lba compare runs/* --sort val/rmse[/]
    """
    from lba_cli.compare import compare_runs

    store = store_from(runs_dir)
    result = compare_runs(store, runs, sort=sort, show_all=show_all, group_replicates=group)
    _report_skipped(result.skipped)
    view = table_view(columns, metrics, layout=layout)
    if fmt is OutputFormat.table:
        pick_columns(result.table, view)  # a --columns or --metrics name must be in one of the tables
        known = known_run_ids(store)
        for kind, table in result.tables.items():
            render_frame(table.drop("kind"), fmt, title=f"{kind} runs", view=view, known_ids=known, strict=False)
    else:
        render_frame(result.table, fmt, view=view)
