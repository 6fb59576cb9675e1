"""Whole-database audit of a SQLite ledger with the independent verifier primitives.

:func:`verify_ledger` reads the database read-only, in one snapshot, and runs three passes:

1. entries, in seq order, in batches: :func:`check_envelopes` (envelope shape, both
   signatures, leaf input binding, stored leaf hash, indexed columns) and
   :func:`check_chain` (contiguous seqs, ``prev_leaf_hash`` links);
2. :func:`check_tree`: every stored complete-subtree node against recomputation, and no
   node beyond the tree;
3. :func:`check_checkpoints`: each stored checkpoint's signatures, its row against its note,
   and its root against the root recomputed over its first ``size`` entries. All roots are
   recomputed from the one log, so matching roots are mutually consistent by construction.

It reports the first failure (lowest seq within a pass) with its reason. The passes are
plain functions over rows so that a faster backend can replace any one of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from . import _vcore as v
from .errors import FormatError, StoreError

__all__ = [
    "LEDGER_REASONS",
    "EntryRow",
    "Finding",
    "LedgerReport",
    "SQLiteNodeSource",
    "check_chain",
    "check_checkpoints",
    "check_envelopes",
    "check_tree",
    "resolve_engine",
    "verify_ledger",
]

LEDGER_REASONS = (
    "sequence",
    "envelope_malformed",
    "signature_missing",
    "envelope_signature",
    "leaf_mismatch",
    "leaf_hash",
    "chain",
    "metadata",
    "tree",
    "checkpoint_signature",
    "consistency",
)
_ORDER = {reason: i for i, reason in enumerate(LEDGER_REASONS)}
_BATCH = 2048
_TRIGGERS = tuple(
    f"{table}_no_{op}"
    for table in ("meta", "entries", "nodes", "checkpoints")
    for op in ("update", "delete")
)


@dataclass(frozen=True)
class Finding:
    """One failed check: ``seq`` names the entry (None for checkpoint-level failures)."""

    reason: str
    seq: int | None
    message: str
    checkpoint_size: int | None = None

    def key(self) -> tuple[int, int]:
        return (-1 if self.seq is None else self.seq, _ORDER.get(self.reason, 99))


@dataclass(frozen=True)
class EntryRow:
    seq: int
    leaf_input: bytes
    leaf_hash: bytes
    envelope: bytes
    predicate_type: str
    action: str


@dataclass(frozen=True)
class LedgerReport:
    """Result of :func:`verify_ledger`."""

    valid: bool
    reason: str | None
    seq: int | None
    message: str
    entries: int
    checkpoints: int
    checkpoint_size: int | None = None
    warnings: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return 0 if self.valid else 1

    def line(self) -> str:
        return v.verdict_line(self.valid, self.reason, self.seq, self.message)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        return data


def _first(findings: Iterable[Finding | None]) -> Finding | None:
    present = [f for f in findings if f is not None]
    return min(present, key=Finding.key) if present else None


# --- pass 1: entries ------------------------------------------------------------------------


def _check_one(row: EntryRow, keys: v.TrustedKeys, signatures_verified: bool) -> Finding | None:
    """All per-entry checks; the signature maths is skipped if the Rust pass already did it."""
    seq = row.seq
    try:
        env = json.loads(row.envelope)
        if not isinstance(env, dict):
            raise FormatError("envelope", "expected a JSON object", type(env).__name__)
        payload_type = env.get("payloadType")
        if not isinstance(payload_type, str):
            raise FormatError("envelope.payloadType", "expected a string", payload_type)
        payload = v.b64(env.get("payload"), "envelope.payload")
        sigs = env.get("signatures")
        if not isinstance(sigs, list):
            raise FormatError("envelope.signatures", "expected a list", sigs)
        by_id: dict[str, bytes] = {}
        for i, item in enumerate(sigs):
            if not isinstance(item, dict) or not isinstance(item.get("keyid"), str):
                raise FormatError(f"envelope.signatures[{i}]", "expected {keyid, sig}", item)
            by_id.setdefault(item["keyid"], v.b64(item.get("sig"), f"envelope.signatures[{i}].sig"))
    except (ValueError, RecursionError) as exc:
        return Finding("envelope_malformed", seq, f"stored envelope is malformed: {exc}")
    ecdsa_sig = by_id.get(keys.record_ecdsa_id)
    mldsa_sig = by_id.get(keys.record_mldsa_id)
    if ecdsa_sig is None:
        return Finding("signature_missing", seq, f"no signature with keyid {keys.record_ecdsa_id}")
    if mldsa_sig is None:
        return Finding("signature_missing", seq, f"no signature with keyid {keys.record_mldsa_id}")
    message = v.pae(payload_type, payload)
    if not signatures_verified:
        if not v.ecdsa_ok(keys.record_ecdsa, ecdsa_sig, message):
            return Finding("envelope_signature", seq, "ECDSA P-256 signature does not verify")
        if not v.mldsa_ok(keys.record_mldsa, mldsa_sig, message):
            return Finding("envelope_signature", seq, "ML-DSA-65 signature does not verify")
    leaf = v.parse_leaf(row.leaf_input)
    sha = hashlib.sha256
    if leaf is None:
        return Finding("leaf_mismatch", seq, "leaf input is not a 158-byte lineage-audit/leaf/v1")
    if leaf.seq != seq:
        return Finding("leaf_mismatch", seq, f"leaf input seq field is {leaf.seq}")
    if leaf.pae_hash != sha(message).digest():
        return Finding("leaf_mismatch", seq, "leaf input does not commit to the envelope payload")
    if leaf.ecdsa_hash != sha(ecdsa_sig).digest() or leaf.mldsa_hash != sha(mldsa_sig).digest():
        return Finding("leaf_mismatch", seq, "leaf input does not commit to the signatures")
    if row.leaf_hash != v.leaf_hash(row.leaf_input):
        return Finding("leaf_hash", seq, "stored leaf_hash is not SHA-256(0x00 || leaf_input)")
    try:
        statement = json.loads(payload)
        predicate_type = statement["predicateType"]
        action = statement["predicate"]["action"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return Finding("metadata", seq, "signed payload is not an in-toto statement")
    if predicate_type != row.predicate_type or action != row.action:
        return Finding(
            "metadata",
            seq,
            f"indexed columns ({row.predicate_type!r}, {row.action!r}) differ from the signed "
            f"statement ({predicate_type!r}, {action!r})",
        )
    return None


def check_envelopes(
    rows: Sequence[EntryRow], keys: v.TrustedKeys, engine: str = "python"
) -> Finding | None:
    """Per-entry checks; the finding of the lowest seq (None if all pass).

    With ``engine="rust"`` the two signatures of every envelope are verified in parallel by
    the Rust extension first (the expensive part); the remaining checks run here.
    """
    rust = _rust_signature_findings(rows, keys) if engine == "rust" else None
    for i, row in enumerate(rows):
        finding = rust[i] if rust is not None else None
        if finding is None:
            finding = _check_one(row, keys, signatures_verified=rust is not None)
        if finding is not None:
            return finding
    return None


_RUST_REASONS = {"malformed": "envelope_malformed"}


def _rust_signature_findings(rows: Sequence[EntryRow], keys: v.TrustedKeys) -> list[Finding | None]:
    from .. import _merkle_verify as ext

    spki = keys.record_ecdsa.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    results = ext.verify_envelopes(
        [row.envelope for row in rows], spki, keys.record_mldsa.public_bytes_raw()
    )
    findings: list[Finding | None] = []
    for row, error in zip(rows, results, strict=True):
        if error is None:
            findings.append(None)
            continue
        reason, _, message = error.partition(": ")
        findings.append(Finding(_RUST_REASONS.get(reason, reason), row.seq, message))
    return findings


def resolve_engine(engine: str) -> str:
    """``auto`` means the Rust extension when it is built, else pure Python."""
    if engine not in ("auto", "rust", "python"):
        raise FormatError("engine", "expected auto, rust or python", engine)
    if engine == "python":
        return engine
    try:
        from .. import _merkle_verify  # noqa: F401
    except ImportError:
        if engine == "rust":
            raise StoreError("engine rust: the extension is not built (run `make setup`)") from None
        return "python"
    return "rust"


def check_chain(
    rows: Sequence[EntryRow], expected_seq: int, prev_hash: bytes
) -> tuple[Finding | None, int, bytes]:
    """Contiguity and hash-chain links; returns (finding, next expected seq, last leaf hash).

    Links use leaf hashes recomputed from the leaf inputs, not the stored column.
    """
    for row in rows:
        if row.seq != expected_seq:
            return (
                Finding(
                    "sequence", expected_seq, f"entry {expected_seq} is missing (next is {row.seq})"
                ),
                expected_seq,
                prev_hash,
            )
        leaf = v.parse_leaf(row.leaf_input)
        if leaf is not None and leaf.prev != prev_hash:
            what = "all zeros" if row.seq == 0 else f"the leaf hash of entry {row.seq - 1}"
            return (
                Finding("chain", row.seq, f"prev_leaf_hash is not {what}"),
                expected_seq,
                prev_hash,
            )
        prev_hash = v.leaf_hash(row.leaf_input)
        expected_seq += 1
    return None, expected_seq, prev_hash


# --- pass 2: tree ---------------------------------------------------------------------------


class SQLiteNodeSource:
    """Stored nodes of one snapshot, streamed level by level in index order."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._cursors: dict[int, sqlite3.Cursor] = {}

    def next_node(self, level: int) -> tuple[int, bytes] | None:
        cursor = self._cursors.get(level)
        if cursor is None:
            cursor = self._conn.execute(
                "SELECT idx, hash FROM nodes WHERE level = ? ORDER BY idx", (level,)
            )
            self._cursors[level] = cursor
        row = cursor.fetchone()
        return None if row is None else (int(row[0]), _blob(row[1]))

    def close(self) -> None:
        """Finish the open statements (so the connection really closes)."""
        for cursor in self._cursors.values():
            cursor.close()
        self._cursors.clear()

    def node_beyond(self, size: int) -> tuple[int, int] | None:
        """A stored node that a tree of ``size`` leaves does not have."""
        row = self._conn.execute(
            "SELECT level, idx FROM nodes WHERE idx >= (? >> level) ORDER BY level, idx LIMIT 1",
            (size,),
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))


