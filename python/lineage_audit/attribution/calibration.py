"""Calibration: conformal p-values against a versioned reference set of human-written texts.

A raw score says little on its own: Min-K% of a short technical paragraph and of a long
story live on different scales. Each score is therefore compared with the same score of
**known human-written texts** (the reference set), scored by the same model with the same
settings, in the same token-length bucket:

    p = (1 + #{reference scores ≥ s}) / (1 + n_ref)        attribution = 1 - p

This is the conformal p-value (Vovk, Gammerman & Shafer 2005; Bates et al. 2023, "Testing
for outliers with conformal p-values", Ann. Statist. 51(1)). If the text is human-written
and exchangeable with the reference texts of its bucket, ``P(p ≤ alpha) ≤ alpha`` for every alpha: a
threshold ``attribution ≥ 1 - alpha`` flags at most a fraction alpha of such human texts (its false
positive rate). Ties count against the text (``≥``), so the guarantee holds with discrete
scores too. The smallest p a bucket can give is ``1 / (n_ref + 1)``; a bucket with no
reference texts gives p = 1 (no evidence), never a guess from another bucket.

For a batch, :func:`benjamini_hochberg` controls the false discovery rate: among texts
flagged at level q, the expected share of human-written ones is at most q (conformal
p-values sharing one reference set are PRDS, so BH applies; Bates et al. 2023, Thm 2).

Membership inference is evidence, not proof (Duan et al. 2024, "Do Membership Inference
Attacks Work on Large Language Models?"; Das et al. 2024, "Blind Baselines Beat Membership
Inference Attacks for Foundation Models"): a low p says the text scores more model-like
than the reference human texts do — which a distribution shift between the text and the
reference can also cause. The guarantee above is only as good as the exchangeability of
the reference with the human texts you actually score.

The reference set file is canonical JSON (RFC 8785) carrying its own content hash; its
SHA-256 (of the file bytes) is recorded in every result.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rfc8785

from .errors import InputError, ReferenceSetError
from .scores import ALL_SCORES, ScoreConfig

__all__ = [
    "DEFAULT_BUCKET_EDGES",
    "FORMAT",
    "ModelCalibration",
    "ReferenceSet",
    "benjamini_hochberg",
    "bucket_labels",
    "bucket_of",
    "conformal_p_values",
    "text_sha256",
]

FORMAT = "lineage-audit/attribution-reference/v1"
# Token-length buckets (scored tokens): [1,16), [16,32), ..., [1024, ∞).
DEFAULT_BUCKET_EDGES: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- conformal p-values and BH ----------------------------------------------------------------


def conformal_p_values(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``(1 + #{ref ≥ s}) / (1 + n_ref)`` for each score ``s`` (higher s = more model-like).

    NaN scores give NaN; NaN reference values are ignored. With no reference value, p = 1.
    """
    ref = np.asarray(reference, dtype=np.float64)
    ref = np.sort(ref[np.isfinite(ref)])
    s = np.asarray(scores, dtype=np.float64)
    at_least = ref.size - np.searchsorted(ref, s, side="left")
    p = (1.0 + at_least) / (1.0 + ref.size)
    return np.where(np.isnan(s), np.nan, p)


