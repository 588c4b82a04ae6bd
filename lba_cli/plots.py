"""Figures with plotnine: learning curves and predicted-vs-measured scatter plots.

Curves follow the original research's style: one panel per metric, x = epoch, colour = the
run's label (the setting that varies, e.g. pre-training difficulty ``1-2-20``), the recorded
values as points on a faint line with an exponentially smoothed curve drawn over it; the legend
says which is which and with what smoothing (``--smooth 0`` draws the recorded values alone),
and each run's best epoch (the checkpoint kept as ``best``) is marked. Pre-training and fine-tuning
runs never share a panel: their losses are different quantities (cross-entropy over 6 faces,
MSE in pK²), so with both kinds each panel is one kind's metric.
"""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path

import polars as pl

from lba_cli.atomic import atomic_path
from lba_cli.choices import HEADLINE_METRICS, RunKind
from lba_cli.errors import LbaError

__all__ = ["theme_lba", "curves_frame", "select_panels", "plot_curves", "plot_scatter", "plot_sweep", "save_plot",
           "DEFAULT_SMOOTHING", "KIND_TITLES", "check_smoothing"]

# The weight of the previous smoothed value in the exponential moving average (TensorBoard's
# "smoothing"): 0 draws the recorded values, 0.5 gives the newest epoch half the weight.
DEFAULT_SMOOTHING = 0.5
KIND_TITLES = {RunKind.pretrain: "pre-training", RunKind.finetune: "fine-tuning"}
_AXIS_LABELS = {"epoch": "epoch", "step": "optimizer step", "elapsed_s": "time (s)"}
_CURVE_SCHEMA = {"run": pl.Utf8, "label": pl.Utf8, "kind": pl.Utf8, "epoch": pl.Int64, "step": pl.Int64,
                 "elapsed_s": pl.Float64, "metric": pl.Utf8, "value": pl.Float64, "smoothed": pl.Float64}


def theme_lba():
    """The one theme every lba figure uses."""
    from plotnine import element_text, theme, theme_bw

    return theme_bw(base_size=10) + theme(legend_position="right", strip_text=element_text(size=9))


def check_smoothing(smoothing: float) -> float:
    """Raise `LbaError` unless ``smoothing`` is in [0, 1); returns it."""
    if not 0 <= smoothing < 1:
        raise LbaError(f"invalid --smooth {smoothing!r}\nexpected: a weight in [0, 1): 0 draws the recorded values "
                       f"alone, {DEFAULT_SMOOTHING} (default) halves the weight of each older epoch")
    return smoothing


def curves_frame(histories: list[tuple[str, str, str, pl.DataFrame]],
                 smoothing: float = DEFAULT_SMOOTHING) -> pl.DataFrame:
    """Long frame of per-epoch metrics.

    Args:
        histories: (run id, label, run kind, metrics frame with columns epoch, step,
            elapsed_s and metric columns such as ``val/rmse``).

    Returns:
        Columns of `_CURVE_SCHEMA`: run, label, kind (Utf8), epoch, step (Int64), elapsed_s
        (Float64), metric (Utf8), value (Float64), smoothed (Float64: exponential moving
        average with weight ``smoothing`` on the previous average, ``1 - smoothing`` on the
        newest value; equal to value when ``smoothing`` is 0).
    """
    check_smoothing(smoothing)
    frames = []
    for run_id, label, kind, history in histories:
        if history.is_empty():
            continue
        value_columns = [c for c in history.columns if "/" in c]
        long = history.unpivot(index=["epoch", "step", "elapsed_s"], on=value_columns, variable_name="metric",
                               value_name="value")
        frames.append(long.with_columns(pl.lit(run_id).alias("run"), pl.lit(label).alias("label"),
                                        pl.lit(str(kind)).alias("kind"), pl.col("value").cast(pl.Float64)))
    if not frames:
        return pl.DataFrame(schema=_CURVE_SCHEMA)
    frame = pl.concat(frames, how="diagonal_relaxed").sort("run", "metric", "epoch")
    smoothed = (pl.col("value").ewm_mean(alpha=1 - smoothing, adjust=True).over("run", "metric") if smoothing
                else pl.col("value"))
    frame = frame.with_columns(smoothed.alias("smoothed"))
    return frame.select(*_CURVE_SCHEMA)


