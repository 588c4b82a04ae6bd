"""Seed ensembles: replicate runs that differ only in their seed, summarised two ways.

One run says little (the same seed moves test RMSE by ±0.4 between machines), so replicates
are reported as

- per run: each metric's mean and sample standard deviation (ddof = 1) over the runs, and
- ensembled: the metrics of the runs' mean prediction per complex, a seed ensemble
  (Lakshminarayanan et al., "Simple and Scalable Predictive Uncertainty Estimation using Deep
  Ensembles", NeurIPS 2017). By Jensen's inequality its RMSE is never above the runs' mean RMSE.

`lba evaluate --ensemble`, `lba compare --group` and `lba sweep` use `summarise_replicates`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from lba_cli.errors import DataError
from lba_cli.metrics import REGRESSION_METRICS, bootstrap_intervals, mean_std, regression_metrics

__all__ = ["ReplicateSummary", "summarise_replicates", "PREDICTION_COLUMNS"]

PREDICTION_COLUMNS = ("id", "affinity_pk", "predicted_pk")


@dataclass
class ReplicateSummary:
    """Replicate runs' predictions on one set of complexes, summarised.

    Attributes:
        num_runs: how many runs.
        mean: each metric of `lba_cli.metrics.REGRESSION_METRICS`, averaged over the runs.
        std: its sample standard deviation over the runs (ddof = 1; nan for one run).
        ensemble: each metric of the mean prediction, and ``n`` (complexes).
        predictions: ``id``, ``affinity_pk``, ``predicted_pk`` (the runs' mean, float64),
            sorted by id.
        intervals: 95 % bootstrap interval of each ensemble metric
            (`lba_cli.metrics.bootstrap_intervals`).
    """

    num_runs: int
    mean: dict[str, float]
    std: dict[str, float]
    ensemble: dict[str, float]
    predictions: pl.DataFrame
    intervals: dict[str, tuple[float, float]]


def summarise_replicates(frames: list[pl.DataFrame]) -> ReplicateSummary:
    """Per-run mean ± std and the ensemble's metrics, from each run's predictions.

    Args:
        frames: one predictions frame per run, with columns ``id`` (str), ``affinity_pk`` and
            ``predicted_pk`` (float, pK), all over the same complexes (any row order).

    Raises:
        DataError: if there is no frame, or the frames do not cover the same complexes with
            the same measured pK.
    """
    if not frames:
        raise DataError("no predictions to ensemble\nexpected: the predictions of at least one run")
    frames = [f.select(PREDICTION_COLUMNS).sort("id") for f in frames]
    ids = frames[0]["id"]
    measured = frames[0]["affinity_pk"].to_numpy().astype(np.float64)
    for frame in frames[1:]:
        if not frame["id"].equals(ids):
            raise DataError(f"the runs predicted different complexes ({frames[0].height} and {frame.height} rows, "
                            f"{len(set(ids) ^ set(frame['id']))} ids in one only)\n"
                            "expected: replicates evaluated on the same split of the same data file")
        if not np.allclose(frame["affinity_pk"].to_numpy(), measured, rtol=0, atol=1e-6):
            raise DataError("the runs' measured pK differ for the same complexes\n"
                            "expected: replicates evaluated on the same data file")
    stacked = np.stack([f["predicted_pk"].to_numpy().astype(np.float64) for f in frames])  # (R, N)
    per_run = [regression_metrics(measured, predicted) for predicted in stacked]
    mean, std = {}, {}
    for metric in REGRESSION_METRICS:
        mean[metric.name], std[metric.name] = mean_std([m[metric.name] for m in per_run])
    averaged = stacked.mean(axis=0)  # (R, N) -> (N,)
    ensemble = {**regression_metrics(measured, averaged), "n": float(len(measured))}
    predictions = pl.DataFrame({"id": ids, "affinity_pk": measured, "predicted_pk": averaged})
    return ReplicateSummary(len(frames), mean, std, ensemble, predictions, bootstrap_intervals(measured, averaged))