def benjamini_hochberg(
    p_values: Sequence[float] | np.ndarray, q: float
) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg step-up at level ``q``: ``(discoveries, adjusted p-values)``.

    Adjusted p-values (BH q-values) are ``min_{j ≥ i} m·p_(j)/j`` capped at 1; a hypothesis
    is a discovery when its adjusted value is ≤ q. NaN p-values count as p = 1 (they stay in
    m, which is conservative) and are never discoveries.
    """
    if not isinstance(q, int | float) or not 0 < q < 1:
        raise InputError("q", "FDR level must be in (0, 1)", q)
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise InputError("p_values", "expected a 1-D array", p.shape)
    m = p.size
    if m == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    filled = np.where(np.isnan(p), 1.0, p)
    order = np.argsort(filled, kind="stable")
    ranked = filled[order] * m / np.arange(1, m + 1)
    adjusted_sorted = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    discoveries = (adjusted <= q) & ~np.isnan(p)
    return discoveries, np.where(np.isnan(p), np.nan, adjusted)


# --- buckets ---------------------------------------------------------------------------------


def _check_edges(edges: Sequence[int], where: str = "bucket_edges") -> tuple[int, ...]:
    if isinstance(edges, str) or not isinstance(edges, Sequence):
        raise InputError(where, "expected a list of increasing integers", edges)
    out = tuple(edges)
    if any(isinstance(e, bool) or not isinstance(e, int) or e < 2 for e in out):
        raise InputError(where, "edges must be integers ≥ 2", list(out))
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise InputError(where, "edges must be strictly increasing", list(out))
    return out


def bucket_of(n_scored: np.ndarray | int, edges: Sequence[int]) -> np.ndarray:
    """Bucket index of each scored-token count: 0 for [1, e₀), i for [e_{i-1}, e_i), ..."""
    return np.searchsorted(np.asarray(edges), np.asarray(n_scored), side="right")


def bucket_labels(edges: Sequence[int]) -> list[str]:
    """Human labels of the buckets, e.g. ``1-15``, ``16-31``, ..., ``1024+``."""
    lows = [1, *edges]
    highs = [*(e - 1 for e in edges), None]
    return [
        f"{lo}-{hi}" if hi is not None else f"{lo}+" for lo, hi in zip(lows, highs, strict=True)
    ]


# --- the reference set -----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelCalibration:
    """One model's scores of every reference text (NaN where a score was unavailable)."""

    model_id: str
    score_config: ScoreConfig
    n_scored: np.ndarray  # int64 (n_texts,)
    scores: dict[str, np.ndarray]  # name -> float64 (n_texts,)
    created: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "score_config": self.score_config.to_json(),
            "created": self.created,
            "n_scored": [int(n) for n in self.n_scored],
            "scores": {
                name: [None if not np.isfinite(v) else float(v) for v in values]
                for name, values in self.scores.items()
            },
        }


