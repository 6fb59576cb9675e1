"""Records: in-toto Statement v1 payloads (JCS) in dual-signed DSSE envelopes (docs §2)."""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import rfc8785
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from .codec import b64decode, b64encode, hex_digest
from .errors import FormatError
from .keys import RecordKeys

__all__ = [
    "KINDS",
    "PAYLOAD_TYPE",
    "PREDICATE_PREFIX",
    "RESERVED_PREDICATE_FIELDS",
    "SIG_SUITE",
    "STATEMENT_TYPE",
    "Envelope",
    "EnvelopeSignature",
    "RecordSigner",
    "SignedRecord",
    "Subject",
    "assemble_envelope",
    "build_statement",
    "canonical_json",
    "kind_of",
    "make_record",
    "pae",
    "predicate_type",
    "rfc3339_now",
    "sign_envelope",
    "sign_envelope_with",
    "sign_pae",
]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_PREFIX = "https://lineage-audit.dev/predicate/"
SIG_SUITE = "ecdsa-p256-sha256+ml-dsa-65"
KINDS = ("intent", "outcome", "alert", "incident", "baseline", "lineage-event", "record")
RESERVED_PREDICATE_FIELDS = frozenset({"action", "actor", "requested_at", "nonce", "sig_suite"})
OUTCOME_STATUSES = ("succeeded", "failed")
MAX_TEXT = 1024


def predicate_type(kind: str) -> str:
    """``https://lineage-audit.dev/predicate/<kind>/v1`` for a known record kind."""
    if kind not in KINDS:
        raise FormatError("kind", f"unknown record kind; expected one of {', '.join(KINDS)}", kind)
    return f"{PREDICATE_PREFIX}{kind}/v1"


def kind_of(predicate_type_uri: str) -> str | None:
    """The record kind named by a predicate type URI, or None if it is not one of ours."""
    if predicate_type_uri.startswith(PREDICATE_PREFIX) and predicate_type_uri.endswith("/v1"):
        kind = predicate_type_uri[len(PREDICATE_PREFIX) : -len("/v1")]
        if kind in KINDS:
            return kind
    return None


def rfc3339_ns(ns: int) -> str:
    """A time in ns since the Unix epoch as RFC 3339 UTC with nanoseconds (``Z`` suffix).

    JSON that is signed or hashed (RFC 8785) cannot hold such a count as a number: it is
    above 2^53, the largest integer every JSON reader keeps exactly."""
    seconds, nanos = divmod(int(ns), 1_000_000_000)
    t = time.gmtime(seconds)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{nanos:09d}Z"
    )


def rfc3339_now() -> str:
    """The current UTC time as RFC 3339 with microseconds and a ``Z`` suffix."""
    # Same text as datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), without building a
    # datetime (this runs twice per appended record).
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    t = time.gmtime(seconds)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{micros:06d}Z"
    )


def canonical_json(obj: Any, field: str = "payload") -> bytes:
    """RFC 8785 (JCS) serialisation; unsupported values raise :class:`FormatError`."""
    return _jcs(obj, field, _check_json_value(obj, field))


