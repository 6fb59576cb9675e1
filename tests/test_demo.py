"""The README's main job (`lineage-audit demo`) runs end to end and every verifier agrees."""

from __future__ import annotations

from pathlib import Path


def test_demo_runs_and_all_verifiers_agree(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", out, "--windows", "6")
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    for step in ("ledger (pure Python)", "ledger (Rust engine)", "bundle (Rust extension)",
                 "bundle (merkle-verify)", "tlog-proof (merkle-verify)"):  # fmt: skip
        line = next(line for line in text.splitlines() if step in line)
        assert "VALID" in line and "INVALID" not in line, line
    assert "INVALID envelope_signature seq=5" in text
    # served over gRPC to 3 clients: 3 clean windows, then 3 with model rows -> watch, halt
    assert "lineage-audit serve on 127.0.0.1:" in text
    watch = text.index("ALERT ok -> watch                  window 3")
    assert text.index("ALERT watch -> halt                window 5") > watch
    proof = next(line for line in text.splitlines() if "alert inclusion proof (Rust)" in line)
    assert "VALID seq" in proof and "alert.halt by demo:scoring-server" in proof, proof
    assert (out / "baseline-news" / "manifest.json").exists()
    assert list((out / "series-news").glob("part-*.parquet"))
    for name in ("evidence.bundle.json", "entry0.tlog-proof", "tiles/checkpoint", "ledger.db"):
        assert (out / name).exists(), name
    assert (out / "keys" / "record-ecdsa-p256.pem").stat().st_mode & 0o777 == 0o600
