"""The statistics against direct float64 formulas; paired KDS; bandwidth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from divergence_data import gaussian, model_like
from lineage_audit.divergence import (
    Bandwidth,
    InputError,
    KernelScorer,
    make_backend,
    mean_similarity,
    median_bandwidth,
    paired_kds,
    prepare_embeddings,
)


def _k(a, b, gamma):
    a, b = a.astype(np.float64), b.astype(np.float64)
    d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.exp(-gamma * d2)


def _mmd2_direct(x, y, gamma):
    kxx, kyy, kxy = _k(x, x, gamma), _k(y, y, gamma), _k(x, y, gamma)
    m, n = len(x), len(y)
    return (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def test_unbiased_mmd2_and_effect_match_the_definition():
    rng = np.random.default_rng(0)
    x = prepare_embeddings(gaussian(rng, 400))
    y = prepare_embeddings(model_like(rng, 120))
    bandwidth = median_bandwidth(x)
    scorer = KernelScorer(x, bandwidth, make_backend("numpy"))
    stat, cross = scorer.statistic(y)
    want = _mmd2_direct(x, y, bandwidth.gamma)
    assert stat.mmd2 == pytest.approx(want, rel=1e-4)
    assert stat.effect == pytest.approx(math.sqrt(want), rel=1e-4)
    assert cross.shape == (120,)


def test_mmd2_is_unbiased_under_the_null():
    # The mean of MMD²_u over independent same-distribution windows is ~0 (the biased V
    # statistic would be clearly positive).
    rng = np.random.default_rng(1)
    x = prepare_embeddings(gaussian(rng, 600))
    scorer = KernelScorer(x, median_bandwidth(x), make_backend("numpy"))
    values = [scorer.statistic(gaussian(rng, 50))[0].mmd2 for _ in range(300)]
    assert abs(np.mean(values)) < 3 * np.std(values) / math.sqrt(len(values))


def test_median_heuristic_convention():
    rng = np.random.default_rng(2)
    x = prepare_embeddings(gaussian(rng, 300))
    bandwidth = median_bandwidth(x, sample=300)
    d2 = 2 - 2 * (x.astype(np.float64) @ x.T.astype(np.float64))
    median = np.median(d2[np.triu_indices(300, 1)])
    assert bandwidth.sigma**2 == pytest.approx(median / 2, rel=1e-6)
    assert bandwidth.gamma == pytest.approx(1 / median, rel=1e-6)
    assert bandwidth.id == Bandwidth(bandwidth.sigma).id != Bandwidth(bandwidth.sigma * 1.01).id
    with pytest.raises(InputError, match="identical"):
        median_bandwidth(np.tile(x[:1], (10, 1)))


def test_mean_similarity_matches_pairwise_cosines():
    rng = np.random.default_rng(3)
    y = prepare_embeddings(gaussian(rng, 80))
    g = y.astype(np.float64) @ y.T.astype(np.float64)
    want = (g.sum() - np.trace(g)) / (80 * 79)
    assert mean_similarity(y) == pytest.approx(want, rel=1e-6)
    collapsed = prepare_embeddings(y[:1] + 0.05 * rng.standard_normal((80, y.shape[1])))
    assert mean_similarity(collapsed) > mean_similarity(y)  # diversity collapse raises it


def test_paired_kds_follows_the_paper_formula():
    rng = np.random.default_rng(4)
    before = prepare_embeddings(gaussian(rng, 60))
    after = prepare_embeddings(before + 0.3 * rng.standard_normal(before.shape))
    gamma = median_bandwidth(before).gamma
    b, a = before.astype(np.float64), after.astype(np.float64)
    phi = np.exp(-gamma * (2 - 2 * b @ b.T))
    phi_after = np.exp(-gamma * (2 - 2 * a @ a.T))
    want = -np.abs(phi * np.log(phi / phi_after)).sum() / 60**2
    assert paired_kds(before, after) == pytest.approx(want, rel=1e-6)
    assert paired_kds(before, before) == 0.0
    moved_more = prepare_embeddings(before + 0.6 * rng.standard_normal(before.shape))
    assert paired_kds(before, moved_more) < paired_kds(before, after) < 0
    with pytest.raises(InputError, match="same 60 items"):
        paired_kds(before, after[:50])