def select_panels(frame: pl.DataFrame, patterns: list[str] | None) -> list[tuple[str, str]]:
    """The (run kind, metric) panels to draw, pre-training first.

    Args:
        frame: output of `curves_frame`.
        patterns: metric names or globs (``val/*``); None: each kind's
            `lba_cli.choices.HEADLINE_METRICS` that were recorded (or all its metrics).

    Raises:
        LbaError: when a pattern matches no recorded metric of any kind, listing what is there.
    """
    present = set(frame["kind"].to_list())
    recorded = {kind.value: sorted(frame.filter(pl.col("kind") == kind.value)["metric"].unique().to_list())
                for kind in RunKind if kind.value in present}
    panels: list[tuple[str, str]] = []
    for kind, available in recorded.items():
        if not patterns:
            chosen = [m for m in HEADLINE_METRICS[RunKind(kind)] if m in available] or available
        else:
            chosen = list(dict.fromkeys(m for pattern in patterns for m in available if fnmatch.fnmatchcase(m,
                                                                                                            pattern)))
        panels.extend((kind, metric) for metric in chosen)
    for pattern in patterns or ():
        if not any(fnmatch.fnmatchcase(metric, pattern) for _, metric in panels):
            everything = sorted({m for available in recorded.values() for m in available})
            raise LbaError(f"--metric {pattern!r} matches no recorded metric\navailable: {', '.join(everything)}")
    return panels


def plot_curves(frame: pl.DataFrame, panels: list[tuple[str, str]], x: str = "epoch", color_title: str = "run",
                smoothing: float = DEFAULT_SMOOTHING, best_epochs: dict[str, int | None] | None = None,
                best_metric: str = "val/loss"):
    """Learning curves, one panel per (run kind, metric); panels name the kind when there are two.

    Args:
        frame: output of `curves_frame` (made with the same ``smoothing``).
        panels: (kind, metric) pairs in panel order (`select_panels`).
        x: ``epoch``, ``step`` or ``elapsed_s``.
        color_title: legend title (the setting the labels stand for).
        smoothing: the weight `curves_frame` smoothed with, named in the legend; 0 draws
            the recorded values alone.
        best_epochs: run id -> its best epoch, marked with a diamond in every panel.
        best_metric: what chose the best epoch, for the legend.

    Returns:
        A plotnine ``ggplot``.
    """
    import pandas as pd
    from plotnine import (
        aes,
        facet_wrap,
        geom_line,
        geom_point,
        ggplot,
        labs,
        scale_alpha_manual,
        scale_shape_manual,
        scale_size_manual,
        scale_x_continuous,
    )

    both_kinds = len({kind for kind, _ in panels}) > 1

    def title(kind: str, metric: str) -> str:
        return f"{KIND_TITLES[RunKind(kind)]}: {metric}" if both_kinds else metric

    wanted = pl.DataFrame({"kind": [k for k, _ in panels], "metric": [m for _, m in panels],
                           "panel": [title(k, m) for k, m in panels]})
    data = frame.join(wanted, on=["kind", "metric"], how="inner")
    recorded = "recorded (points)"
    smoothed = f"smoothed (EMA, --smooth {smoothing:g})"
    series = [data.with_columns(pl.col("value").alias("y"), pl.lit(recorded).alias("series"))]
    if smoothing:
        series.append(data.with_columns(pl.col("smoothed").alias("y"), pl.lit(smoothed).alias("series")))
    lines = pl.concat(series).with_columns((pl.col("run") + " " + pl.col("series")).alias("line"))
    best = data.join(pl.DataFrame({"run": list((best_epochs or {}).keys()),
                                   "epoch": [e for e in (best_epochs or {}).values()]},
                                  schema={"run": pl.Utf8, "epoch": pl.Int64}), on=["run", "epoch"], how="inner")
    best_label = f"best epoch (lowest {best_metric})"
    best = best.with_columns(pl.lit(best_label).alias("marker"))
    order = wanted["panel"].to_list()
    lines_pd, points_pd, best_pd = (_to_pandas(f) for f in (lines, data, best))
    for part in (lines_pd, points_pd, best_pd):
        part["panel"] = pd.Categorical(part["panel"], categories=order, ordered=True)
    kinds = [recorded, smoothed] if smoothing else [recorded]
    figure = (
        ggplot(lines_pd, aes(x=x, y="y", color="label", group="line"))
        + geom_line(aes(alpha="series", size="series"))
        + geom_point(points_pd, aes(x=x, y="value", color="label"), inherit_aes=False, alpha=0.5, size=0.8)
        + scale_alpha_manual(values=dict(zip(kinds, (0.3, 1.0) if smoothing else (1.0,))), breaks=kinds,
                             name="curve")
        + scale_size_manual(values=dict(zip(kinds, (0.5, 0.9) if smoothing else (0.6,))), breaks=kinds, name="curve")
        + facet_wrap("panel", scales="free_y")
        + labs(x=_AXIS_LABELS.get(x, x), y="", color=color_title)
        + (scale_x_continuous(breaks=_integer_breaks) if x in ("epoch", "step") else scale_x_continuous())
        + theme_lba()
    )
    if len(best_pd):
        figure += geom_point(best_pd, aes(x=x, y="value", color="label", shape="marker"), inherit_aes=False,
                             size=2.6, fill="white", stroke=0.9)
        figure += scale_shape_manual(values={best_label: "D"}, name="checkpoint kept as best")
    return figure


