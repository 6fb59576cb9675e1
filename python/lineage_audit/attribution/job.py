"""The Tier 4 batch job: attribute every text of a file, resumably, recorded in the ledger.

Layout of the output directory::

    job.json          what the job is (input hash, model, reference set, scores, q); a
                      resumed run must match it exactly
    parts/part-*.parquet   scored rows, one atomic file per ``part_rows`` rows (temp file,
                      fsync, rename): a crash loses at most the rows of the part in flight
    results.parquet   every row in input order with its Benjamini-Hochberg q-value and
                      discovery flag, written once all rows are scored (BH needs them all)
    summary.json      the summary also recorded in the ledger outcome

Resuming reads which row numbers the parts hold and scores only the others, so no row is
lost or scored twice. Input is read and validated (non-empty texts, unique ids) before the
ledger intent; the run itself is one write-ahead ``attribution.run`` action (a resumed run
is a new action that says how many rows it found done).

Every row carries the per-token log-probs (and Min-K%++'s mu and sigma, ReCaLL's
conditional log-probs, the reference model's log-probs), so its scores can be recomputed
from the file alone (:func:`evidence_from_row`).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..ledger import Ledger
from .attribute import (
    EVIDENCE_NOTE,
    available_scores,
    calibrate,
    check_primary,
    default_primary,
    threshold_note,
)
from .calibration import ReferenceSet, benjamini_hochberg
from .errors import InputError
from .inputs import TextRow, TextSource, file_sha256
from .scorer import ScoredText, Scorer, score_texts
from .scores import ALL_SCORES, ScoreConfig, TextEvidence, TokenLogprobs

__all__ = [
    "JOB_FORMAT",
    "RESULTS",
    "AttributionJob",
    "evidence_from_row",
    "read_results",
    "result_schema",
]

JOB_FORMAT = "lineage-audit/attribution-job/v1"
JOB_FILE, PARTS, RESULTS, SUMMARY = "job.json", "parts", "results.parquet", "summary.json"
# job.json keys a resumed run must match (the rest is informative).
IDENTITY = ("input_sha256", "text_column", "id_column", "model_id", "reference_sha256",
            "score_config_sha256", "scores", "primary", "fdr_q")  # fmt: skip


def result_schema(final: bool = False):
    """Arrow schema of a part file (``final``: of results.parquet, with the BH columns)."""
    import pyarrow as pa

    f32 = pa.list_(pa.float32())
    fields = [
        ("row", pa.int64()),
        ("id", pa.string()),
        ("n_tokens", pa.int32()),
        ("n_scored", pa.int32()),
        ("bucket", pa.string()),
        ("ref_n", pa.int32()),
        *((name, pa.float64()) for name in ALL_SCORES),
        *((f"p_{name}", pa.float64()) for name in ALL_SCORES),
        ("p", pa.float64()),
        ("attribution", pa.float64()),
        ("model_id", pa.string()),
        ("reference_sha256", pa.string()),
        ("zlib_bytes", pa.int32()),
        ("token_ids", pa.list_(pa.int32())),
        ("tokens", pa.list_(pa.string())),
        ("token_logprobs", f32),
        ("token_mu", f32),
        ("token_sigma", f32),
        ("recall_logprobs", f32),
        ("ref_logprobs", f32),
    ]
    if final:
        fields += [("q_value", pa.float64()), ("discovery", pa.bool_())]
    return pa.schema(fields)


def _list(values: np.ndarray | None) -> list | None:
    return None if values is None else values.tolist()


def evidence_from_row(row: dict[str, Any]) -> TextEvidence:
    """The evidence of one results row (as ``pyarrow`` ``to_pylist`` gives it), from which
    :func:`~.scores.compute_scores` recomputes every score without the model."""

    def arr(name: str, dtype: Any = np.float32) -> np.ndarray | None:
        value = row.get(name)
        return None if value is None else np.asarray(value, dtype=dtype)

    tokens = row.get("tokens")
    unconditional = TokenLogprobs(
        logprobs=arr("token_logprobs"),
        n_tokens=int(row["n_tokens"]),
        token_ids=arr("token_ids", np.int32),
        tokens=None if tokens is None else tuple(tokens),
        mu=arr("token_mu"),
        sigma=arr("token_sigma"),
    )
    return TextEvidence(
        unconditional, int(row["zlib_bytes"]), arr("recall_logprobs"), arr("ref_logprobs")
    )


def read_results(directory: str | Path):
    """results.parquet of a finished job as an Arrow table."""
    import pyarrow.parquet as pq

    path = Path(directory) / RESULTS
    if not path.is_file():
        raise InputError("--out", "no results.parquet: the job has not finished", str(directory))
    return pq.read_table(path)


def _score_config_sha256(config: ScoreConfig) -> str:
    blob = json.dumps(config.to_json(), sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    with staging.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, path)


@dataclass
class AttributionJob:
    """Attribute every text of ``source`` with ``scorer`` against ``reference`` into ``out``.

    ``after_part(rows_done)`` is called after each part file is durable (progress hooks;
    the tests interrupt a job from it).
    """

    source: TextSource
    scorer: Scorer
    reference: ReferenceSet
    out: Path
    reference_scorer: Scorer | None = None
    primary: str | None = None
    fdr: float = 0.05
    part_rows: int = 256
    progress: bool = False
    after_part: Callable[[int], None] | None = None
    config: ScoreConfig = field(default_factory=ScoreConfig, init=False)
    names: list[str] = field(default_factory=list, init=False)
    _identity: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _rows: int = field(default=0, init=False, repr=False)

    # --- before the ledger intent -----------------------------------------------------------

    def validate(self) -> dict[str, Any]:
        """Everything checkable before anything is recorded; returns the job's identity."""
        self.out = Path(self.out)
        if not isinstance(self.part_rows, int) or self.part_rows < 1:
            raise InputError("part_rows", "must be an integer >= 1", self.part_rows)
        if not isinstance(self.fdr, int | float) or not 0 < self.fdr < 1:
            raise InputError("fdr", "FDR level q must be in (0, 1)", self.fdr)
        cal = self.reference.calibration(self.scorer.model_id)
        self.config = cal.score_config
        self.names = available_scores(self.scorer, self.config, self.reference)
        self.primary = check_primary(self.primary or default_primary(self.scorer), self.names)
        if self.config.reference_model_id is not None:
            if self.reference_scorer is None:
                raise InputError(
                    "--reference-model",
                    f"the reference set's scores include ref_diff against "
                    f"{self.config.reference_model_id!r}; pass that model",
                )
            if self.reference_scorer.model_id != self.config.reference_model_id:
                raise InputError(
                    "--reference-model",
                    f"is {self.reference_scorer.model_id!r}; the reference set was scored "
                    f"against {self.config.reference_model_id!r}",
                )
        self._rows = self.source.validate()
        self._identity = {
            "format": JOB_FORMAT,
            "input": self.source.path.name,
            "input_sha256": self.source.sha256(),
            "rows": self._rows,
            "text_column": self.source.text_column,
            "id_column": self.source.id_column,
            "model_id": self.scorer.model_id,
            "scorer": self.scorer.describe(),
            "reference_sha256": self.reference.sha256,
            "reference_version": self.reference.version,
            "score_config_sha256": _score_config_sha256(self.config),
            "scores": list(self.names),
            "primary": self.primary,
            "fdr_q": self.fdr,
        }
        self._check_existing()
        return self._identity

    def _check_existing(self) -> None:
        path = self.out / JOB_FILE
        if self.out.exists() and not self.out.is_dir():
            raise InputError("--out", "exists and is not a directory", str(self.out))
        if not path.is_file():
            if self.out.exists() and any(self.out.iterdir()):
                raise InputError("--out", "is not empty and holds no job.json", str(self.out))
            return
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"{path}", f"unreadable ({exc})") from None
        for key in IDENTITY:
            if existing.get(key) != self._identity[key]:
                raise InputError(
                    "--out",
                    f"holds a job with a different {key} ({existing.get(key)!r}, now "
                    f"{self._identity[key]!r}); resume with the same settings or use a new "
                    "directory",
                    str(self.out),
                )

    @property
    def complete(self) -> bool:
        return (self.out / RESULTS).is_file() and (self.out / SUMMARY).is_file()

    # --- parts -------------------------------------------------------------------------

    @property
    def parts_dir(self) -> Path:
        return self.out / PARTS

    def _part_files(self) -> list[Path]:
        return sorted(self.parts_dir.glob("part-*.parquet"))

    def done_rows(self) -> set[int]:
        """Row numbers already scored (read from the part files); removes stale temp files
        of a part that was being written when a previous run died."""
        import pyarrow.parquet as pq

        if not self.parts_dir.is_dir():
            return set()
        for stale in self.parts_dir.glob(".part-*.tmp"):
            stale.unlink()
        done: set[int] = set()
        for part in self._part_files():
            rows = pq.read_table(part, columns=["row"]).column("row").to_pylist()
            again = done.intersection(rows)
            if again:
                raise InputError(
                    str(part), f"repeats row {min(again)} of another part; the output is corrupt"
                )
            done.update(rows)
        return done

    def _pending(self, done: set[int]) -> Iterator[list[TextRow]]:
        batch: list[TextRow] = []
        for item in self.source.rows():
            if item.row in done:
                continue
            batch.append(item)
            if len(batch) == self.part_rows:
                yield batch
                batch = []
        if batch:
            yield batch

    def _records(self, items: list[TextRow], scored: list[ScoredText]) -> list[dict[str, Any]]:
        calibrated = calibrate(self.reference, self.scorer.model_id, scored, self.names)
        labels = self.reference.bucket_names
        records = []
        for i, (item, result) in enumerate(zip(items, scored, strict=True)):
            tokens = result.evidence.unconditional
            record: dict[str, Any] = {
                "row": item.row,
                "id": item.id,
                "n_tokens": tokens.n_tokens,
                "n_scored": tokens.n_scored,
                "bucket": labels[int(calibrated.buckets[i])],
                "ref_n": int(calibrated.ref_n[i]),
                "model_id": self.scorer.model_id,
                "reference_sha256": self.reference.sha256,
                "zlib_bytes": result.evidence.zlib_bytes,
                "token_ids": _list(tokens.token_ids),
                "tokens": None if tokens.tokens is None else list(tokens.tokens),
                "token_logprobs": tokens.logprobs.tolist(),
                "token_mu": _list(tokens.mu),
                "token_sigma": _list(tokens.sigma),
                "recall_logprobs": _list(result.evidence.recall_logprobs),
                "ref_logprobs": _list(result.evidence.ref_logprobs),
            }
            for name in ALL_SCORES:
                record[name] = result.scores.get(name)
                p = calibrated.p_values.get(name)
                record[f"p_{name}"] = None if p is None or np.isnan(p[i]) else float(p[i])
            record["p"] = record[f"p_{self.primary}"]
            record["attribution"] = None if record["p"] is None else 1.0 - record["p"]
            records.append(record)
        return records

    def _write_part(self, records: list[dict[str, Any]]) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(records, schema=result_schema())
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        name = f"part-{records[0]['row']:012d}-{uuid.uuid4().hex[:8]}.parquet"
        staging = self.parts_dir / f".{name}.tmp"
        pq.write_table(table, staging)
        with staging.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staging, self.parts_dir / name)
        return self.parts_dir / name

    # --- the run ---------------------------------------------------------------------------

    def run(self, ledger: Ledger, actor: str) -> dict[str, Any]:
        """Score the rows not yet done, then finish (BH, results.parquet, summary)."""
        identity = self._identity or self.validate()
        if self.complete:
            return json.loads((self.out / SUMMARY).read_text(encoding="utf-8"))
        self.out.mkdir(parents=True, exist_ok=True)
        if not (self.out / JOB_FILE).is_file():
            _write_atomic(self.out / JOB_FILE, json.dumps(identity, indent=2).encode() + b"\n")
        done = self.done_rows()
        subject = [
            (f"texts:{self.source.path.name}", identity["input_sha256"]),
            (f"reference:{self.reference.version}", self.reference.sha256),
        ]
        with ledger.action(
            "attribution.run",
            actor=actor,
            subject=subject,
            scorer=self.scorer.describe(),
            reference_version=self.reference.version,
            score_config_sha256=identity["score_config_sha256"],
            scores=list(self.names),
            primary=self.primary,
            fdr_q=self.fdr,
            rows=self._rows,
            resumed_rows=len(done),
            out=str(self.out),
        ) as act:
            scored_now = self._score_pending(done)
            summary = self._finish(scored_now, len(done))
            act.result = summary
        summary_bytes = json.dumps(summary, indent=2).encode() + b"\n"
        _write_atomic(self.out / SUMMARY, summary_bytes)
        return summary

    def _score_pending(self, done: set[int]) -> int:
        from tqdm.auto import tqdm

        scored_now = 0
        with tqdm(
            total=self._rows, initial=len(done), desc="attributing", unit="text",
            disable=not self.progress,
        ) as bar:  # fmt: skip
            for items in self._pending(done):
                scored = score_texts(
                    self.scorer, [item.text for item in items], self.config,
                    reference_scorer=self.reference_scorer,
                )  # fmt: skip
                self._write_part(self._records(items, scored))
                scored_now += len(items)
                bar.update(len(items))
                if self.after_part is not None:
                    self.after_part(len(done) + scored_now)
        return scored_now

    def _finish(self, scored_now: int, resumed: int) -> dict[str, Any]:
        """BH over every row, results.parquet in input order, and the summary."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        parts = self._part_files()
        light = pa.concat_tables(pq.read_table(p, columns=["row", "p", "ref_n"]) for p in parts)
        rows = light.column("row").to_numpy()
        if len(rows) != self._rows or len(np.unique(rows)) != self._rows:
            raise InputError(
                str(self.parts_dir),
                f"holds {len(np.unique(rows))} distinct of {self._rows} rows after the run",
            )
        p = np.asarray(light.column("p").to_pylist(), dtype=np.float64)
        discoveries, q_values = benjamini_hochberg(p, self.fdr)
        by_row = {int(r): i for i, r in enumerate(rows)}
        staging = self.out / f".{RESULTS}.tmp"
        schema = result_schema(final=True)
        metadata = {
            "lineage-audit.note": EVIDENCE_NOTE,
            "lineage-audit.threshold": threshold_note(self.fdr),
            "lineage-audit.job": json.dumps(self._identity, sort_keys=True),
        }
        schema = schema.with_metadata(metadata)
        with pq.ParquetWriter(staging, schema) as writer:
            for part in parts:  # named by their first row: input order
                table = pq.read_table(part, schema=result_schema())
                table = table.take(pc.sort_indices(table, [("row", "ascending")]))
                index = [by_row[int(r)] for r in table.column("row").to_numpy()]
                q_col = pa.array([None if np.isnan(q_values[i]) else q_values[i] for i in index],
                                 type=pa.float64())  # fmt: skip
                d_col = pa.array([bool(discoveries[i]) for i in index], type=pa.bool_())
                table = table.append_column("q_value", q_col).append_column("discovery", d_col)
                writer.write_table(table.cast(schema))
        with staging.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staging, self.out / RESULTS)
        attribution = 1.0 - p[~np.isnan(p)]
        return {
            "rows": self._rows,
            "scored_this_run": scored_now,
            "resumed_rows": resumed,
            "model_id": self.scorer.model_id,
            "reference": {"version": self.reference.version, "sha256": self.reference.sha256},
            "primary_score": self.primary,
            "scores": list(self.names),
            "fdr_q": self.fdr,
            "discoveries": int(discoveries.sum()),
            # p = 1 for these: their token-length bucket has no reference texts
            "rows_without_reference": int((light.column("ref_n").to_numpy() == 0).sum()),
            "rows_without_primary_score": int(np.isnan(p).sum()),
            "attribution_quantiles": {
                str(q): round(float(np.quantile(attribution, q)), 6) for q in (0.5, 0.9, 0.99)
            }
            if attribution.size
            else {},
            "results_sha256": file_sha256(self.out / RESULTS),
            "note": EVIDENCE_NOTE,
            "threshold": threshold_note(self.fdr),
        }
