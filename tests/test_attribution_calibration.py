"""Tier 4 math without a model: the score formulas, conformal p-values (uniform under the
null, per bucket), Benjamini-Hochberg (scipy's adjusted values; FDR control in simulation),
and the reference set file (round trip, corruption, wrong model or settings)."""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import rfc8785
from lineage_audit.attribution import (
    ModelCalibration,
    ReferenceSet,
    ReferenceSetError,
    ScoreConfig,
    TextEvidence,
    TokenLogprobs,
    benjamini_hochberg,
    compute_scores,
    conformal_p_values,
)
from lineage_audit.attribution.calibration import bucket_labels, bucket_of
from lineage_audit.attribution.errors import InputError
from lineage_audit.attribution.scores import (
    ALL_SCORES,
    compute_scores_batch,
    lowest_mean,
    lowest_means,
    min_k,
    min_k_count,
    min_k_plus_plus,
    zlib_bytes,
)
from scipy import stats

# --- scores ----------------------------------------------------------------------------------


def test_min_k_count_is_floor_of_k_n_at_least_one() -> None:
    assert [min_k_count(n, 0.2) for n in (1, 4, 5, 9, 10, 11)] == [1, 1, 1, 1, 2, 2]
    assert min_k_count(100, 0.29) == 29  # 0.29 * 100 = 28.999... in binary floating point
    assert min_k_count(7, 1.0) == 7


def test_min_k_is_the_mean_of_the_lowest_tokens() -> None:
    lp = np.array([-0.1, -5.0, -0.3, -2.0, -0.2, -4.0, -0.1, -0.1, -0.5, -3.0], dtype=np.float32)
    assert min_k(lp, 0.2) == pytest.approx((-5.0 - 4.0) / 2)
    assert min_k(lp, 0.3) == pytest.approx((-5.0 - 4.0 - 3.0) / 3)
    assert min_k(lp[:3], 0.2) == pytest.approx(-5.0)  # max(1, floor(0.6)) = 1 token
    assert min_k(lp, 1.0) == pytest.approx(float(lp.astype(np.float64).mean()))


def test_min_k_plus_plus_matches_the_published_formula() -> None:
    rng = np.random.default_rng(0)
    n, vocab = 12, 50
    logits = rng.normal(0, 3, size=(n, vocab))
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    targets = rng.integers(0, vocab, n)
    lp = logp[np.arange(n), targets]
    p = np.exp(logp)
    mu = (p * logp).sum(1)  # E_{v ~ p}[log p(v)]
    sigma = np.sqrt((p * logp**2).sum(1) - mu**2)
    z = (lp - mu) / sigma
    expected = np.sort(z)[: math.floor(0.25 * n)].mean()
    assert min_k_plus_plus(lp, mu, sigma, 0.25) == pytest.approx(expected)


def test_compute_scores_every_score() -> None:
    text = "the cat sat on the mat " * 3
    lp = np.array([-1.0, -2.0, -0.5, -3.0, -0.25], dtype=np.float32)
    tokens = TokenLogprobs(lp, n_tokens=6, mu=np.full(5, -1.0, np.float32),
                           sigma=np.full(5, 2.0, np.float32))  # fmt: skip
    evidence = TextEvidence(
        tokens, zlib_bytes(text), recall_logprobs=lp * 1.5, ref_logprobs=np.full(7, -2.0)
    )
    config = ScoreConfig(min_k=0.4, min_k_plus_plus=0.2, recall_prefix=("a b c",),
                         reference_model_id="ref@sha256:00")  # fmt: skip
    scores = compute_scores(evidence, config)
    loss = -6.75 / 5
    assert scores["loss"] == pytest.approx(loss)
    assert zlib_bytes(text) == len(zlib.compress(text.encode(), 9))
    assert scores["zlib"] == pytest.approx(loss / len(zlib.compress(text.encode(), 9)))
    assert scores["min_k"] == pytest.approx((-3.0 - 2.0) / 2)
    assert scores["min_k_plus_plus"] == pytest.approx((-3.0 + 1.0) / 2.0)
    assert scores["recall"] == pytest.approx(1.5)  # LL(x|P) / LL(x)
    assert scores["ref_diff"] == pytest.approx(loss + 2.0)
    # Unavailable evidence or disabled settings give None, never a made-up number.
    bare = compute_scores(TextEvidence(TokenLogprobs(lp, 6), 10), ScoreConfig())
    assert bare["min_k_plus_plus"] is None and bare["recall"] is None and bare["ref_diff"] is None


