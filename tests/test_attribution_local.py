"""Tier 4 with a real (tiny) language model: a 2-layer GPT-2 trained in the test on synthetic
member texts. Min-K% separates members from non-members; a batch scores exactly like one text
at a time; the vectorised bookkeeping equals each text worked out on its own; ReCaLL's prefix
changes only the conditioning of the target tokens; sliding windows; a BOS tokenizer;
calibrated attribution end to end; bad input."""

from __future__ import annotations

import math
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from attribution_models import make_tokenizer, save_model, torch_threads, trained_tiny
from lineage_audit.attribution import (
    ReferenceSet,
    ScoreConfig,
    attribute_texts,
    build_reference,
    compute_scores,
    local,
    score_texts,
)
from lineage_audit.attribution.errors import InputError, ScorerUnavailable
from lineage_audit.attribution.local import TransformersScorer, row_statistics, windows
from lineage_audit.attribution.scores import SIGMA_FLOOR

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("transformers", reason="the realtext extra is not installed")


def auc(positive, negative) -> float:
    """P(score of a positive > score of a negative), ties counted half."""
    pos, neg = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def tiny():
    return trained_tiny()


@pytest.fixture(scope="module")
def scorer(tiny) -> TransformersScorer:
    return TransformersScorer(tiny.model, tiny.tokenizer, device="cpu", batch_size=16)


def _manual_logprobs(model, ids: list[int], positions) -> np.ndarray:
    """log p(ids[t] | ids[:t]) for each t, from one plain forward pass (no padding)."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
        logp = logits.float().log_softmax(-1)
    return np.array([float(logp[t - 1, ids[t]]) for t in positions], dtype=np.float32)


# --- detection ---------------------------------------------------------------------------------


def test_min_k_separates_members_from_non_members(tiny, scorer) -> None:
    config = ScoreConfig(recall_prefix=tiny.prefix)
    members = score_texts(scorer, tiny.members, config)
    others = score_texts(scorer, tiny.nonmembers, config)
    aucs = {
        name: auc([s.scores[name] for s in members], [s.scores[name] for s in others])
        for name in ("loss", "zlib", "min_k", "min_k_plus_plus", "recall")
    }
    print("\nAUC members vs non-members:", {k: round(v, 3) for k, v in aucs.items()})
    assert aucs["min_k"] > 0.9
    assert aucs["min_k_plus_plus"] > 0.9
    # ReCaLL's direction (Xie et al. 2024): a non-member prefix lowers members' LL more.
    assert aucs["recall"] > 0.9


def test_a_batch_scores_like_one_text_at_a_time(tiny) -> None:
    texts = [
        *tiny.members[:5],
        *tiny.nonmembers[:5],
        tiny.chain.texts(1, seed=9, lengths=(100, 100))[0],
    ]
    config = ScoreConfig(recall_prefix=tiny.prefix)
    # max_length 72: the long text is scored in sliding windows, in both runs.
    batched = TransformersScorer(tiny.model, tiny.tokenizer, device="cpu", batch_size=4,
                                 max_length=72)  # fmt: skip
    single = TransformersScorer(tiny.model, tiny.tokenizer, device="cpu", batch_size=1,
                                max_length=72)  # fmt: skip
    a, b = score_texts(batched, texts, config), score_texts(single, texts, config)
    for x, y in zip(a, b, strict=True):
        ex, ey = x.evidence, y.evidence
        np.testing.assert_array_equal(ex.unconditional.token_ids, ey.unconditional.token_ids)
        for name in ("logprobs", "mu", "sigma"):
            np.testing.assert_allclose(
                getattr(ex.unconditional, name), getattr(ey.unconditional, name), atol=2e-5
            )
        np.testing.assert_allclose(ex.recall_logprobs, ey.recall_logprobs, atol=2e-5)
        for name, value in x.scores.items():
            assert value == pytest.approx(y.scores[name], abs=1e-4), name


class RecordingModel:
    """The scorer's model with every forward call's inputs and logits kept."""

    def __init__(self, model) -> None:
        self.model = model
        self.rows: dict[tuple[int, ...], torch.Tensor] = {}  # unpadded ids -> their logits

    def __call__(self, **inputs):
        out = self.model(**inputs)
        for ids, mask, logits in zip(inputs["input_ids"], inputs["attention_mask"], out.logits,
                                     strict=True):  # fmt: skip
            n = int(mask.sum())
            assert bool(mask[:n].all()) and not bool(mask[n:].any())  # right padding
            self.rows[tuple(ids[:n].tolist())] = logits[:n].clone()
        return out

    def __getattr__(self, name: str):
        return getattr(self.model, name)


def _per_text_statistics(recorded: RecordingModel, ids: list[int], first: int, size: int,
                         stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """One text's log p, mu and sigma, window by window (:func:`windows`), from the logits
    the model gave that window's own row in the run, through the same float32 row
    arithmetic as the scorer (:func:`row_statistics`, tested against float64 on its own),
    here applied to this one text's rows."""
    lp, mu, sigma = [], [], []
    for begin, end, score_from in windows(len(ids), first, size, stride):
        logits = recorded.rows[tuple(ids[begin:end])]
        positions = torch.arange(score_from - begin, end - begin)
        rows = logits[positions - 1].float()
        target = torch.tensor(ids[score_from:end])
        p, m, var = row_statistics(torch, rows, target, torch.empty(2, *rows.shape))
        lp.extend(p.tolist())
        mu.extend(m.tolist())
        sigma.extend(var.clamp(min=0).sqrt().tolist())
    return np.array(lp), np.array(mu), np.array(sigma)


