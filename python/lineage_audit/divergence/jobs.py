"""Ledger-recorded Tier 3 jobs: fitting a baseline and scoring a file of embeddings.

Input is loaded and validated before the ledger's intent is written, so bad input is refused
with nothing recorded; the fit itself runs inside ``ledger.action("baseline.fit", ...)``,
whose outcome carries the artifact's version and manifest hash (the ledger's signature over
that hash is the artifact's signature). After the fit a checkpoint is signed and an evidence
bundle of the fit's intent and outcome is written beside the artifact
(``ledger-evidence.json``), so anyone holding the ledger's public keys can check the
artifact offline with :func:`verify_baseline_evidence`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..ledger import Ledger, verify_bundle
from .artifact import MANIFEST, save_baseline
from .backends import DEFAULT_BLOCK_ROWS
from .baseline import Baseline, BaselineConfig
from .errors import ArtifactError, InputError
from .fit import fit_baseline
from .inputs import EmbeddingTable, file_sha256, prepare_embeddings
from .monitor import Monitor, WindowPolicy
from .series import SeriesWriter, WindowResult

__all__ = ["EVIDENCE", "FitJob", "ScoreJob", "file_subject", "verify_baseline_evidence"]

EVIDENCE = "ledger-evidence.json"


def file_subject(path: str | Path, kind: str) -> tuple[str, str]:
    """An in-toto subject ``(kind:name, sha256)`` for a file the job read."""
    return f"{kind}:{Path(path).name}", file_sha256(path)


@dataclass
class FitJob:
    """Fit, save and record a baseline from one embeddings table."""

    table: EmbeddingTable
    out: Path
    config: BaselineConfig
    targets: EmbeddingTable | None = None
    backend: str = "auto"
    device: str = "auto"
    block_rows: int = DEFAULT_BLOCK_ROWS
    progress: bool = False

    def validate(self) -> np.ndarray:
        """Everything checkable before the ledger intent; returns the prepared rows."""
        if self.out.exists():
            raise InputError("--out", "already exists; choose a new directory", str(self.out))
        rows = prepare_embeddings(self.table.vectors, field="input")
        if self.targets is not None:
            prepare_embeddings(self.targets.vectors, dimension=rows.shape[1], field="targets")
        return rows

    def run(self, ledger: Ledger, actor: str) -> Baseline:
        rows = self.validate()
        subject = [file_subject(self.table.source, "embeddings")]
        if self.targets is not None:
            subject.append(file_subject(self.targets.source, "targets"))
        with ledger.action(
            "baseline.fit", actor=actor, subject=subject, config=self.config.to_json(),
            out=str(self.out),
        ) as act:  # fmt: skip
            baseline = fit_baseline(
                rows,
                times=self.table.times,
                config=self.config,
                targets=None if self.targets is None else self.targets.vectors,
                backend=self.backend,
                device=self.device,
                block_rows=self.block_rows,
                progress=self.progress,
                source=self.table.source,
                prepared=True,  # validate() made rows; targets are small, prepared again
            )
            save_baseline(baseline, self.out)
            act.result = {
                "version": baseline.version,
                "manifest_sha256": baseline.manifest_sha256,
                "arl0": {str(k): v for k, v in baseline.arl0.items()},
            }
        _write_evidence(ledger, act, self.out)
        return baseline


@dataclass
class ScoreJob:
    """Score every window of one embeddings file against a baseline, for one asset class."""

    table: EmbeddingTable
    baseline: Baseline
    asset: str
    policy: WindowPolicy
    series_dir: Path | None = None
    encoder_id: str | None = None
    backend: str = "auto"
    device: str = "auto"

    def run(self, ledger: Ledger | None, actor: str, listeners=()) -> list[WindowResult]:
        monitor = Monitor(
            ledger=ledger,
            actor=actor,
            series=None if self.series_dir is None else SeriesWriter(self.series_dir),
            listeners=listeners,
        )
        asset = monitor.add_asset(
            self.asset, self.baseline, self.policy, backend=self.backend, device=self.device
        )
        times = self.table.times
        if self.policy.by_time and times is None:
            raise InputError("input", "time windows need an event-time column in the input")
        asset.validate(self.table.vectors, times, self.encoder_id)  # refuse before any write
        results = monitor.observe(self.asset, self.table.vectors, times, encoder_id=self.encoder_id)
        return results + monitor.flush(self.asset)


def _write_evidence(ledger: Ledger, act: Any, out: Path) -> None:
    """Sign a checkpoint and write the bundle of the fit's intent and outcome beside it."""
    ledger.checkpoint()
    bundle = ledger.evidence_bundle([act.intent.seq, act.outcome.seq])
    staging = out / f".{EVIDENCE}.tmp"
    staging.write_text(json.dumps(bundle, indent=2) + "\n")
    staging.replace(out / EVIDENCE)


def verify_baseline_evidence(directory: str | Path, public_keys: object) -> str:
    """Check an artifact against its ledger evidence; returns a one-line verdict or raises.

    The bundle must verify against the pinned ``public_keys`` and hold a ``baseline.fit``
    outcome whose ``manifest_sha256`` is the SHA-256 of this artifact's manifest.json (which
    in turn pins every data file; :func:`load_baseline` checks those).
    """
    directory = Path(directory)
    path = directory / EVIDENCE
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; this artifact carries no ledger evidence")
    verdict = verify_bundle(path.read_bytes(), public_keys)
    if not verdict.valid:
        raise ArtifactError(f"{path}: {verdict.line()}")
    manifest_hash = file_sha256(directory / MANIFEST)
    for entry in json.loads(path.read_text())["entries"]:
        statement = _statement_of(entry)
        predicate = statement.get("predicate", {})
        result = predicate.get("result") or {}
        if predicate.get("action") == "baseline.fit" and result.get("manifest_sha256"):
            if result["manifest_sha256"] != manifest_hash:
                raise ArtifactError(
                    f"{directory / MANIFEST}: SHA-256 {manifest_hash} is not the one the ledger "
                    f"recorded at seq {entry['seq']} ({result['manifest_sha256']})"
                )
            return (
                f"baseline {result.get('version')} matches the signed baseline.fit outcome at "
                f"seq {entry['seq']} ({verdict.message})"
            )
    raise ArtifactError(f"{path}: no baseline.fit outcome with a manifest hash")


def _statement_of(entry: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(entry["envelope"]["payload"]))