def _random_evidence(rng, n: int, *, distribution: bool = True) -> TextEvidence:
    lp = -rng.gamma(1.0, 2.0, n).astype(np.float32)
    mu = -rng.gamma(2.0, 1.0, n).astype(np.float32) if distribution else None
    sigma = rng.gamma(2.0, 0.5, n).astype(np.float32) if distribution else None
    if distribution:
        sigma[rng.random(n) < 0.05] = 0.0  # clamped to SIGMA_FLOOR
    recall = None if rng.random() < 0.3 else lp * rng.uniform(1.0, 1.5)
    ref = None if rng.random() < 0.3 else -rng.gamma(1.0, 2.0, int(rng.integers(1, 60)))
    return TextEvidence(TokenLogprobs(lp, n + 1, mu=mu, sigma=sigma), int(rng.integers(0, 300)),
                        recall, ref)  # fmt: skip


def test_batched_scores_equal_the_per_text_definitions() -> None:
    """compute_scores_batch (one pass over concatenated arrays) against each text's scores
    straight from the per-text definitions: equal to 1e-12 (only float64 summation orders
    differ); and a text's scores are the same bits alone as in any batch."""
    rng = np.random.default_rng(11)
    lengths = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 64, 100, 257, 1000, *rng.integers(1, 80, 40)]
    evidence = [_random_evidence(rng, int(n), distribution=rng.random() < 0.8) for n in lengths]
    config = ScoreConfig(min_k=0.29, min_k_plus_plus=0.1, recall_prefix=("p",),
                         reference_model_id="ref@sha256:00")  # fmt: skip
    batch = compute_scores_batch(evidence, config)
    for e, scores in zip(evidence, batch, strict=True):
        tokens = e.unconditional
        lp = tokens.logprobs.astype(np.float64)
        loss = float(lp.mean())
        expected = {
            "loss": loss,
            "zlib": loss / e.zlib_bytes if e.zlib_bytes > 0 else None,
            "min_k": min_k(tokens.logprobs, config.min_k),
            "min_k_plus_plus": None if tokens.mu is None else min_k_plus_plus(
                tokens.logprobs, tokens.mu, tokens.sigma, config.min_k_plus_plus),
            "recall": None if e.recall_logprobs is None
            else float(e.recall_logprobs.astype(np.float64).mean()) / loss,
            "ref_diff": None if e.ref_logprobs is None
            else loss - float(np.asarray(e.ref_logprobs, dtype=np.float64).mean()),
        }  # fmt: skip
        assert list(scores) == list(ALL_SCORES)
        for name, value in expected.items():
            if value is None:
                assert scores[name] is None, name
            else:
                assert scores[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
        assert compute_scores(e, config) == scores  # alone = in the batch, to the bit
    # Reordering the batch changes nothing either.
    order = rng.permutation(len(evidence))
    shuffled = compute_scores_batch([evidence[i] for i in order], config)
    assert [batch[i] for i in order] == shuffled
    assert compute_scores_batch([], config) == []
    with pytest.raises(InputError, match="no scored tokens"):
        compute_scores_batch([evidence[0], TextEvidence(TokenLogprobs(np.zeros(0), 1), 5)], config)


def test_lowest_means_of_many_texts() -> None:
    rng = np.random.default_rng(12)
    lengths = np.array([1, 2, 3, 8, 9, 15, 16, 17, 200, 4, 1])
    values = rng.normal(size=int(lengths.sum()))
    values[5] = np.nan  # a NaN sorts last, as np.partition puts it
    starts = np.cumsum(lengths) - lengths
    for k in (0.01, 0.2, 0.5, 1.0):
        got = lowest_means(values, lengths, k)
        for i, (start, n) in enumerate(zip(starts, lengths, strict=True)):
            want = lowest_mean(values[start : start + n], k)
            if np.isnan(want):
                assert np.isnan(got[i])
            else:
                assert got[i] == pytest.approx(want, rel=1e-13)


def test_score_config_rejects_bad_settings() -> None:
    with pytest.raises(InputError, match=r"score_config\.min_k: k must be in \(0, 1\]"):
        ScoreConfig(min_k=0)
    with pytest.raises(InputError, match="min_k_plus_plus"):
        ScoreConfig(min_k_plus_plus=1.5)
    with pytest.raises(InputError, match="not one string"):
        ScoreConfig(recall_prefix="a single string")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"recall_prefix\[1\]: expected non-empty text"):
        ScoreConfig(recall_prefix=("fine", "  "))
    config = ScoreConfig(recall_prefix=("a", "b"))
    assert config.recall_prefix_text == "a\n\nb\n\n"
    assert ScoreConfig.from_json(config.to_json()) == config
    with pytest.raises(InputError, match="unknown setting"):
        ScoreConfig.from_json({"min_k": 0.2, "k": 3})