def test_row_statistics_match_float64_definitions() -> None:
    """log p of the target, mu = sum p log p and var = sum p (log p)^2 - mu^2 from one exp
    per logit in float32, against float64 log-softmax; rows with -inf logits (forbidden
    tokens: no probability mass, no contribution) and a near one-hot row included."""
    torch.manual_seed(0)
    logits = torch.randn(300, 75) * 4
    logits[5, 3] = float("-inf")
    logits[7, :10] = float("-inf")
    logits[9, 0] = 60.0  # nearly all the mass on one token: a tiny variance
    targets = torch.randint(10, 75, (300,))
    lp, mu, var = row_statistics(torch, logits, targets, torch.empty(2, 300, 75))
    exact = torch.log_softmax(logits.double(), -1)
    plogp = torch.nan_to_num(exact.exp() * exact, nan=0.0)
    mu64 = plogp.sum(-1)
    var64 = torch.nan_to_num(plogp * exact, nan=0.0).sum(-1) - mu64**2
    np.testing.assert_allclose(lp.double(), exact[torch.arange(300), targets], atol=1e-5)
    np.testing.assert_allclose(mu.double(), mu64, atol=1e-5)
    np.testing.assert_allclose(var.double(), var64, rtol=1e-4, atol=1e-10)
    assert torch.isfinite(mu).all() and torch.isfinite(var).all()


