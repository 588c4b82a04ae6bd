"""Regression and classification metrics over a whole split (never per batch, SPEC §8.4).

Pearson r and Spearman ρ come from SciPy; a constant prediction has no correlation, and
those metrics are NaN then.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

__all__ = ["mae", "rmse", "pearson_r", "spearman_rho", "regression_metrics", "accuracy", "mean_std"]


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
