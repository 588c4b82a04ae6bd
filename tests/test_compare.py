"""The comparison table: differing settings, labels, replicate groups, sorting, skipped entries."""

from __future__ import annotations

import math

import polars as pl
import pytest

from lba_cli.compare import compare_runs, labels_for
from lba_cli.errors import LbaError, RunNotFoundError
from lba_cli.runs import RunStore


def _pretrain(store, pad_max, angle, name):
    run = store.create_run({"kind": "pretrain", "name": name, "train": {"seed": 0, "lr": 0.001},
                            "neighbor": {"pad_min_A": 1.0, "pad_max_A": pad_max, "angle_deg": angle}})
    run.update_status(status="completed", best_epoch=3, metrics={"val/accuracy": 0.5, "val/loss": 1.2})
    return run


def _finetune(store, init, seed, rmse, freeze=False, name=None):
    run = store.create_run({"kind": "finetune", "name": name, "train": {"seed": seed, "lr": 0.001},
                            "finetune": {"init": init, "freeze": freeze, "data_path": "/data.h5"}})
    run.update_status(status="completed", best_epoch=seed + 1, metrics={"val/rmse": rmse, "test/rmse": rmse - 0.1})
    return run


@pytest.fixture()
def store(tmp_path):
    store = RunStore(tmp_path / "runs")
    p1 = _pretrain(store, 2.0, 20.0, "p1")
    _pretrain(store, 4.0, 0.0, "p2")
    for seed, rmse in ((0, 1.5), (1, 1.7), (2, 1.6)):
        _finetune(store, "random", seed, rmse)
        _finetune(store, p1.id, seed, rmse - 0.2)
    _finetune(store, p1.id, 0, 1.9, freeze=True)
    return store


def test_one_table_per_kind_with_only_differing_settings(store):
    result = compare_runs(store, [str(p) for p in sorted(store.root.iterdir())])
    assert set(result.tables) == {"pretrain", "finetune"}
    pre = result.tables["pretrain"]
    assert {"neighbor.pad_max_A", "neighbor.angle_deg"} <= set(pre.columns)
    assert "train.lr" not in pre.columns  # the same everywhere
    assert pre["label"].to_list() == ["1-2-20", "1-4-0"]
    fine = result.tables["finetune"]
    assert sorted(set(fine["label"])) == ["1-2-20", "1-2-20 frozen", "random"]
    assert "train.seed" in fine.columns and "finetune.freeze" in fine.columns
    assert result.skipped == []  # runs/index.sqlite is left out silently


def test_a_path_that_is_not_a_run_is_reported(store, tmp_path):
    stray = tmp_path / "notes.txt"
    stray.write_text("not a run")
    result = compare_runs(store, [str(stray), store.runs()[0].id])
    assert result.skipped == [(str(stray), "not a run directory")]


def test_replicate_groups_are_mean_and_sample_std(store):
    refs = [r.id for r in store.runs() if r.kind == "finetune"]
    table = compare_runs(store, refs, group_replicates=True).tables["finetune"]
    random = table.filter(pl.col("label") == "random").row(0, named=True)
    assert random["runs"] == 3 and random["seeds"] == "0 1 2"
    std = math.sqrt(((1.5 - 1.6) ** 2 + (1.7 - 1.6) ** 2 + 0) / 2)  # ddof = 1
    assert random["val/rmse mean"] == pytest.approx(1.6) and random["val/rmse std"] == pytest.approx(std)


def test_sorting_and_errors(store):
    refs = [r.id for r in store.runs() if r.kind == "finetune"]
    table = compare_runs(store, refs, sort="val/rmse").tables["finetune"]
    assert table["val/rmse"].to_list() == sorted(table["val/rmse"].to_list())
    with pytest.raises(LbaError, match="cannot sort by"):
        compare_runs(store, refs, sort="val/nope")
    with pytest.raises(RunNotFoundError):
        compare_runs(store, ["no-such-run"])


def test_labels_tell_replicates_apart(store):
    runs = [r for r in store.runs() if r.kind == "finetune" and r.config["finetune"]["init"] == "random"]
    labels, _ = labels_for(runs, store)
    assert labels == ["random seed=0", "random seed=1", "random seed=2"]
    by_lr, title = labels_for(runs, store, color_by="train.lr")
    assert by_lr == ["0.001"] * 3 and title == "train.lr"
