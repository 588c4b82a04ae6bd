"""`lba evaluate` on outside data: every complex by default, baselines fitted on the run's own training split."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import COARSE_GRID, TINY_MODEL, make_pdbbind_subset
from typer.testing import CliRunner

from lba_cli.cli import app
from lba_cli.config import GridConfig
from lba_cli.evaluate import default_split, evaluate_baselines
from lba_cli.runs import RunStore

runner = CliRunner()
OUTSIDE = ("3bv9", "1oyt", "2zda", "3utu")  # thrombin complexes that tiny_pdbbind does not hold


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, coarse_h5) -> Path:
    """A runs folder with one tiny fine-tuned run, ``tiny``."""
    folder = tmp_path_factory.mktemp("runs")
    result = invoke("finetune", coarse_h5, *TINY_MODEL, "--name", "tiny", "--runs-dir", folder)
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture(scope="module")
def outside_h5(tmp_path_factory) -> Path:
    """Four thrombin complexes the run never saw, voxelized on its grid (split random)."""
    from lba_cli.choices import SplitKind
    from lba_cli.data.build import build_dataset

    root = make_pdbbind_subset(tmp_path_factory.mktemp("outside") / "pdbbind", OUTSIDE)
    path = root.parent / "outside.h5"
    build_dataset([root], path, GridConfig(**COARSE_GRID), split=SplitKind.random, seed=0)
    return path


def test_evaluate_outside_data_scores_every_complex(runs, outside_h5, coarse_h5):
    from lba_cli.data.grids_h5 import read_grid_set

    result = invoke("evaluate", "tiny", "--data", outside_h5, "--format", "json", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["split"] for r in rows] == ["all"] * 3 and [r["n"] for r in rows] == [4, 4, 4]
    saved = pl.read_parquet(runs / RunStore(runs).resolve("tiny").id / "predictions_all_outside.parquet")
    assert saved.height == 4
    own = read_grid_set(coarse_h5)
    train_mean = float(own.affinity_pk[own.split == "train"].astype(np.float64).mean())
    baseline = evaluate_baselines(outside_h5, "all", train_path=coarse_h5)[0]
    # fitted on the run's own training split, not on the outside complexes it scores
    assert baseline.predictions["predicted_pk"].to_numpy() == pytest.approx(np.full(4, train_mean))
    assert rows[1]["rmse"] == pytest.approx(baseline.metrics["rmse"])

    result = invoke("evaluate", "tiny", "--data", outside_h5, "--split", "test", "--format", "json", "--runs-dir",
                    runs)
    assert result.exit_code == 0, result.output
    test_rows = json.loads(result.stdout)
    assert test_rows[0]["split"] == "test" and test_rows[0]["n"] < 3
    assert test_rows[0]["pearson"] is None  # undefined on fewer than 3 complexes, never ±1
    assert "correlations need at least 3" in result.output


def test_evaluate_own_data_defaults_to_test(runs, coarse_h5, outside_h5):
    assert default_split(None, coarse_h5) == default_split(coarse_h5, coarse_h5) == "test"
    assert default_split(outside_h5, coarse_h5) == "all"
    result = invoke("evaluate", "tiny", "--format", "json", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    assert {r["split"] for r in json.loads(result.stdout)} == {"test"}
    assert not math.isnan(RunStore(runs).resolve("tiny").status["metrics"]["test/rmse"])
