"""Membership-inference scores from per-token log-probs: pure functions, no model needed.

Every score is oriented so that **higher = more model-like** (the text looks more like
something this model produced or was trained on). The per-token evidence
(:class:`TokenLogprobs`) is what a scorer returns and what the batch job stores, so every
score can be recomputed later without the model (:func:`compute_scores`).

Scores (``n`` = number of scored tokens, ``log p(x_t)`` = the model's log-probability of
token ``t`` given the tokens before it; the first token of a text without a BOS token has no
context and is not scored):

- ``loss``: mean ``log p(x_t)`` — the LOSS attack (Yeom et al. 2018, "Privacy Risk in Machine
  Learning", CSF), i.e. minus the cross-entropy.
- ``zlib``: ``loss / zlib_bytes`` where ``zlib_bytes`` is the length of the UTF-8 text
  compressed with zlib (level 9) — Carlini et al. 2021, "Extracting Training Data from Large
  Language Models" (USENIX Security), §5: the ratio of the model's log-perplexity to the
  zlib entropy, negated so that higher is more model-like.
- ``min_k``: mean of the ``max(1, ⌊k·n⌋)`` lowest ``log p(x_t)`` — Min-K% Prob, Shi et al.
  2024, "Detecting Pretraining Data from Large Language Models" (ICLR),
  arXiv:2310.16789.
- ``min_k_plus_plus``: the same mean over the lowest ``max(1, ⌊k·n⌋)`` values of
  ``(log p(x_t) - mu_t) / sigma_t``, where ``mu_t`` and ``sigma_t`` are the mean and standard
  deviation of ``log p(·)`` over the vocabulary under the model's own distribution at
  position ``t`` (``mu_t = Σ_v p(v) log p(v)``, ``sigma_t² = Σ_v p(v) (log p(v))² - mu_t²``)
  — Min-K%++, Zhang et al. 2024, "Min-K%++: Improved Baseline for Detecting Pre-Training
  Data from Large Language Models", arXiv:2404.02936. Needs the full next-token
  distribution, so only scorers that see the logits (the local one) provide it.
- ``recall``: ``LL(x | P) / LL(x)``, the mean log-likelihood of the same target tokens
  conditioned on a prefix ``P`` of known non-member texts over the unconditional one —
  ReCaLL, Xie et al. 2024, "ReCaLL: Membership Inference via Relative Conditional
  Log-Likelihoods", arXiv:2406.15968. Both log-likelihoods are negative; the paper finds
  that a non-member prefix lowers a member's log-likelihood more than a non-member's, so the
  ratio is larger for members. Disabled without a prefix pool.
- ``ref_diff``: ``loss`` under the deployer's model minus ``loss`` under a reference model —
  the reference-model comparison of Carlini et al. 2021 (§5, "Small"/"Medium"), as a
  difference of mean log-likelihoods. Each model scores the text with its own tokenizer.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "ALL_SCORES",
    "SIGMA_FLOOR",
    "ScoreConfig",
    "TextEvidence",
    "TokenLogprobs",
    "compute_scores",
    "compute_scores_batch",
    "lowest_mean",
    "lowest_means",
    "min_k",
    "min_k_count",
    "min_k_plus_plus",
    "zlib_bytes",
]

# Every score this module computes, in the order results list them.
ALL_SCORES: tuple[str, ...] = ("loss", "zlib", "min_k", "min_k_plus_plus", "recall", "ref_diff")
# sigma_t below this (a distribution with all its mass on one token) is clamped, so Min-K%++
# stays finite; such positions then contribute (log p - mu) / 1e-6.
SIGMA_FLOOR = 1e-6
RECALL_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class TokenLogprobs:
    """What a scorer saw for one text: one entry per **scored** token, in text order.

    ``n_tokens`` counts every token of the model's input for the text (including a BOS the
    tokenizer adds); the scored tokens are those with at least one token of context.
    ``token_ids`` (local scorer) or ``tokens`` (HTTP scorer: the server's token strings)
    identify them; ``mu`` and ``sigma`` (Min-K%++) are present only where the scorer saw the
    whole next-token distribution.
    """

    logprobs: np.ndarray  # float32 (n,)
    n_tokens: int
    token_ids: np.ndarray | None = None  # int32 (n,)
    tokens: tuple[str, ...] | None = None
    mu: np.ndarray | None = None  # float32 (n,)
    sigma: np.ndarray | None = None  # float32 (n,)

    def __post_init__(self) -> None:
        n = len(self.logprobs)
        if (
            (self.token_ids is None or len(self.token_ids) == n)
            and (self.tokens is None or len(self.tokens) == n)
            and (self.mu is None or len(self.mu) == n)
            and (self.sigma is None or len(self.sigma) == n)
        ):
            return  # the common case, checked without a loop (a scorer makes one per text)
        for name in ("token_ids", "tokens", "mu", "sigma"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise InputError(name, f"has {len(value)} entries for {n} scored tokens")

    @property
    def n_scored(self) -> int:
        return len(self.logprobs)


@dataclass(frozen=True)
class ScoreConfig:
    """Settings every score depends on; a reference set is only valid for the same settings.

    ``recall_prefix`` is the ReCaLL prefix pool: known non-member texts joined (in order) by
    a blank line into one prefix. Empty disables ReCaLL. ``reference_model_id`` names the
    reference model of ``ref_diff`` (``None`` disables it).
    """

    min_k: float = 0.2
    min_k_plus_plus: float = 0.2
    recall_prefix: tuple[str, ...] = ()
    reference_model_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("min_k", "min_k_plus_plus"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 < value <= 1:
                raise InputError(f"score_config.{name}", "k must be in (0, 1]", value)
        if isinstance(self.recall_prefix, str):
            raise InputError(
                "score_config.recall_prefix", "expected a sequence of texts, not one string"
            )
        object.__setattr__(self, "recall_prefix", tuple(self.recall_prefix))
        for i, text in enumerate(self.recall_prefix):
            if not isinstance(text, str) or not text.strip():
                raise InputError(
                    f"score_config.recall_prefix[{i}]", "expected non-empty text", text
                )

    @property
    def recall_prefix_text(self) -> str | None:
        """The ReCaLL prefix as one string ending in the separator, or ``None``."""
        if not self.recall_prefix:
            return None
        return RECALL_SEPARATOR.join(self.recall_prefix) + RECALL_SEPARATOR

    def scores(self, *, distribution: bool) -> tuple[str, ...]:
        """The scores these settings yield with a scorer that does (not) see distributions."""
        names = ["loss", "zlib", "min_k"]
        if distribution:
            names.append("min_k_plus_plus")
        if self.recall_prefix:
            names.append("recall")
        if self.reference_model_id is not None:
            names.append("ref_diff")
        return tuple(names)

    def to_json(self) -> dict[str, Any]:
        return {
            "min_k": self.min_k,
            "min_k_plus_plus": self.min_k_plus_plus,
            "recall_prefix": list(self.recall_prefix),
            "reference_model_id": self.reference_model_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "score_config") -> ScoreConfig:
        if not isinstance(data, Mapping):
            raise InputError(where, "expected an object", data)
        unknown = sorted(set(data) - {"min_k", "min_k_plus_plus", "recall_prefix",
                                      "reference_model_id"})  # fmt: skip
        if unknown:
            raise InputError(f"{where}.{unknown[0]}", "unknown setting")
        prefix = data.get("recall_prefix", [])
        if not isinstance(prefix, list):
            raise InputError(f"{where}.recall_prefix", "expected a list of texts", prefix)
        ref = data.get("reference_model_id")
        if ref is not None and not isinstance(ref, str):
            raise InputError(f"{where}.reference_model_id", "expected a string or null", ref)
        return cls(
            min_k=data.get("min_k", 0.2),
            min_k_plus_plus=data.get("min_k_plus_plus", 0.2),
            recall_prefix=tuple(prefix),
            reference_model_id=ref,
        )


@dataclass(frozen=True)
class TextEvidence:
    """Everything the scores of one text are computed from (and can be recomputed from).

    ``recall_logprobs`` are the same scored tokens' log-probs with the ReCaLL prefix in front
    (``None`` when ReCaLL is off, or the HTTP server tokenized the target differently after
    the prefix); ``ref_logprobs`` are the reference model's own scored tokens.
    """

    unconditional: TokenLogprobs
    zlib_bytes: int
    recall_logprobs: np.ndarray | None = None
    ref_logprobs: np.ndarray | None = field(default=None)


def zlib_bytes(text: str) -> int:
    """Length in bytes of the UTF-8 text compressed by zlib at level 9 (Carlini et al. 2021)."""
    return len(zlib.compress(text.encode("utf-8"), 9))


def min_k_count(n: int, k: float) -> int:
    """``max(1, ⌊k·n⌋)``; the epsilon keeps e.g. 0.29·100 = 28.999… at 29."""
    return max(1, math.floor(k * n + 1e-9))


def lowest_mean(values: np.ndarray, k: float) -> float:
    """Mean of the ``max(1, ⌊k·n⌋)`` smallest values (float64 accumulation)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise InputError("logprobs", "no scored tokens")
    count = min_k_count(values.size, k)
    if count >= values.size:
        return float(values.mean())
    return float(np.partition(values, count - 1)[:count].mean())


def min_k(logprobs: np.ndarray, k: float) -> float:
    """Min-K% Prob (Shi et al. 2024, arXiv:2310.16789): mean of the lowest k% token log-probs."""
    return lowest_mean(logprobs, k)


def min_k_plus_plus(logprobs: np.ndarray, mu: np.ndarray, sigma: np.ndarray, k: float) -> float:
    """Min-K%++ (Zhang et al. 2024, arXiv:2404.02936): mean of the lowest k% of
    ``(log p(x_t) - mu_t) / sigma_t`` with ``mu_t``, ``sigma_t`` the mean and standard deviation of
    ``log p`` over the vocabulary under the model's distribution at ``t``."""
    lp = np.asarray(logprobs, dtype=np.float64)
    z = (lp - np.asarray(mu, dtype=np.float64)) / np.maximum(
        np.asarray(sigma, dtype=np.float64), SIGMA_FLOOR
    )
    return lowest_mean(z, k)


def compute_scores(evidence: TextEvidence, config: ScoreConfig) -> dict[str, float | None]:
    """Every score of :data:`ALL_SCORES` for one text (``None`` where unavailable):
    :func:`compute_scores_batch` of this one text, so a text's scores recompute from its
    evidence to the same bits as in whatever batch they were first computed."""
    return compute_scores_batch([evidence], config)[0]


def compute_scores_batch(
    evidence: list[TextEvidence], config: ScoreConfig
) -> list[dict[str, float | None]]:
    """Every score of :data:`ALL_SCORES` for each text (``None`` where unavailable), in one
    pass over the texts' concatenated per-token arrays instead of a dozen numpy calls per
    text. A text's scores do not depend on the other texts of the batch.

    The definitions are those of the per-text functions (:func:`min_k`,
    :func:`min_k_plus_plus`, ``ndarray.mean``); only float64 summation orders differ (each
    text's values summed by ``np.add.reduceat``, the lowest in ascending order), so the
    results agree with them to float64 rounding (tested to 1e-12)."""
    rows = len(evidence)
    if not rows:
        return []
    tokens = [e.unconditional for e in evidence]
    logprobs = [t.logprobs for t in tokens]
    lengths = np.fromiter(map(len, logprobs), dtype=np.int64, count=rows)
    if not lengths.all():
        raise InputError("logprobs", "no scored tokens")
    lp = np.concatenate(logprobs, dtype=np.float64)
    loss = _means(lp, lengths).tolist()
    nothing: list[float | None] = [None] * rows
    zlib_score = [
        value / e.zlib_bytes if e.zlib_bytes > 0 else None
        for value, e in zip(loss, evidence, strict=True)
    ]
    min_k_score = lowest_means(lp, lengths, config.min_k).tolist()
    plus_plus = list(nothing)
    mus, sigmas = [t.mu for t in tokens], [t.sigma for t in tokens]
    have = [
        i
        for i, (m, s) in enumerate(zip(mus, sigmas, strict=True))
        if m is not None and s is not None
    ]
    if have:
        if len(have) < rows:
            ends = np.cumsum(lengths)
            lp = np.concatenate([lp[ends[i] - lengths[i] : ends[i]] for i in have])
        mu = np.concatenate([mus[i] for i in have], dtype=np.float64)  # type: ignore[misc]
        sigma = np.concatenate([sigmas[i] for i in have], dtype=np.float64)  # type: ignore[misc]
        z = (lp - mu) / np.maximum(sigma, SIGMA_FLOOR)
        values = lowest_means(z, lengths[have], config.min_k_plus_plus).tolist()
        for i, value in zip(have, values, strict=True):
            plus_plus[i] = value
    recall = list(nothing)
    if config.recall_prefix:
        for i, conditional in _present_means([e.recall_logprobs for e in evidence]):
            # loss < 0 for any real model (log p < 0); exactly 0 would mean certainty.
            recall[i] = conditional / loss[i] if loss[i] != 0 else None
    ref_diff = list(nothing)
    if config.reference_model_id is not None:
        for i, reference in _present_means([e.ref_logprobs for e in evidence]):
            ref_diff[i] = loss[i] - reference
    # Keys in the order of ALL_SCORES (a dict display is 5x faster than dict(zip(...))).
    return [
        {"loss": a, "zlib": b, "min_k": c, "min_k_plus_plus": d, "recall": e, "ref_diff": f}
        for a, b, c, d, e, f in zip(
            loss, zlib_score, min_k_score, plus_plus, recall, ref_diff, strict=True
        )
    ]


def _means(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The mean of each run of ``lengths[i]`` consecutive float64 ``values`` (NaN for an empty
    run); ``np.add.reduceat`` sums each run on its own, so a run's mean does not depend on
    the runs around it."""
    out = np.full(len(lengths), np.nan)
    some = lengths > 0
    if some.any():
        starts = np.cumsum(lengths) - lengths
        out[some] = np.add.reduceat(values, starts[some]) / lengths[some]
    return out


def _present_means(arrays: list[np.ndarray | None]) -> list[tuple[int, float]]:
    """``(index, mean)`` of every array that is present."""
    have = [i for i, a in enumerate(arrays) if a is not None]
    if not have:
        return []
    present = [arrays[i] for i in have]
    lengths = np.fromiter(map(len, present), dtype=np.int64, count=len(present))  # type: ignore[arg-type]
    means = _means(np.concatenate(present, dtype=np.float64), lengths)  # type: ignore[arg-type]
    return list(zip(have, means.tolist(), strict=True))


def lowest_means(values: np.ndarray, lengths: np.ndarray, k: float) -> np.ndarray:
    """:func:`lowest_mean` of many texts at once: ``values`` holds the texts' values one
    after another, ``lengths[i]`` (>= 1) of them for text ``i``.

    Texts are grouped by the power of two at or above their length; each group is one
    NaN-padded matrix sorted along its rows (NaN sorts last, as in ``np.partition``), and
    the ``max(1, ⌊k·n⌋)`` smallest values of each row are summed in ascending order. A
    text's result depends on its own values alone, not on the texts it is computed with."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    counts = np.minimum(np.maximum(1, np.floor(k * lengths + 1e-9)).astype(np.int64), lengths)
    starts = np.cumsum(lengths) - lengths
    # frexp's exponent of n - 1 is its bit length: 2**e is the least power of two >= n.
    exponents = np.frexp((lengths - 1).astype(np.float64))[1]
    out = np.empty(len(lengths), dtype=np.float64)
    for exponent in np.unique(exponents).tolist():
        group = np.flatnonzero(exponents == exponent)
        columns = np.arange(1 << exponent)
        count = counts[group]
        matrix = np.full((len(group), len(columns)), np.nan)
        inside = columns < lengths[group, None]
        matrix[inside] = values[(starts[group, None] + columns)[inside]]
        matrix.sort(axis=1)
        lowest = matrix[columns < count[:, None]]  # row after row, each ascending
        out[group] = np.add.reduceat(lowest, np.cumsum(count) - count) / count
    return out