def check_tree(
    leaf_hashes: Iterable[bytes], nodes: SQLiteNodeSource, want_roots: Iterable[int] = ()
) -> tuple[Finding | None, dict[int, bytes]]:
    """Compare stored nodes with the tree recomputed from ``leaf_hashes``.

    Returns the first finding and the recomputed roots at the sizes in ``want_roots``.
    """
    wanted = set(want_roots)
    roots: dict[int, bytes] = {}
    acc = v.RootAccumulator()
    if 0 in wanted:
        roots[0] = v.EMPTY_ROOT
    for lh in leaf_hashes:
        for level, idx, value in acc.push(lh):
            first_leaf = idx << level
            stored = nodes.next_node(level)
            if stored is None or stored[0] > idx:
                return Finding("tree", first_leaf, f"tree node ({level}, {idx}) is missing"), roots
            if stored[0] < idx:
                return (
                    Finding(
                        "tree", stored[0] << level, f"unexpected tree node ({level}, {stored[0]})"
                    ),
                    roots,
                )
            if stored[1] != value:
                message = f"stored tree node ({level}, {idx}) differs from recomputation"
                return Finding("tree", first_leaf, message), roots
        if acc.size in wanted:
            roots[acc.size] = acc.root()
    extra = nodes.node_beyond(acc.size)
    if extra is not None:
        level, idx = extra
        return (
            Finding(
                "tree",
                max(acc.size, idx << level),
                f"tree node ({level}, {idx}) lies beyond the {acc.size} stored entries "
                "(entries were removed?)",
            ),
            roots,
        )
    return None, roots