# --- conformal p-values ------------------------------------------------------------------------


def test_conformal_p_value_formula_and_ties() -> None:
    ref = np.array([1.0, 2.0, 3.0, np.nan])  # NaN reference values are ignored
    p = conformal_p_values(ref, np.array([0.0, 2.0, 2.5, 10.0, np.nan]))
    np.testing.assert_allclose(p[:4], [4 / 4, 3 / 4, 2 / 4, 1 / 4])  # (1 + #{ref >= s}) / 4
    assert np.isnan(p[4])
    assert conformal_p_values(np.array([]), np.array([5.0]))[0] == 1.0  # no reference: no evidence


def test_conformal_p_values_are_uniform_under_the_null() -> None:
    rng = np.random.default_rng(1)
    trials, n_ref = 20_000, 99
    ref = rng.standard_normal((trials, n_ref))
    test = rng.standard_normal(trials)
    p = (1 + (ref >= test[:, None]).sum(1)) / (n_ref + 1)
    # Exactly uniform on {1/100, ..., 100/100}: chi-square over the 100 values.
    counts = np.bincount(np.rint(p * (n_ref + 1)).astype(int) - 1, minlength=n_ref + 1)
    assert stats.chisquare(counts).pvalue > 1e-3
    for alpha in (0.01, 0.05, 0.1, 0.5):
        rate = float((p <= alpha).mean())
        assert abs(rate - alpha) < 4 * math.sqrt(alpha * (1 - alpha) / trials), (alpha, rate)
    # Heavy ties (discrete scores): still valid, P(p <= alpha) <= alpha.
    ref_d = rng.integers(0, 5, (trials, n_ref)).astype(float)
    test_d = rng.integers(0, 5, trials).astype(float)
    p_d = (1 + (ref_d >= test_d[:, None]).sum(1)) / (n_ref + 1)
    for alpha in (0.05, 0.2, 0.5):
        assert (p_d <= alpha).mean() <= alpha + 4 * math.sqrt(alpha / trials)


def _scale(n_scored: np.ndarray) -> np.ndarray:
    """Scores whose spread depends on length, so buckets matter."""
    return np.where(n_scored < 16, 3.0, np.where(n_scored < 64, 1.0, 0.3))


def _reference(rng, n=3000, edges=(16, 64)) -> ReferenceSet:
    n_scored = rng.integers(2, 200, n)
    cal = ModelCalibration(
        "m@sha256:00", ScoreConfig(), n_scored, {"min_k": rng.standard_normal(n) * _scale(n_scored)}
    )
    hashes = tuple(hashlib.sha256(str(i).encode()).hexdigest() for i in range(n))
    return ReferenceSet("test-1", edges, hashes, {cal.model_id: cal})


