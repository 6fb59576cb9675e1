"""LedgerService: checkpoints, proofs, entries and evidence bundles of the audit ledger.

Every ledger call (SQLite reads, signing) runs in the executor so the event loop keeps
serving. Each RPC is one executor hop (GetEntries: one per chunk) through :meth:`_call`, which
turns exceptions into status codes (:func:`ledger_status`).

Tree sizes a proof is asked for must be sizes of signed checkpoints: a proof against a root
nobody signed proves nothing to a client, so those requests get NOT_FOUND.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from typing import NoReturn, TypeVar

import grpc

from .._generated.lineage_audit.v1 import ledger_pb2, ledger_pb2_grpc
from ..ledger import Ledger
from ..ledger.errors import (
    CheckpointConflict,
    CheckpointError,
    ConsistencyError,
    FormatError,
    KeyFileError,
    KeyMismatchError,
    LedgerError,
    ProofError,
    SignatureError,
    StoreError,
)
from ..ledger.records import canonical_json
from ..ledger.signer import SignerError
from ..ledger.store import StoredCheckpoint
from .auth import Authenticator
from .errors import RequestError, status_for

__all__ = [
    "DEFAULT_ENTRIES_CHUNK",
    "DEFAULT_MAX_BUNDLE_ENTRIES",
    "LEDGER_SERVICE",
    "LedgerServicer",
    "add_ledger_service",
    "ledger_status",
]

LEDGER_SERVICE = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name
DEFAULT_ENTRIES_CHUNK = 256
DEFAULT_MAX_BUNDLE_ENTRIES = 1000

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_Code = grpc.StatusCode

# Most specific first: subclasses precede their bases.
_LEDGER_CODES: tuple[tuple[type[LedgerError], grpc.StatusCode], ...] = (
    (FormatError, _Code.INVALID_ARGUMENT),
    (ProofError, _Code.INVALID_ARGUMENT),
    (ConsistencyError, _Code.DATA_LOSS),  # the stored tree contradicts a signed checkpoint
    (SignatureError, _Code.DATA_LOSS),
    (CheckpointConflict, _Code.ABORTED),  # a concurrent checkpoint writer won; retry
    (CheckpointError, _Code.FAILED_PRECONDITION),
    (SignerError, _Code.UNAVAILABLE),
    (StoreError, _Code.UNAVAILABLE),
    (KeyFileError, _Code.FAILED_PRECONDITION),
    (KeyMismatchError, _Code.FAILED_PRECONDITION),
    (LedgerError, _Code.FAILED_PRECONDITION),  # e.g. a ledger opened without signing keys
)


def ledger_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a client sees for ``exc`` raised while serving the ledger.

    Ledger errors keep their message (it names the field and value); anything else is
    INTERNAL with the exception type only (see :func:`.errors.status_for`).
    """
    if isinstance(exc, LedgerError):
        for kind, code in _LEDGER_CODES:
            if isinstance(exc, kind):
                return code, str(exc)
    return status_for(exc)


def _refuse(code: grpc.StatusCode, message: str) -> NoReturn:
    raise RequestError(code, message)


