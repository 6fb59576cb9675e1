"""The ledger: signed-before-the-fact, hash-chained, Merkle-attested records (DESIGN §4).

```python
ledger = Ledger.open("lineage-audit.db", "keys")
with ledger.action("baseline.fit", actor="alice", subject=[("corpus", sha)]) as act:
    ...                        # runs only after the signed intent is durable
    act.result = {"rows": 10}  # recorded in the outcome
ledger.checkpoint()
bundle = ledger.evidence_bundle([act.intent.seq, act.outcome.seq])
```
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from . import _vcore
from .bundle import build_bundle
from .checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint, verify_checkpoint
from .errors import (
    CheckpointConflict,
    CheckpointError,
    ConsistencyError,
    FormatError,
    KeyMismatchError,
    LedgerError,
    ProofError,
)
from .groupcommit import GroupCommit
from .keys import KeyRing, PublicKeys, load_keyring
from .merkle import consistency_proof, inclusion_proof, root_hash
from .proofs import format_consistency, format_tlog_proof
from .records import Envelope, Subject, make_record, rfc3339_now
from .signer import ProcessSigner
from .store import LedgerStore, PendingEntry, SQLiteStore, StoredCheckpoint, StoredEntry
from .tiles import TilesExport, export_tiles

__all__ = ["Action", "Entry", "Ledger", "RecordSpec"]

SubjectLike = Subject | Mapping[str, Any] | Sequence[str]
MAX_ERROR_MESSAGE = 4096


@dataclass(frozen=True)
class Entry:
    """An appended record: its place in the log and the stored bytes."""

    seq: int
    leaf_hash: bytes
    leaf_input: bytes
    envelope: bytes
    predicate_type: str
    action: str
    created_at: str

    @classmethod
    def from_stored(cls, stored: StoredEntry) -> Entry:
        return cls(
            seq=stored.seq,
            leaf_hash=stored.leaf_hash,
            leaf_input=stored.leaf_input,
            envelope=stored.envelope,
            predicate_type=stored.predicate_type,
            action=stored.action,
            created_at=stored.created_at,
        )

    @property
    def leaf_hash_hex(self) -> str:
        return self.leaf_hash.hex()

    @property
    def kind(self) -> str:
        return self.predicate_type.removeprefix(
            "https://lineage-audit.dev/predicate/"
        ).removesuffix("/v1")

    def parsed_envelope(self) -> Envelope:
        return Envelope.from_bytes(self.envelope, f"entries[{self.seq}].envelope")

    def statement(self) -> dict[str, Any]:
        """The in-toto statement (decoded payload)."""
        return self.parsed_envelope().statement()

    def ref(self) -> dict[str, Any]:
        """``{"seq", "leaf_hash"}``: how an outcome refers to its intent."""
        return {"seq": self.seq, "leaf_hash": self.leaf_hash_hex}


@dataclass(frozen=True)
class RecordSpec:
    """One record for :meth:`Ledger.append_many`."""

    kind: str
    action: str
    actor: str
    subject: Sequence[SubjectLike] = ()
    fields: Mapping[str, Any] | None = None


class Action:
    """Write-ahead context manager returned by :meth:`Ledger.action`.

    ``__enter__`` appends the signed intent and returns only once it is committed (if that
    fails, the exception propagates and the body never runs). ``__exit__`` appends the
    outcome: ``succeeded`` with ``result``, or ``failed`` with ``error`` before the body's
    exception is re-raised.
    """

    def __init__(
        self,
        ledger: Ledger,
        action: str,
        actor: str,
        subject: Sequence[SubjectLike],
        fields: Mapping[str, Any],
    ) -> None:
        self._ledger = ledger
        self.action = action
        self.actor = actor
        self.subject = [Subject.of(item) for item in subject]
        self.fields = dict(fields)
        self.intent: Entry | None = None
        self.outcome: Entry | None = None
        self.result: Any = None

    def __enter__(self) -> Action:
        if self.intent is not None:
            raise LedgerError(
                f"action {self.action!r}: already entered (intent seq {self.intent.seq})"
            )
        self.intent = self._ledger.append(
            "intent", self.action, self.actor, self.subject, self.fields
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self.intent is None:
            raise LedgerError(f"action {self.action!r}: exited without entering")
        fields: dict[str, Any] = {"intent": self.intent.ref()}
        if exc is None:
            fields["status"] = "succeeded"
            if self.result is not None:
                fields["result"] = self.result
            self.outcome = self._ledger.append(
                "outcome", self.action, self.actor, self.subject, fields
            )
            return False
        fields["status"] = "failed"
        fields["error"] = {"type": _qualified_name(type(exc)), "message": _message(exc)}
        try:
            self.outcome = self._ledger.append(
                "outcome", self.action, self.actor, self.subject, fields
            )
        except Exception as record_exc:  # the body's exception wins; say what went wrong
            exc.add_note(
                f"lineage-audit: the failed outcome of intent seq {self.intent.seq} could not "
                f"be recorded: {record_exc}"
            )
        return False


def _qualified_name(cls: type[BaseException]) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _message(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= MAX_ERROR_MESSAGE else text[: MAX_ERROR_MESSAGE - 3] + "..."


@dataclass
class Ledger:
    """A ledger over a :class:`LedgerStore`, signing with an optional :class:`KeyRing`.

    Without a key ring (or ``signer``) the ledger is read-only (proofs, bundles, exports).
    The public keys are recorded in the store on first use; keys that do not match them are
    refused. One ledger may be shared by many threads: each signs in its own thread, and
    appends that arrive together are committed in one transaction
    (:class:`.groupcommit.GroupCommit`). With a :class:`.signer.ProcessSigner` instead of a
    key ring, signing happens in the signer's worker process (which holds the private keys),
    so one thread's signing overlaps another's commit; the ledger closes the signer.
    """

    store: LedgerStore
    keyring: KeyRing | None = None
    public_keys: PublicKeys | None = field(default=None)
    signer: ProcessSigner | None = field(default=None)
    _commit: GroupCommit = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._commit = GroupCommit(self.store)

    @classmethod
    def open(
        cls,
        db_path: str | os.PathLike[str],
        keys: str | os.PathLike[str] | KeyRing | None = None,
        *,
        read_only: bool = False,
        signer: str = "inline",
    ) -> Ledger:
        """Open (creating unless ``read_only``) the SQLite ledger at ``db_path``.

        ``signer="inline"`` (default) signs in the calling thread with the loaded key ring;
        ``signer="process"`` starts a :class:`.signer.ProcessSigner` that loads the key
        directory ``keys`` in a worker process (this process then holds no private key).
        """
        if signer not in ("inline", "process"):
            raise LedgerError(f"signer: {signer!r}; expected 'inline' or 'process'")
        if signer == "process":
            return cls._open_with_process_signer(db_path, keys, read_only)
        keyring = keys if isinstance(keys, KeyRing) or keys is None else load_keyring(keys)
        store = SQLiteStore(db_path, read_only=read_only)
        try:
            return cls.from_store(store, keyring)
        except BaseException:
            store.close()
            raise

    @classmethod
    def _open_with_process_signer(
        cls,
        db_path: str | os.PathLike[str],
        keys: str | os.PathLike[str] | KeyRing | None,
        read_only: bool,
    ) -> Ledger:
        if keys is None or isinstance(keys, KeyRing):
            raise LedgerError(
                "signer='process': pass the key directory (the worker loads the keys itself)"
            )
        store = SQLiteStore(db_path, read_only=read_only)
        try:
            process_signer = ProcessSigner(keys)
        except BaseException:
            store.close()
            raise
        try:
            return cls.from_store(store, signer=process_signer)
        except BaseException:
            process_signer.close()
            store.close()
            raise

    @classmethod
    def from_store(
        cls,
        store: LedgerStore,
        keyring: KeyRing | None = None,
        *,
        signer: ProcessSigner | None = None,
    ) -> Ledger:
        """Bind ``keyring`` or ``signer`` to ``store`` (recording public keys on first use)."""
        if keyring is not None and signer is not None:
            raise LedgerError("keys: give a key ring or a signer, not both")
        recorded = store.get_meta("public_keys")
        public = None
        if recorded is not None:
            try:
                public = PublicKeys.from_json(json.loads(recorded))
            except (ValueError, FormatError) as exc:
                raise LedgerError(f"meta.public_keys: unreadable ({exc})") from None
        holder = signer if signer is not None else keyring
        if holder is not None:
            mine = holder.public_keys()
            if public is None:
                if not store.read_only:
                    store.set_meta("public_keys", json.dumps(mine.to_json(), sort_keys=True))
                public = mine
            elif public != mine:
                raise KeyMismatchError(
                    "keys: not the keys this ledger was created with (ledger record keys "
                    f"{public.record_ecdsa_key_id}, {public.record_mldsa_key_id}; given "
                    f"{mine.record_ecdsa_key_id}, {mine.record_mldsa_key_id})"
                )
        return cls(store=store, keyring=keyring, public_keys=public, signer=signer)

    def close(self) -> None:
        try:
            if self.signer is not None:
                self.signer.close()
        finally:
            self.store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ----------------------------------------------------------------------

    def _require_keyring(self) -> KeyRing:
        if self.keyring is None:
            raise LedgerError("keys: this ledger was opened without signing keys")
        return self.keyring

    def _pending(self, spec: RecordSpec) -> PendingEntry:
        keys = self.signer if self.signer is not None else self._require_keyring().record
        record = make_record(spec.kind, spec.action, spec.actor, spec.subject, spec.fields, keys)
        return PendingEntry(
            envelope=record.envelope.raw,
            pae_hash=record.pae_hash,
            ecdsa_sig_hash=hashlib.sha256(record.ecdsa_sig).digest(),
            mldsa_sig_hash=hashlib.sha256(record.mldsa_sig).digest(),
            predicate_type=record.predicate_type,
            action=record.action,
            created_at=rfc3339_now(),
        )

    def append(
        self,
        kind: str,
        action: str,
        actor: str,
        subject: Iterable[SubjectLike] = (),
        fields: Mapping[str, Any] | None = None,
    ) -> Entry:
        """Sign one record and append it durably; returns once it is committed."""
        spec = RecordSpec(kind, action, actor, list(subject), fields)
        return self.append_many([spec])[0]

    def append_many(self, specs: Iterable[RecordSpec]) -> list[Entry]:
        """Sign several records and append them in one transaction (all or nothing).

        Signing runs in the caller's thread (or in the signer process, the caller waiting);
        the records may share their transaction with other threads' records (contiguous
        seqs all the same). Returns once it committed. If signing fails nothing is written.
        """
        pending = [self._pending(spec) for spec in specs]
        return [Entry.from_stored(item) for item in self._commit.append(pending)]

    def action(
        self, action: str, *, actor: str, subject: Sequence[SubjectLike] = (), **fields: Any
    ) -> Action:
        """Write-ahead context manager: intent before the body, outcome after it."""
        return Action(self, action, actor, subject, fields)

    def checkpoint(self) -> Checkpoint:
        """Sign and store a checkpoint of the current tree (both checkpoint keys).

        Before signing, the new tree is checked against the latest stored checkpoint with a
        consistency proof; an inconsistent tree is refused (:class:`ConsistencyError`), so
        the log never signs two inconsistent checkpoints. If the latest checkpoint already
        has the current size it is returned unchanged.
        """
        if self.signer is None:
            self._require_keyring()
        for _ in range(5):
            size = self.store.size()
            if size == 0:
                raise CheckpointError("checkpoint: the ledger is empty; nothing to sign")
            latest = self.store.latest_checkpoint()
            root = self.root(size)
            if latest is not None:
                previous = self._check_extends(latest, size, root)
                if latest.size == size:
                    return previous
            note = self._sign_checkpoint(size, root)
            try:
                self.store.add_checkpoint(
                    size,
                    root,
                    note,
                    rfc3339_now(),
                    expected_latest=None if latest is None else latest.size,
                )
            except CheckpointConflict:
                continue
            return parse_checkpoint(note)
        raise CheckpointError("checkpoint: too many concurrent checkpoint writers; retry")

    def _sign_checkpoint(self, size: int, root: bytes) -> str:
        if self.signer is not None:
            return self.signer.sign_checkpoint(size, root)
        return sign_checkpoint(size, root, self._require_keyring().checkpoint)

    def _check_extends(self, latest: StoredCheckpoint, size: int, root: bytes) -> Checkpoint:
        """Refuse unless the tree of ``size`` leaves is consistent with ``latest``."""
        keys = self._require_public_keys()
        try:
            previous = verify_checkpoint(latest.note, keys)
        except LedgerError as exc:
            raise ConsistencyError(
                f"checkpoint: the latest stored checkpoint (size {latest.size}) does not verify "
                f"with this ledger's keys ({exc}); refusing to sign"
            ) from None
        if previous.size != latest.size or previous.root != latest.root:
            raise ConsistencyError(
                f"checkpoint: stored checkpoint row (size {latest.size}) disagrees with its "
                "signed note; refusing to sign"
            )
        if latest.size > size:
            raise ConsistencyError(
                f"checkpoint: the latest checkpoint has size {latest.size} but the ledger has "
                f"{size} entries; refusing to sign a smaller tree"
            )
        proof = self.consistency_proof(latest.size, size)
        if not _vcore.verify_consistency(latest.size, size, proof, previous.root, root):
            raise ConsistencyError(
                f"checkpoint: the tree of size {size} is not consistent with the signed "
                f"checkpoint of size {latest.size}; refusing to sign"
            )
        return previous

    # --- reading ----------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of entries."""
        return self.store.size()

    def _require_public_keys(self) -> PublicKeys:
        if self.public_keys is None:
            raise LedgerError("keys: this ledger has no recorded public keys (no entries yet)")
        return self.public_keys

    def entry(self, seq: int) -> Entry:
        return Entry.from_stored(self.store.get_entry(seq))

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[Entry]:
        """Entries with ``start <= seq < end`` in order."""
        for stored in self.store.iter_entries(start, end):
            yield Entry.from_stored(stored)

    def entries_of(self, names: Sequence[str] = (), prefixes: Sequence[str] = ()
                   ) -> Iterator[Entry]:  # fmt: skip
        """Entries whose action is one of ``names`` or starts with one of ``prefixes``, in
        order, without reading the others (the store's action index)."""
        for stored in self.store.iter_actions(names, prefixes):
            yield Entry.from_stored(stored)

    def root(self, size: int | None = None) -> bytes:
        """The Merkle root of the first ``size`` entries (default: all)."""
        current = self.store.size()
        size = current if size is None else size
        if not 0 <= size <= current:
            raise ProofError(f"size {size}: the ledger has {current} entries")
        return root_hash(size, self.store.get_nodes)

    def inclusion_proof(self, seq: int, tree_size: int | None = None) -> list[bytes]:
        """RFC 9162 inclusion proof of entry ``seq`` in the tree of ``tree_size`` leaves."""
        current = self.store.size()
        size = current if tree_size is None else tree_size
        if not 0 < size <= current:
            raise ProofError(f"tree_size {size}: the ledger has {current} entries")
        if not 0 <= seq < size:
            raise ProofError(f"seq {seq}: not in a tree of size {size}")
        return inclusion_proof(seq, size, self.store.get_nodes)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof from size ``old`` to ``new`` (default: current)."""
        current = self.store.size()
        new = current if new is None else new
        if not 0 < old <= new <= current:
            raise ProofError(
                f"consistency {old}->{new}: need 0 < old <= new <= {current} (ledger size)"
            )
        return consistency_proof(old, new, self.store.get_nodes)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return self.store.latest_checkpoint()

    def checkpoints(self) -> list[StoredCheckpoint]:
        return self.store.checkpoints()

    def _stored_checkpoint(self, size: int | None) -> StoredCheckpoint:
        if size is None:
            found = self.store.latest_checkpoint()
            if found is None:
                raise CheckpointError(
                    "checkpoint: none stored yet; sign one first "
                    "(`lineage-audit ledger checkpoint`)"
                )
            return found
        found = self.store.get_checkpoint(size)
        if found is None:
            sizes = [cp.size for cp in self.store.checkpoints()]
            raise CheckpointError(f"checkpoint: no stored checkpoint of size {size} (have {sizes})")
        return found

    def consistency_text(self, old: int, new: int | None = None) -> str:
        """The consistency proof as text (``old <n>`` then base64 lines)."""
        return format_consistency(old, self.consistency_proof(old, new))

    def tlog_proof(self, seq: int, checkpoint: int | None = None) -> str:
        """A ``c2sp.org/tlog-proof@v1`` for ``seq`` against a stored checkpoint."""
        cp = self._stored_checkpoint(checkpoint)
        if not 0 <= seq < cp.size:
            raise ProofError(
                f"seq {seq}: not covered by the checkpoint of size {cp.size}; sign a newer one"
            )
        entry = self.store.get_entry(seq)
        path = inclusion_proof(seq, cp.size, self.store.get_nodes)
        return format_tlog_proof(entry.leaf_input, seq, path, cp.note)

    def evidence_bundle(
        self,
        seqs: Iterable[int],
        checkpoint: int | None = None,
        since: int | None = None,
        kind: str = "evidence",
    ) -> dict[str, Any]:
        """An evidence bundle (docs §6) for ``seqs`` against a stored checkpoint.

        ``checkpoint`` selects a stored checkpoint by size (default: the latest); ``since``
        names an older stored checkpoint size to include a consistency proof from.
        """
        cp = self._stored_checkpoint(checkpoint)
        wanted = []
        for seq in seqs:
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
                raise FormatError("seqs", "expected non-negative integers", seq)
            if seq >= cp.size:
                raise ProofError(
                    f"seq {seq}: not covered by the checkpoint of size {cp.size}; "
                    "sign a newer checkpoint first"
                )
            wanted.append(seq)
        if not wanted:
            raise FormatError("seqs", "at least one entry is needed")
        items = [
            (self.store.get_entry(seq), inclusion_proof(seq, cp.size, self.store.get_nodes))
            for seq in sorted(set(wanted))
        ]
        consistency = None
        if since is not None:
            old = self._stored_checkpoint(since)
            if old.size > cp.size:
                raise ProofError(
                    f"since {since}: newer than the bundle's checkpoint (size {cp.size})"
                )
            consistency = (old.note, consistency_proof(old.size, cp.size, self.store.get_nodes))
        return build_bundle(cp.note, self._require_public_keys(), items, consistency, kind)

    def export_tiles(
        self, directory: str | os.PathLike[str], checkpoint: int | None = None
    ) -> TilesExport:
        """Write the c2sp.org/tlog-tiles layout of a stored checkpoint's tree."""
        return export_tiles(self.store, self._stored_checkpoint(checkpoint), Path(directory))
