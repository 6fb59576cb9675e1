"""The append path's shortcuts give exactly the bytes of the slow, obviously-right forms."""

from __future__ import annotations

import datetime as dt
import random
import re

import pytest
import rfc8785
from lineage_audit.ledger import generate_keyring
from lineage_audit.ledger import records as rec
from lineage_audit.ledger.errors import FormatError

ALPHABET = ["a", "Z", "0", " ", '"', "\\", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "€", "\u2028"]
ALPHABET += ["\ue000", "\uffff", "😀", "𝄞", "/", "<"]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 6)))


def _value(rng: random.Random, depth: int = 0, floats: bool = False) -> object:
    kinds = ["str", "int", "bool", "none"] + (["float"] if floats else [])
    if depth < 3:
        kinds += ["list", "dict", "dict"]
    kind = rng.choice(kinds)
    if kind == "str":
        return _text(rng)
    if kind == "int":
        return rng.choice([0, -1, 7, 2**53 - 1, -(2**53) + 1, rng.randrange(-(10**9), 10**9)])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "float":
        return rng.choice([0.5, 1.0, -0.0, 1e21, 1e-7, 3.141592653589793])
    if kind == "list":
        return [_value(rng, depth + 1, floats) for _ in range(rng.randrange(0, 4))]
    return {_text(rng) or "k": _value(rng, depth + 1, floats) for _ in range(rng.randrange(0, 5))}


@pytest.mark.parametrize("floats", [False, True])
def test_canonical_json_equals_rfc8785(floats: bool) -> None:
    rng = random.Random(8785 + floats)
    for _ in range(3000):
        value = _value(rng, floats=floats)
        assert rec.canonical_json(value) == rfc8785.dumps(value), value


def test_canonical_json_key_order_is_utf16() -> None:
    # Code-point order and UTF-16 order differ for these two keys: the slow path is used.
    value = {"\uffff": 1, "😀": 2, "a": [1.5, {"𝄞": None, "\ue000": True}]}
    assert rec.canonical_json(value) == rfc8785.dumps(value)
    with pytest.raises(FormatError):
        rec.canonical_json({"x": float("nan")})
    with pytest.raises(FormatError):
        rec.canonical_json({"x": "\ud800"})  # a lone surrogate cannot be UTF-8


def test_make_record_payload_is_jcs_of_statement() -> None:
    keys = generate_keyring().record
    fields = {"note": 'quote " and \\ and \n', "nested": {"ü": [1, 2.5, None]}}
    record = rec.make_record("intent", "train", "bob", [("c", "ab" * 32)], fields, keys)
    assert record.payload == rfc8785.dumps(record.statement)


def test_envelope_json_equals_rfc8785() -> None:
    sigs = [("ecdsa-p256:0011223344556677", "c2ln"), ("ml-dsa-65:8899aabbccddeeff", "AAA=")]
    for payload_type in ["application/vnd.in-toto+json", 'we"ird\\', "ctl\x01", "ünï", ""]:
        for pairs in (sigs, [(f"{k}\x7f\n", s) for k, s in sigs], []):
            obj = {
                "payloadType": payload_type,
                "payload": "eyJ9",
                "signatures": [{"keyid": k, "sig": s} for k, s in pairs],
            }
            assert rec._envelope_json(payload_type, "eyJ9", pairs) == rfc8785.dumps(obj)


def test_signed_envelope_bytes_are_jcs() -> None:
    keys = generate_keyring().record
    envelope = rec.sign_envelope(b'{"a":1}', keys)
    assert envelope.raw == rfc8785.dumps(envelope.to_json())
    assert [s.keyid for s in envelope.signatures] == [keys.ecdsa_key_id, keys.mldsa_key_id]


def test_key_ids_are_cached_per_key_object() -> None:
    first, second = generate_keyring().record, generate_keyring().record
    for _ in range(2):
        assert rec._key_ids(first) == (first.ecdsa_key_id, first.mldsa_key_id)
        assert rec._key_ids(second) == (second.ecdsa_key_id, second.mldsa_key_id)
    for _ in range(rec._KEY_IDS_MAX + 3):  # the table is bounded
        rec._key_ids(generate_keyring().record)
    assert len(rec._KEY_IDS) <= rec._KEY_IDS_MAX


@pytest.mark.parametrize("ns", [0, 1_700_000_000_123_456_789, 4_102_444_799_999_999_000])
def test_rfc3339_now_matches_datetime(monkeypatch, ns: int) -> None:
    """The fast formatter gives exactly datetime's text for the same instant."""
    monkeypatch.setattr(rec.time, "time_ns", lambda: ns)
    text = rec.rfc3339_now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text)
    instant = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1000)
    assert text == instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
