"""Each benchmark runs with --quick and prints exactly one JSON line with its keys.

No timing is asserted: the numbers depend on the machine and on what else runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHES = Path(__file__).resolve().parent.parent / "benches"

COMMON = {"bench", "environment", "quick", "seed"}
EXPECTED = {
    "bench_ledger_append.py": (
        "ledger_append",
        {
            "pairs_per_s",
            "signing_bound_pairs_per_s",
            "fraction_of_signing_bound",
            "mldsa65_sign_us",
            "ecdsa_p256_sign_us",
            "fdatasync_4k_us",
            "journal_mode",
            "synchronous",
            "writers",
            "signer",
            "bound_cores",
            "commits",
            "records_per_commit",
        },
    ),
    "bench_inclusion.py": (
        "inclusion",
        {
            "proofs_per_s",
            "pymerkle_proofs_per_s",
            "pymerkle_sample",
            "ratio_vs_pymerkle",
            "sha256_bound_proofs_per_s",
            "fraction_of_sha256_bound",
            "tree_size",
        },
    ),
    "bench_chain.py": (
        "chain",
        {
            "entries_per_s",
            "python_entries_per_s",
            "python_sample",
            "sha256_bound_entries_per_s",
            "fraction_of_sha256_bound",
        },
    ),
    "bench_lineage.py": (
        "lineage",
        {
            "events_per_s",
            "validation_events_per_s",
            "fraction_of_validation_rate",
            "ingest",
            "findings",
        },
    ),
    "bench_server.py": (
        "server",
        {
            "dimension",
            "batch_rows",
            "reference_rows",
            "sgemm_gflops",
            "in_process",
            "fraction_of_sgemm",
            "batching_on",
            "batching_off",
            "compared_at_clients",
            "ratio_vs_in_process",
            "ratio_batching_on_vs_off",
            "p99_over_p50",
            "stream_in_memory",
            "stream_durable",
            "ratio_stream_durable_vs_in_memory",
        },
    ),
    "bench_divergence.py": (
        "divergence",
        {
            "dimension",
            "reference_rows",
            "window",
            "fit_seconds",
            "decision_ms",
            "statistic",
            "backends",
            "sgemm_gflops",
            "kernel_gflops",
            "fraction_of_sgemm",
            "max_rel_ours_vs_float64",
        },
    ),
    "bench_envelopes.py": (
        "envelopes",
        {
            "envelopes_per_s",
            "cryptography_envelopes_per_s",
            "ratio",
            "bound_envelopes_per_s",
            "fraction_of_bound",
        },
    ),
    "bench_web_verify.py": (
        "web_verify",
        {
            "entries",
            "bundle_bytes",
            "browser_verify_ms",
            "browser_first_run_ms",
            "browser_render_ms",
            "browser_entries_per_s",
            "browser_ecdsa",
            "browser_requests",
            "chromium",
            "rust_cli_ms",
            "rust_cli_one_thread_ms",
            "rust_entries_per_s",
            "ratio_browser_vs_rust",
            "ratio_browser_vs_rust_one_thread",
        },
    ),
    "bench_stream_journal.py": (
        "stream_journal",
        {
            "dimension",
            "batch_rows",
            "reference_rows",
            "fdatasync_4k_us",
            "fdatasync_append_4k_us",
            "write_mb_per_s",
            "filesystem",
            "cases",
        },
    ),
    "bench_attribution.py": (
        "attribution",
        {
            "models",
            "texts",
            "batch_size",
            "threads",
            "tiny_texts_per_s",
            "tiny_tokens_per_s",
            "ratio_batch_vs_single",
            "overhead_vs_forward",
            "sgemm_gflops",
        },
    ),
}


def test_every_bench_is_covered() -> None:
    assert {p.name for p in BENCHES.glob("bench_*.py")} == set(EXPECTED)


def _run_quick(script: str, tmp_path: Path, *extra: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(BENCHES / script), "--quick", *extra],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_bench_quick_prints_one_json_line(script: str, tmp_path: Path) -> None:
    name, keys = EXPECTED[script]
    result = _run_quick(script, tmp_path)
    assert result["bench"] == name
    assert result["quick"] is True
    missing = (COMMON | keys) - set(result)
    assert not missing, missing
    assert result["environment"]["cores"] >= 1
    for key in keys:
        value = result[key]
        if key.endswith(("_per_s", "_us")) or key.startswith(("fraction", "ratio")):
            assert isinstance(value, int | float) and value > 0, (key, value)


def test_ledger_append_bench_with_process_signer(tmp_path: Path) -> None:
    result = _run_quick("bench_ledger_append.py", tmp_path, "--signer", "process", "--writers", "2")
    assert (result["signer"], result["writers"], result["bound_cores"]) == ("process", 2, 1)
    assert result["pairs_per_s"] > 0 and result["fraction_of_signing_bound"] > 0
