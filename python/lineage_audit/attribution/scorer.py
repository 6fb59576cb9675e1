"""The scorer interface, and scoring texts with it.

A :class:`Scorer` turns texts into per-token log-probs under one model
(:class:`~.scores.TokenLogprobs`). Two implementations: :class:`~.local.TransformersScorer`
(a local ``transformers`` causal LM; sees the whole next-token distribution, so it also
gives Min-K%++) and :class:`~.http.OpenAIScorer` (an OpenAI-compatible server's prompt
log-probs). :func:`score_texts` runs a scorer (and optionally a reference model) over texts
and computes every score from the evidence.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from .errors import InputError
from .scores import ScoreConfig, TextEvidence, TokenLogprobs, compute_scores_batch, zlib_bytes

__all__ = ["ScoredText", "Scorer", "check_texts", "score_texts"]


class Scorer(ABC):
    """Per-token log-probs of texts under one model.

    ``model_id`` names the model (reference sets are per model id); ``distribution`` says
    whether the scorer sees the whole next-token distribution (needed for Min-K%++).
    """

    model_id: str
    distribution: bool = False

    @abstractmethod
    def token_logprobs(self, texts: Sequence[str]) -> list[TokenLogprobs]:
        """Log-probs of every scored token of each text (texts already checked non-empty)."""

    @abstractmethod
    def conditional_logprobs(
        self, prefix: str, texts: Sequence[str], unconditional: Sequence[TokenLogprobs]
    ) -> list[np.ndarray | None]:
        """Log-probs of the same scored tokens as ``unconditional`` with ``prefix`` in front
        (ReCaLL), or ``None`` for a text whose tokens cannot be matched after the prefix."""

    def describe(self) -> dict[str, object]:
        """What the ledger records about this scorer."""
        return {"model_id": self.model_id, "kind": type(self).__name__}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections); the default has none."""

    def __enter__(self) -> Scorer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class ScoredText:
    """One text's scores and the evidence they were computed from."""

    evidence: TextEvidence
    scores: dict[str, float | None]

    @property
    def n_scored(self) -> int:
        return self.evidence.unconditional.n_scored


def check_texts(texts: Sequence[str], field: str = "texts") -> list[str]:
    """A list of non-empty strings, or :class:`InputError` naming the first bad entry."""
    if isinstance(texts, str | bytes):
        raise InputError(field, "expected a sequence of strings, not a single string", texts)
    if not isinstance(texts, Sequence):
        raise InputError(field, "expected a sequence of strings", texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"{field}[{index}]", f"expected str, got {type(text).__name__}", text)
        if not text.strip():
            raise InputError(f"{field}[{index}]", "empty text: nothing to score", text)
    return list(texts)


def score_texts(
    scorer: Scorer,
    texts: Sequence[str],
    config: ScoreConfig | None = None,
    *,
    reference_scorer: Scorer | None = None,
) -> list[ScoredText]:
    """Score ``texts`` with ``scorer``: evidence and every available score, in input order.

    ReCaLL runs when ``config.recall_prefix`` is set; ``ref_diff`` when
    ``config.reference_model_id`` is set, which then needs ``reference_scorer`` with that id.
    """
    config = config or ScoreConfig()
    items = check_texts(texts)
    if not items:
        return []
    if config.reference_model_id is not None:
        if reference_scorer is None:
            raise InputError(
                "reference_scorer",
                f"the score settings include ref_diff against {config.reference_model_id!r}; "
                "pass that reference model",
            )
        if reference_scorer.model_id != config.reference_model_id:
            raise InputError(
                "reference_scorer",
                f"is {reference_scorer.model_id!r}, the score settings name "
                f"{config.reference_model_id!r}",
            )
    unconditional = scorer.token_logprobs(items)
    conditional: list[np.ndarray | None] = [None] * len(items)
    prefix = config.recall_prefix_text
    if prefix is not None:
        conditional = scorer.conditional_logprobs(prefix, items, unconditional)
    reference: list[np.ndarray | None] = [None] * len(items)
    if config.reference_model_id is not None and reference_scorer is not None:
        reference = [t.logprobs for t in reference_scorer.token_logprobs(items)]
    evidence = [
        TextEvidence(tokens, zlib_bytes(text), cond, ref)
        for text, tokens, cond, ref in zip(
            items, unconditional, conditional, reference, strict=True
        )
    ]
    # Vectorised across the texts; the same bits as compute_scores() of each text alone.
    scores = compute_scores_batch(evidence, config)
    return [ScoredText(e, s) for e, s in zip(evidence, scores, strict=True)]
