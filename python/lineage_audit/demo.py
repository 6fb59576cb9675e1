"""``lineage-audit demo``: the main job on the embedded default (SQLite, local files, CPU).

Until the scoring server exists this runs Tier 3 and the ledger on generated embeddings:
keys; a calibrated baseline fitted from time-ordered "clean" embeddings (recorded as a
write-ahead action); a stream of clean windows, then windows where model-generated rows
creep in, scored in sigmas with watch and halt alerts recorded before anyone is told; a halt
hook that fails (its failed outcome is on the record too); signed checkpoints, an evidence
bundle of the fit and the halt with a consistency proof, a tlog-proof, a tiles export, and
verification by three independent verifiers (pure Python, the Rust extension, the
``merkle-verify`` binary), followed by a tamper that each of them catches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from .ledger import Ledger, generate_keys, verify_bundle, verify_ledger

DEFAULT_OUT = Path("demo-out")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the main job end to end on the embedded default (SQLite, local files)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--windows", type=int, default=12, help="windows to stream (default: %(default)s)"
    )
    parser.set_defaults(func=run)


def _say(step: str, detail: str = "") -> None:
    print(f"  {step:<34} {detail}".rstrip(), flush=True)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


DEMO_DIM = 64
DEMO_WINDOW = 128


def _embeddings(rng, rows: int, model_fraction: float = 0.0):
    """Generated "news" embeddings: a topic mixture; model rows are a tighter, shifted topic."""
    import numpy as np

    topics = np.random.default_rng(7).standard_normal((6, DEMO_DIM)) * 0.8
    topics[:, 0] += 3.0
    clean = topics[rng.choice(6, size=rows)] + rng.standard_normal((rows, DEMO_DIM))
    model = round(model_fraction * rows)
    if model:
        centre = topics[0] + 1.5 * np.eye(DEMO_DIM)[1]
        clean[:model] = centre + 0.4 * rng.standard_normal((model, DEMO_DIM))
    return clean[rng.permutation(rows)].astype(np.float32)


def _fit_baseline(ledger: Ledger, out: Path):
    import numpy as np

    from .divergence import BaselineConfig, EmbeddingTable
    from .divergence.jobs import FitJob

    rng = np.random.default_rng(2026)
    source = out / "news-baseline.npy"
    np.save(source, _embeddings(rng, 12_000))
    table = EmbeddingTable(np.load(source), np.arange(12_000) * 10**9, str(source))
    config = BaselineConfig(window_sizes=(DEMO_WINDOW,), encoder_id="demo-encoder/64",
                            asset_class="news")  # fmt: skip
    job = FitJob(table, out / "baseline-news", config, progress=sys.stderr.isatty())
    return job.run(ledger, "demo:alice")


def _stream(ledger: Ledger, baseline, windows: int, out: Path) -> list:
    import numpy as np

    from .divergence.monitor import Monitor, WindowPolicy
    from .divergence.series import SeriesWriter

    def announce(transition, result):
        _say(f"ALERT {transition.before.value} -> {transition.after.value}",
             f"window {transition.window}: {transition.reason}")  # fmt: skip

    monitor = Monitor(ledger=ledger, actor="demo:inference-cluster", listeners=[announce],
                      series=SeriesWriter(out / "series-news"))  # fmt: skip
    monitor.add_asset("news", baseline, WindowPolicy(DEMO_WINDOW))
    rng = np.random.default_rng(13)
    results = []
    for w in range(windows):
        fraction = 0.0 if w < windows // 2 else 0.3
        (result,) = monitor.observe("news", _embeddings(rng, DEMO_WINDOW, fraction),
                                    encoder_id="demo-encoder/64")  # fmt: skip
        _say(f"window {w:>2} ({int(fraction * 100):>2}% model rows)",
             f"z {result.z:5.2f}  effect {result.effect:.3f}  {result.level}")  # fmt: skip
        results.append(result)
    return results


def _failed_halt_hook(ledger: Ledger, baseline) -> None:
    subject = [(f"baseline:{baseline.version}", baseline.manifest_sha256)]
    try:
        with ledger.action("halt.hook", actor="demo:bob", subject=subject, asset="news"):
            raise RuntimeError("halt hook endpoint refused the call")
    except RuntimeError:
        pass  # the failed outcome is on the ledger; that is the point


def _rust_verdict(bundle_path: Path, pub_path: Path) -> str:
    try:
        from . import _merkle_verify
    except ImportError:
        return "skipped (extension not built: run `make setup`)"
    verdict = _merkle_verify.verify_bundle(bundle_path.read_bytes(), pub_path.read_bytes())
    if verdict["valid"]:
        return f"VALID {verdict['message']}"
    return f"INVALID {verdict['reason']} seq={verdict['seq']}: {verdict['message']}"


def _cli_verdict(path: Path, pub_path: Path) -> str:
    binary = os.environ.get("MERKLE_VERIFY_BIN") or shutil.which("merkle-verify")
    if binary is None and Path("target/release/merkle-verify").exists():
        binary = "target/release/merkle-verify"
    if binary is None:
        return "skipped (merkle-verify not built: run `make setup`)"
    done = subprocess.run(
        [binary, str(path), "--keys", str(pub_path)], capture_output=True, text=True, check=False
    )
    return f"exit {done.returncode}: {(done.stdout or done.stderr).strip()}"


def _tamper_copy(db: Path, out: Path) -> Path:
    """A copy of the ledger with one payload byte changed behind the triggers' back."""
    copy = out / "tampered.db"
    shutil.copyfile(db, copy)
    conn = sqlite3.connect(copy)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'"):
            conn.execute(f'DROP TRIGGER "{name}"')
        (envelope,) = conn.execute("SELECT envelope FROM entries WHERE seq = 5").fetchone()
        doc = json.loads(envelope)
        doc["payload"] = ("A" if doc["payload"][0] != "A" else "B") + doc["payload"][1:]
        conn.execute("UPDATE entries SET envelope = ? WHERE seq = 5", (json.dumps(doc).encode(),))
        conn.commit()
    finally:
        conn.close()
    return copy


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    keys_dir, db = out / "keys", out / "ledger.db"
    print(f"lineage-audit demo -> {out}/")

    keyring = generate_keys(keys_dir, name="demo.lineage-audit.local/ledger")
    pub_path = out / "keys.pub.json"
    pub_path.write_text(json.dumps(keyring.public_keys().to_json(), indent=2) + "\n")
    _say("keys", "ECDSA P-256 + ML-DSA-65, record and checkpoint pairs (0600)")

    with Ledger.open(db, keys_dir) as ledger:
        baseline = _fit_baseline(ledger, out)
        arl = baseline.arl0[DEMO_WINDOW]
        _say("baseline fit (Tier 3)", f"{baseline.version}: {len(baseline.reference)} reference "
             f"rows, {baseline.nulls[DEMO_WINDOW].count} null windows, ARL0 > "
             f"{arl['arl0_lower_95']:.0f} windows")  # fmt: skip
        first = ledger.checkpoint()
        _say("checkpoint 1", f"size {first.size}")
        _stream(ledger, baseline, args.windows, out)
        _failed_halt_hook(ledger, baseline)
        second = ledger.checkpoint()
        _say("checkpoint 2", f"size {second.size} (consistent with size {first.size})")
        failed = [
            e.seq
            for e in ledger.entries()
            if e.kind == "outcome" and e.statement()["predicate"]["status"] == "failed"
        ]
        _say("write-ahead actions", f"{ledger.size} records; failed outcomes at seq {failed}")

        halts = [e.seq for e in ledger.entries() if e.statement()["predicate"]["action"]
                 == "alert.halt"]  # fmt: skip
        seqs = sorted({0, 1, *halts, second.size - 2, second.size - 1})
        bundle_path = out / "evidence.bundle.json"
        bundle = ledger.evidence_bundle(seqs, since=first.size)
        bundle_path.write_text(json.dumps(bundle, indent=2) + "\n")
        proof_path = out / "entry0.tlog-proof"
        proof_path.write_text(ledger.tlog_proof(0))
        tiles = ledger.export_tiles(out / "tiles")
        _say("exports", f"{bundle_path.name}, {proof_path.name}, tiles/ ({len(tiles.files)} files)")

    public = keyring.public_keys()
    print("verification (independent verifiers, keys pinned):")
    verdicts = {
        "ledger (pure Python)": verify_ledger(db, public, engine="python").line(),
        "ledger (Rust engine)": verify_ledger(db, public, engine="auto").line(),
        "bundle (pure Python)": verify_bundle(bundle, public).line(),
        "bundle (Rust extension)": _rust_verdict(bundle_path, pub_path),
        "bundle (merkle-verify)": _cli_verdict(bundle_path, pub_path),
        "tlog-proof (merkle-verify)": _cli_verdict(proof_path, pub_path),
    }
    for step, verdict in verdicts.items():
        _say(step, verdict)
    all_valid = all("VALID" in v and "INVALID" not in v for v in verdicts.values())

    print("tamper: one payload byte changed at seq 5 in a copy of the database")
    report = verify_ledger(_tamper_copy(db, out), public)
    _say("ledger verify on the copy", report.line())
    caught = not report.valid and report.seq == 5
    ok = all_valid and caught
    print("demo finished: " + ("every verifier agrees" if ok else "UNEXPECTED RESULT (see above)"))
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(argparse.Namespace(out=DEFAULT_OUT, windows=24)))