def _jcs(obj: Any, field: str, plain: bool) -> bytes:
    """JCS bytes of an already checked value; ``plain`` as returned by the check.

    For a plain value (no floats, every object key in the Basic Multilingual Plane) the
    standard library's sorted, compact, non-ASCII-preserving JSON is byte-identical to JCS:
    integers print the same, strings escape the same characters the same way (``"``,
    ``\\``, the short forms \\b \\t \\n \\f \\r, other controls as lowercase \\u00xx), and
    code-point order equals JCS's UTF-16 order for BMP keys. Anything else goes through
    :mod:`rfc8785` (ES6 number formatting, UTF-16 key order).
    """
    try:
        if plain:
            return json.dumps(
                obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode("utf-8")
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise FormatError(field, f"cannot be serialised with RFC 8785 ({exc})") from None


def _check_json_value(value: Any, field: str) -> bool:
    """Reject values JCS cannot represent faithfully, naming the nested field.

    Returns True when the value is "plain" for :func:`_jcs`: no floats anywhere and no
    object key with a character outside the Basic Multilingual Plane.
    """
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        if abs(value) > 2**53 - 1:
            raise FormatError(field, "integer outside the I-JSON range (|n| < 2**53)", value)
        return True
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FormatError(field, "non-finite number", value)
        return False
    plain = True
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise FormatError(field, "object keys must be strings", key)
            if not key.isascii() and max(map(ord, key)) > 0xFFFF:
                plain = False
            plain = _check_json_value(item, f"{field}.{key}") and plain
        return plain
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            plain = _check_json_value(item, f"{field}[{index}]") and plain
        return plain
    raise FormatError(field, f"not a JSON value ({type(value).__name__})", value)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: ``DSSEv1 SP LEN(type) SP type SP LEN(body) SP body``."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True)
class Subject:
    """One in-toto subject: a name and the SHA-256 digest of the artefact."""

    name: str
    sha256: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise FormatError("subject.name", "expected a non-empty string", self.name)
        hex_digest(self.sha256, f"subject[{self.name}].digest.sha256")

    @classmethod
    def parse(cls, text: str) -> Subject:
        """Parse ``name=sha256hex`` (the CLI form)."""
        name, sep, digest = text.rpartition("=")
        if not sep or not name:
            raise FormatError("subject", "expected NAME=SHA256HEX", text)
        return cls(name, digest.lower())

    @classmethod
    def of(cls, item: Subject | Mapping[str, Any] | Sequence[str]) -> Subject:
        """Coerce a Subject, an in-toto subject object, or a ``(name, hex)`` pair."""
        if isinstance(item, Subject):
            return item
        if isinstance(item, Mapping):
            digest = item.get("digest")
            if not isinstance(digest, Mapping):
                raise FormatError("subject.digest", "expected an object", digest)
            return cls(item.get("name"), digest.get("sha256"))
        if isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
            return cls(item[0], item[1])
        raise FormatError("subject", "expected Subject, {name, digest} or (name, sha256)", item)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "digest": {"sha256": self.sha256}}


def _text(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise FormatError(field, "expected a non-empty string", value)
    if len(value) > MAX_TEXT:
        raise FormatError(field, f"longer than {MAX_TEXT} characters", value)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise FormatError(field, "must not contain control characters", value)
    return value


def _check_outcome_fields(fields: Mapping[str, Any]) -> None:
    intent = fields.get("intent")
    if not isinstance(intent, Mapping):
        raise FormatError("predicate.intent", "an outcome needs {seq, leaf_hash}", intent)
    seq = intent.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise FormatError("predicate.intent.seq", "expected a non-negative integer", seq)
    hex_digest(intent.get("leaf_hash"), "predicate.intent.leaf_hash")
    status = fields.get("status")
    if status not in OUTCOME_STATUSES:
        raise FormatError("predicate.status", "expected 'succeeded' or 'failed'", status)
    if status == "failed":
        error = fields.get("error")
        if not isinstance(error, Mapping) or not all(
            isinstance(error.get(k), str) for k in ("type", "message")
        ):
            raise FormatError("predicate.error", "a failed outcome needs {type, message}", error)


def build_statement(
    kind: str,
    action: str,
    actor: str,
    subject: Iterable[Subject | Mapping[str, Any] | Sequence[str]] = (),
    fields: Mapping[str, Any] | None = None,
    *,
    requested_at: str | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """The in-toto Statement v1 of one record (not yet serialised)."""
    statement = _statement(kind, action, actor, subject, fields, requested_at, nonce)
    _check_json_value(statement, "statement")
    return statement


def _statement(
    kind: str,
    action: str,
    actor: str,
    subject: Iterable[Subject | Mapping[str, Any] | Sequence[str]],
    fields: Mapping[str, Any] | None,
    requested_at: str | None,
    nonce: str | None,
) -> dict[str, Any]:
    """:func:`build_statement` before the final JSON-value check."""
    ptype = predicate_type(kind)
    subjects = [Subject.of(item).to_json() for item in subject]
    extra = dict(fields or {})
    for key in extra:
        if not isinstance(key, str) or not key:
            raise FormatError("fields", "field names must be non-empty strings", key)
        if key in RESERVED_PREDICATE_FIELDS:
            raise FormatError(f"fields.{key}", "reserved predicate field; set by the ledger")
    if kind == "outcome":
        _check_outcome_fields(extra)
    nonce_hex = secrets.token_hex(32) if nonce is None else hex_digest(nonce, "predicate.nonce")
    predicate: dict[str, Any] = {
        "action": _text(action, "action"),
        "actor": _text(actor, "actor"),
        "requested_at": rfc3339_now() if requested_at is None else requested_at,
        "nonce": nonce_hex,
        "sig_suite": SIG_SUITE,
    }
    predicate.update(extra)
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": ptype,
        "predicate": predicate,
    }


def _statement_and_payload(
    kind: str,
    action: str,
    actor: str,
    subject: Iterable[Subject | Mapping[str, Any] | Sequence[str]],
    fields: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], bytes]:
    """:func:`build_statement` and its JCS bytes, walking the statement once, not twice."""
    statement = _statement(kind, action, actor, subject, fields, None, None)
    return statement, _jcs(statement, "statement", _check_json_value(statement, "statement"))