@pytest.mark.parametrize("stats_rows", [None, 7])
def test_vectorised_scoring_equals_the_per_text_definition(tiny, stats_rows, monkeypatch) -> None:
    """The scorer's bookkeeping is vectorised across a call (flat token arrays, packed padded
    batches, statistics over chunks of positions from many batches, one flat output, scores
    over concatenated arrays). Here each text is instead worked out on its own, straight
    from the definitions, from the logits the model gave it in the same run: padded texts of
    many lengths, sliding-window texts, ReCaLL's prefixed pass; every score within 1e-6.
    With ``stats_rows`` 7 the statistics chunks split batches at odd places (as a large
    vocabulary's do)."""
    if stats_rows is not None:
        monkeypatch.setattr(local, "STATS_ROWS", stats_rows)
    rng = np.random.default_rng(3)
    texts = [*tiny.members[:6], *tiny.nonmembers[:6],
             *tiny.chain.texts(3, seed=21, lengths=(60, 110)),  # windowed at max_length 40
             *tiny.chain.texts(4, seed=22, lengths=(2, 5))]  # fmt: skip
    texts = [texts[i] for i in rng.permutation(len(texts))]
    config = ScoreConfig(min_k=0.3, min_k_plus_plus=0.2, recall_prefix=tiny.prefix[:1])
    scorer = TransformersScorer(tiny.model, tiny.tokenizer, device="cpu", batch_size=5,
                                max_length=40, stride=15)  # fmt: skip
    recorded = RecordingModel(scorer.model)
    scorer.model = recorded
    scored = score_texts(scorer, texts, config)
    head = tiny.tokenizer(config.recall_prefix_text)["input_ids"]
    worst = 0.0
    assert any(len(tiny.tokenizer(t)["input_ids"]) > 40 for t in texts)
    for text, item in zip(texts, scored, strict=True):
        ids = tiny.tokenizer(text)["input_ids"]
        lp, mu, sigma = _per_text_statistics(recorded, ids, 1, 40, 15)
        evidence = item.evidence.unconditional
        assert evidence.n_tokens == len(ids) and list(evidence.token_ids) == ids[1:]
        for name, expected in (("logprobs", lp), ("mu", mu), ("sigma", sigma)):
            np.testing.assert_allclose(getattr(evidence, name), expected, rtol=0, atol=1e-6)
        conditional, _, _ = _per_text_statistics(recorded, head + ids, len(head) + 1, 40, 15)
        loss = float(np.mean(lp))
        count = max(1, math.floor(config.min_k * len(lp) + 1e-9))
        z = (lp - mu) / np.maximum(sigma, SIGMA_FLOOR)
        count_pp = max(1, math.floor(config.min_k_plus_plus * len(lp) + 1e-9))
        expected = {
            "loss": loss,
            "zlib": loss / len(zlib.compress(text.encode("utf-8"), 9)),
            "min_k": float(np.sort(lp)[:count].mean()),
            "min_k_plus_plus": float(np.sort(z)[:count_pp].mean()),
            "recall": float(np.mean(conditional)) / loss,
            "ref_diff": None,
        }
        assert list(item.scores) == list(expected)
        for name, value in expected.items():
            if value is None:
                assert item.scores[name] is None
            else:
                assert item.scores[name] == pytest.approx(value, rel=0, abs=1e-6), name
                worst = max(worst, abs(item.scores[name] - value))
        # The evidence recomputes the scores to the bit (one text = any batch).
        assert compute_scores(item.evidence, config) == item.scores
    print(f"\nvectorised vs per-text: largest score difference {worst:.2e}")


class TransformersOnlyTokenizer:
    """The tiny tokenizer seen only through transformers' call: no Rust backend to ask."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def __call__(self, *args, **kwargs):
        return self.tokenizer(*args, **kwargs)

    def __getattr__(self, name: str):
        if name == "backend_tokenizer":
            raise AttributeError(name)
        return getattr(self.tokenizer, name)


def test_the_tokenizer_backend_shortcut_gives_transformers_ids(tiny) -> None:
    """The scorer asks a fast tokenizer's backend directly (encode_batch_fast); without one
    it goes through transformers' call: the same ids, log-probs and scores either way."""
    texts = [*tiny.members[:3], *tiny.chain.texts(2, seed=23, lengths=(150, 150))]
    direct = TransformersScorer(tiny.model, tiny.tokenizer, device="cpu", batch_size=2)
    plain = TransformersScorer(tiny.model, TransformersOnlyTokenizer(tiny.tokenizer),
                               device="cpu", batch_size=2)  # fmt: skip
    assert hasattr(tiny.tokenizer.backend_tokenizer, "encode_batch_fast")  # the shortcut's way
    assert direct._encode(texts) == [list(ids) for ids in tiny.tokenizer(texts)["input_ids"]]
    assert plain._encode(texts) == direct._encode(texts)
    a, b = score_texts(direct, texts), score_texts(plain, texts)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.evidence.unconditional.token_ids,
                                      y.evidence.unconditional.token_ids)  # fmt: skip
        np.testing.assert_array_equal(x.evidence.unconditional.logprobs,
                                      y.evidence.unconditional.logprobs)  # fmt: skip
        assert x.scores == y.scores


