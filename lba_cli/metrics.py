"""Regression and classification metrics over a whole split (never per batch, SPEC §8.4).

Pearson r and Spearman ρ come from SciPy; a constant prediction has no correlation, and
those metrics are NaN then.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

__all__ = ["mae", "rmse", "pearson_r", "spearman_rho", "regression_metrics", "accuracy", "mean_std",
           "bootstrap_intervals", "BOOTSTRAP_SAMPLES"]

BOOTSTRAP_SAMPLES = 1000


def _pair(measured: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    measured = np.asarray(measured, dtype=np.float64).ravel()
    predicted = np.asarray(predicted, dtype=np.float64).ravel()
    if measured.shape != predicted.shape or measured.size == 0:
        raise ValueError(f"need two equally long non-empty arrays, got {measured.shape} and {predicted.shape}")
    return measured, predicted


def mae(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error, in the units of the inputs (pK)."""
    m, p = _pair(measured, predicted)
    return float(np.mean(np.abs(p - m)))


def rmse(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Root-mean-square error, in the units of the inputs (pK)."""
    m, p = _pair(measured, predicted)
    return float(np.sqrt(np.mean((p - m) ** 2)))


def _correlation(kind: str, m: np.ndarray, p: np.ndarray) -> float:
    from scipy import stats

    if m.size < 2 or np.ptp(m) == 0 or np.ptp(p) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.pearsonr(m, p) if kind == "pearson" else stats.spearmanr(m, p)
    return float(result.statistic)


def pearson_r(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Pearson's correlation coefficient (NaN when either input is constant)."""
    return _correlation("pearson", *_pair(measured, predicted))


def spearman_rho(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Spearman's rank correlation (NaN when either input is constant)."""
    return _correlation("spearman", *_pair(measured, predicted))


def regression_metrics(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """``{"mae", "rmse", "pearson", "spearman"}`` over every example given.

    Args:
        measured: float array of shape (N,), pK.
        predicted: float array of shape (N,), pK.
    """
    return {"mae": mae(measured, predicted), "rmse": rmse(measured, predicted),
            "pearson": pearson_r(measured, predicted), "spearman": spearman_rho(measured, predicted)}


def accuracy(labels: np.ndarray, logits: np.ndarray) -> float:
    """Share of rows whose arg-max logit is the label.

    Args:
        labels: int array of shape (N,).
        logits: float array of shape (N, K).
    """
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof = 0, as ATOM3D reports replicates)."""
    array = np.asarray(values, dtype=np.float64)
    return float(np.mean(array)), float(np.std(array, ddof=0))


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    constant = (np.ptp(a, axis=1) == 0) | (np.ptp(b, axis=1) == 0)  # exact test: no correlation defined
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(constant | (denominator == 0), np.nan, (a * b).sum(axis=1) / denominator)


def bootstrap_intervals(measured: np.ndarray, predicted: np.ndarray, *, num_samples: int = BOOTSTRAP_SAMPLES,
                        level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of `regression_metrics`, resampling examples.

    Efron & Tibshirani, "An Introduction to the Bootstrap" (1993), ch. 13. Resamples where a
    correlation is undefined (constant values) are left out of that metric's interval.

    Args:
        measured, predicted: float arrays of shape (N,), pK.
        num_samples: bootstrap resamples.
        level: coverage of the interval (0.95: the 2.5th and 97.5th percentiles).
        seed: seed of the resampling.

    Returns:
        ``{"mae": (lo, hi), "rmse": ..., "pearson": ..., "spearman": ...}``; (nan, nan) for a
        metric that no resample defines.
    """
    from scipy.stats import rankdata

    m, p = _pair(measured, predicted)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, m.size, size=(num_samples, m.size))
    ms, ps = m[index], p[index]  # (S, N)
    error = ps - ms
    values = {
        "mae": np.abs(error).mean(axis=1),
        "rmse": np.sqrt((error**2).mean(axis=1)),
        "pearson": _rowwise_pearson(ms, ps),
        "spearman": _rowwise_pearson(rankdata(ms, axis=1), rankdata(ps, axis=1)),
    }
    tail = (1.0 - level) / 2 * 100
    out = {}
    for name, samples in values.items():
        finite = samples[np.isfinite(samples)]
        out[name] = (float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))) if finite.size else (math.nan, math.nan)
    return out
