"""``lineage-audit demo``: the main job on the embedded default (SQLite, local files, CPU).

Until the five-tier demo exists this runs the scoring server, Tier 3 and the ledger on
generated embeddings: keys; a calibrated baseline fitted from time-ordered "clean" embeddings
(recorded as a write-ahead action); ``lineage-audit serve`` started as a child process; several
inference clients streaming clean windows over gRPC, then windows where model-generated rows
creep in, scored in sigmas with watch and halt alerts recorded before anyone is told and
printed as they arrive on ``WatchAlerts``; the halt's inclusion proof fetched over gRPC and
verified with the Rust extension against the pinned keys; a halt hook that fails (its failed
outcome is on the record too); signed checkpoints, an evidence
bundle of the fit and the halt with a consistency proof, a tlog-proof, a tiles export, and
verification by three independent verifiers (pure Python, the Rust extension, the
``merkle-verify`` binary), followed by a tamper that each of them catches.
"""

from __future__ import annotations

import argparse
import base64
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


DEMO_CLIENTS = 3
DEMO_BATCH = 32  # rows per request: a window is completed by several clients' requests


def _server_config(out: Path) -> Path:
    path = out / "server.toml"
    path.write_text(
        "# written by lineage-audit demo\n"
        '[server]\nhost = "127.0.0.1"\nport = 0\nhttp_port = 0\n'
        'series_dir = "series-news"\nactor = "demo:scoring-server"\n\n'
        '[ledger]\ndb = "ledger.db"\nkeys = "keys"\n\n'
        f'[assets.news]\nbaseline = "baseline-news"\nwindow = {DEMO_WINDOW}\n',
        encoding="utf-8",
    )
    return path


def _client_stream(address: str, client: int, phases, barrier, replies: list) -> None:
    """One inference client: its share of each phase, one stream call per phase."""
    import numpy as np

    from .client import Client

    rng = np.random.default_rng(100 + client)
    with Client(address) as conn:
        for batches, fraction in phases:
            data = [_embeddings(rng, DEMO_BATCH, fraction) for _ in range(batches)]
            replies += conn.stream("news", data, encoder_id="demo-encoder/64")
            barrier.wait()  # every client's clean rows are in before contamination starts


def _watch(address: str, alerts: list, subscribed) -> None:
    import grpc

    from .client import _LEVEL_NAMES, Client

    with Client(address) as conn:
        watch = conn.watch_alerts(["news"])
        subscribed.set()
        try:
            for alert in watch:
                alerts.append(alert)
                _say(f"ALERT {_LEVEL_NAMES[alert.before]} -> {_LEVEL_NAMES[alert.after]}",
                     f"window {alert.window} z {alert.z:.2f}: {alert.reason} "
                     f"(ledger seq {alert.ledger_seq})")  # fmt: skip
                if _LEVEL_NAMES[alert.after] == "halt":
                    watch.cancel()
        except grpc.RpcError as exc:  # cancelled after the halt, or the server stopped
            if exc.code() not in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE):
                raise


def _serve_and_stream(out: Path, windows: int, pub_path: Path) -> dict:
    """Start `lineage-audit serve`, stream from several clients, watch the alerts, prove one."""
    import threading

    from .server.process import ServerProcess

    per_phase = windows // 2 * DEMO_WINDOW // DEMO_BATCH // DEMO_CLIENTS
    phases = [(per_phase, 0.0), (per_phase, 0.3)]
    replies: list = []
    alerts: list = []
    with ServerProcess(_server_config(out), log=out / "server.log") as server:
        _say("server", f"lineage-audit serve on {server.address}, metrics {server.http_url}"
             "/metrics")  # fmt: skip
        subscribed = threading.Event()
        watcher = threading.Thread(target=_watch, args=(server.address, alerts, subscribed))
        watcher.start()
        subscribed.wait(60)
        barrier = threading.Barrier(DEMO_CLIENTS)
        clients = [
            threading.Thread(target=_client_stream,
                             args=(server.address, i, phases, barrier, replies))
            for i in range(DEMO_CLIENTS)
        ]  # fmt: skip
        _say("clients", f"{DEMO_CLIENTS} streams of {DEMO_BATCH}-row batches: {windows // 2} "
             "windows clean, then 30% model rows")  # fmt: skip
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        watcher.join(timeout=60)
        scored = sorted((w for r in replies for w in r.windows), key=lambda w: w.window)
        for w in scored:
            _say(f"window {w.window:>2}", f"z {w.z:5.2f}  effect {w.effect:.3f}  {w.level}")
        proof = _prove_alert(server.address, alerts, pub_path)
    return {"alerts": alerts, "windows": scored, "proof": proof}


def _prove_alert(address: str, alerts: list, pub_path: Path) -> str:
    """Fetch a checkpoint and the halt's inclusion proof over gRPC; verify with the Rust
    extension against the pinned keys (and check the proof is for the alert's own record)."""
    from .client import _LEVEL_NAMES, Client

    halts = [a for a in alerts if _LEVEL_NAMES[a.after] == "halt"]
    if not halts:
        return "no halt alert arrived"
    seq = halts[0].ledger_seq
    with Client(address) as conn:
        checkpoint = conn.checkpoint(create=True)
        proof = conn.inclusion_proof(seq, checkpoint.tree_size)
        (entry,) = conn.entries(seq, seq + 1)
        bundle = conn.evidence_bundle([seq])
    statement = json.loads(base64.b64decode(json.loads(entry.envelope)["payload"]))
    action = statement["predicate"]["action"]
    try:
        from . import _merkle_verify
    except ImportError:
        return "skipped (extension not built: run `make setup`)"
    _say("checkpoint (gRPC)", f"size {checkpoint.tree_size}")
    pinned = pub_path.read_bytes()
    inclusion = _merkle_verify.verify_tlog_proof(proof.tlog_proof, pinned)
    signed = _merkle_verify.verify_bundle(bundle, pinned)  # envelope signatures + leaf too
    same = proof.leaf_hash == entry.leaf_hash and action == "alert.halt"
    if not (inclusion["valid"] and signed["valid"] and same):
        return f"INVALID seq {seq}: {inclusion['message']}; {signed['message']}"
    return (f"VALID seq {seq} ({action} by {statement['predicate']['actor']}): inclusion in "
            f"tree {proof.tree_size}, signatures and leaf checked")  # fmt: skip


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
    served = _serve_and_stream(out, args.windows, pub_path)
    _say("alert inclusion proof (Rust)", served["proof"])
    with Ledger.open(db, keys_dir) as ledger:
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
    levels = [a.after for a in served["alerts"]]
    alerted = levels[-2:] == [2, 3] and served["proof"].startswith("VALID")  # watch, then halt
    ok = all_valid and caught and alerted
    print("demo finished: " + ("every verifier agrees" if ok else "UNEXPECTED RESULT (see above)"))
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(argparse.Namespace(out=DEFAULT_OUT, windows=24)))