@dataclass(frozen=True)
class ReferenceSet:
    """Known human-written texts' scores, per model id, score and token-length bucket.

    ``version`` is the label its builder gave it; ``sha256`` (of the canonical file bytes)
    identifies it exactly and is recorded in every result. Texts are identified by their
    SHA-256 only (the texts themselves are not stored).
    """

    version: str
    bucket_edges: tuple[int, ...]
    text_sha256: tuple[str, ...]
    models: dict[str, ModelCalibration]
    description: str = ""
    created: str = ""
    _sorted: dict[tuple[str, str, int], np.ndarray] = field(
        default_factory=dict, repr=False, compare=False
    )
    _digest: list[str] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or not self.version.strip():
            raise ReferenceSetError("version", "expected a non-empty version label", self.version)
        object.__setattr__(self, "bucket_edges", _check_edges(self.bucket_edges))
        n = len(self.text_sha256)
        for model_id, cal in self.models.items():
            if len(cal.n_scored) != n:
                raise ReferenceSetError(
                    f"models[{model_id!r}].n_scored",
                    f"has {len(cal.n_scored)} entries for {n} texts",
                )
            for name, values in cal.scores.items():
                if name not in ALL_SCORES:
                    raise ReferenceSetError(f"models[{model_id!r}].scores.{name}", "unknown score")
                if len(values) != n:
                    raise ReferenceSetError(
                        f"models[{model_id!r}].scores.{name}",
                        f"has {len(values)} entries for {n} texts",
                    )

    # --- identity ------------------------------------------------------------------------

    def _body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "description": self.description,
            "created": self.created,
            "bucket_edges": list(self.bucket_edges),
            "texts": {"count": len(self.text_sha256), "sha256": list(self.text_sha256)},
            "models": {mid: cal.to_json() for mid, cal in sorted(self.models.items())},
        }

    def to_bytes(self) -> bytes:
        """The canonical file: RFC 8785 JSON of the body plus its own ``content_sha256``."""
        body = self._body()
        body["content_sha256"] = hashlib.sha256(rfc8785.dumps(body)).hexdigest()
        return rfc8785.dumps(body)

    @property
    def sha256(self) -> str:
        """SHA-256 of the file bytes: the reference set's identity in every result."""
        if not self._digest:
            self._digest.append(hashlib.sha256(self.to_bytes()).hexdigest())
        return self._digest[0]

    @property
    def bucket_names(self) -> list[str]:
        return bucket_labels(self.bucket_edges)

    # --- lookup -------------------------------------------------------------------------

    def calibration(self, model_id: str) -> ModelCalibration:
        cal = self.models.get(model_id)
        if cal is None:
            have = ", ".join(sorted(self.models)) or "none"
            raise ReferenceSetError(
                "model_id",
                f"reference set {self.version!r} has no calibration for this model (it has: "
                f"{have}); build one with `lineage-audit attribute calibrate`",
                model_id,
            )
        return cal

    def check_compatible(self, model_id: str, config: ScoreConfig) -> ModelCalibration:
        """The model's calibration, if it was made with exactly these score settings."""
        cal = self.calibration(model_id)
        mine, theirs = config.to_json(), cal.score_config.to_json()
        for key in mine:
            if mine[key] != theirs[key]:
                raise ReferenceSetError(
                    f"score_config.{key}",
                    f"differs from the reference set's ({theirs[key]!r}); scores are only "
                    "comparable under the same settings",
                    mine[key],
                )
        return cal

    def _reference(self, model_id: str, score: str, bucket: int) -> np.ndarray:
        key = (model_id, score, bucket)
        if key not in self._sorted:
            cal = self.calibration(model_id)
            if score not in cal.scores:
                raise ReferenceSetError(
                    "score",
                    f"not in the reference set for {model_id} (it has: {', '.join(cal.scores)})",
                    score,
                )
            values = cal.scores[score]
            in_bucket = bucket_of(cal.n_scored, self.bucket_edges) == bucket
            chosen = values[in_bucket & np.isfinite(values)]
            self._sorted[key] = np.sort(chosen)
        return self._sorted[key]

    def p_values(
        self, model_id: str, score: str, values: np.ndarray, n_scored: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Conformal p-values of ``values`` within their token-length buckets, and how many
        reference texts each was compared with."""
        values = np.asarray(values, dtype=np.float64)
        buckets = bucket_of(np.asarray(n_scored), self.bucket_edges)
        p = np.full(values.shape, np.nan)
        n_ref = np.zeros(values.shape, dtype=np.int64)
        for bucket in np.unique(buckets):
            mask = buckets == bucket
            ref = self._reference(model_id, score, int(bucket))
            p[mask] = conformal_p_values(ref, values[mask])
            n_ref[mask] = ref.size
        return p, n_ref

    def bucket_counts(self, model_id: str) -> dict[str, int]:
        cal = self.calibration(model_id)
        counts = np.bincount(
            bucket_of(cal.n_scored, self.bucket_edges), minlength=len(self.bucket_edges) + 1
        )
        return dict(zip(self.bucket_names, (int(c) for c in counts), strict=True))

    # --- building --------------------------------------------------------------------------

    def with_model(self, calibration: ModelCalibration) -> ReferenceSet:
        """A new set with ``calibration`` added (the texts must be the same, in order)."""
        if calibration.model_id in self.models:
            raise ReferenceSetError(
                "model_id", "already calibrated in this reference set", calibration.model_id
            )
        models = {**self.models, calibration.model_id: calibration}
        return ReferenceSet(self.version, self.bucket_edges, self.text_sha256, models,
                            self.description, self.created)  # fmt: skip

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the canonical file atomically (refusing to overwrite); returns its SHA-256."""
        path = Path(path)
        if path.exists():
            raise InputError("--out", "already exists; reference sets are immutable", str(path))
        data = self.to_bytes()
        staging = path.with_name(f".{path.name}.tmp")
        with staging.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, path)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ReferenceSet:
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ReferenceSetError("reference", "file not found", str(path)) from None
        return cls.from_bytes(data, where=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "reference") -> ReferenceSet:
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ReferenceSetError(
                where, f"not valid JSON ({exc}); the file is truncated or corrupt"
            ) from None
        if not isinstance(doc, dict):
            raise ReferenceSetError(where, "expected a JSON object")
        if doc.get("format") != FORMAT:
            raise ReferenceSetError(f"{where}: format", f"expected {FORMAT!r}", doc.get("format"))
        stored = doc.pop("content_sha256", None)
        actual = hashlib.sha256(rfc8785.dumps(doc)).hexdigest()
        if stored != actual:
            raise ReferenceSetError(
                f"{where}: content_sha256",
                f"does not match the content (SHA-256 {actual}); the file is corrupt or was "
                "altered",
                stored,
            )
        try:
            return _parse(doc)
        except InputError as exc:  # a field that parses but is invalid
            raise ReferenceSetError(f"{where}: {exc.field}", exc.problem, exc.value) from None