def test_recall_prefix_changes_only_the_target_tokens_conditioning(tiny, scorer) -> None:
    texts = tiny.members[:3] + tiny.nonmembers[:3]
    with_prefix = score_texts(scorer, texts, ScoreConfig(recall_prefix=tiny.prefix))
    without = score_texts(scorer, texts, ScoreConfig())
    head = tiny.tokenizer(ScoreConfig(recall_prefix=tiny.prefix).recall_prefix_text)["input_ids"]
    for text, a, b in zip(texts, with_prefix, without, strict=True):
        # The unconditional pass is untouched by ReCaLL being on.
        np.testing.assert_array_equal(
            a.evidence.unconditional.logprobs, b.evidence.unconditional.logprobs
        )
        plain = tiny.tokenizer(text)["input_ids"]
        # Same target tokens, scored at the same positions of the text (not the prefix's),
        # each conditioned on prefix + the text's earlier tokens: one plain forward pass.
        ids = head + plain
        expected = _manual_logprobs(tiny.model, ids, range(len(head) + 1, len(ids)))
        assert len(a.evidence.recall_logprobs) == a.n_scored == len(plain) - 1
        np.testing.assert_allclose(a.evidence.recall_logprobs, expected, atol=2e-5)
        assert a.scores["recall"] == pytest.approx(
            float(np.mean(expected, dtype=np.float64)) / a.scores["loss"], rel=1e-5
        )
        assert b.scores["recall"] is None
    # Another prefix: other conditional values, same unconditional ones.
    other = score_texts(scorer, texts, ScoreConfig(recall_prefix=tuple(tiny.nonmembers[10:12])))
    assert not np.allclose(
        other[0].evidence.recall_logprobs, with_prefix[0].evidence.recall_logprobs
    )
    np.testing.assert_array_equal(
        other[0].evidence.unconditional.logprobs, with_prefix[0].evidence.unconditional.logprobs
    )


def test_sliding_windows_score_every_token_once_with_bounded_context(tiny) -> None:
    for length, first, size, stride in [(40, 1, 16, 8), (17, 1, 16, 5), (100, 3, 32, 31)]:
        seen = []
        for begin, end, score_from in windows(length, first, size, stride):
            assert end - begin <= size and score_from >= min(begin + 1, first)
            for t in range(score_from, end):
                assert t - begin >= min(t, size - stride)  # context in its window
                seen.append(t)
        assert seen == list(range(first, length))
    text = tiny.chain.texts(1, seed=11, lengths=(40, 40))[0]
    windowed = TransformersScorer(tiny.model, tiny.tokenizer, device="cpu", max_length=16,
                                  stride=8)  # fmt: skip
    result = windowed.token_logprobs([text])[0]
    ids = tiny.tokenizer(text)["input_ids"]
    expected = []
    for begin, end, score_from in windows(len(ids), 1, 16, 8):
        local = _manual_logprobs(tiny.model, ids[begin:end], range(score_from - begin, end - begin))
        expected.extend(local)
    np.testing.assert_allclose(result.logprobs, expected, atol=2e-5)
    # The first window's tokens see the same context as an unwindowed pass.
    full = TransformersScorer(tiny.model, tiny.tokenizer, device="cpu").token_logprobs([text])[0]
    np.testing.assert_allclose(result.logprobs[:15], full.logprobs[:15], atol=2e-5)
    assert not np.allclose(result.logprobs[15:], full.logprobs[15:])


