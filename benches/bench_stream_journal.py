"""What the stream row journal costs: window streaming in process with and without it.

One run, one JSON line. The same batches (256 x 768 float32, windows of 256 rows against a
768-D baseline) go through ``Monitor.observe_many`` with the series on disk, once without and
once with the row journal, in calls of 1 and of 8 batches (the server's micro-batching
coalesces concurrent stream calls into one; the journal then syncs once per call). Cases
alternate, best of N. Reported: rows/s both ways and their ratio; the journal's own time per
call (its ``commit``: write + ``fdatasync``) against the disk's bound measured in the same
run: a 4 KiB append + ``fdatasync`` (an append also syncs the file's new size, ~2x an
in-place overwrite here, which is reported too) plus the call's bytes at the sequential
write rate of ``write`` + ``fdatasync`` of 64 MiB.

    python benches/bench_stream_journal.py            # M = 20,000 reference rows
    python benches/bench_stream_journal.py --quick    # smoke size (CI)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine
from bench_ledger_append import fdatasync_seconds, filesystem_of
from bench_server import _data, _fit
from lineage_audit.divergence import load_baseline
from lineage_audit.divergence.journal import JOURNAL_DIR, AssetJournal, RowJournal
from lineage_audit.divergence.monitor import Monitor, WindowPolicy
from lineage_audit.divergence.series import SeriesWriter

FULL = {"dim": 768, "batch": 256, "reference": 20_000, "null_windows": 2000, "calls": 24,
        "repeats": 3}  # fmt: skip
QUICK = {"dim": 64, "batch": 64, "reference": 2_000, "null_windows": 1000, "calls": 8,
         "repeats": 1}  # fmt: skip


def write_bytes_per_second(directory: Path, size: int = 64 << 20) -> float:
    """Sequential write + one fdatasync of ``size`` bytes (the bound for journal bytes)."""
    path = directory / "write-probe.bin"
    block = os.urandom(1 << 20)
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        with path.open("wb") as handle:
            for _ in range(size // len(block)):
                handle.write(block)
            handle.flush()
            os.fdatasync(handle.fileno())
        best = max(best, size / (time.perf_counter() - start))
        path.unlink()
    return best


class CommitTimer:
    """Time spent in :meth:`AssetJournal.commit` (write + fdatasync), and how many calls."""

    def __init__(self) -> None:
        self.seconds, self.calls = 0.0, 0
        self._commit = AssetJournal.commit

    def __enter__(self) -> CommitTimer:
        timer, commit = self, self._commit

        def timed(journal: AssetJournal, *args: Any, **kwargs: Any) -> None:
            start = time.perf_counter()
            try:
                commit(journal, *args, **kwargs)
            finally:
                timer.seconds += time.perf_counter() - start
                timer.calls += 1

        AssetJournal.commit = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        AssetJournal.commit = self._commit  # type: ignore[method-assign]


def stream(baseline, folder: Path, batches, per_call: int, journal: bool) -> tuple[float, Any]:
    """Seconds to stream ``batches`` in calls of ``per_call``, and the commit timer."""
    shutil.rmtree(folder, ignore_errors=True)
    series = folder / "series"
    monitor = Monitor(series=SeriesWriter(series),
                      journal=RowJournal(series / JOURNAL_DIR) if journal else None)  # fmt: skip
    monitor.add_asset("bench", baseline, WindowPolicy(len(batches[0])), backend="numpy")
    calls = [batches[i : i + per_call] for i in range(0, len(batches), per_call)]
    with CommitTimer() as timer:
        start = time.perf_counter()
        for call in calls:
            outcomes = monitor.observe_many(
                "bench", [(b, None, "bench-encoder", None) for b in call]
            )
            assert all(o.error is None for o in outcomes)
        elapsed = time.perf_counter() - start
    if monitor.journal is not None:
        monitor.journal.close()
    return elapsed, timer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke size (CI)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    p = dict(QUICK if args.quick else FULL)
    rng = np.random.default_rng(args.seed)
    env = machine.environment()
    with tempfile.TemporaryDirectory(prefix="bench-journal-", dir=Path.cwd()) as tmp:
        folder = Path(tmp)
        fsync_s = fdatasync_seconds(folder)
        append_s = fdatasync_seconds(folder, append=True)
        write_bps = write_bytes_per_second(folder)
        path, _, reference = _fit(folder, p, rng)
        baseline = load_baseline(path)
        batches = [_data(rng, p["batch"], p["dim"]) for _ in range(p["calls"])]
        batch_bytes = batches[0].nbytes
        stream(baseline, folder / "warm", batches[:2], 1, True)  # warm-up
        cases: dict[str, Any] = {}
        for per_call in (1, 8):
            best = {False: float("inf"), True: float("inf")}
            commit_s = float("inf")
            for _ in range(p["repeats"]):
                for journal in (False, True):  # alternate: the VM drifts
                    seconds, timer = stream(baseline, folder / "run", batches, per_call, journal)
                    best[journal] = min(best[journal], seconds)
                    if journal:
                        commit_s = min(commit_s, timer.seconds / max(timer.calls, 1))
            call_bytes = batch_bytes * per_call
            bound_s = append_s + call_bytes / write_bps
            rows = len(batches) * p["batch"]
            cases[f"batches_per_call_{per_call}"] = {
                "rows_per_s_without": round(rows / best[False], 1),
                "rows_per_s_with": round(rows / best[True], 1),
                "ratio_with_vs_without": round(best[False] / best[True], 3),
                "journal_commit_ms": round(commit_s * 1e3, 3),
                "disk_bound_commit_ms": round(bound_s * 1e3, 3),
                "fraction_of_disk_bound": round(bound_s / commit_s, 3),
                "bytes_per_call": call_bytes,
            }
    machine.emit({
        "bench": "stream_journal",
        "quick": args.quick,
        "seed": args.seed,
        "environment": env,
        "filesystem": filesystem_of(Path.cwd()),
        "dimension": p["dim"],
        "batch_rows": p["batch"],
        "reference_rows": reference,
        "fdatasync_4k_us": round(fsync_s * 1e6, 1),
        "fdatasync_append_4k_us": round(append_s * 1e6, 1),
        "write_mb_per_s": round(write_bps / 1e6, 1),
        "cases": cases,
    })  # fmt: skip


if __name__ == "__main__":
    main()