def test_reference_set_p_values_are_uniform_within_each_bucket() -> None:
    """Validity is marginal over the draw of the reference set, so the reference is redrawn
    for every replicate; within each bucket P(p <= alpha) = alpha (to resolution)."""
    rng = np.random.default_rng(2)
    reps, n_test, alphas = 150, 300, (0.05, 0.2, 0.5)
    rates = np.zeros((3, len(alphas)))
    pooled_rates = []
    for _ in range(reps):
        reference = _reference(rng, n=600)
        n_scored = rng.integers(2, 200, n_test)
        values = rng.standard_normal(n_test) * _scale(n_scored)
        p, n_ref = reference.p_values("m@sha256:00", "min_k", values, n_scored)
        buckets = bucket_of(n_scored, reference.bucket_edges)
        for b in range(3):
            rates[b] += [(p[buckets == b] <= a).mean() / reps for a in alphas]
        assert n_ref.min() > 20
        # Ignoring length: the short texts' wider spread gives them too many small p-values.
        pooled = conformal_p_values(reference.models["m@sha256:00"].scores["min_k"],
                                    values[buckets == 0])  # fmt: skip
        pooled_rates.append((pooled <= 0.05).mean())
    print(f"\nP(p <= alpha) per bucket, alpha = {alphas}: {np.round(rates, 4).tolist()}")
    for b in range(3):
        for j, alpha in enumerate(alphas):
            # resolution 1/(n_ref + 1) ~ 1/45 in the smallest bucket, plus sampling noise
            assert abs(rates[b, j] - alpha) < 0.02, (b, alpha, rates[b, j])
    assert np.mean(pooled_rates) > 0.15


def test_an_empty_bucket_gives_p_one_not_a_borrowed_reference() -> None:
    reference = _reference(np.random.default_rng(3), edges=(16, 64, 500))
    p, n_ref = reference.p_values("m@sha256:00", "min_k", np.array([99.0]), np.array([800]))
    assert p[0] == 1.0 and n_ref[0] == 0
    assert bucket_labels((16, 64, 500)) == ["1-15", "16-63", "64-499", "500+"]
    assert reference.bucket_counts("m@sha256:00")["500+"] == 0


# --- Benjamini-Hochberg ------------------------------------------------------------------------


def test_bh_adjusted_values_match_scipy() -> None:
    rng = np.random.default_rng(4)
    p = np.concatenate([rng.uniform(size=80), rng.uniform(0, 0.01, size=20)])
    discoveries, adjusted = benjamini_hochberg(p, 0.1)
    np.testing.assert_allclose(adjusted, stats.false_discovery_control(p, method="bh"))
    np.testing.assert_array_equal(discoveries, adjusted <= 0.1)
    # NaN counts as p = 1 (kept in m) and is never a discovery.
    with_nan = np.append(p, np.nan)
    d2, a2 = benjamini_hochberg(with_nan, 0.1)
    assert not d2[-1] and np.isnan(a2[-1])
    np.testing.assert_allclose(a2[:-1], stats.false_discovery_control(np.append(p, 1.0))[:-1])
    with pytest.raises(InputError, match=r"q: FDR level must be in \(0, 1\)"):
        benjamini_hochberg(p, 1.0)


def test_bh_controls_the_false_discovery_rate_with_conformal_p_values() -> None:
    """m texts, 80% human (null), 20% model-like (shifted); p-values against ONE shared
    reference set (dependent, PRDS). The mean false discovery proportion stays <= q."""
    rng = np.random.default_rng(5)
    q, m, n_ref, reps = 0.1, 200, 500, 400
    fdp, power, any_false_under_full_null = [], [], 0
    for _ in range(reps):
        ref = rng.standard_normal(n_ref)
        null = rng.uniform(size=m) < 0.8
        scores = rng.standard_normal(m) + np.where(null, 0.0, 3.0)
        discoveries, _ = benjamini_hochberg(conformal_p_values(ref, scores), q)
        fdp.append((discoveries & null).sum() / max(1, discoveries.sum()))
        power.append((discoveries & ~null).sum() / max(1, (~null).sum()))
        full_null, _ = benjamini_hochberg(conformal_p_values(ref, rng.standard_normal(m)), q)
        any_false_under_full_null += bool(full_null.any())
    se = np.std(fdp) / math.sqrt(reps)
    print(f"\nBH q={q}: mean FDP {np.mean(fdp):.4f} (se {se:.4f}), power {np.mean(power):.3f}")
    assert np.mean(fdp) <= q + 3 * se
    assert np.mean(fdp) <= 0.8 * q + 3 * se  # BH's FDR is pi0 * q
    assert np.mean(power) > 0.5
    # Under the full null FDR = P(any discovery) <= q.
    assert any_false_under_full_null / reps <= q + 3 * math.sqrt(q * (1 - q) / reps)


# --- the reference set file ----------------------------------------------------------------------


