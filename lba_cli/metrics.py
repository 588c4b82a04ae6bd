"""Metrics over a whole split (never averaged per batch: the original work's per-batch Pearson
and RMSE, and a dropped last batch, gave wrong numbers), each defined once.

`REGRESSION_METRICS` lists the metrics of predicted against measured pK. Each one's
``compute(measured, predicted, axis=-1)`` reduces the last axis, so the same function gives
the value on one split and, on a batch of resamples, its bootstrap interval
(`bootstrap_intervals`, with `scipy.stats.bootstrap`). Everything that shows or sorts
metrics (evaluation tables, comparison columns and their sort order) reads this module, so a
new metric is one entry in `REGRESSION_METRICS` (and a name in
`lba_cli.choices.HEADLINE_METRICS` if progress and default plots should show it).

Pearson r and Spearman ρ come from SciPy; a constant input has no correlation, and those
metrics are NaN then. So are they on fewer than `MIN_CORRELATION_SIZE` examples: two points
always lie on a line, and r = ±1 there says nothing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Metric", "REGRESSION_METRICS", "mae", "rmse", "pearson_r", "spearman_rho",
           "regression_metrics", "accuracy", "mean_std", "bootstrap_intervals", "higher_is_better",
           "BOOTSTRAP_SAMPLES", "MIN_CORRELATION_SIZE"]

BOOTSTRAP_SAMPLES = 1000
MIN_CORRELATION_SIZE = 3  # examples below which a correlation is undefined (NaN), never ±1


@dataclass(frozen=True)
class Metric:
    """A whole-split metric of predicted against measured values.

    Attributes:
        name: its key: ``rmse`` is recorded as ``val/rmse`` and ``test/rmse``.
        label: how tables and figures name it.
        higher_is_better: False for errors (sorting and "best" follow it).
        compute: ``fn(measured, predicted, axis=-1) -> value``: float arrays of shape
            (..., N) -> (...), reducing the last axis.
    """

    name: str
    label: str
    higher_is_better: bool
    compute: Callable[..., np.ndarray | float]


def _mae(measured: np.ndarray, predicted: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(np.abs(predicted - measured), axis=axis)


def _rmse(measured: np.ndarray, predicted: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.sqrt(np.mean((predicted - measured) ** 2, axis=axis))


def _pearson(measured: np.ndarray, predicted: np.ndarray, axis: int = -1) -> np.ndarray:
    from scipy import stats

    if np.shape(measured)[axis] < MIN_CORRELATION_SIZE:
        return np.full(np.delete(np.shape(measured), axis), np.nan) if np.ndim(measured) > 1 else np.float64(np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant input gives NaN with a warning: NaN says it
        return stats.pearsonr(measured, predicted, axis=axis).statistic


def _spearman(measured: np.ndarray, predicted: np.ndarray, axis: int = -1) -> np.ndarray:
    from scipy import stats

    return _pearson(stats.rankdata(measured, axis=axis), stats.rankdata(predicted, axis=axis), axis=axis)


REGRESSION_METRICS: tuple[Metric, ...] = (
    Metric("rmse", "RMSE", False, _rmse),
    Metric("mae", "MAE", False, _mae),
    Metric("pearson", "Pearson r", True, _pearson),
    Metric("spearman", "Spearman ρ", True, _spearman),
)
_DIRECTIONS = {**{m.name: m.higher_is_better for m in REGRESSION_METRICS}, "accuracy": True, "loss": False}


def _pair(measured: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    measured = np.asarray(measured, dtype=np.float64).ravel()
    predicted = np.asarray(predicted, dtype=np.float64).ravel()
    if measured.shape != predicted.shape or measured.size == 0:
        raise ValueError(f"need two equally long non-empty arrays, got {measured.shape} and {predicted.shape}")
    return measured, predicted


def mae(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error, in the units of the inputs (pK); arrays of shape (N,)."""
    return float(_mae(*_pair(measured, predicted)))


def rmse(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Root-mean-square error, in the units of the inputs (pK); arrays of shape (N,)."""
    return float(_rmse(*_pair(measured, predicted)))


def pearson_r(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Pearson's correlation coefficient (NaN when either input is constant or N < 3); arrays of shape (N,)."""
    return float(_pearson(*_pair(measured, predicted)))


def spearman_rho(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Spearman's rank correlation (NaN when either input is constant or N < 3); arrays of shape (N,)."""
    return float(_spearman(*_pair(measured, predicted)))


def regression_metrics(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Every metric of `REGRESSION_METRICS` over every example given, by name.

    Args:
        measured: float array of shape (N,), pK.
        predicted: float array of shape (N,), pK.
    """
    m, p = _pair(measured, predicted)
    return {metric.name: float(metric.compute(m, p)) for metric in REGRESSION_METRICS}


def higher_is_better(name: str) -> bool | None:
    """Whether a larger value is better for a metric name such as ``val/pearson`` or
    ``test/rmse mean``; None for a name that holds no known metric (e.g. a setting)."""
    words = name.replace("/", " ").split()
    return next((_DIRECTIONS[w] for w in reversed(words) if w in _DIRECTIONS), None)


def accuracy(labels: np.ndarray, logits: np.ndarray) -> float:
    """Share of rows whose arg-max logit is the label.

    Args:
        labels: int array of shape (N,).
        logits: float array of shape (N, K).
    """
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1) of replicate values; the std is nan for one value.

    The sample std is the honest spread of a few seeds (with 3 runs the population std is
    18 % smaller).
    """
    array = np.asarray(values, dtype=np.float64)
    return float(np.mean(array)), float(np.std(array, ddof=1)) if len(array) > 1 else float("nan")


def bootstrap_intervals(measured: np.ndarray, predicted: np.ndarray, *, num_samples: int = BOOTSTRAP_SAMPLES,
                        level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of every metric of `REGRESSION_METRICS`, resampling examples.

    `scipy.stats.bootstrap` with ``paired=True`` and ``method="percentile"`` (Efron &
    Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13); every metric sees the same
    resamples. Resamples on which a correlation is undefined (constant values, likely with few
    examples) are left out of that metric's interval, where SciPy would return NaN.

    Args:
        measured, predicted: float arrays of shape (N,), pK.
        num_samples: bootstrap resamples.
        level: coverage of the interval (0.95: the 2.5th and 97.5th percentiles).
        seed: seed of the resampling.

    Returns:
        ``{"rmse": (lo, hi), "mae": ..., "pearson": ..., "spearman": ...}``; (nan, nan) for a
        metric that no resample defines, and for every metric when N < 2.
    """
    from scipy import stats

    m, p = _pair(measured, predicted)
    if m.size < 2:
        return {metric.name: (math.nan, math.nan) for metric in REGRESSION_METRICS}
    tail = (1.0 - level) / 2 * 100
    out = {}
    for metric in REGRESSION_METRICS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SciPy warns about the undefined resamples dealt with below
            result = stats.bootstrap((m, p), metric.compute, paired=True, vectorized=True, n_resamples=num_samples,
                                     confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
        lo, hi = result.confidence_interval
        if not (math.isfinite(lo) and math.isfinite(hi)):
            finite = result.bootstrap_distribution[np.isfinite(result.bootstrap_distribution)]
            lo, hi = np.percentile(finite, (tail, 100 - tail)) if finite.size else (math.nan, math.nan)
        out[metric.name] = (float(lo), float(hi))
    return out
