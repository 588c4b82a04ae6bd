"""The sweep table and figure carry each pre-training's pretext accuracy beside its controls."""

from __future__ import annotations

import pytest

from lba_cli.runs import RunStore
from lba_cli.sweep import PRETRAIN_METRICS, _markdown, summarise_sweep, sweep_frame


@pytest.fixture()
def sweep_runs(tmp_path):
    store = RunStore(tmp_path / "runs")
    pre = store.create_run({"kind": "pretrain", "train": {"seed": 0},
                            "neighbor": {"pad_min_A": 1.0, "pad_max_A": 2.0, "angle_deg": 20.0}})
    pre.update_status(status="completed", metrics={"val/accuracy": 0.31, "val/shortcut_accuracy": 0.17,
                                                   "val/slab_shortcut_accuracy": 0.19})
    runs = []
    for label in ("random", "1-2-20", "1-2-20 frozen"):
        for seed in (0, 1):
            run = store.create_run({"kind": "finetune", "train": {"seed": seed}, "finetune": {"init": "random"}})
            run.update_status(status="completed", metrics={"val/rmse": 1.5 + seed, "test/rmse": 1.4,
                                                           "val/pearson": 0.5, "test/pearson": 0.6})
            runs.append((label, seed, run))
    return runs, [("1-2-20", pre)]


def test_summary_has_the_pretraining_metrics_per_label(sweep_runs):
    runs, pretrains = sweep_runs
    table = summarise_sweep(runs, pretrains)
    rows = {row["label"]: row for row in table.iter_rows(named=True)}
    assert rows["1-2-20"]["pretrain val/shortcut_accuracy"] == 0.17
    assert rows["1-2-20 frozen"]["pretrain val/accuracy"] == 0.31
    assert rows["random"]["pretrain val/accuracy"] is None
    assert rows["random"]["val/rmse mean"] == pytest.approx(2.0)
    assert rows["random"]["val/rmse std"] == pytest.approx(0.5 ** 0.5)  # sample std (ddof 1) of 1.5 and 2.5
    markdown = _markdown(table)
    assert "val/shortcut_accuracy" in markdown.splitlines()[0] and "| 0.310 | 0.170 | 0.190 |" in markdown


def test_sweep_frame_and_figure_show_the_controls(sweep_runs, tmp_path):
    from lba_cli.plots import plot_sweep, save_plot

    runs, pretrains = sweep_runs
    frame = sweep_frame(runs, pretrains)
    import polars as pl

    pretext = frame.filter((pl.col("label") == "1-2-20") & (pl.col("split") == "val"))
    assert set(pretext["metric"]) >= {name.split("/")[1] for name in PRETRAIN_METRICS}
    path = save_plot(plot_sweep(frame), tmp_path / "sweep.png", 9.0, 8.0)
    assert path.stat().st_size > 10_000
