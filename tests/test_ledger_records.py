"""Records: in-toto statements, JCS bytes, DSSE PAE and both signatures (docs §2)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
import rfc8785
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from lineage_audit.ledger import FormatError, Subject
from lineage_audit.ledger.records import (
    PAYLOAD_TYPE,
    Envelope,
    build_statement,
    canonical_json,
    make_record,
    pae,
    sign_envelope,
)


def sha_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


NONCE = "ab" * 32
WHEN = "2026-01-02T03:04:05.000006Z"


def _statement(**fields):
    return build_statement(
        "baseline", "baseline.fit", "alice", [("corpus.parquet", sha_hex("c"))], fields,
        requested_at=WHEN, nonce=NONCE,
    )  # fmt: skip


def test_statement_shape() -> None:
    st = _statement(window=3)
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == "https://lineage-audit.dev/predicate/baseline/v1"
    assert st["subject"] == [{"name": "corpus.parquet", "digest": {"sha256": sha_hex("c")}}]
    assert st["predicate"] == {
        "action": "baseline.fit", "actor": "alice", "requested_at": WHEN, "nonce": NONCE,
        "sig_suite": "ecdsa-p256-sha256+ml-dsa-65", "window": 3,
    }  # fmt: skip


def test_random_nonce_and_time() -> None:
    a = build_statement("record", "x", "y")
    b = build_statement("record", "x", "y")
    assert len(a["predicate"]["nonce"]) == 64 and a["predicate"]["nonce"] != b["predicate"]["nonce"]
    assert a["predicate"]["requested_at"].endswith("Z")


def test_jcs_bytes_are_deterministic() -> None:
    st = _statement(b=[1, 2.5, "é"], a={"z": None, "y": True})
    first = canonical_json(st)
    shuffled = json.loads(json.dumps(st))
    shuffled["predicate"] = dict(reversed(list(shuffled["predicate"].items())))
    assert canonical_json(shuffled) == first == rfc8785.dumps(st)
    assert first.startswith(b'{"_type":"https://in-toto.io/Statement/v1","predicate":{"a":')
    assert b" " not in first.replace(b"Statement/v1", b"")  # compact
    assert '"é"'.encode() in first  # UTF-8, not \\u escapes


def test_pae_bytes() -> None:
    assert pae(PAYLOAD_TYPE, b"hello") == b"DSSEv1 28 application/vnd.in-toto+json 5 hello"
    assert pae("", b"") == b"DSSEv1 0  0 "


def test_both_signatures_verify_and_key_ids_match(keyring) -> None:
    record = make_record("intent", "train", "bob", [], {"k": 1}, keyring.record)
    env = json.loads(record.envelope.raw)
    assert list(env) == ["payload", "payloadType", "signatures"]  # JCS order
    assert env["payloadType"] == PAYLOAD_TYPE
    payload = base64.b64decode(env["payload"])
    assert payload == record.payload == canonical_json(record.statement)
    message = pae(PAYLOAD_TYPE, payload)
    (e_sig, m_sig) = env["signatures"]
    pub = keyring.public_keys()
    assert e_sig["keyid"] == pub.record_ecdsa_key_id
    assert m_sig["keyid"] == pub.record_mldsa_key_id
    pub.record_ecdsa.verify(base64.b64decode(e_sig["sig"]), message, ec.ECDSA(hashes.SHA256()))
    ml = base64.b64decode(m_sig["sig"])
    assert len(ml) == 3309
    pub.record_mldsa.verify(ml, message)
    assert record.pae_hash == hashlib.sha256(message).digest()


def test_ecdsa_is_deterministic(keyring) -> None:
    a = sign_envelope(b"{}", keyring.record)
    b = sign_envelope(b"{}", keyring.record)
    assert a.signatures[0].sig == b.signatures[0].sig  # RFC 6979
    assert a.signatures[1].sig != b.signatures[1].sig  # ML-DSA hedged signing


def test_envelope_parse_round_trip(keyring) -> None:
    env = sign_envelope(b'{"x":1}', keyring.record)
    again = Envelope.from_bytes(env.raw)
    assert again == env
    assert again.signature(keyring.record.mldsa_key_id) == env.signatures[1].sig
    assert again.signature("nope") is None
    with pytest.raises(FormatError, match=r"envelope\.signatures\[0\]\.sig"):
        Envelope.from_json({"payloadType": "t", "payload": "", "signatures": [{"keyid": "k"}]})
    with pytest.raises(FormatError, match=r"envelope\.payload"):
        Envelope.from_json({"payloadType": "t", "payload": "!!", "signatures": []})


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("nope", "a", "b"), "kind"),
        (("record", "", "b"), "action"),
        (("record", "a", "x\ny"), "actor"),
        (("record", "a", "b", [("n", "XYZ")]), "digest.sha256"),
        (("record", "a", "b", [], {"nonce": "x"}), "fields.nonce"),
        (("record", "a", "b", [], {"sig_suite": "x"}), "fields.sig_suite"),
        (("record", "a", "b", [], {"x": float("nan")}), "statement.predicate.x"),
        (("record", "a", "b", [], {"x": {"y": object()}}), "statement.predicate.x.y"),
        (("record", "a", "b", [], {"x": 2**60}), "statement.predicate.x"),
        (("outcome", "a", "b", [], {"status": "succeeded"}), "predicate.intent"),
        (("outcome", "a", "b", [], {"intent": {"seq": 1, "leaf_hash": "0" * 64}}), "status"),
        (("outcome", "a", "b", [], {"intent": {"seq": 1, "leaf_hash": "0" * 64},
                                     "status": "failed"}), "predicate.error"),
    ],
)  # fmt: skip
def test_bad_statements_name_the_field(args, field) -> None:
    with pytest.raises(FormatError) as info:
        build_statement(*args)
    assert field in str(info.value)


def test_subject_forms() -> None:
    digest = sha_hex("x")
    assert Subject.parse(f"a=b={digest.upper()}") == Subject("a=b", digest)
    assert Subject.of({"name": "n", "digest": {"sha256": digest}}) == Subject("n", digest)
    assert Subject.of(("n", digest)).to_json() == {"name": "n", "digest": {"sha256": digest}}
    with pytest.raises(FormatError, match="NAME=SHA256HEX"):
        Subject.parse("nodigest")