# --- pass 3: checkpoints --------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointRow:
    size: int
    root: bytes
    note: str


def check_checkpoints(
    rows: Sequence[CheckpointRow], roots: Mapping[int, bytes], size: int, keys: v.TrustedKeys
) -> Finding | None:
    """Signatures, row-vs-note agreement and roots of the stored checkpoints (by size)."""
    for row in rows:
        try:
            note = v.verify_note(row.note, keys)
        except v.NoteError as exc:
            return Finding(
                "checkpoint_signature", None, f"checkpoint of size {row.size}: {exc}", row.size
            )
        if note.size != row.size or note.root != row.root:
            return Finding(
                "checkpoint_signature",
                None,
                f"checkpoint row (size {row.size}) disagrees with its signed note "
                f"(size {note.size})",
                row.size,
            )
        if note.size > size:
            return Finding(
                "consistency",
                size,
                f"signed checkpoint of size {note.size} but only {size} entries are stored "
                f"(entries from seq {size} are gone)",
                row.size,
            )
        if roots.get(note.size) != note.root:
            return Finding(
                "consistency",
                None,
                f"signed checkpoint of size {note.size} has a root that is not the root of the "
                f"first {note.size} entries (the log was rewritten or forked)",
                row.size,
            )
    return None


# --- driver ---------------------------------------------------------------------------------


def _trusted(public_keys: object) -> v.TrustedKeys:
    if isinstance(public_keys, str | os.PathLike):
        path = Path(public_keys)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise FormatError(f"public keys {path}", f"unreadable ({exc})") from None
        return v.parse_keys(obj, str(path), require_format=True)
    if hasattr(public_keys, "to_json"):
        public_keys = public_keys.to_json()
    return v.parse_keys(public_keys, "public keys")


