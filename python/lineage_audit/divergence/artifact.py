"""The on-disk baseline artifact: one directory, Arrow/Parquet data plus a JSON manifest.

::

    <dir>/manifest.json     format, version, every parameter, ARL₀, and each file's SHA-256
    <dir>/reference.arrow   reference X: Arrow IPC file, column ``embedding``
                            fixed_size_list<float32>[D], uncompressed (memory-mapped on load)
    <dir>/null.parquet      null statistics: window_size int32, kind string, value float64
    <dir>/targets.arrow     model-generated examples for the witness (only if supplied)

``version`` is content-derived: ``bl-`` + the first 16 hex digits of SHA-256 over the
RFC 8785 canonical manifest without ``version`` and ``created``; equal inputs give equal
versions. Loading re-hashes every file and re-derives the version, so a changed byte
anywhere (data or manifest) is refused. The ledger records the SHA-256 of manifest.json,
which therefore pins the whole artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rfc8785

from .baseline import Baseline, BaselineConfig
from .calibration import NullDistribution
from .errors import ArtifactError
from .inputs import file_sha256, list_column_to_matrix
from .statistics import Bandwidth, WitnessModel

__all__ = ["FORMAT", "FORMAT_VERSION", "load_baseline", "save_baseline"]

FORMAT = "lineage-audit/baseline"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REFERENCE = "reference.arrow"
TARGETS = "targets.arrow"
NULLS = "null.parquet"
_NULL_KINDS = ("mmd2", "similarity")


def _version_of(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k not in ("version", "created")}
    return "bl-" + hashlib.sha256(rfc8785.dumps(body)).hexdigest()[:16]


# --- save -----------------------------------------------------------------------------------


def save_baseline(baseline: Baseline, directory: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``baseline`` to ``directory`` atomically; sets its version and manifest hash."""
    target = Path(directory)
    if target.exists() and not overwrite:
        raise ArtifactError(f"{target}: already exists (choose another --out, or remove it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        files = _write_data(baseline, staging)
        manifest = _manifest(baseline, files)
        raw = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        (staging / MANIFEST).write_bytes(raw)
        _fsync_dir_files(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    baseline.version = manifest["version"]
    baseline.manifest_sha256 = hashlib.sha256(raw).hexdigest()
    return target


def _write_data(baseline: Baseline, staging: Path) -> dict[str, dict[str, Any]]:
    _write_matrix(staging / REFERENCE, baseline.reference)
    names = [REFERENCE, NULLS]
    if baseline.targets is not None:
        _write_matrix(staging / TARGETS, baseline.targets)
        names.append(TARGETS)
    _write_nulls(staging / NULLS, baseline)
    return {
        name: {"sha256": file_sha256(staging / name), "bytes": (staging / name).stat().st_size}
        for name in names
    }


def _write_matrix(path: Path, matrix: np.ndarray) -> None:
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1))
    column = pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])
    table = pa.table({"embedding": column})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=65536)


def _write_nulls(path: Path, baseline: Baseline) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sizes, kinds, values = [], [], []
    for kind, nulls in zip(_NULL_KINDS, (baseline.nulls, baseline.similarity_nulls), strict=True):
        for window, null in sorted(nulls.items()):
            sizes.append(np.full(null.count, window, dtype=np.int32))
            kinds.extend([kind] * null.count)
            values.append(null.statistics)
    table = pa.table(
        {
            "window_size": pa.array(np.concatenate(sizes)),
            "kind": pa.array(kinds, type=pa.string()),
            "value": pa.array(np.concatenate(values)),
        }
    )
    pq.write_table(table, path, compression="zstd")


def _fsync_dir_files(directory: Path) -> None:
    for path in directory.iterdir():
        with path.open("rb") as handle:
            os.fsync(handle.fileno())


def _manifest(baseline: Baseline, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "encoder_id": baseline.encoder_id,
        "asset_class": baseline.config.asset_class,
        "dimension": baseline.dimension,
        "bandwidth": baseline.bandwidth.to_json(),
        "reference": {
            "rows": len(baseline.reference),
            "xx": baseline.xx,
            "xx_method": baseline.xx_method,
        },
        "window_sizes": list(baseline.window_sizes),
        "null_windows": {str(n): null.count for n, null in sorted(baseline.nulls.items())},
        "witness": None if baseline.witness is None else baseline.witness.to_json(),
        "arl0": {str(n): entry for n, entry in sorted(baseline.arl0.items())},
        "config": baseline.config.to_json(),
        "provenance": baseline.provenance,
        "files": files,
    }
    manifest["version"] = _version_of(manifest)
    return manifest