def _get(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in doc:
        raise ReferenceSetError(f"{where}{key}", "missing")
    value = doc[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ReferenceSetError(f"{where}{key}", "wrong type", value)
    return value


def _numbers(values: Any, where: str, *, integer: bool = False) -> np.ndarray:
    if not isinstance(values, list):
        raise ReferenceSetError(where, "expected a list", values)
    out = np.empty(len(values), dtype=np.int64 if integer else np.float64)
    for i, v in enumerate(values):
        if integer:
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ReferenceSetError(f"{where}[{i}]", "expected a positive integer", v)
            out[i] = v
        elif v is None:
            out[i] = np.nan
        elif isinstance(v, bool) or not isinstance(v, int | float):
            raise ReferenceSetError(f"{where}[{i}]", "expected a number or null", v)
        else:
            out[i] = v
    return out


def _parse(doc: dict[str, Any]) -> ReferenceSet:
    texts = _get(doc, "texts", dict, "")
    hashes = _get(texts, "sha256", list, "texts.")
    if _get(texts, "count", int, "texts.") != len(hashes):
        raise ReferenceSetError(
            "texts.count", f"says {texts['count']}, {len(hashes)} hashes listed"
        )
    models: dict[str, ModelCalibration] = {}
    for model_id, entry in _get(doc, "models", dict, "").items():
        where = f"models[{model_id!r}]."
        if not isinstance(entry, dict):
            raise ReferenceSetError(where[:-1], "expected an object")
        scores = _get(entry, "scores", dict, where)
        models[model_id] = ModelCalibration(
            model_id=model_id,
            score_config=ScoreConfig.from_json(
                _get(entry, "score_config", dict, where), where=f"{where}score_config"
            ),
            n_scored=_numbers(
                _get(entry, "n_scored", list, where), f"{where}n_scored", integer=True
            ),
            scores={name: _numbers(v, f"{where}scores.{name}") for name, v in scores.items()},
            created=entry.get("created", ""),
        )
    return ReferenceSet(
        version=_get(doc, "version", str, ""),
        bucket_edges=tuple(_get(doc, "bucket_edges", list, "")),
        text_sha256=tuple(hashes),
        models=models,
        description=doc.get("description", ""),
        created=doc.get("created", ""),
    )


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def calibration_from_scores(
    model_id: str,
    config: ScoreConfig,
    n_scored: Sequence[int],
    rows: Sequence[Mapping[str, float | None]],
    names: Sequence[str],
) -> ModelCalibration:
    """A :class:`ModelCalibration` from per-text score dicts (as :func:`score_texts` gives)."""
    scores = {
        name: np.array([np.nan if r.get(name) is None else r[name] for r in rows], dtype=np.float64)
        for name in names
    }
    return ModelCalibration(model_id, config, np.asarray(n_scored, dtype=np.int64), scores,
                            now_rfc3339())  # fmt: skip
