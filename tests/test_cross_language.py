"""Python-written ledger artefacts verified by the Rust implementation (extension and CLI).

The writer is pure Python; the verifier is Rust. Everything the writer produces — leaf
inputs, envelopes, checkpoints, proofs, bundles, tlog-proofs — must verify in Rust, and each
mutation must be rejected with the same reason the pure-Python verifier gives.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
from pathlib import Path

import pytest
from lineage_audit import _merkle_verify as ext
from lineage_audit.ledger import Ledger, verify_bundle
from lineage_audit.ledger.checkpoint import sign_checkpoint
from lineage_audit.ledger.keys import spki_der

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def record_keys(keyring):
    rec = keyring.record
    return spki_der(rec.ecdsa.public_key()), rec.mldsa.public_key().public_bytes_raw()


@pytest.fixture
def filled(ledger: Ledger, helpers) -> Ledger:
    helpers.fill(ledger, 9)
    ledger.checkpoint()
    helpers.fill(ledger, 61)
    ledger.checkpoint()
    return ledger


def test_key_ids_agree(keyring, record_keys) -> None:
    public = keyring.public_keys()
    assert ext.record_key_ids(*record_keys) == (
        public.record_ecdsa_key_id,
        public.record_mldsa_key_id,
    )
    cp = keyring.checkpoint
    ids = ext.checkpoint_key_ids(
        cp.name, spki_der(cp.ecdsa.public_key()), cp.mldsa.public_key().public_bytes_raw()
    )
    note = sign_checkpoint(1, bytes(32), cp)
    sig_ids = {int.from_bytes(base64.b64decode(line.split(" ")[2])[:4], "big")
               for line in note.splitlines() if line.startswith("\u2014")}  # fmt: skip
    assert set(ids) == sig_ids, note


def test_leaf_inputs_and_chain(filled: Ledger) -> None:
    entries = list(filled.entries())
    leaf_inputs = [e.leaf_input for e in entries]
    for e in entries:
        env = e.parsed_envelope()
        sigs = [s.sig for s in env.signatures]
        prev = bytes(32) if e.seq == 0 else entries[e.seq - 1].leaf_hash
        built = ext.build_leaf_input(e.seq, prev, env.payload_type, env.payload, *sigs)
        assert built == e.leaf_input
        assert ext.leaf_hash(e.leaf_input) == e.leaf_hash
        assert ext.parse_leaf_input(e.leaf_input)["seq"] == e.seq
    assert ext.verify_chain(leaf_inputs) == (True, None, None)
    broken = list(leaf_inputs)
    broken[40] = broken[40][:100] + bytes([broken[40][100] ^ 1]) + broken[40][101:]
    ok, seq, reason = ext.verify_chain(broken)
    assert not ok and seq == 41, reason  # entry 41's link to the changed leaf breaks


def test_envelopes_verify_and_mutations_are_rejected(filled: Ledger, record_keys) -> None:
    envelopes = [e.envelope for e in filled.entries()]
    assert ext.verify_envelopes(envelopes, *record_keys) == [None] * len(envelopes)
    doc = json.loads(envelopes[7])
    flipped = copy.deepcopy(doc)
    payload = bytearray(base64.b64decode(flipped["payload"]))
    payload[3] ^= 0x20
    flipped["payload"] = base64.b64encode(payload).decode()
    stripped = copy.deepcopy(doc)
    stripped["signatures"] = stripped["signatures"][:1]
    results = ext.verify_envelopes(
        [json.dumps(flipped).encode(), json.dumps(stripped).encode(), b"{not json"], *record_keys
    )
    assert results[0].startswith("envelope_signature")
    assert results[1].startswith("signature_missing")
    assert results[2].startswith("malformed")


def test_checkpoints_verify_in_rust(filled: Ledger, keyring) -> None:
    cp = keyring.checkpoint
    args = (cp.name, spki_der(cp.ecdsa.public_key()), cp.mldsa.public_key().public_bytes_raw())
    for stored in filled.checkpoints():
        origin, size, root = ext.verify_checkpoint(stored.note, *args)
        assert (origin, size, root) == (cp.name, stored.size, filled.root(stored.size))
    tampered = filled.checkpoints()[-1].note.replace(f"\n{filled.size}\n", "\n71\n", 1)
    with pytest.raises(ValueError, match="checkpoint_signature"):
        ext.verify_checkpoint(tampered, *args)


def test_store_proofs_verify_in_rust_and_match_its_generator(filled: Ledger) -> None:
    hashes = [e.leaf_hash for e in filled.entries()]
    size = len(hashes)
    root = filled.root(size)
    assert ext.root(hashes) == root
    for seq in range(size):
        proof = filled.inclusion_proof(seq, size)
        assert proof == ext.inclusion_proof(hashes, seq)
        assert ext.verify_inclusion(hashes[seq], seq, size, proof, root)
    for old in range(1, size + 1):
        proof = filled.consistency_proof(old, size)
        assert proof == ext.consistency_proof(hashes, old)
        assert ext.verify_consistency(old, size, proof, filled.root(old), root)


def test_fresh_bundle_and_tlog_proof_verify_with_merkle_verify(
    filled: Ledger, tmp_path: Path, pubkeys_file: Path, other_keyring
) -> None:
    binary = os.environ.get("MERKLE_VERIFY_BIN", str(ROOT / "target/release/merkle-verify"))
    bundle = filled.evidence_bundle([0, 5, 6, 69], since=9)
    bundle_path = tmp_path / "b.json"
    bundle_path.write_text(json.dumps(bundle))
    proof_path = tmp_path / "e.tlog-proof"
    proof_path.write_text(filled.tlog_proof(33))
    other = tmp_path / "other.pub.json"
    other.write_text(json.dumps(other_keyring.public_keys().to_json()))

    def run(path: Path, keys: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([binary, str(path), "--keys", str(keys)], capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip

    assert run(bundle_path, pubkeys_file).returncode == 0
    assert run(proof_path, pubkeys_file).returncode == 0
    wrong = run(bundle_path, other)
    assert wrong.returncode == 1 and wrong.stdout.startswith("INVALID checkpoint_signature")
    # Same verdict from the pure-Python verifier and the extension for a mutation.
    bad = copy.deepcopy(bundle)
    bad["entries"][2]["inclusion_proof"][0] = base64.b64encode(bytes(32)).decode()
    py = verify_bundle(bad, pubkeys_file)
    rs = ext.verify_bundle(json.dumps(bad).encode(), pubkeys_file.read_bytes())
    assert (py.valid, py.reason, py.seq) == (rs["valid"], rs["reason"], rs["seq"])
    assert (rs["reason"], rs["seq"]) == ("inclusion", 6)


def test_checkpoint_with_extension_line_is_accepted_by_both(keyring, pubkeys_file) -> None:
    from lineage_audit.ledger import _vcore

    cp = keyring.checkpoint
    text = f"{cp.name}\n5\n{base64.b64encode(bytes(32)).decode()}\nextension line\n"
    note = _note_over(text, keyring)
    keys = _vcore.parse_keys(json.loads(pubkeys_file.read_text()), require_format=True)
    assert _vcore.verify_note(note, keys).size == 5
    spki = spki_der(cp.ecdsa.public_key())
    assert (
        ext.verify_checkpoint(note, cp.name, spki, cp.mldsa.public_key().public_bytes_raw())[1] == 5
    )


def _note_over(text: str, keyring) -> str:
    """Sign an arbitrary note text with the checkpoint keys, as sign_checkpoint does."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from lineage_audit.ledger.keys import ecdsa_note_key_id, mldsa_note_key_id

    cp = keyring.checkpoint
    msg = text.encode()
    e = ecdsa_note_key_id(cp.ecdsa.public_key()) + cp.ecdsa.sign(msg, ec.ECDSA(hashes.SHA256()))
    m = mldsa_note_key_id(cp.name, cp.mldsa.public_key()) + cp.mldsa.sign(msg)
    lines = [f"\u2014 {cp.name} {base64.b64encode(sig).decode()}" for sig in (e, m)]
    return text + "\n" + "\n".join(lines) + "\n"
