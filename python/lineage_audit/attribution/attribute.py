"""Attribution in memory: build a reference set, attribute texts against it.

:func:`build_reference` scores known human-written texts with the deployer's model and
returns a :class:`~.calibration.ReferenceSet`; :func:`attribute_texts` scores texts,
turns each score into a conformal p-value within its token-length bucket, and applies
Benjamini-Hochberg over the batch to the primary score. The batch job
(:mod:`.job`) does the same over files, resumably.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .calibration import (
    DEFAULT_BUCKET_EDGES,
    ReferenceSet,
    benjamini_hochberg,
    bucket_of,
    calibration_from_scores,
    now_rfc3339,
    text_sha256,
)
from .errors import InputError, ReferenceSetError
from .scorer import ScoredText, Scorer, check_texts, score_texts
from .scores import ScoreConfig

__all__ = [
    "EVIDENCE_NOTE",
    "Attribution",
    "Calibrated",
    "attribute_texts",
    "build_reference",
    "calibrate",
    "default_primary",
    "threshold_note",
]

EVIDENCE_NOTE = (
    "Membership inference is evidence, not proof: a high attribution means the text scores "
    "more like this model's own output (or training data) than the reference human-written "
    "texts do; a distribution shift between the text and the reference can do the same "
    "(Duan et al. 2024; Das et al. 2024)."
)


def threshold_note(fdr: float) -> str:
    return (
        "attribution >= 1 - a flags at most a fraction a of human-written texts exchangeable "
        "with the reference set (e.g. 0.99 -> at most 1% false positives); discoveries at "
        f"BH level q = {fdr:g} keep the expected share of human-written texts among all "
        f"flagged texts at or below {fdr:g}."
    )


def default_primary(scorer: Scorer) -> str:
    """Min-K%++ where the scorer sees distributions (local), else Min-K%."""
    return "min_k_plus_plus" if scorer.distribution else "min_k"


@dataclass(frozen=True)
class Attribution:
    """One text's calibrated result. ``attribution = 1 - p`` of the primary score."""

    n_scored: int
    bucket: str
    ref_n: int  # reference texts in the bucket the text was compared with
    scores: dict[str, float | None]
    p_values: dict[str, float | None]
    primary: str
    p: float | None
    attribution: float | None
    q_value: float | None
    discovery: bool
    model_id: str
    reference_sha256: str
    reference_version: str


@dataclass(frozen=True)
class Calibrated:
    """p-values of a batch: per score, per text; plus the bucket and reference size."""

    p_values: dict[str, np.ndarray]
    buckets: np.ndarray
    ref_n: np.ndarray


def calibrate(
    reference: ReferenceSet, model_id: str, scored: Sequence[ScoredText], names: Sequence[str]
) -> Calibrated:
    n_scored = np.array([s.n_scored for s in scored], dtype=np.int64)
    p_values: dict[str, np.ndarray] = {}
    ref_n = np.zeros(len(scored), dtype=np.int64)
    for name in names:
        values = np.array(
            [np.nan if s.scores[name] is None else s.scores[name] for s in scored], dtype=np.float64
        )
        p_values[name], ref_n = reference.p_values(model_id, name, values, n_scored)
    return Calibrated(p_values, bucket_of(n_scored, reference.bucket_edges), ref_n)


def available_scores(scorer: Scorer, config: ScoreConfig, reference: ReferenceSet) -> list[str]:
    """Scores this scorer gives under ``config`` that the reference set calibrates."""
    cal = reference.calibration(scorer.model_id)
    return [n for n in config.scores(distribution=scorer.distribution) if n in cal.scores]


def check_primary(primary: str, names: Sequence[str]) -> str:
    if primary not in names:
        raise InputError("primary", f"not available here (scores: {', '.join(names)})", primary)
    return primary


def attribute_texts(
    scorer: Scorer,
    reference: ReferenceSet,
    texts: Sequence[str],
    *,
    primary: str | None = None,
    fdr: float = 0.05,
    reference_scorer: Scorer | None = None,
) -> list[Attribution]:
    """Score, calibrate and BH-test ``texts`` (the score settings come from the reference
    set's calibration of this scorer's model)."""
    cal = reference.calibration(scorer.model_id)
    names = available_scores(scorer, cal.score_config, reference)
    primary = check_primary(primary or default_primary(scorer), names)
    scored = score_texts(scorer, texts, cal.score_config, reference_scorer=reference_scorer)
    calibrated = calibrate(reference, scorer.model_id, scored, names)
    p = calibrated.p_values[primary]
    discoveries, q_values = benjamini_hochberg(p, fdr)
    labels = reference.bucket_names
    out = []
    for i, item in enumerate(scored):
        p_i = None if np.isnan(p[i]) else float(p[i])
        out.append(
            Attribution(
                n_scored=item.n_scored,
                bucket=labels[int(calibrated.buckets[i])],
                ref_n=int(calibrated.ref_n[i]),
                scores=item.scores,
                p_values={
                    n: None if np.isnan(v[i]) else float(v[i])
                    for n, v in calibrated.p_values.items()
                },
                primary=primary,
                p=p_i,
                attribution=None if p_i is None else 1.0 - p_i,
                q_value=None if np.isnan(q_values[i]) else float(q_values[i]),
                discovery=bool(discoveries[i]),
                model_id=scorer.model_id,
                reference_sha256=reference.sha256,
                reference_version=reference.version,
            )
        )
    return out


def build_reference(
    scorer: Scorer,
    texts: Sequence[str],
    *,
    version: str,
    config: ScoreConfig | None = None,
    reference_scorer: Scorer | None = None,
    bucket_edges: Sequence[int] = DEFAULT_BUCKET_EDGES,
    description: str = "",
    base: ReferenceSet | None = None,
    chunk: int = 256,
    on_progress: Callable[[int], Any] | None = None,
) -> ReferenceSet:
    """Score known human-written ``texts`` with ``scorer`` into a reference set.

    With ``base``, the model's calibration is added to an existing set, whose texts must be
    exactly these (same SHA-256s, same order); its version label and buckets are kept.
    """
    config = config or ScoreConfig()
    items = check_texts(texts)
    if not items:
        raise InputError("texts", "no reference texts")
    hashes = tuple(text_sha256(t) for t in items)
    if base is not None and base.text_sha256 != hashes:
        raise ReferenceSetError(
            "texts", f"differ from the base reference set {base.version!r}'s texts"
        )
    overlap = set(config.recall_prefix) & set(items)
    if overlap:
        raise InputError(
            "score_config.recall_prefix",
            "a ReCaLL prefix text is also a reference text; keep them apart",
            next(iter(overlap)),
        )
    scored: list[ScoredText] = []
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        scored.extend(score_texts(scorer, part, config, reference_scorer=reference_scorer))
        if on_progress is not None:
            on_progress(len(part))
    names = config.scores(distribution=scorer.distribution)
    calibration = calibration_from_scores(
        scorer.model_id, config, [s.n_scored for s in scored], [s.scores for s in scored], names
    )
    if base is not None:
        return base.with_model(calibration)
    return ReferenceSet(
        version=version,
        bucket_edges=tuple(bucket_edges),
        text_sha256=hashes,
        models={scorer.model_id: calibration},
        description=description,
        created=now_rfc3339(),
    )
