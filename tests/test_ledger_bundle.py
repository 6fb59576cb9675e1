"""Evidence bundles (docs §6): built by the ledger, checked by the independent verifier.

Each mutation must produce its own reason code, in the order of the §6 algorithm.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from lineage_audit.ledger import Ledger, ProofError, verify_bundle, verify_tlog_proof
from lineage_audit.ledger.bundle import build_bundle
from lineage_audit.ledger.checkpoint import sign_checkpoint
from lineage_audit.ledger.leaf import ZERO_HASH, leaf_input_for
from lineage_audit.ledger.merkle import leaf_hash
from lineage_audit.ledger.records import Envelope, EnvelopeSignature, make_record, pae
from lineage_audit.ledger.store import StoredEntry

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.fixture
def built(ledger: Ledger, helpers):
    helpers.fill(ledger, 5)
    ledger.checkpoint()
    helpers.fill(ledger, 3)
    ledger.checkpoint()
    bundle = ledger.evidence_bundle([4, 2, 3, 6], since=5)
    return ledger, bundle


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _entry(bundle: dict, seq: int) -> dict:
    return next(e for e in bundle["entries"] if e["seq"] == seq)


def test_bundle_shape(built, keyring) -> None:
    ledger, bundle = built
    assert bundle["format"] == "lineage-audit/evidence-bundle/v1"
    assert bundle["kind"] == "evidence"
    assert bundle["checkpoint"] == ledger.latest_checkpoint().note
    assert bundle["keys"] == keyring.public_keys().to_json(with_format=False)
    assert [e["seq"] for e in bundle["entries"]] == [2, 3, 4, 6]
    entry = _entry(bundle, 3)
    assert base64.b64decode(entry["leaf_input"]) == ledger.entry(3).leaf_input
    assert entry["envelope"] == json.loads(ledger.entry(3).envelope)
    assert [base64.b64decode(h) for h in entry["inclusion_proof"]] == ledger.inclusion_proof(3, 8)
    assert bundle["consistency"]["old_checkpoint"] == ledger.store.get_checkpoint(5).note
    json.dumps(bundle)  # plain JSON


def test_valid_pinned_and_unpinned(built, keyring, pubkeys_file) -> None:
    _, bundle = built
    verdict = verify_bundle(bundle, keyring.public_keys())
    assert verdict.valid and verdict.keys_pinned and verdict.exit_code == 0, verdict
    assert verdict.tree_size == 8 and verdict.seqs == (2, 3, 4, 6)
    assert verify_bundle(json.dumps(bundle), pubkeys_file).valid
    unpinned = verify_bundle(json.dumps(bundle).encode())
    assert unpinned.valid and not unpinned.keys_pinned and "NOT pinned" in unpinned.message
    assert verify_bundle({**bundle, "kind": "lineage-path", "extra": [1, 2]}).valid


def _expect(bundle: dict, pinned, reason: str, seq: int | None) -> None:
    verdict = verify_bundle(bundle, pinned)
    assert (verdict.valid, verdict.reason, verdict.seq) == (False, reason, seq), verdict
    assert verdict.exit_code == 1
    assert verdict.line().startswith(f"INVALID {reason} seq={'-' if seq is None else seq}: ")


def test_payload_bit_flip(built, keyring) -> None:
    _, bundle = built
    env = _entry(bundle, 3)["envelope"]
    payload = bytearray(base64.b64decode(env["payload"]))
    payload[10] ^= 0x01
    env["payload"] = _b64(bytes(payload))
    _expect(bundle, keyring.public_keys(), "envelope_signature", 3)


@pytest.mark.parametrize("which", [0, 1])
def test_stripped_signature(built, keyring, which: int) -> None:
    _, bundle = built
    del _entry(bundle, 4)["envelope"]["signatures"][which]
    _expect(bundle, keyring.public_keys(), "signature_missing", 4)


def test_wrong_pinned_keys(built, other_keyring) -> None:
    _, bundle = built
    _expect(bundle, other_keyring.public_keys(), "checkpoint_signature", None)


def test_entry_signed_by_another_key(built, keyring, other_keyring) -> None:
    _, bundle = built
    env = _entry(bundle, 2)["envelope"]
    message = pae(env["payloadType"], base64.b64decode(env["payload"]))
    forged = make_record("record", "x", "y", [], {}, other_keyring.record)
    same_label = copy.deepcopy(bundle)
    # Another key's ML-DSA signature under our key id: present but does not verify.
    other_sig = other_keyring.record.mldsa.sign(message)
    _entry(same_label, 2)["envelope"]["signatures"][1]["sig"] = _b64(other_sig)
    _expect(same_label, keyring.public_keys(), "envelope_signature", 2)
    # Honestly labelled with the other key's ids: our signatures are missing.
    _entry(bundle, 2)["envelope"] = json.loads(forged.envelope.raw)
    _expect(bundle, keyring.public_keys(), "signature_missing", 2)


def test_mldsa_signature_of_wrong_length(built, keyring) -> None:
    _, bundle = built
    sig = _entry(bundle, 6)["envelope"]["signatures"][1]
    sig["sig"] = _b64(base64.b64decode(sig["sig"])[:-1])
    verdict = verify_bundle(bundle, keyring.public_keys())
    assert (verdict.reason, verdict.seq) == ("envelope_signature", 6)
    assert "3308 bytes, not 3309" in verdict.message


def test_leaf_input_mismatch(built, keyring) -> None:
    _, bundle = built
    for offset, seq in ((70, 2), (100, 3), (140, 4)):  # PAE hash, ECDSA hash, ML-DSA hash
        mutated = copy.deepcopy(bundle)
        leaf = bytearray(base64.b64decode(_entry(mutated, seq)["leaf_input"]))
        leaf[offset] ^= 0x80
        _entry(mutated, seq)["leaf_input"] = _b64(bytes(leaf))
        _expect(mutated, keyring.public_keys(), "leaf_mismatch", seq)
    # The leaf input of entry 3 presented as entry 2: its seq field disagrees.
    _entry(bundle, 2)["leaf_input"] = _entry(bundle, 3)["leaf_input"]
    _expect(bundle, keyring.public_keys(), "leaf_mismatch", 2)


def test_wrong_tree_size_with_a_properly_signed_checkpoint(built, keyring) -> None:
    ledger, bundle = built
    # The older checkpoint (size 5) is genuinely signed, but the proofs are for size 8.
    bundle["checkpoint"] = ledger.store.get_checkpoint(5).note
    bundle["consistency"] = None
    _expect(bundle, keyring.public_keys(), "inclusion", 2)
    only_six = {**bundle, "entries": [_entry(bundle, 6)]}
    verdict = verify_bundle(only_six, keyring.public_keys())
    assert (verdict.reason, verdict.seq) == ("inclusion", 6)
    assert "not below the tree size 5" in verdict.message


def test_inclusion_proof_tampered(built, keyring) -> None:
    _, bundle = built
    proof = _entry(bundle, 6)["inclusion_proof"]
    proof[0] = _b64(bytes(32))
    _expect(bundle, keyring.public_keys(), "inclusion", 6)


def forge(keyring, count: int, helpers, *, bad_prev: dict[int, bytes] | None = None,
          high_s: int | None = None, seqs=None) -> dict:  # fmt: skip
    """A bundle over leaves built here, with a properly signed checkpoint of their tree."""
    leaves, stored, prev = [], [], ZERO_HASH
    for i in range(count):
        record = make_record("record", "forge", "t", [], {"i": i}, keyring.record)
        env, ecdsa_sig = record.envelope, record.ecdsa_sig
        if i == high_s:
            r, s = decode_dss_signature(ecdsa_sig)
            if s <= P256_N // 2:
                s = P256_N - s
            ecdsa_sig = encode_dss_signature(r, s)
            sigs = (EnvelopeSignature(env.signatures[0].keyid, ecdsa_sig), env.signatures[1])
            obj = json.loads(env.raw)
            obj["signatures"][0]["sig"] = _b64(ecdsa_sig)
            env = Envelope(env.payload_type, env.payload, sigs, json.dumps(obj).encode())
        link = (bad_prev or {}).get(i, prev)
        leaf = leaf_input_for(i, link, env, ecdsa_sig, record.mldsa_sig).encode()
        leaves.append(leaf)
        prev = leaf_hash(leaf)
        stored.append(StoredEntry(i, leaf, prev, env.raw, record.predicate_type, "forge", "t"))
    tree = helpers.RefTree([leaf_hash(leaf) for leaf in leaves])
    note = sign_checkpoint(count, tree.root(count), keyring.checkpoint)
    chosen = range(count) if seqs is None else seqs
    items = [(stored[i], tree.inclusion(i, count)) for i in chosen]
    return build_bundle(note, keyring.public_keys(), items)


def test_forged_but_consistent_bundle_is_valid(keyring, helpers) -> None:
    assert verify_bundle(forge(keyring, 5, helpers), keyring.public_keys()).valid


def test_broken_chain_link(keyring, helpers) -> None:
    bundle = forge(keyring, 6, helpers, bad_prev={4: b"\x07" * 32})
    _expect(bundle, keyring.public_keys(), "chain", 4)
    # Entry 3 absent: the broken link cannot be seen, and is not claimed.
    assert verify_bundle(forge(keyring, 6, helpers, bad_prev={4: b"\x07" * 32}, seqs=[2, 4, 5]),
                         keyring.public_keys()).valid  # fmt: skip
    _expect(forge(keyring, 3, helpers, bad_prev={0: b"\x01" * 32}, seqs=[0]),
            keyring.public_keys(), "chain", 0)  # fmt: skip


def test_high_s_ecdsa_is_accepted(keyring, helpers) -> None:
    bundle = forge(keyring, 4, helpers, high_s=2)
    sig = base64.b64decode(_entry(bundle, 2)["envelope"]["signatures"][0]["sig"])
    assert decode_dss_signature(sig)[1] > P256_N // 2
    verdict = verify_bundle(bundle, keyring.public_keys())
    assert verdict.valid, verdict


def test_consistency_failures(built, keyring, other_keyring) -> None:
    _, bundle = built
    tampered = copy.deepcopy(bundle)
    tampered["consistency"]["proof"][0] = _b64(bytes(32))
    _expect(tampered, keyring.public_keys(), "consistency", None)
    foreign = copy.deepcopy(bundle)
    foreign["consistency"]["old_checkpoint"] = sign_checkpoint(
        5, bytes(32), other_keyring.checkpoint
    )
    _expect(foreign, keyring.public_keys(), "consistency", None)
    # A properly signed but inconsistent old checkpoint (a fork): refused.
    forked = copy.deepcopy(bundle)
    forked["consistency"]["old_checkpoint"] = sign_checkpoint(5, b"\x05" * 32, keyring.checkpoint)
    _expect(forked, keyring.public_keys(), "consistency", None)


def test_steps_run_in_order_over_all_entries(built, keyring) -> None:
    _, bundle = built
    leaf = bytearray(base64.b64decode(_entry(bundle, 2)["leaf_input"]))
    leaf[70] ^= 1
    _entry(bundle, 2)["leaf_input"] = _b64(bytes(leaf))  # step 4 failure on the first entry
    del _entry(bundle, 6)["envelope"]["signatures"][0]  # step 2 failure on the last entry
    _expect(bundle, keyring.public_keys(), "signature_missing", 6)


def test_unknown_checkpoint_signatures_are_ignored(built, keyring, other_keyring) -> None:
    _, bundle = built
    extra = sign_checkpoint(8, bytes(32), other_keyring.checkpoint).split("\n\n", 1)[1]
    witness = "\u2014 witness.example/w " + _b64(b"\x00\x01\x02\x03" + b"sig" * 20) + "\n"
    bundle["checkpoint"] += witness
    assert verify_bundle(bundle, keyring.public_keys()).valid
    # Same name and key id as ours, failing signature: the note is rejected.
    bad = (
        bundle["checkpoint"]
        + extra.splitlines()[0].rsplit(" ", 1)[0]
        + " "
        + _b64(
            base64.b64decode(bundle["checkpoint"].split("\n")[4].rsplit(" ", 1)[1])[:4] + b"x" * 70
        )
        + "\n"
    )
    _expect({**bundle, "checkpoint": bad}, keyring.public_keys(), "checkpoint_signature", None)
    assert (
        "ECDSA P-256 checkpoint signature does not verify"
        in verify_bundle({**bundle, "checkpoint": bad}, keyring.public_keys()).message
    )
    # Our ML-DSA line removed: both of ours are required.
    lines = bundle["checkpoint"].split("\n")
    without = "\n".join(lines[:5] + lines[6:])
    _expect({**bundle, "checkpoint": without}, keyring.public_keys(), "checkpoint_signature", None)


def test_bundle_argument_errors(built) -> None:
    ledger, _ = built
    with pytest.raises(ProofError, match="not covered"):
        ledger.evidence_bundle([8])
    with pytest.raises(ProofError, match="not covered"):
        ledger.evidence_bundle([6], checkpoint=5)
    with pytest.raises(Exception, match="no stored checkpoint of size 6"):
        ledger.evidence_bundle([1], since=6)


def test_tlog_proof_verification(built, keyring, tmp_path: Path, cli) -> None:
    ledger, _ = built
    text = ledger.tlog_proof(6)
    verdict = verify_tlog_proof(text, keyring.public_keys())
    assert verdict.valid and verdict.seqs == (6,), verdict
    lines = text.split("\n")
    wrong_index = "\n".join([lines[0], lines[1], "index 5", *lines[3:]])
    assert verify_tlog_proof(wrong_index, keyring.public_keys()).reason == "leaf_mismatch"
    bad_path = "\n".join([*lines[:3], _b64(bytes(32)), *lines[4:]])
    assert verify_tlog_proof(bad_path, keyring.public_keys()).reason == "inclusion"
    assert (
        verify_tlog_proof("c2sp.org/tlog-proof@v1\n", keyring.public_keys()).reason == "malformed"
    )
    old = ledger.tlog_proof(1, checkpoint=5)
    assert verify_tlog_proof(old, keyring.public_keys()).tree_size == 5
    path = tmp_path / "p.tlog-proof"
    path.write_text(text)
    pub = tmp_path / "pub.json"
    pub.write_text(json.dumps(keyring.public_keys().to_json()))
    assert cli("verify", path, "--pubkeys", pub)[0] == 0
    code, _, err = cli("verify", path)
    assert code == 2 and "public keys are required" in err


def test_cli_export_and_verify(built, tmp_path: Path, db_path: Path, pubkeys_file, cli) -> None:
    out = tmp_path / "b.json"
    code, _, err = cli("ledger", "export-bundle", "--db", db_path, "--seq", 1, "--seq", 7,
                       "--since", 5, "-o", out)  # fmt: skip
    assert code == 0, err
    code, stdout, _ = cli("verify", out, "--pubkeys", pubkeys_file)
    assert code == 0 and stdout.startswith("VALID 2 entries")
    code, _, err = cli("verify", out)
    assert code == 0 and "keys not pinned" in err
    bundle = json.loads(out.read_text())
    del bundle["entries"][1]["envelope"]["signatures"][1]
    out.write_text(json.dumps(bundle))
    code, stdout, _ = cli("verify", out, "--pubkeys", pubkeys_file, "--json")
    assert code == 1
    assert json.loads(stdout) | {"message": ""} == {
        "valid": False, "reason": "signature_missing", "seq": 7, "message": "",
        "keys_pinned": True, "tree_size": None, "origin": None, "seqs": [1, 7],
    }  # fmt: skip
    proof = tmp_path / "x.tlog-proof"
    assert cli("ledger", "prove", "--db", db_path, "--seq", 3, "-o", proof)[0] == 0
    assert cli("verify", proof, "--pubkeys", pubkeys_file)[0] == 0
    code, stdout, _ = cli("ledger", "prove", "--db", db_path, "--consistency", 5, 8)
    assert code == 0 and stdout.startswith("old 5\n")