# --- load -----------------------------------------------------------------------------------


def load_baseline(path: str | Path) -> Baseline:
    """Load and verify an artifact (directory or its manifest.json); refuses any alteration."""
    directory = Path(path)
    if directory.name == MANIFEST:
        directory = directory.parent
    manifest, raw = _read_manifest(directory)
    _check_files(directory, manifest)
    try:
        baseline = _from_manifest(directory, manifest)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{directory / MANIFEST}: malformed manifest ({exc!r})") from None
    baseline.manifest_sha256 = hashlib.sha256(raw).hexdigest()
    return baseline


def _read_manifest(directory: Path) -> tuple[dict[str, Any], bytes]:
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: baseline artifact not found (expected a directory)")
    try:
        raw = path.read_bytes()
        manifest = json.loads(raw)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing; not a baseline artifact") from None
    except ValueError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format_version {manifest.get('format_version')!r} is not supported "
            f"(this build reads {FORMAT_VERSION})"
        )
    if _version_of(manifest) != manifest.get("version"):
        raise ArtifactError(
            f"{path}: content does not match version {manifest.get('version')!r} "
            "(the manifest was altered)"
        )
    return manifest, raw


def _check_files(directory: Path, manifest: dict[str, Any]) -> None:
    files = manifest.get("files")
    if not isinstance(files, dict) or REFERENCE not in files or NULLS not in files:
        raise ArtifactError(f"{directory / MANIFEST}: files list is missing or incomplete")
    for name, meta in files.items():
        path = directory / name
        if not path.is_file():
            raise ArtifactError(f"{path}: missing from the baseline artifact")
        size = path.stat().st_size
        if size != meta.get("bytes"):
            raise ArtifactError(
                f"{path}: {size} bytes, manifest says {meta.get('bytes')} (truncated or altered)"
            )
        if file_sha256(path) != meta.get("sha256"):
            raise ArtifactError(f"{path}: SHA-256 does not match the manifest (altered)")


def _read_matrix(path: Path, dimension: int) -> np.ndarray:
    import pyarrow as pa

    try:
        source = pa.memory_map(str(path))
        table = pa.ipc.open_file(source).read_all()
    except pa.ArrowInvalid as exc:
        raise ArtifactError(f"{path}: unreadable Arrow file ({exc})") from None
    matrix = list_column_to_matrix(table.column("embedding"), path.name)
    if matrix.shape[1] != dimension or matrix.dtype != np.float32:
        raise ArtifactError(f"{path}: expected float32 rows of dimension {dimension}")
    return matrix


def _read_nulls(path: Path) -> dict[str, dict[int, NullDistribution]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    sizes = np.asarray(table.column("window_size"))
    kinds = np.asarray(table.column("kind").to_pylist(), dtype=object)
    values = np.asarray(table.column("value"))
    out: dict[str, dict[int, NullDistribution]] = {kind: {} for kind in _NULL_KINDS}
    for kind in _NULL_KINDS:
        for window in np.unique(sizes[kinds == kind]):
            mask = (kinds == kind) & (sizes == window)
            out[kind][int(window)] = NullDistribution.of(int(window), values[mask])
    return out


def _from_manifest(directory: Path, manifest: dict[str, Any]) -> Baseline:
    dimension = int(manifest["dimension"])
    nulls = _read_nulls(directory / NULLS)
    targets = None
    if TARGETS in manifest["files"]:
        targets = _read_matrix(directory / TARGETS, dimension)
    witness = manifest.get("witness")
    return Baseline(
        config=BaselineConfig.from_json(manifest["config"]),
        dimension=dimension,
        bandwidth=Bandwidth(float(manifest["bandwidth"]["sigma"])),
        reference=_read_matrix(directory / REFERENCE, dimension),
        xx=float(manifest["reference"]["xx"]),
        xx_method=str(manifest["reference"]["xx_method"]),
        nulls=nulls["mmd2"],
        similarity_nulls=nulls["similarity"],
        witness=None if witness is None else WitnessModel.from_json(witness),
        targets=targets,
        arl0={int(n): entry for n, entry in manifest["arl0"].items()},
        provenance=dict(manifest.get("provenance") or {}),
        version=str(manifest["version"]),
    )