def test_a_bos_tokenizer_scores_every_word(tiny) -> None:
    tokenizer = make_tokenizer(tiny.chain.words, bos=True)
    scorer = TransformersScorer(tiny.model, tokenizer, device="cpu", batch_size=3)
    texts = tiny.members[:4]
    result = scorer.token_logprobs(texts)
    for text, tokens in zip(texts, result, strict=True):
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id and len(ids) == len(text.split()) + 1
        assert tokens.n_tokens == len(ids) and tokens.n_scored == len(text.split())
        expected = _manual_logprobs(tiny.model, ids, range(1, len(ids)))
        np.testing.assert_allclose(tokens.logprobs, expected, atol=2e-5)
    # ReCaLL with BOS: the prefix keeps its BOS, the text's words are all scored.
    config = ScoreConfig(recall_prefix=tiny.prefix)
    scored = score_texts(scorer, texts[:1], config)[0]
    head = tokenizer(config.recall_prefix_text)["input_ids"]
    ids = head + tokenizer(texts[0], add_special_tokens=False)["input_ids"]
    expected = _manual_logprobs(tiny.model, ids, range(len(head), len(ids)))
    np.testing.assert_allclose(scored.evidence.recall_logprobs, expected, atol=2e-5)


# --- calibrated attribution ---------------------------------------------------------------------


def test_calibrated_attribution_flags_members_not_human_texts(tiny, scorer, tmp_path) -> None:
    config = ScoreConfig(recall_prefix=tiny.prefix)
    reference = build_reference(scorer, tiny.human, version="synthetic-1", config=config)
    path = tmp_path / "ref.json"
    reference.save(path)
    reference = ReferenceSet.load(path)
    results = attribute_texts(scorer, reference, tiny.members + tiny.nonmembers, fdr=0.1)
    members, others = results[: len(tiny.members)], results[len(tiny.members) :]
    assert all(r.primary == "min_k_plus_plus" and r.reference_sha256 == reference.sha256
               for r in results)  # fmt: skip
    assert np.median([r.attribution for r in members]) > 0.9
    # Non-members are exchangeable with the reference texts: p roughly uniform.
    assert 0.3 < np.mean([r.p for r in others]) < 0.7
    flagged = [r for r in results if r.discovery]
    false = sum(r in others for r in flagged)
    print(f"\n{len(flagged)} discoveries at q=0.1, {false} of them non-members")
    assert len(flagged) >= 40 and false <= max(2, 0.2 * len(flagged))
    # Each score has its own p-value; the evidence recomputes the scores.
    assert set(members[0].p_values) == {"loss", "zlib", "min_k", "min_k_plus_plus", "recall"}
    again = score_texts(scorer, tiny.members[:2], config)
    for item in again:
        assert compute_scores(item.evidence, config) == item.scores


# --- identity, loading, imports -------------------------------------------------------------


def test_model_id_follows_the_weights(tiny, tmp_path: Path) -> None:
    directory = save_model(tiny.model, tiny.tokenizer, tmp_path / "tiny-gpt2")
    loaded = TransformersScorer.from_pretrained(directory, device="cpu")
    assert loaded.model_id.startswith("tiny-gpt2@sha256:") and len(loaded.model_id) == 33
    assert TransformersScorer.from_pretrained(directory, device="cpu").model_id == loaded.model_id
    text = tiny.members[:2]
    np.testing.assert_allclose(
        loaded.token_logprobs(text)[0].logprobs,
        TransformersScorer(tiny.model, tiny.tokenizer, device="cpu")
        .token_logprobs(text)[0]
        .logprobs,
        atol=1e-6,
    )
    in_memory = TransformersScorer(tiny.model, tiny.tokenizer, device="cpu")
    assert in_memory.model_id.startswith("gpt2@sha256:")
    assert (
        in_memory.model_id == TransformersScorer(tiny.model, tiny.tokenizer, device="cpu").model_id
    )
    assert in_memory.describe()["device"] == "cpu"