def _checkpoint_proto(size: int, root: bytes, note: str) -> ledger_pb2.Checkpoint:
    return ledger_pb2.Checkpoint(tree_size=size, root_hash=root, signed_note=note)


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    """The ``lineage_audit.v1.LedgerService`` over one :class:`~lineage_audit.ledger.Ledger`."""

    def __init__(
        self,
        ledger: Ledger,
        executor: Executor,
        *,
        entries_chunk: int = DEFAULT_ENTRIES_CHUNK,
        max_bundle_entries: int = DEFAULT_MAX_BUNDLE_ENTRIES,
        auth: Authenticator | None = None,
    ) -> None:
        if entries_chunk < 1 or max_bundle_entries < 1:
            raise ValueError("entries_chunk and max_bundle_entries must be at least 1")
        self.ledger = ledger
        self.executor = executor
        self.entries_chunk = entries_chunk
        self.max_bundle_entries = max_bundle_entries
        self.auth = auth

    async def _call(self, context: grpc.aio.ServicerContext, fn: Callable[..., _T], *args) -> _T:
        """``fn(*args)`` in the executor; an exception aborts the RPC with its status."""
        loop = asyncio.get_running_loop()
        try:
            if self.auth is not None:
                self.auth.identify(context)  # refused callers read nothing
            return await loop.run_in_executor(self.executor, functools.partial(fn, *args))
        except Exception as exc:
            code, message = ledger_status(exc)
            if code == _Code.INTERNAL:  # the client sees the type only; operators need more
                _log.error("LedgerService: unexpected error", exc_info=exc)
        await context.abort(code, message)
        raise AssertionError("unreachable: context.abort raises")

    # --- RPCs -------------------------------------------------------------------------------

    async def GetCheckpoint(self, request, context) -> ledger_pb2.Checkpoint:
        return await self._call(context, self._checkpoint, request.create)

    async def GetInclusionProof(self, request, context) -> ledger_pb2.InclusionProof:
        return await self._call(context, self._inclusion, request.seq, request.tree_size)

    async def GetConsistencyProof(self, request, context) -> ledger_pb2.ConsistencyProof:
        return await self._call(context, self._consistency, request.old_size, request.new_size)

    async def GetEntries(self, request, context) -> AsyncIterator[ledger_pb2.Entry]:
        end = await self._call(context, self._entries_end, request.start, request.end)
        for first in range(request.start, end, self.entries_chunk):
            last = min(first + self.entries_chunk, end)
            for entry in await self._call(context, self._entries, first, last):
                yield entry

    async def GetEvidenceBundle(self, request, context) -> ledger_pb2.EvidenceBundle:
        return await self._call(context, self._bundle, list(request.seqs), request.since)

    # --- blocking work (runs in the executor) -----------------------------------------------

    def _snapshot(self) -> tuple[StoredCheckpoint | None, int]:
        """The latest checkpoint, then the size (read second, so it is never below it)."""
        latest = self.ledger.latest_checkpoint()
        return latest, self.ledger.size

    def _covering(
        self, field: str, requested: int, size: int, latest: StoredCheckpoint | None
    ) -> StoredCheckpoint:
        """The stored checkpoint of tree size ``requested`` (0 = the latest one)."""
        if requested > size:
            _refuse(
                _Code.INVALID_ARGUMENT,
                f"{field} {requested}: beyond the end; the ledger has {size} entries",
            )
        if latest is None:
            _refuse(
                _Code.NOT_FOUND,
                f"{field}: no checkpoint is signed yet (the ledger has {size} entries); "
                "call GetCheckpoint with create=true",
            )
        if requested == 0:
            return latest
        found = self.ledger.store.get_checkpoint(requested)
        if found is None:
            _refuse(
                _Code.NOT_FOUND,
                f"{field} {requested}: no checkpoint of that size is signed (latest: size "
                f"{latest.size}; the ledger has {size} entries)",
            )
        return found

    def _checkpoint(self, create: bool) -> ledger_pb2.Checkpoint:
        if create:
            if self.ledger.size == 0:
                _refuse(
                    _Code.FAILED_PRECONDITION, "checkpoint: the ledger is empty; nothing to sign"
                )
            signed = self.ledger.checkpoint()
            return _checkpoint_proto(signed.size, signed.root, signed.note)
        latest = self.ledger.latest_checkpoint()
        if latest is None:
            _refuse(
                _Code.NOT_FOUND,
                "checkpoint: none is signed yet; call GetCheckpoint with create=true",
            )
        return _checkpoint_proto(latest.size, latest.root, latest.note)

    def _inclusion(self, seq: int, tree_size: int) -> ledger_pb2.InclusionProof:
        latest, size = self._snapshot()
        if seq >= size:
            _refuse(_Code.INVALID_ARGUMENT, f"seq {seq}: the ledger has {size} entries")
        cp = self._covering("tree_size", tree_size, size, latest)
        if seq >= cp.size and tree_size == 0:
            _refuse(
                _Code.NOT_FOUND,
                f"seq {seq}: not covered by the latest checkpoint (size {cp.size}); the ledger "
                f"has {size} entries; sign a newer checkpoint",
            )
        if seq >= cp.size:
            _refuse(
                _Code.INVALID_ARGUMENT,
                f"seq {seq}: not in the tree of size {cp.size} (tree_size); the ledger has "
                f"{size} entries",
            )
        return ledger_pb2.InclusionProof(
            seq=seq,
            tree_size=cp.size,
            hashes=self.ledger.inclusion_proof(seq, cp.size),
            leaf_hash=self.ledger.entry(seq).leaf_hash,
            tlog_proof=self.ledger.tlog_proof(seq, cp.size),
        )

    def _consistency(self, old_size: int, new_size: int) -> ledger_pb2.ConsistencyProof:
        latest, size = self._snapshot()
        if old_size == 0:
            _refuse(
                _Code.INVALID_ARGUMENT,
                f"old_size 0: must be at least 1 (the ledger has {size} entries)",
            )
        new = self._covering("new_size", new_size, size, latest)
        if old_size > new.size:
            _refuse(
                _Code.INVALID_ARGUMENT,
                f"old_size {old_size}: larger than new_size {new.size} (the ledger has "
                f"{size} entries)",
            )
        old = self._covering("old_size", old_size, size, latest)
        return ledger_pb2.ConsistencyProof(
            old_size=old.size,
            new_size=new.size,
            hashes=self.ledger.consistency_proof(old.size, new.size),
        )

    def _entries_end(self, start: int, end: int) -> int:
        """The resolved exclusive end of [start, end) (0 = the size now), validated."""
        size = self.ledger.size
        if end > size:
            _refuse(_Code.INVALID_ARGUMENT, f"end {end}: the ledger has {size} entries")
        resolved = end or size
        if start > resolved:
            _refuse(
                _Code.INVALID_ARGUMENT,
                f"start {start}: after end {resolved} (the ledger has {size} entries)",
            )
        return resolved

    def _entries(self, start: int, end: int) -> list[ledger_pb2.Entry]:
        return [
            ledger_pb2.Entry(
                seq=entry.seq, leaf_hash=entry.leaf_hash, kind=entry.kind, envelope=entry.envelope
            )
            for entry in self.ledger.entries(start, end)
        ]

    def _bundle(self, seqs: Sequence[int], since: int) -> ledger_pb2.EvidenceBundle:
        latest, size = self._snapshot()
        self._check_bundle_seqs(seqs, size)
        cp = self._covering("seqs", 0, size, latest)
        for i, seq in enumerate(seqs):
            if seq >= cp.size:
                _refuse(
                    _Code.NOT_FOUND,
                    f"seqs[{i}] {seq}: not covered by the latest checkpoint (size {cp.size}; "
                    f"the ledger has {size} entries); sign a newer one",
                )
        old = self._covering("since", since, size, latest).size if since else None
        if old is not None and old > cp.size:  # signed between our two reads
            _refuse(_Code.INVALID_ARGUMENT, f"since {since}: newer than the checkpoint {cp.size}")
        bundle = self.ledger.evidence_bundle(seqs, cp.size, old)
        return ledger_pb2.EvidenceBundle(json=canonical_json(bundle, "bundle"))

    def _check_bundle_seqs(self, seqs: Sequence[int], size: int) -> None:
        if not seqs:
            _refuse(_Code.INVALID_ARGUMENT, "seqs: empty; name at least one entry")
        if len(seqs) > self.max_bundle_entries:
            _refuse(
                _Code.RESOURCE_EXHAUSTED,
                f"seqs: {len(seqs)} entries; the limit is {self.max_bundle_entries} per bundle",
            )
        for i, seq in enumerate(seqs):
            if seq >= size:
                _refuse(_Code.INVALID_ARGUMENT, f"seqs[{i}] {seq}: the ledger has {size} entries")


def add_ledger_service(
    server: grpc.aio.Server,
    ledger: Ledger,
    executor: Executor,
    *,
    auth: Authenticator | None = None,
) -> str:
    """Register a :class:`LedgerServicer` on ``server``; returns the full service name."""
    servicer = LedgerServicer(ledger, executor, auth=auth)
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(servicer, server)
    return LEDGER_SERVICE
