"""DSSE envelope verifications per second, both signatures each (DESIGN.md §8).

Ours: the Rust batch ``verify_envelopes`` (rayon over all cores, GIL released): JSON parse,
base64, PAE, ECDSA P-256 and ML-DSA-65 verification of every envelope. Peer: the
``cryptography`` package verifying the same envelopes one after another, as the pure-Python
verifier (``ledger/_vcore.py``) does. Bound: cores / (t_ecdsa_verify + t_mldsa_verify) of
the faster single-core implementation, both measured in this run: ``cryptography`` per
call, and the Rust crate inside a one-thread batch (``RAYON_NUM_THREADS=1`` subprocess),
where each primitive's time is the difference between batches that stop after parsing,
after ECDSA (invalid ECDSA signature) and after both. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import machine
from cryptography.hazmat.primitives.asymmetric import ec, mldsa
from lineage_audit import _merkle_verify as ext
from lineage_audit.ledger import _vcore as v
from lineage_audit.ledger.keys import RecordKeys, mldsa_public_bytes, spki_der
from lineage_audit.ledger.records import build_statement, canonical_json, sign_envelope


def record_keys(seed: int) -> RecordKeys:
    """Record keys derived from the seed (ECDSA scalar and ML-DSA seed from SHA-256)."""
    material = hashlib.sha256(b"bench-envelopes" + seed.to_bytes(8, "big")).digest()
    scalar = int.from_bytes(hashlib.sha256(material + b"ecdsa").digest(), "big") % (2**255)
    return RecordKeys(
        ecdsa=ec.derive_private_key(scalar + 1, ec.SECP256R1()),
        mldsa=mldsa.MLDSA65PrivateKey.from_seed_bytes(hashlib.sha256(material + b"ml").digest()),
    )


def make_envelopes(keys: RecordKeys, seed: int, n: int) -> list[bytes]:
    """n signed intent envelopes with seeded statements (ML-DSA signing itself is hedged)."""
    out = []
    for i in range(n):
        tag = hashlib.sha256(f"{seed}/{i}".encode()).hexdigest()
        statement = build_statement(
            "intent",
            "bench.envelope",
            "bench",
            [("artefact", tag)],
            {"step": i},
            requested_at="2025-01-01T00:00:00.000000Z",
            nonce=hashlib.sha256(tag.encode()).hexdigest(),
        )
        out.append(sign_envelope(canonical_json(statement), keys).raw)
    return out


def with_signature(envelope: bytes, keyid: str, mutate: str) -> bytes:
    """The envelope with one signature flipped ("flip") or removed ("drop")."""
    obj = json.loads(envelope)
    sigs = obj["signatures"]
    for item in list(sigs):
        if item["keyid"] == keyid:
            if mutate == "drop":
                sigs.remove(item)
            else:
                raw = bytearray(v.b64(item["sig"], "sig"))
                # Inside the DER value of s for ECDSA, inside c~ for ML-DSA: the verifier
                # does all its work and then rejects.
                raw[-3 if keyid.startswith("ecdsa") else 5] ^= 0x01
                item["sig"] = base64.b64encode(bytes(raw)).decode()
    return json.dumps(obj, separators=(",", ":")).encode()


def python_verify_all(envelopes: list[bytes], keys: v.TrustedKeys) -> int:
    """The cryptography peer: what _vcore does for one envelope, sequentially."""
    for raw in envelopes:
        env = json.loads(raw)
        payload = v.b64(env["payload"], "payload")
        by_id = {item["keyid"]: v.b64(item["sig"], "sig") for item in env["signatures"]}
        message = v.pae(env["payloadType"], payload)
        ok = v.ecdsa_ok(keys.record_ecdsa, by_id[keys.record_ecdsa_id], message) and v.mldsa_ok(
            keys.record_mldsa, by_id[keys.record_mldsa_id], message
        )
        if not ok:
            raise AssertionError("envelope did not verify")
    return len(envelopes)


def rust_single_core_probe(path: str, repeats: int) -> None:
    """Runs in a RAYON_NUM_THREADS=1 subprocess: per-envelope seconds of each stage."""
    with open(path, "rb") as fh:
        job = pickle.load(fh)
    spki, pk = job["spki"], job["pk"]
    times = {}
    for name, batch in job["batches"].items():
        expect_ok = name == "full"

        def run(batch: list[bytes] = batch, expect_ok: bool = expect_ok) -> int:
            verdicts = ext.verify_envelopes(batch, spki, pk)
            assert all((r is None) == expect_ok for r in verdicts), verdicts[:1]
            return len(batch)

        times[name] = 1.0 / machine.best_rate(run, repeats)
    sys.stdout.write(json.dumps(times) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envelopes", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5, help="best of N timed runs")
    parser.add_argument("--seed", type=int, default=20240229)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--rust-single-core-probe", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rust_single_core_probe:
        rust_single_core_probe(args.rust_single_core_probe, args.repeats)
        return
    if args.quick:
        args.envelopes, args.repeats = 48, 2

    env = machine.environment()
    keys = record_keys(args.seed)
    spki = spki_der(keys.ecdsa.public_key())
    pk = mldsa_public_bytes(keys.mldsa.public_key())
    trusted = v.parse_keys(
        {
            "record": {
                "ecdsa-p256": base64.b64encode(spki).decode(),
                "ml-dsa-65": base64.b64encode(pk).decode(),
            },
            "checkpoint": {
                "name": "bench",
                "ecdsa-p256": base64.b64encode(spki).decode(),
                "ml-dsa-65": base64.b64encode(pk).decode(),
            },
        }
    )
    envelopes = make_envelopes(keys, args.seed, args.envelopes)
    assert all(r is None for r in ext.verify_envelopes(envelopes, spki, pk))
    assert python_verify_all(envelopes, trusted) == len(envelopes)

    def ours() -> int:
        ext.verify_envelopes(envelopes, spki, pk)
        return len(envelopes)

    envelopes_per_s = machine.best_rate(ours, args.repeats)
    crypto_per_s = machine.best_rate(lambda: python_verify_all(envelopes, trusted), args.repeats)

    # cryptography, one primitive at a time on one core.
    messages = []
    for raw in envelopes:
        obj = json.loads(raw)
        sigs = {item["keyid"]: v.b64(item["sig"], "sig") for item in obj["signatures"]}
        message = v.pae(obj["payloadType"], v.b64(obj["payload"], "payload"))
        messages.append((message, sigs[trusted.record_ecdsa_id], sigs[trusted.record_mldsa_id]))

    def crypto_ecdsa() -> int:
        for message, sig, _ in messages:
            assert v.ecdsa_ok(trusted.record_ecdsa, sig, message)
        return len(messages)

    def crypto_mldsa() -> int:
        for message, _, sig in messages:
            assert v.mldsa_ok(trusted.record_mldsa, sig, message)
        return len(messages)

    t_crypto_ecdsa = 1.0 / machine.best_rate(crypto_ecdsa, args.repeats)
    t_crypto_mldsa = 1.0 / machine.best_rate(crypto_mldsa, args.repeats)

    # The Rust crate on one core (a RAYON_NUM_THREADS=1 subprocess).
    batches = {
        "parse": [with_signature(e, trusted.record_ecdsa_id, "drop") for e in envelopes],
        "ecdsa": [with_signature(e, trusted.record_ecdsa_id, "flip") for e in envelopes],
        "full": envelopes,
    }
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.pickle"
        job.write_bytes(pickle.dumps({"spki": spki, "pk": pk, "batches": batches}))
        probe = subprocess.run(
            [
                sys.executable,
                __file__,
                *("--rust-single-core-probe", str(job)),
                *("--repeats", str(args.repeats)),
            ],
            env={**os.environ, "RAYON_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            check=True,
        )
    stages = json.loads(probe.stdout)
    rust_one_core_envelope = stages["full"]
    t_rust_ecdsa = max(stages["ecdsa"] - stages["parse"], 0.0)
    t_rust_mldsa = max(stages["full"] - stages["ecdsa"], 0.0)

    impls = {
        "cryptography": t_crypto_ecdsa + t_crypto_mldsa,
        "merkle_verify (Rust)": t_rust_ecdsa + t_rust_mldsa,
    }
    fastest = min(impls, key=impls.__getitem__)
    bound = env["cores"] / impls[fastest]

    machine.emit(
        {
            "bench": "envelopes",
            "envelopes": len(envelopes),
            "envelope_bytes": len(envelopes[0]),
            "envelopes_per_s": round(envelopes_per_s, 1),
            "cryptography_envelopes_per_s": round(crypto_per_s, 1),
            "ratio": round(envelopes_per_s / crypto_per_s, 2),
            "bound_envelopes_per_s": round(bound, 1),
            "fraction_of_bound": round(envelopes_per_s / bound, 3),
            "bound_implementation": fastest,
            "single_core_us": {
                "cryptography_ecdsa_verify": round(t_crypto_ecdsa * 1e6, 1),
                "cryptography_mldsa_verify": round(t_crypto_mldsa * 1e6, 1),
                "rust_ecdsa_verify": round(t_rust_ecdsa * 1e6, 1),
                "rust_mldsa_verify": round(t_rust_mldsa * 1e6, 1),
                "rust_parse_and_select": round(stages["parse"] * 1e6, 1),
                "rust_whole_envelope": round(rust_one_core_envelope * 1e6, 1),
            },
            "rust_one_core_envelopes_per_s": round(1.0 / rust_one_core_envelope, 1),
            "seed": args.seed,
            "quick": args.quick,
            "environment": env,
        }
    )


if __name__ == "__main__":
    main()