def _blob(value: object) -> bytes:
    """A column as bytes, whatever type a tamperer left in it (TEXT, NULL, numbers)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if value is None:
        return b""
    return str(value).encode("utf-8", "surrogatepass")


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def _rows(conn: sqlite3.Connection) -> Iterator[list[EntryRow]]:
    last = -1
    while True:
        batch = conn.execute(
            "SELECT seq, leaf_input, leaf_hash, envelope, predicate_type, action FROM entries "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (last, _BATCH),
        ).fetchall()
        if not batch:
            return
        yield [
            EntryRow(int(s), _blob(li), _blob(lh), _blob(env), _text(pt), _text(act))
            for s, li, lh, env, pt, act in batch
        ]
        last = int(batch[-1][0])


def _open(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise StoreError(f"{path}: ledger database not found")
    try:
        conn = sqlite3.connect(
            path.absolute().as_uri() + "?mode=ro", uri=True, isolation_level=None
        )
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: not a readable SQLite database ({exc})") from None
    missing = {"entries", "nodes", "checkpoints"} - tables
    if missing:
        conn.close()
        raise StoreError(f"{path}: not a lineage-audit ledger (missing tables {sorted(missing)})")
    return conn


def verify_ledger(
    db_path: str | os.PathLike[str], public_keys: object, engine: str = "auto"
) -> LedgerReport:
    """Audit a whole ledger database against trusted ``public_keys``.

    ``public_keys`` is a public-keys file path, the parsed object, or a ``PublicKeys``.
    ``engine`` picks who verifies the signatures: ``rust`` (parallel, the extension),
    ``python`` (the independent pure-Python path) or ``auto``. Raises
    :class:`~.errors.LedgerError` for unusable input (bad keys, not a ledger).
    """
    engine = resolve_engine(engine)
    keys = _trusted(public_keys)
    path = Path(db_path)
    conn = _open(path)
    try:
        conn.execute("BEGIN")  # one snapshot for every pass
        triggers = {
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
        }
        warnings = [
            f"append-only trigger {name} is missing" for name in _TRIGGERS if name not in triggers
        ]
        checkpoints = [
            CheckpointRow(int(s), _blob(r), _text(n))
            for s, r, n in conn.execute("SELECT size, root, note FROM checkpoints ORDER BY size")
        ]

        def report(finding: Finding, entries: int) -> LedgerReport:
            return LedgerReport(
                valid=False,
                reason=finding.reason,
                seq=finding.seq,
                message=finding.message,
                entries=entries,
                checkpoints=len(checkpoints),
                checkpoint_size=finding.checkpoint_size,
                warnings=tuple(warnings),
            )

        expected, prev = 0, bytes(32)
        for batch in _rows(conn):
            chain, next_expected, next_prev = check_chain(batch, expected, prev)
            finding = _first([check_envelopes(batch, keys, engine), chain])
            if finding is not None:
                return report(finding, expected)
            expected, prev = next_expected, next_prev
        size = expected

        leaf_cursor = conn.execute("SELECT leaf_input FROM entries ORDER BY seq")
        nodes = SQLiteNodeSource(conn)
        try:
            leaves = (v.leaf_hash(_blob(row[0])) for row in leaf_cursor)
            finding, roots = check_tree(leaves, nodes, [c.size for c in checkpoints])
        finally:
            leaf_cursor.close()
            nodes.close()
        if finding is not None:
            return report(finding, size)
        finding = check_checkpoints(checkpoints, roots, size, keys)
        if finding is not None:
            return report(finding, size)
        if not checkpoints:
            warnings.append("no checkpoint stored: nothing is attested outside this database yet")
        elif checkpoints[-1].size < size:
            warnings.append(
                f"{size - checkpoints[-1].size} entries after the latest checkpoint "
                f"(size {checkpoints[-1].size}) are not yet covered by a signed checkpoint"
            )
        latest = checkpoints[-1].size if checkpoints else None
        message = f"{size} entries, {len(checkpoints)} checkpoint(s)" + (
            f", latest at size {latest}" if latest is not None else ""
        )
        return LedgerReport(
            True, None, None, message, size, len(checkpoints), latest, tuple(warnings)
        )
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: read failed ({exc})") from None
    except (TypeError, ValueError) as exc:  # columns of a type the schema does not allow
        raise StoreError(f"{path}: unexpected column contents ({exc})") from None
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")  # end the read snapshot
        conn.close()
