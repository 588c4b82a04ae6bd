"""Whole-split metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lba_cli.metrics import accuracy, mean_std, regression_metrics


def test_regression_metrics_known_values():
    measured = np.array([1.0, 2.0, 3.0, 4.0])
    predicted = np.array([1.5, 1.5, 3.5, 4.5])
    m = regression_metrics(measured, predicted)
    assert m["mae"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(0.5)
    assert m["pearson"] == pytest.approx(np.corrcoef(measured, predicted)[0, 1])
    assert m["spearman"] == pytest.approx(0.9486833, abs=1e-6)  # one tie in the predictions


def test_constant_predictions_have_no_correlation():
    m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]))
    assert math.isnan(m["pearson"]) and math.isnan(m["spearman"])
    assert m["rmse"] == pytest.approx(math.sqrt(2 / 3))


@pytest.mark.parametrize("n", [1, 2], ids=["one complex", "two complexes"])
def test_correlations_on_fewer_than_three_complexes_are_undefined_not_one(n):
    """Two points always lie on a line: r = ±1 there says nothing, so it is reported as NaN."""
    measured, predicted = np.array([5.0, 7.0][:n]), np.array([6.0, 6.5][:n])
    m = regression_metrics(measured, predicted)
    assert math.isnan(m["pearson"]) and math.isnan(m["spearman"])
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((predicted - measured) ** 2)))
    three = regression_metrics(np.array([5.0, 7.0, 6.0]), np.array([6.0, 6.5, 6.1]))
    assert three["pearson"] == pytest.approx(np.corrcoef([5.0, 7.0, 6.0], [6.0, 6.5, 6.1])[0, 1])


def test_metrics_over_whole_split_differ_from_mean_of_batches():
    """Averaging per-batch RMSE (the original work's bug) is not the split's RMSE."""
    measured = np.array([5.0, 5.0, 5.0, 9.0])
    predicted = np.array([5.0, 5.0, 5.0, 5.0])
    batches = [np.sqrt(np.mean((predicted[i:i + 2] - measured[i:i + 2]) ** 2)) for i in (0, 2)]
    assert regression_metrics(measured, predicted)["rmse"] == pytest.approx(2.0)
    assert np.mean(batches) != pytest.approx(2.0)


def test_mean_std_is_the_sample_std_and_undefined_for_one_value():
    mean, std = mean_std([1.0, 2.0, 3.0])
    assert mean == 2.0 and std == pytest.approx(1.0)  # sqrt(2 / (3 - 1))
    mean, std = mean_std([1.5])
    assert mean == 1.5 and math.isnan(std)


def test_accuracy():
    assert accuracy(np.array([0, 1]), np.array([[2.0, 1.0], [3.0, 0.0]])) == 0.5


def test_bootstrap_intervals_cover_the_point_estimate_and_shrink_with_n():
    from lba_cli.metrics import bootstrap_intervals, regression_metrics

    rng = np.random.default_rng(0)
    measured = rng.normal(6, 2, 400)
    predicted = measured + rng.normal(0, 1, 400)
    point = regression_metrics(measured, predicted)
    wide = bootstrap_intervals(measured[:40], predicted[:40])
    narrow = bootstrap_intervals(measured, predicted)
    for metric in ("mae", "rmse", "pearson", "spearman"):
        lo, hi = narrow[metric]
        assert lo <= point[metric] <= hi
        assert hi - lo < wide[metric][1] - wide[metric][0]
    assert narrow["rmse"][0] == pytest.approx(1.0, abs=0.15) and narrow["rmse"][1] == pytest.approx(1.0, abs=0.15)


def test_bootstrap_of_constant_predictions_has_no_correlation_interval():
    from lba_cli.metrics import bootstrap_intervals

    intervals = bootstrap_intervals(np.array([1.0, 2.0, 3.0, 4.0]), np.full(4, 6.3))
    assert all(math.isnan(v) for v in intervals["pearson"])
    assert intervals["rmse"][0] > 0


def test_bootstrap_is_scipys_percentile_interval():
    from scipy import stats

    from lba_cli.metrics import REGRESSION_METRICS, bootstrap_intervals

    rng = np.random.default_rng(1)
    measured = rng.normal(6, 2, 50)
    predicted = measured + rng.normal(0, 1, 50)
    ours = bootstrap_intervals(measured, predicted, num_samples=500, seed=3)
    assert list(ours) == [m.name for m in REGRESSION_METRICS]
    rmse = next(m for m in REGRESSION_METRICS if m.name == "rmse")
    theirs = stats.bootstrap((measured, predicted), rmse.compute, paired=True, vectorized=True, n_resamples=500,
                             method="percentile", rng=np.random.default_rng(3)).confidence_interval
    assert ours["rmse"] == pytest.approx((theirs.low, theirs.high))


def test_few_examples_leave_undefined_resamples_out():
    from lba_cli.metrics import bootstrap_intervals

    intervals = bootstrap_intervals(np.array([1.0, 2.0, 3.0]), np.array([1.5, 1.9, 3.3]))
    lo, hi = intervals["pearson"]
    assert 0.9 < lo <= hi <= 1.0  # resamples of one repeated complex have no correlation and are left out
    assert all(math.isnan(v) for v in bootstrap_intervals(np.array([1.0]), np.array([2.0]))["rmse"])


def test_each_metric_is_defined_once_and_knows_its_direction():
    from lba_cli.metrics import REGRESSION_METRICS, higher_is_better

    measured, predicted = np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 3.0])
    assert list(regression_metrics(measured, predicted)) == [m.name for m in REGRESSION_METRICS]
    batch = np.stack([measured, measured[::-1]]), np.stack([predicted, predicted[::-1]])  # (2, N): one per row
    for metric in REGRESSION_METRICS:
        assert np.allclose(metric.compute(*batch), metric.compute(measured, predicted))
    assert higher_is_better("val/pearson") and not higher_is_better("test/rmse mean")
    assert higher_is_better("val/accuracy") and higher_is_better("train.lr") is None
