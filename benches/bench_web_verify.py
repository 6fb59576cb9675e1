"""A 1,000-entry evidence bundle verified in the browser page vs the Rust ``merkle-verify``.

The bundle is written by the Python ledger (intent/outcome pairs, checkpoints at half and full
size, a consistency proof between them). Ours: the built page ``web/dist/verify.html`` in
headless Chromium (Debian's ``chromium``, driven by playwright-core), opened from file://,
keys pinned; the figure is the page's own measurement (``performance.now()`` around the
verification: JSON parse, both record signatures of every entry, leaf inputs, inclusion,
chain, both checkpoints and the consistency proof; rendering is reported apart). ML-DSA-65
runs in JavaScript on the page's one thread, ECDSA in WebCrypto. Peer: the Rust CLI
``target/release/merkle-verify BUNDLE --keys KEYS`` on the same files, wall time of the whole
process (start, read, parse, verify), with rayon on every core and with one thread.
Best of N runs each (Rust's N runs before and N after the browser's); the browser's first
(cold) run is reported too. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import machine
from lineage_audit.ledger import Ledger, generate_keys, load_keyring

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
PAGE = WEB / "dist" / "verify.html"
TIMING_SCRIPT = WEB / "bench" / "page-timing.mjs"
MERKLE_VERIFY = Path(os.environ.get("MERKLE_VERIFY_BIN", ROOT / "target/release/merkle-verify"))


def write_bundle(workdir: Path, entries: int, seed: int) -> tuple[Path, Path]:
    """(bundle, public keys file) of a fresh ledger with `entries` records (pairs)."""
    keys_dir = workdir / "keys"
    generate_keys(keys_dir, name="bench.lineage-audit.local/web-verify")
    ring = load_keyring(keys_dir)
    ledger = Ledger.open(workdir / "ledger.db", ring)
    try:
        # Write-ahead pairs, as the ledger records real actions: a signed intent, then its
        # outcome naming the intent's seq and leaf hash.
        for pair in range(entries // 2):
            digest = hashlib.sha256(f"{seed}/{pair}".encode()).hexdigest()
            with ledger.action("bench.step", actor="bench:writer", subject=[(f"a{pair}", digest)]):
                pass
            if pair == entries // 4 - 1:
                ledger.checkpoint()
        ledger.checkpoint()
        half = (entries // 4) * 2
        bundle = ledger.evidence_bundle(range(ledger.size), since=half)
    finally:
        ledger.close()
    bundle_path = workdir / "bench.bundle.json"
    bundle_path.write_text(json.dumps(bundle))
    keys_path = workdir / "keys.pub.json"
    keys_path.write_text(json.dumps(ring.public_keys().to_json()))
    return bundle_path, keys_path


def rust_best_ms(bundle: Path, keys: Path, repeats: int, threads: int | None) -> float:
    """Best wall time of the merkle-verify process; it must say VALID."""
    env = dict(os.environ)
    if threads is not None:
        env["RAYON_NUM_THREADS"] = str(threads)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(
            [str(MERKLE_VERIFY), str(bundle), "--keys", str(keys)],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        best = min(best, (time.perf_counter() - start) * 1000)
        if done.returncode != 0:
            raise SystemExit(f"merkle-verify rejected the bundle: {done.stdout}{done.stderr}")
    return best


def browser_runs(bundle: Path, keys: Path, repeats: int) -> dict:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    done = subprocess.run(
        ["node", str(TIMING_SCRIPT), str(PAGE), str(keys), str(bundle), str(repeats)],
        capture_output=True, text=True, cwd=WEB, env={**os.environ, "CHROMIUM_PATH": chromium},
        check=False, timeout=1800,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"page timing failed: {done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if set(result["requests"]) != {PAGE.as_uri()}:
        raise SystemExit(f"the page made requests besides loading itself: {result['requests']}")
    for run in result["runs"]:
        if not run["valid"]:
            raise SystemExit(f"the page rejected the bundle: {run['reason']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5, help="best of N timed runs")
    parser.add_argument("--seed", type=int, default=20240229)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.entries, args.repeats = 32, 2
    for need, how in ((PAGE, "make setup"), (MERKLE_VERIFY, "make setup")):
        if not need.exists():
            raise SystemExit(f"{need} is missing: build it with `{how}`")

    env = machine.environment()
    with tempfile.TemporaryDirectory() as tmp:
        bundle, keys = write_bundle(Path(tmp), args.entries, args.seed)
        bundle_bytes = bundle.stat().st_size
        # Rust before and after the browser, best of both: this VM's speed drifts, and
        # the CLI's runs are short enough to land in a quiet moment on either side.
        rust_ms = rust_best_ms(bundle, keys, args.repeats, threads=None)
        rust_one_core_ms = rust_best_ms(bundle, keys, args.repeats, threads=1)
        browser = browser_runs(bundle, keys, args.repeats)
        rust_ms = min(rust_ms, rust_best_ms(bundle, keys, args.repeats, threads=None))
        rust_one_core_ms = min(rust_one_core_ms, rust_best_ms(bundle, keys, args.repeats, 1))

    runs = browser["runs"]
    verify_ms = min(r["verifyMs"] for r in runs)
    machine.emit(
        {
            "bench": "web_verify",
            "entries": args.entries,
            "bundle_bytes": bundle_bytes,
            "browser_verify_ms": round(verify_ms, 1),
            "browser_first_run_ms": round(runs[0]["verifyMs"], 1),
            "browser_render_ms": round(min(r["renderMs"] for r in runs), 1),
            "browser_entries_per_s": round(args.entries / verify_ms * 1000, 1),
            "browser_ecdsa": runs[-1]["ecdsa"],
            "browser_requests": len(browser["requests"]),
            "chromium": browser["chromium"],
            "rust_cli_ms": round(rust_ms, 1),
            "rust_cli_one_thread_ms": round(rust_one_core_ms, 1),
            "rust_entries_per_s": round(args.entries / rust_ms * 1000, 1),
            "ratio_browser_vs_rust": round(verify_ms / rust_ms, 2),
            "ratio_browser_vs_rust_one_thread": round(verify_ms / rust_one_core_ms, 2),
            "repeats": args.repeats,
            "seed": args.seed,
            "quick": args.quick,
            "environment": env,
        }
    )


if __name__ == "__main__":
    main()
