"""Durable signed intent+outcome pairs per second through the write-ahead API (DESIGN.md §4, §8).

Each pair is ``with ledger.action(...)``: the signed intent is committed (SQLite WAL,
``synchronous=FULL``: fsync per commit) before the body runs, and the signed outcome is
committed before the ``with`` block exits. Bound, measured in the same run (in segments
interleaved with the timed pairs, since this machine's speed drifts): the bare signing cost
of a record with the calls the ledger makes (``cryptography``: ML-DSA-65 sign +
deterministic ECDSA P-256 sign over the PAEs of the ledger's own records), two records per
pair: ``1 / (2 * (t_mldsa_sign + t_ecdsa_sign))``. Also reported, for context: the cost of one
4 KiB write + fdatasync in the same directory (the floor of a durable commit there).
``--writers N`` runs the pairs from N threads sharing one ``Ledger`` (signing in each thread,
concurrent appends group-committed: one transaction and fsync per group); ``commits`` and
``records_per_commit`` count the timed loop's append transactions. ``--signer process``
signs in one worker process (``Ledger.open(..., signer="process")``) instead of the writer
threads; the bound is still one core's bare signing rate (``bound_cores``: 1), since one
process signs.
Prints one JSON line; ``--profile`` prints a cProfile summary of the timed loop (writer 0's
thread) to stderr.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path

import machine
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, mldsa
from lineage_audit.ledger import Ledger
from lineage_audit.ledger.keys import CheckpointKeys, KeyRing, RecordKeys, write_keyring
from lineage_audit.ledger.records import Envelope


def keyring(seed: int) -> KeyRing:
    """A key ring derived from the seed (so every run signs with the same keys)."""

    def material(label: str) -> bytes:
        return hashlib.sha256(f"bench-ledger-append/{seed}/{label}".encode()).digest()

    def ecdsa(label: str) -> ec.EllipticCurvePrivateKey:
        scalar = int.from_bytes(material(label), "big") % (2**255) + 1
        return ec.derive_private_key(scalar, ec.SECP256R1())

    return KeyRing(
        record=RecordKeys(
            ecdsa=ecdsa("record-ecdsa"),
            mldsa=mldsa.MLDSA65PrivateKey.from_seed_bytes(material("record-mldsa")),
        ),
        checkpoint=CheckpointKeys(
            name="bench.lineage-audit.local/append",
            ecdsa=ecdsa("checkpoint-ecdsa"),
            mldsa=mldsa.MLDSA65PrivateKey.from_seed_bytes(material("checkpoint-mldsa")),
        ),
    )


def run_pairs(ledger: Ledger, seed: int, start: int, count: int) -> None:
    for i in range(start, start + count):
        artefact = hashlib.sha256(f"{seed}/artefact/{i}".encode()).hexdigest()
        with ledger.action("bench.step", actor="bench", subject=[("artefact", artefact)]) as act:
            act.result = {"step": i}


def run_writers(ledger: Ledger, seed: int, start: int, count: int, writers: int) -> None:
    """`count` pairs split over `writers` threads sharing `ledger` (the caller is writer 0)."""
    bounds = [start + count * w // writers for w in range(writers + 1)]
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            run_pairs(ledger, seed, bounds[w], bounds[w + 1] - bounds[w])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(1, writers)]
    for t in threads:
        t.start()
    writer(0)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def fdatasync_seconds(directory: Path, count: int = 200, *, append: bool = False) -> float:
    """Mean time of a 4 KiB in-place write + fdatasync in `directory` (after a warm-up); with
    `append`, each write extends the file, so its new size is synced too."""
    path = directory / "fsync-probe.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block = b"\xa5" * 4096
        for i in range(16):
            os.pwrite(fd, block, i * 4096)
        os.fsync(fd)
        start = time.perf_counter()
        for i in range(count):
            os.pwrite(fd, block, (16 + i if append else i % 16) * 4096)
            os.fdatasync(fd)
        return (time.perf_counter() - start) / count
    finally:
        os.close(fd)
        path.unlink()


def filesystem_of(path: Path) -> str | None:
    """The filesystem type of the mount holding `path` (from /proc/mounts)."""
    best, fstype = "", None
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    resolved = str(path.resolve())
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and resolved.startswith(parts[1]) and len(parts[1]) > len(best):
            best, fstype = parts[1], parts[2]
    return fstype


def record_paes(ledger: Ledger, count: int) -> list[bytes]:
    """PAEs of up to `count` records spread over the ledger (intents and outcomes)."""
    size = ledger.size
    step = max(1, size // count)
    seqs = list(range(0, size, step))[:count]
    return [Envelope.from_bytes(ledger.entry(seq).envelope).pae() for seq in seqs]


def open_ledger(directory: Path, ring: KeyRing, signer: str) -> Ledger:
    """The ledger under test; a process signer loads the same keys from a key directory."""
    if signer == "inline":
        return Ledger.open(directory / "ledger.db", ring)
    write_keyring(ring, directory / "keys")
    return Ledger.open(directory / "ledger.db", directory / "keys", signer="process")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3000, help="timed intent+outcome pairs")
    parser.add_argument("--warmup", type=int, default=100, help="untimed pairs first")
    parser.add_argument(
        "--sign-messages", type=int, default=1000, help="signing samples for the bound"
    )
    parser.add_argument("--segments", type=int, default=10, help="pairs/bound interleaving")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temp directory")
    parser.add_argument("--seed", type=int, default=20240229)
    parser.add_argument(
        "--writers", type=int, default=1, help="threads sharing one Ledger (group commit)"
    )
    parser.add_argument(
        "--signer",
        choices=("inline", "process"),
        default="inline",
        help="sign in the writer threads (inline) or in one worker process",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile summary (writer 0's thread) to stderr"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.warmup, args.sign_messages, args.segments = 20, 4, 16, 2

    env = machine.environment()
    ring = keyring(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-ledger-", dir=args.dir) as tmp:
        directory = Path(tmp)
        fsync_s = fdatasync_seconds(directory)
        ledger = open_ledger(directory, ring, args.signer)
        try:
            # What the store's own connection runs with (synchronous is per connection).
            conn = ledger.store._conn  # type: ignore[attr-defined]
            journal_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            synchronous = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                conn.execute("PRAGMA synchronous").fetchone()[0]
            )
            run_pairs(ledger, args.seed, 0, args.warmup)
            # The bound signs exactly what the ledger signs: PAEs of its own records, with
            # the same two calls. This machine's speed drifts by tens of percent over
            # seconds, so the timed pairs and the signing samples are interleaved in
            # segments and both are averaged over the same stretch of time.
            paes = record_paes(ledger, args.sign_messages)
            before = ledger.store.stats()
            per_segment = max(4, args.sign_messages // args.segments)
            deterministic = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
            profiler = cProfile.Profile() if args.profile else None
            pair_s = mldsa_s = ecdsa_s = 0.0
            signs = done = 0
            segment_rates, segment_signing = [], []
            worker_busy = 0.0
            for k in range(args.segments):
                count = args.pairs * (k + 1) // args.segments - done
                if profiler:
                    profiler.enable()
                busy_before = ledger.signer.busy_seconds() if ledger.signer else 0.0
                start = time.perf_counter()
                run_writers(ledger, args.seed, args.warmup + done, count, args.writers)
                elapsed = time.perf_counter() - start
                if ledger.signer:
                    worker_busy += ledger.signer.busy_seconds() - busy_before
                if profiler:
                    profiler.disable()
                done += count
                pair_s += elapsed
                sample = [paes[(k * per_segment + i) % len(paes)] for i in range(per_segment)]
                start = time.perf_counter()
                for message in sample:
                    ring.record.mldsa.sign(message)
                middle = time.perf_counter()
                for message in sample:
                    ring.record.ecdsa.sign(message, deterministic)
                stop = time.perf_counter()
                mldsa_s += middle - start
                ecdsa_s += stop - middle
                signs += len(sample)
                segment_rates.append(count / elapsed)
                segment_signing.append((stop - start) / len(sample))
            if profiler:
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
                sys.stderr.write(out.getvalue())
            after = ledger.store.stats()
            commits, records = after.commits - before.commits, after.records - before.records
            size = ledger.size
            assert size == 2 * (args.warmup + args.pairs), size
        finally:
            ledger.close()
        fs_type = filesystem_of(directory)

    t_mldsa, t_ecdsa = mldsa_s / signs, ecdsa_s / signs
    pairs_per_s = args.pairs / pair_s
    bound = 1.0 / (2 * (t_mldsa + t_ecdsa))
    with_fsync = 1.0 / (2 * (t_mldsa + t_ecdsa + fsync_s))
    machine.emit(
        {
            "bench": "ledger_append",
            "pairs": args.pairs,
            "writers": args.writers,
            "signer": args.signer,
            "bound_cores": 1,
            "signer_process_busy_fraction": (
                round(worker_busy / pair_s, 3) if args.signer == "process" else None
            ),
            "warmup_pairs": args.warmup,
            "pairs_per_s": round(pairs_per_s, 1),
            "ms_per_pair": round(1e3 / pairs_per_s, 3),
            "signing_bound_pairs_per_s": round(bound, 1),
            "fraction_of_signing_bound": round(pairs_per_s / bound, 3),
            "commits": commits,
            "records_per_commit": round(records / commits, 3),
            "mldsa65_sign_us": round(t_mldsa * 1e6, 1),
            "ecdsa_p256_sign_us": round(t_ecdsa * 1e6, 1),
            "segments": args.segments,
            "signing_samples": signs,
            "pairs_per_s_segment_range": [
                round(min(segment_rates), 1),
                round(max(segment_rates), 1),
            ],
            "signing_us_per_record_segment_range": [
                round(min(segment_signing) * 1e6, 1),
                round(max(segment_signing) * 1e6, 1),
            ],
            "fdatasync_4k_us": round(fsync_s * 1e6, 1),
            "signing_plus_one_fdatasync_per_record_pairs_per_s": round(with_fsync, 1),
            "fraction_of_signing_plus_fdatasync_bound": round(pairs_per_s / with_fsync, 3),
            "journal_mode": journal_mode,
            "synchronous": synchronous,
            "filesystem": fs_type,
            "target": {"fraction_of_signing_bound": 0.80},
            "seed": args.seed,
            "quick": args.quick,
            "environment": env,
        }
    )


if __name__ == "__main__":
    main()
