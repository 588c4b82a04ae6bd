"""Figures: panels per run kind, metric selection, scatter limits, real image files."""

from __future__ import annotations

import polars as pl
import pytest

from lba_cli.errors import LbaError
from lba_cli.plots import DEFAULT_SMOOTHING, curves_frame, plot_curves, plot_scatter, save_plot, select_panels


def _history(epochs: int, **metrics: float) -> pl.DataFrame:
    return pl.DataFrame({"epoch": list(range(1, epochs + 1)), "step": [10 * e for e in range(1, epochs + 1)],
                         "elapsed_s": [1.5 * e for e in range(1, epochs + 1)],
                         **{name.replace("__", "/"): [value / e for e in range(1, epochs + 1)]
                            for name, value in metrics.items()}})


@pytest.fixture()
def frame() -> pl.DataFrame:
    return curves_frame([
        ("p1", "1-2-20", "pretrain", _history(3, train__loss=1.8, val__loss=1.7, val__accuracy=0.3)),
        ("f1", "random", "finetune", _history(4, train__loss=3.0, val__loss=2.5, val__rmse=1.6, val__pearson=0.2)),
        ("f2", "1-2-20", "finetune", _history(4, train__loss=2.9, val__loss=2.4, val__rmse=1.5, val__pearson=0.3)),
    ])


def test_curves_frame_is_long_with_kind_and_smoothing(frame):
    assert frame.columns == ["run", "label", "kind", "epoch", "step", "elapsed_s", "metric", "value", "smoothed"]
    p1_loss = frame.filter((pl.col("run") == "p1") & (pl.col("metric") == "val/loss")).sort("epoch")
    assert p1_loss["value"].to_list() == pytest.approx([1.7, 0.85, 1.7 / 3])
    assert p1_loss["smoothed"][0] == pytest.approx(1.7) and p1_loss["smoothed"][1] > p1_loss["value"][1]
    assert set(frame["kind"]) == {"pretrain", "finetune"}


def test_smoothing_is_switchable_labelled_and_the_best_epoch_marked(frame):
    raw = curves_frame([("f1", "random", "finetune", _history(4, val__rmse=1.6))], smoothing=0)
    assert raw["smoothed"].to_list() == raw["value"].to_list()
    with pytest.raises(LbaError, match="--smooth"):
        curves_frame([("f1", "random", "finetune", _history(2, val__rmse=1.6))], smoothing=1.0)

    panels = [("finetune", "val/rmse")]
    figure = plot_curves(frame, panels, smoothing=DEFAULT_SMOOTHING, best_epochs={"f1": 2, "f2": None})
    series = set(figure.data["series"])
    assert series == {"recorded (points)", f"smoothed (EMA, --smooth {DEFAULT_SMOOTHING:g})"}  # the legend's entries
    (marked,) = [layer.geom.data for layer in figure.layers
                 if layer.geom.data is not None and "marker" in layer.geom.data]
    assert marked[["run", "epoch"]].values.tolist() == [["f1", 2]]  # f2 has no best epoch yet: nothing marked
    assert marked["value"].tolist() == pytest.approx([1.6 / 2])  # the recorded value, not the smoothed one
    assert set(marked["marker"]) == {"best epoch (lowest val/loss)"}
    raw_figure = plot_curves(raw, panels, smoothing=0)
    assert set(raw_figure.data["series"]) == {"recorded (points)"}


def test_pretraining_and_finetuning_never_share_a_panel(frame):
    panels = select_panels(frame, None)
    assert panels == [("pretrain", "train/loss"), ("pretrain", "val/loss"), ("pretrain", "val/accuracy"),
                      ("finetune", "train/loss"), ("finetune", "val/loss"), ("finetune", "val/rmse"),
                      ("finetune", "val/pearson")]
    data = plot_curves(frame, panels).data
    for panel, group in data.groupby("panel", observed=True):
        assert group["kind"].nunique() == 1, panel
    assert {"pre-training: val/loss", "fine-tuning: val/loss"} <= set(data["panel"])


def test_metric_patterns_apply_per_kind_and_must_match(frame):
    assert select_panels(frame, ["val/*"]) == [("pretrain", "val/accuracy"), ("pretrain", "val/loss"),
                                               ("finetune", "val/loss"), ("finetune", "val/pearson"),
                                               ("finetune", "val/rmse")]
    assert select_panels(frame, ["val/rmse"]) == [("finetune", "val/rmse")]
    with pytest.raises(LbaError, match="matches no recorded metric"):
        select_panels(frame, ["test/*"])


def test_one_kind_keeps_plain_metric_panels(frame):
    finetune_only = frame.filter(pl.col("kind") == "finetune")
    data = plot_curves(finetune_only, select_panels(finetune_only, None)).data
    assert list(data["panel"].cat.categories) == ["train/loss", "val/loss", "val/rmse", "val/pearson"]


def test_scatter_and_saved_files(tmp_path):
    predictions = pl.DataFrame({"label": ["a", "a", "b", "b"], "affinity_pk": [4.0, 6.0, 5.0, 7.5],
                                "predicted_pk": [4.5, 5.5, 5.0, 6.0]})
    figure = plot_scatter(predictions, "test split")
    path = save_plot(figure, tmp_path / "out" / "scatter.png", 4.0, 3.0, dpi=50)
    assert path.read_bytes().startswith(b"\x89PNG") and [p.name for p in path.parent.iterdir()] == ["scatter.png"]
    with pytest.raises(LbaError, match="png, .svg or .pdf"):
        save_plot(figure, tmp_path / "scatter.jpg")
