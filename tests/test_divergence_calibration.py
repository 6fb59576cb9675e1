"""Calibration: z of fresh null windows is N(0,1) in the bulk and watch fires 2.3% of the time;
power rises with the contamination fraction and λ̂ covers the truth; bootstrap mechanics."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import pytest
from divergence_data import DIM, gaussian, heavy_tailed, mixed_window, model_like
from lineage_audit.divergence import BaselineConfig, NullDistribution, fit_baseline
from lineage_audit.divergence.calibration import block_bootstrap_indices, check_pool
from lineage_audit.divergence.errors import BaselineError
from lineage_audit.divergence.monitor import AssetMonitor, WindowPolicy
from scipy import stats

WINDOW = 64
WATCH_RATE = 1 - NormalDist().cdf(2.0)  # 0.02275


def _fit(generator, seed, **extra):
    rng = np.random.default_rng(seed)
    config = BaselineConfig(window_sizes=(WINDOW,), null_windows=10_000, arl_windows=500)
    return fit_baseline(generator(rng, 12_000), config=config, backend="numpy", **extra)


@pytest.fixture(scope="module")
def gaussian_baseline():
    return _fit(gaussian, 10)


@pytest.fixture(scope="module")
def heavy_baseline():
    return _fit(heavy_tailed, 11)


def _null_z(baseline, generator, seed, windows=2000):
    monitor = AssetMonitor("a", baseline, WindowPolicy(WINDOW), backend="numpy")
    rng = np.random.default_rng(seed)
    data = generator(rng, WINDOW * windows)
    return np.array([monitor.evaluate(data[i : i + WINDOW]).z for i in range(0, len(data), WINDOW)])


@pytest.mark.parametrize(
    ("baseline_name", "generator"),
    [("gaussian_baseline", gaussian), ("heavy_baseline", heavy_tailed)],
)
def test_null_windows_not_used_in_the_fit_are_calibrated(request, baseline_name, generator):
    baseline = request.getfixturevalue(baseline_name)
    z = _null_z(baseline, generator, seed=123)
    watch = float(np.mean(z >= 2.0))
    se = math.sqrt(WATCH_RATE * (1 - WATCH_RATE) / len(z))
    assert abs(watch - WATCH_RATE) < 3.5 * se, (watch, WATCH_RATE, se)
    bulk = z[np.isfinite(z)]
    result = stats.kstest(bulk, "norm")
    assert result.pvalue > 0.001, (result, np.mean(bulk), np.std(bulk))
    assert abs(np.median(z)) < 0.1


@pytest.mark.slow
def test_power_rises_with_contamination_and_lambda_hat_covers_it():
    rng = np.random.default_rng(20)
    # MMD² of a λ-mixture grows like λ²: at n = 512, λ = 1% is barely distinguishable from
    # the null, 10% always is. The null's resolution does not matter here: B0 = 2000.
    config = BaselineConfig(window_sizes=(512,), null_windows=2000, arl_windows=0)
    baseline = fit_baseline(
        gaussian(rng, 20_000), config=config, targets=model_like(rng, 600), backend="numpy"
    )
    monitor = AssetMonitor("a", baseline, WindowPolicy(512), backend="numpy")
    rates, coverage = [], []
    for fraction in (0.01, 0.02, 0.05, 0.10):
        results = [monitor.evaluate(mixed_window(rng, 512, fraction)) for _ in range(100)]
        rates.append(np.mean([r.z >= 2.0 for r in results]))
        lam = np.array([r.lambda_hat for r in results])
        se = np.array([r.lambda_se for r in results])
        coverage.append(np.mean(np.abs(lam - fraction) <= 2 * se))
        assert abs(lam.mean() - fraction) < 3 * se.mean() / math.sqrt(len(lam)) + 0.01
    assert all(b > a for a, b in itertools.pairwise(rates)), rates
    assert rates[0] < 0.1 and rates[-1] > 0.9, rates
    assert min(coverage) >= 0.85, coverage


def test_block_bootstrap_windows_are_disjoint_contiguous_blocks():
    rng = np.random.default_rng(0)
    seen = np.zeros(1000, dtype=int)
    for _ in range(2000):
        rows = block_bootstrap_indices(rng, 1000, 100, 8)
        assert len(rows) == 100 and len(set(rows.tolist())) == 100  # no row twice
        assert rows.min() >= 0 and rows.max() < 1000
        blocks = rows[:96].reshape(12, 8)
        assert (np.diff(blocks, axis=1) == 1).all()  # each block is contiguous
        seen[rows] += 1
    assert seen.min() > 0  # every pool row can be drawn, edges included
    with pytest.raises(BaselineError, match="at least 208"):
        check_pool(150, 100, 8)


def test_z_follows_the_rank_formula():
    null = NullDistribution.of(10, np.arange(1.0, 10_001.0))  # T0 = 1..10000
    assert null.p_value(10_000.5) == 1 / 10_001  # nothing at least as large
    assert null.z(10_000.5) == pytest.approx(NormalDist().inv_cdf(1 - 1 / 10_001))
    assert null.p_value(5_000.0) == (1 + 5_001) / 10_001
    assert null.z(0.0) == -math.inf  # every null statistic is at least T
    assert null.max_z == pytest.approx(3.719, abs=1e-3)
    np.testing.assert_allclose(
        null.z_many(np.array([5_000.0, 10_000.5])), [null.z(5_000.0), null.z(10_000.5)]
    )


def test_heavy_tailed_null_is_skewed_so_a_rank_is_needed(heavy_baseline):
    values = heavy_baseline.nulls[WINDOW].statistics
    assert stats.skew(values) > 0.3  # (T - mean) / sd would misstate the upper tail


def test_arl0_is_measured_and_stored(gaussian_baseline):
    arl = gaussian_baseline.arl0[WINDOW]
    assert arl["rule"] == {"kind": "consecutive", "n": 3, "z": 3.0}
    assert arl["windows"] == 500 and arl["false_halts"] <= 1
    assert arl["arl0_lower_95"] > 100
    assert arl["iid_model_arl0"] > 1e8  # (1-q^3)/((1-q) q^3) with q = 1 - Φ(3)


def test_dimension_constant_is_what_the_data_uses():
    assert gaussian(np.random.default_rng(0), 3).shape == (3, DIM)