def test_attribution_imports_without_torch() -> None:
    code = (
        "import sys; import lineage_audit.attribution, lineage_audit.cli; "
        "lineage_audit.cli.build_parser(); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- bad input ----------------------------------------------------------------------------------


def test_bad_input_is_refused_naming_the_text(tiny, scorer) -> None:
    with pytest.raises(InputError, match=r"texts\[1\]: empty text: nothing to score"):
        score_texts(scorer, ["kalo mi", "   "])
    with pytest.raises(InputError, match=r"texts\[0\]: expected str"):
        score_texts(scorer, [b"bytes"])  # type: ignore[list-item]
    with pytest.raises(InputError, match="not a single string"):
        score_texts(scorer, "one string")  # type: ignore[arg-type]
    word = tiny.chain.words[0]
    with pytest.raises(InputError, match=r"texts\[0\]: 1 token\(s\): too short to score"):
        score_texts(scorer, [word])
    long_text = tiny.chain.texts(1, seed=12, lengths=(200, 200))[0]
    strict = TransformersScorer(tiny.model, tiny.tokenizer, device="cpu", long_texts="error")
    with pytest.raises(
        InputError, match=r"texts\[1\]: 200 tokens exceed the model's context window of 128"
    ):
        strict.token_logprobs([tiny.members[0], long_text])
    assert scorer.token_logprobs([long_text])[0].n_scored == 199  # windowed by default
    with pytest.raises(InputError, match=r"recall_prefix: \d+ tokens; the prefix may use at most"):
        score_texts(scorer, tiny.members[:1], ScoreConfig(recall_prefix=(long_text,)))
    with pytest.raises(InputError, match="max_length: exceeds the model's context of 128"):
        TransformersScorer(tiny.model, tiny.tokenizer, device="cpu", max_length=500)
    with pytest.raises(InputError, match=r"stride: must be in \[1, 15\]"):
        TransformersScorer(tiny.model, tiny.tokenizer, device="cpu", max_length=16, stride=16)
    with pytest.raises(InputError, match="device: expected auto, cpu, cuda or cuda:N"):
        TransformersScorer(tiny.model, tiny.tokenizer, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ScorerUnavailable, match="CUDA is not available"):
            TransformersScorer(tiny.model, tiny.tokenizer, device="cuda")


def test_reference_model_difference(tiny) -> None:
    """ref_diff = loss under the deployer's model - loss under a reference model; here the
    reference is an untrained GPT-2 of the same shape, which finds members no easier."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(7)
    untrained = GPT2LMHeadModel(tiny.model.config).eval()
    target = TransformersScorer(tiny.model, tiny.tokenizer, device="cpu")
    reference = TransformersScorer(untrained, tiny.tokenizer, device="cpu", model_id="untrained")
    config = ScoreConfig(reference_model_id="untrained")
    members = score_texts(target, tiny.members[:20], config, reference_scorer=reference)
    others = score_texts(target, tiny.nonmembers[:20], config, reference_scorer=reference)
    for item, text in zip(members, tiny.members, strict=False):
        ref_lp = reference.token_logprobs([text])[0].logprobs
        assert item.scores["ref_diff"] == pytest.approx(
            item.scores["loss"] - float(np.mean(ref_lp, dtype=np.float64)), rel=1e-6
        )
    assert (
        auc([m.scores["ref_diff"] for m in members], [o.scores["ref_diff"] for o in others]) > 0.9
    )
    with pytest.raises(InputError, match="reference_scorer: the score settings include ref_diff"):
        score_texts(target, tiny.members[:1], config)
    with pytest.raises(InputError, match="reference_scorer: is 'gpt2@sha256:"):
        score_texts(target, tiny.members[:1], config, reference_scorer=target)


def test_statistics_are_the_same_bits_whatever_the_chunk(tiny, monkeypatch) -> None:
    """A row's log p, mu and sigma do not depend on which chunk of staged rows it was
    processed in (chunks of 7 rows split batches at odd places)."""
    scorer = TransformersScorer(tiny.model, tiny.tokenizer, device="cpu", batch_size=5)
    texts = [*tiny.members[:8], *tiny.nonmembers[:8]]
    default = scorer.token_logprobs(texts)
    monkeypatch.setattr(local, "STATS_ROWS", 7)
    small = scorer.token_logprobs(texts)
    for a, b in zip(default, small, strict=True):
        for name in ("logprobs", "mu", "sigma"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