@pytest.fixture
def reference_file(tmp_path: Path) -> tuple[ReferenceSet, Path]:
    reference = _reference(np.random.default_rng(6), n=50)
    path = tmp_path / "ref.json"
    digest = reference.save(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == reference.sha256
    return reference, path


def test_reference_set_round_trip(reference_file) -> None:
    reference, path = reference_file
    loaded = ReferenceSet.load(path)
    assert loaded.sha256 == reference.sha256
    assert loaded.version == "test-1" and loaded.bucket_edges == (16, 64)
    np.testing.assert_array_equal(
        loaded.models["m@sha256:00"].scores["min_k"],
        reference.models["m@sha256:00"].scores["min_k"],
    )
    with pytest.raises(InputError, match="already exists; reference sets are immutable"):
        reference.save(path)


def _rewrite(path: Path, edit) -> None:
    """Edit the document and re-seal its content hash (a well-formed but invalid file)."""
    doc = json.loads(path.read_bytes())
    doc.pop("content_sha256")
    edit(doc)
    doc["content_sha256"] = hashlib.sha256(rfc8785.dumps(doc)).hexdigest()
    path.write_bytes(rfc8785.dumps(doc))


def test_corrupt_reference_sets_are_refused_clearly(reference_file) -> None:
    _, path = reference_file
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ReferenceSetError, match=r"not valid JSON .* truncated or corrupt"):
        ReferenceSet.load(path)
    # One altered score, hash not updated: caught by the content hash.
    doc = json.loads(good)
    doc["models"]["m@sha256:00"]["scores"]["min_k"][3] = 42.0
    path.write_bytes(rfc8785.dumps(doc))
    with pytest.raises(ReferenceSetError, match=r"content_sha256: does not match .* altered"):
        ReferenceSet.load(path)
    path.write_bytes(b'{"format": "something/else"}')
    with pytest.raises(ReferenceSetError, match="format: expected"):
        ReferenceSet.load(path)
    with pytest.raises(ReferenceSetError, match="file not found"):
        ReferenceSet.load(path.with_name("absent.json"))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.pop("bucket_edges"), r"bucket_edges: missing"),
        (lambda d: d.update(bucket_edges=[64, 16]), r"bucket_edges: edges must be strictly"),
        (lambda d: d["texts"].update(count=7), r"texts\.count: says 7"),
        (
            lambda d: d["models"]["m@sha256:00"]["scores"]["min_k"].__setitem__(2, "x"),
            r"models\['m@sha256:00'\]\.scores\.min_k\[2\]: expected a number or null",
        ),
        (
            lambda d: d["models"]["m@sha256:00"]["n_scored"].pop(),
            r"n_scored: has 49 entries for 50 texts",
        ),
        (
            lambda d: d["models"]["m@sha256:00"]["score_config"].update(min_k=2),
            r"score_config\.min_k: k must be in",
        ),
    ],
)
def test_invalid_reference_fields_are_named(reference_file, edit, match) -> None:
    _, path = reference_file
    _rewrite(path, edit)
    with pytest.raises(ReferenceSetError, match=match):
        ReferenceSet.load(path)


def test_reference_set_is_per_model_and_per_settings(reference_file) -> None:
    reference, _ = reference_file
    with pytest.raises(ReferenceSetError, match=r"model_id: .*no calibration .*m@sha256:00"):
        reference.calibration("other@sha256:11")
    with pytest.raises(ReferenceSetError, match=r"score_config\.min_k: differs"):
        reference.check_compatible("m@sha256:00", ScoreConfig(min_k=0.1))
    assert reference.check_compatible("m@sha256:00", ScoreConfig()).model_id == "m@sha256:00"
    with pytest.raises(ReferenceSetError, match="score: not in the reference set"):
        reference.p_values("m@sha256:00", "recall", np.array([1.0]), np.array([5]))
    cal = reference.models["m@sha256:00"]
    other = ModelCalibration("other@sha256:11", ScoreConfig(min_k=0.1), cal.n_scored, cal.scores)
    both = reference.with_model(other)
    assert set(both.models) == {"m@sha256:00", "other@sha256:11"}
    assert both.sha256 != reference.sha256
    with pytest.raises(ReferenceSetError, match="already calibrated"):
        both.with_model(other)