@dataclass(frozen=True)
class EnvelopeSignature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope; ``raw`` holds the exact bytes stored in the ledger."""

    payload_type: str
    payload: bytes
    signatures: tuple[EnvelopeSignature, ...]
    raw: bytes

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def signature(self, keyid: str) -> bytes | None:
        """The first signature whose key id is ``keyid`` (None if absent)."""
        for item in self.signatures:
            if item.keyid == keyid:
                return item.sig
        return None

    def statement(self) -> dict[str, Any]:
        """The decoded payload (for reading; verification uses the bytes)."""
        try:
            obj = json.loads(self.payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FormatError("payload", f"not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise FormatError("payload", "expected a JSON object", type(obj).__name__)
        return obj

    def to_json(self) -> dict[str, Any]:
        return json.loads(self.raw)

    @classmethod
    def from_bytes(cls, raw: bytes, field: str = "envelope") -> Envelope:
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FormatError(field, f"not JSON ({exc})") from None
        return cls.from_json(obj, field, raw=bytes(raw))

    @classmethod
    def from_json(cls, obj: object, field: str = "envelope", raw: bytes | None = None) -> Envelope:
        if not isinstance(obj, Mapping):
            raise FormatError(field, "expected a JSON object", type(obj).__name__)
        payload_type = obj.get("payloadType")
        if not isinstance(payload_type, str):
            raise FormatError(f"{field}.payloadType", "expected a string", payload_type)
        payload = b64decode(obj.get("payload"), f"{field}.payload")
        sigs = obj.get("signatures")
        if not isinstance(sigs, list):
            raise FormatError(f"{field}.signatures", "expected a list", sigs)
        parsed = []
        for index, item in enumerate(sigs):
            where = f"{field}.signatures[{index}]"
            if not isinstance(item, Mapping):
                raise FormatError(where, "expected an object", item)
            keyid = item.get("keyid")
            if not isinstance(keyid, str):
                raise FormatError(f"{where}.keyid", "expected a string", keyid)
            parsed.append(EnvelopeSignature(keyid, b64decode(item.get("sig"), f"{where}.sig")))
        if raw is None:
            raw = rfc8785.dumps(obj)
        return cls(payload_type, payload, tuple(parsed), raw)


_DETERMINISTIC_ECDSA = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)

# Key ids of recently used record keys, by object identity. An entry holds its RecordKeys
# (frozen, so its ids never change), so an id() in the table cannot be reused by another
# object while the entry exists; the table is small and simply cleared when full.
_KEY_IDS: dict[int, tuple[RecordKeys, str, str]] = {}
_KEY_IDS_MAX = 32

# Strings JCS writes verbatim between quotes (no escaping needed), as a fast-path check.
_JCS_VERBATIM = re.compile(r'[^"\\\x00-\x1f]*')


def _key_ids(keys: RecordKeys) -> tuple[str, str]:
    """``(keys.ecdsa_key_id, keys.mldsa_key_id)``, computed once per key object (each id
    serialises a public key and hashes it)."""
    hit = _KEY_IDS.get(id(keys))
    if hit is not None and hit[0] is keys:
        return hit[1], hit[2]
    ids = (keys.ecdsa_key_id, keys.mldsa_key_id)
    if len(_KEY_IDS) >= _KEY_IDS_MAX:
        _KEY_IDS.clear()
    _KEY_IDS[id(keys)] = (keys, *ids)
    return ids


def _envelope_json(payload_type: str, payload_b64: str, sigs: Sequence[tuple[str, str]]) -> bytes:
    """JCS bytes of ``{"payloadType", "payload", "signatures": [{"keyid", "sig"}...]}``.

    Base64 never needs escaping; when the type and key ids do not either, the canonical form
    is written directly (members in JCS order), else :mod:`rfc8785` does it.
    """
    texts = [payload_type, *(keyid for keyid, _ in sigs)]
    if all(_JCS_VERBATIM.fullmatch(text) for text in texts):
        items = ",".join(f'{{"keyid":"{keyid}","sig":"{sig}"}}' for keyid, sig in sigs)
        head = f'{{"payload":"{payload_b64}","payloadType":"{payload_type}"'
        return f'{head},"signatures":[{items}]}}'.encode()
    obj = {
        "payloadType": payload_type,
        "payload": payload_b64,
        "signatures": [{"keyid": keyid, "sig": sig} for keyid, sig in sigs],
    }
    return rfc8785.dumps(obj)


class RecordSigner(Protocol):
    """Signs PAE bytes with both record keys somewhere else (a worker process, an HSM)."""

    @property
    def record_key_ids(self) -> tuple[str, str]:
        """``(ecdsa key id, ml-dsa key id)`` of the keys it signs with."""
        ...

    def sign_record(self, message: bytes) -> tuple[bytes, bytes]:
        """``(ECDSA P-256 DER signature, ML-DSA-65 signature)`` over ``message``."""
        ...


def sign_pae(message: bytes, keys: RecordKeys) -> tuple[bytes, bytes]:
    """``(ECDSA P-256 DER signature, ML-DSA-65 signature)`` of a PAE with the record keys."""
    return keys.ecdsa.sign(message, _DETERMINISTIC_ECDSA), keys.mldsa.sign(message)


def sign_envelope(payload: bytes, keys: RecordKeys, payload_type: str = PAYLOAD_TYPE) -> Envelope:
    """Sign ``PAE(payload_type, payload)`` with both record keys.

    ECDSA P-256/SHA-256 is deterministic (RFC 6979) and DER-encoded; ML-DSA-65 is pure with
    an empty context. The envelope bytes are its JCS serialisation.
    """
    ecdsa_sig, mldsa_sig = sign_pae(pae(payload_type, payload), keys)
    return assemble_envelope(payload, _key_ids(keys), ecdsa_sig, mldsa_sig, payload_type)


def sign_envelope_with(
    payload: bytes, signer: RecordSigner, payload_type: str = PAYLOAD_TYPE
) -> Envelope:
    """:func:`sign_envelope` with the signatures made by ``signer``."""
    ecdsa_sig, mldsa_sig = signer.sign_record(pae(payload_type, payload))
    return assemble_envelope(payload, signer.record_key_ids, ecdsa_sig, mldsa_sig, payload_type)


def assemble_envelope(
    payload: bytes,
    key_ids: tuple[str, str],
    ecdsa_sig: bytes,
    mldsa_sig: bytes,
    payload_type: str = PAYLOAD_TYPE,
) -> Envelope:
    """The DSSE envelope of ``payload`` carrying both signatures (ECDSA first)."""
    ecdsa_id, mldsa_id = key_ids
    raw = _envelope_json(
        payload_type,
        b64encode(payload),
        [(ecdsa_id, b64encode(ecdsa_sig)), (mldsa_id, b64encode(mldsa_sig))],
    )
    signatures = (
        EnvelopeSignature(ecdsa_id, ecdsa_sig),
        EnvelopeSignature(mldsa_id, mldsa_sig),
    )
    return Envelope(payload_type, payload, signatures, raw)


@dataclass(frozen=True)
class SignedRecord:
    """A statement, its JCS payload and the signed envelope, ready to append."""

    kind: str
    statement: dict[str, Any]
    payload: bytes
    envelope: Envelope
    ecdsa_sig: bytes
    mldsa_sig: bytes

    @property
    def predicate_type(self) -> str:
        return self.statement["predicateType"]

    @property
    def action(self) -> str:
        return self.statement["predicate"]["action"]

    @property
    def pae_hash(self) -> bytes:
        return hashlib.sha256(self.envelope.pae()).digest()


def make_record(
    kind: str,
    action: str,
    actor: str,
    subject: Iterable[Subject | Mapping[str, Any] | Sequence[str]],
    fields: Mapping[str, Any] | None,
    keys: RecordKeys | RecordSigner,
) -> SignedRecord:
    """Build, serialise and sign one record (with the keys, or by a :class:`RecordSigner`)."""
    statement, payload = _statement_and_payload(kind, action, actor, subject, fields)
    if isinstance(keys, RecordKeys):
        envelope = sign_envelope(payload, keys)
    else:
        envelope = sign_envelope_with(payload, keys)
    return SignedRecord(
        kind=kind,
        statement=statement,
        payload=payload,
        envelope=envelope,
        ecdsa_sig=envelope.signatures[0].sig,
        mldsa_sig=envelope.signatures[1].sig,
    )
