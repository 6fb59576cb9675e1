"""Tier 4: membership-inference attribution against the deployer's own model (DESIGN §6).

Does an input contain content the deployer's own model produced (or was trained on)?
Per-token log-probs of each text under that model give scores where higher = more
model-like (loss, zlib, Min-K%, Min-K%++, ReCaLL, reference-model difference); each is
calibrated to ``attribution = 1 - p`` with a conformal p-value against a versioned
reference set of known human-written texts (per model, score and token-length bucket), and
a batch is tested with Benjamini-Hochberg. Membership inference is evidence, not proof.

One module per concern: ``scores`` (the formulas, pure numpy), ``scorer`` (the interface,
:func:`score_texts`), ``local`` (a ``transformers`` causal LM, batched, CPU/CUDA; imported
lazily, torch is not needed to import this package), ``http`` (an OpenAI-compatible
server's prompt log-probs), ``calibration`` (conformal p-values, BH, the reference set
file), ``attribute`` (in-memory attribution, building a reference set), ``inputs``
(Parquet/JSONL texts), ``job`` (the resumable, ledger-recorded batch job), ``cli``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .attribute import EVIDENCE_NOTE, Attribution, attribute_texts, build_reference
from .calibration import (
    DEFAULT_BUCKET_EDGES,
    ModelCalibration,
    ReferenceSet,
    benjamini_hochberg,
    conformal_p_values,
)
from .errors import (
    AttributionError,
    InputError,
    ReferenceSetError,
    ScorerError,
    ScorerUnavailable,
)
from .http import OpenAIScorer
from .inputs import TextSource
from .job import AttributionJob, evidence_from_row, read_results
from .scorer import ScoredText, Scorer, score_texts
from .scores import ALL_SCORES, ScoreConfig, TextEvidence, TokenLogprobs, compute_scores

if TYPE_CHECKING:
    from .local import TransformersScorer

__all__ = [
    "ALL_SCORES",
    "DEFAULT_BUCKET_EDGES",
    "EVIDENCE_NOTE",
    "Attribution",
    "AttributionError",
    "AttributionJob",
    "InputError",
    "ModelCalibration",
    "OpenAIScorer",
    "ReferenceSet",
    "ReferenceSetError",
    "ScoreConfig",
    "ScoredText",
    "Scorer",
    "ScorerError",
    "ScorerUnavailable",
    "TextEvidence",
    "TextSource",
    "TokenLogprobs",
    "TransformersScorer",
    "attribute_texts",
    "benjamini_hochberg",
    "build_reference",
    "compute_scores",
    "conformal_p_values",
    "evidence_from_row",
    "read_results",
    "score_texts",
]


def __getattr__(name: str) -> Any:
    # The local scorer's module imports nothing heavy at import time either, but keeping it
    # out of the package import makes "attribution imports without torch" hold by design.
    if name == "TransformersScorer":
        from .local import TransformersScorer

        return TransformersScorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