def _integer_breaks(limits: tuple[float, float]) -> list[int]:
    """At most ~8 whole-number ticks (epochs and steps are counts)."""
    lo, hi = math.ceil(limits[0]), math.floor(limits[1])
    step = max(1, math.ceil((hi - lo + 1) / 8))
    return list(range(lo, hi + 1, step))


def plot_scatter(predictions: pl.DataFrame, title: str):
    """Predicted against measured pK with the identity line, one panel per run label.

    Args:
        predictions: columns label (Utf8), affinity_pk (Float64), predicted_pk (Float64).
        title: the figure title (e.g. the metrics).
    """
    from plotnine import (
        aes,
        coord_equal,
        facet_wrap,
        geom_abline,
        geom_point,
        ggplot,
        labs,
        scale_x_continuous,
        scale_y_continuous,
    )

    values = pl.concat([predictions["affinity_pk"], predictions["predicted_pk"]])
    limits = (math.floor(values.min() - 0.25), math.ceil(values.max() + 0.25))  # the same range on both axes
    return (
        ggplot(_to_pandas(predictions), aes("affinity_pk", "predicted_pk", color="label"))
        + geom_abline(slope=1, intercept=0, linetype="dashed", color="grey")
        + geom_point(alpha=0.7)
        + facet_wrap("label")
        + scale_x_continuous(limits=limits)
        + scale_y_continuous(limits=limits)
        + coord_equal()
        + labs(x="measured pK (−log10 M)", y="predicted pK (−log10 M)", title=title, color="run")
        + theme_lba()
        + _no_legend()
    )


def _no_legend():
    from plotnine import theme

    return theme(legend_position="none")  # the panels are labelled already


def plot_sweep(frame: pl.DataFrame):
    """Validation and test metrics per pre-training difficulty: seeds as points, mean ± std bars.

    Args:
        frame: columns label (Utf8), seed (Int64), split (Utf8: val/test), metric (Utf8:
            rmse/pearson, and for pre-training labels accuracy, shortcut_accuracy and
            slab_shortcut_accuracy), value (Float64), as `lba_cli.sweep.sweep_frame` returns.
    """
    from plotnine import aes, facet_grid, geom_errorbar, geom_jitter, geom_point, ggplot, labs, position_jitter

    labels = list(dict.fromkeys(frame["label"].to_list()))
    summary = (frame.drop_nulls("value").group_by("label", "split", "metric", maintain_order=True)
               .agg(pl.col("value").mean().alias("mean"), pl.col("value").std(ddof=1).alias("std"))
               .with_columns((pl.col("mean") - pl.col("std")).alias("lo"),
                             (pl.col("mean") + pl.col("std")).alias("hi")))
    import pandas as pd

    # one seed has no spread: its mean is drawn, without a bar
    points, means, bars = (_to_pandas(f) for f in (frame.drop_nulls("value"), summary, summary.drop_nulls("std")))
    for data in (points, means, bars):
        data["label"] = pd.Categorical(data["label"], categories=labels, ordered=True)
    figure = (
        ggplot(points, aes("label", "value", color="label"))
        + geom_jitter(position=position_jitter(width=0.12, height=0, random_state=0), alpha=0.6, size=1.5)
        + geom_point(means, aes("label", "mean"), inherit_aes=False, size=3, shape="D")
        + facet_grid("metric ~ split", scales="free_y")
        + labs(x="initialisation (pre-training difficulty: min-max-angle)", y="", color="",
               title="fine-tuning per pre-training difficulty: seeds (points), mean ± sample std (bars, ddof 1)")
        + theme_lba()
        + _rotated_x()
    )
    if len(bars):
        figure += geom_errorbar(bars, aes("label", ymin="lo", ymax="hi"), inherit_aes=False, width=0.3)
    return figure


def _rotated_x():
    from plotnine import element_text, theme

    return theme(axis_text_x=element_text(rotation=30, ha="right"), legend_position="none")


def _to_pandas(frame: pl.DataFrame):
    """polars -> pandas without pyarrow (plotnine takes pandas)."""
    import pandas as pd

    return pd.DataFrame(frame.to_dict(as_series=False))


def save_plot(plot, path: Path, width_in: float = 8.0, height_in: float = 5.0, dpi: int = 150) -> Path:
    """Save as PNG, SVG or PDF (by suffix), atomically.

    Raises:
        LbaError: for another suffix.
    """
    import warnings

    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise LbaError(f"cannot write a figure to {path}\nexpected: a .png, .svg or .pdf file name")
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # plotnine warns about every saved file's size
        plot.save(tmp, width=width_in, height=height_in, dpi=dpi, verbose=False)
    return path
