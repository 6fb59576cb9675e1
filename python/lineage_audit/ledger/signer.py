"""Signing in a separate worker process: :class:`ProcessSigner` (opt-in).

The worker loads the key directory itself and is the only process that holds the private
keys (record and checkpoint): the ledger process sends it bytes to sign and gets signatures
back, the way it would talk to an HSM or a KMS. It is also how signing overlaps with durable
commits: ``cryptography``'s ML-DSA signing holds the GIL for ~1 ms a record, so in-process
signing and commits of several writer threads take turns; with the signer in its own process
the ledger process only waits on a pipe (GIL released) while another thread's commit runs.

Protocol (one duplex pipe): requests ``(id, op, args)``, answers ``(id, ok, value)`` in
request order. Any number of threads may have a request in flight; one reader thread hands
each answer to its caller. If the worker dies, every pending and later request fails with
:class:`SignerError` (no record is signed, so nothing is appended).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from .checkpoint import sign_checkpoint
from .errors import KeyFileError, LedgerError
from .keys import KeyRing, PublicKeys, load_keyring
from .records import sign_pae

__all__ = ["START_METHODS", "ProcessSigner", "SignerError"]

START_METHODS = ("spawn", "forkserver")  # never fork: the ledger process may have threads
START_TIMEOUT = 120.0  # a hang guard for the worker's start (interpreter + cryptography)
STOP_TIMEOUT = 10.0


class SignerError(LedgerError):
    """The signing worker is gone, closed, or refused a request; nothing was written."""


class _Call:
    """One request in flight; its caller blocks on ``done`` until the answer is in."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.value: Any = None
        self.error: str | None = None


class ProcessSigner:
    """Signs records and checkpoints in a worker process holding the private keys.

    A key-isolation boundary like an HSM/KMS signer: the worker loads ``keys_dir``
    (:func:`.keys.load_keyring`), only public keys and signatures come back. Thread-safe;
    requests from several threads are pipelined to the worker. Start it with
    ``Ledger.open(db, keys_dir, signer="process")`` (the ledger owns and closes it) or pass
    one to :meth:`.Ledger.from_store`. ``start_method`` is ``"spawn"`` or ``"forkserver"``;
    as in any such multiprocessing program, the worker imports the main module, so a script
    must keep its top-level code under ``if __name__ == "__main__":``.
    """

    def __init__(self, keys_dir: str | os.PathLike[str], *, start_method: str = "spawn") -> None:
        if start_method not in START_METHODS:
            raise LedgerError(
                f"signer: start method {start_method!r}; expected spawn or forkserver"
            )
        ctx = multiprocessing.get_context(start_method)
        self._conn, child = ctx.Pipe(duplex=True)
        self._process = ctx.Process(
            target=_serve, args=(child, os.fspath(keys_dir)), name="lineage-audit-signer"
        )
        self._process.daemon = True  # never outlives the ledger process
        self._process.start()
        child.close()  # so the worker's death reads as EOF here
        self.name = f"process signer (pid {self._process.pid})"
        self._lock = threading.Lock()  # guards _calls and _failure (never held while blocking)
        self._send_lock = threading.Lock()
        self._join_lock = threading.Lock()
        self._calls: dict[int, _Call] = {}
        self._ids = itertools.count()
        self._failure: str | None = None
        try:
            self._public_keys = self._handshake()
        except BaseException:
            self._stop()
            raise
        self.record_key_ids = (
            self._public_keys.record_ecdsa_key_id,
            self._public_keys.record_mldsa_key_id,
        )
        self._reader = threading.Thread(target=self._read_loop, name=self.name, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """The worker's process id."""
        pid = self._process.pid
        assert pid is not None
        return pid

    def public_keys(self) -> PublicKeys:
        """The public keys of the worker's key ring (as :meth:`.KeyRing.public_keys`)."""
        return self._public_keys

    def pending(self) -> int:
        """Requests sent and not yet answered (for tests and monitoring)."""
        with self._lock:
            return len(self._calls)

    def sign_record(self, message: bytes) -> tuple[bytes, bytes]:
        """``(ECDSA P-256 DER, ML-DSA-65)`` signatures of a PAE with the record keys."""
        ecdsa_sig, mldsa_sig = self._call("record", (message,))
        return ecdsa_sig, mldsa_sig

    def sign_checkpoint(self, size: int, root: bytes) -> str:
        """The signed checkpoint note of ``(size, root)`` (both checkpoint keys)."""
        note: str = self._call("checkpoint", (size, root))
        return note

    def busy_seconds(self) -> float:
        """Time the worker has spent signing so far (to see whether it is the bottleneck)."""
        busy: float = self._call("busy", ())
        return busy

    def close(self) -> None:
        """Stop the worker (after it answered what was sent); later requests fail."""
        with self._lock:
            if self._failure is None:
                self._failure = f"signer: {self.name} is closed"
        self._stop()
        self._reader.join()
        self._fail(f"signer: {self.name} is closed")

    def __enter__(self) -> ProcessSigner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------------

    def _handshake(self) -> PublicKeys:
        if not self._conn.poll(START_TIMEOUT):
            raise SignerError(f"signer: {self.name} did not start within {START_TIMEOUT:.0f} s")
        try:
            kind, *rest = self._conn.recv()
        except (EOFError, OSError):
            raise SignerError(f"signer: {self.name} {self._exit_status()} while starting") from None
        if kind == "ready":
            return PublicKeys.from_json(rest[0])
        error_type, message = rest
        cls = KeyFileError if error_type == "KeyFileError" else SignerError
        raise cls(message if cls is KeyFileError else f"signer: {self.name}: {message}")

    def _call(self, op: str, args: tuple[Any, ...]) -> Any:
        call = _Call()
        with self._lock:
            if self._failure is not None:
                raise SignerError(self._failure)
            call_id = next(self._ids)
            self._calls[call_id] = call
        try:
            with self._send_lock:
                self._conn.send((call_id, op, args))
        except (OSError, ValueError):
            self._fail(self._gone_message())  # releases every pending call, this one too
        call.done.acquire()  # the GIL is released while waiting
        if call.error is not None:
            raise SignerError(call.error)
        return call.value

    def _read_loop(self) -> None:
        while True:
            try:
                call_id, ok, value = self._conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                call = self._calls.pop(call_id, None)
            if call is None:
                continue
            if ok:
                call.value = value
            else:
                call.error = f"signer: {self.name} could not sign ({value}); nothing was written"
            call.done.release()
        self._fail(self._gone_message())

    def _fail(self, message: str) -> None:
        """Fail every pending call (and all later ones) with the first failure's message."""
        with self._lock:
            if self._failure is None:
                self._failure = message
            calls, self._calls = self._calls, {}
            message = self._failure
        for call in calls.values():
            call.error = message
            call.done.release()

    def _gone_message(self) -> str:
        return (
            f"signer: {self.name} {self._exit_status()}; the record was not signed and nothing "
            "was written (reopen the ledger to start a new signer)"
        )

    def _exit_status(self) -> str:
        with self._join_lock:
            self._process.join(STOP_TIMEOUT)
        code = self._process.exitcode
        if code is None:
            return "closed its pipe"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code}"

    def _stop(self) -> None:
        try:
            with self._send_lock:
                self._conn.send((None, "stop", ()))
        except (OSError, ValueError):
            pass  # already gone
        with self._join_lock:
            self._process.join(STOP_TIMEOUT)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()


# --- the worker ---------------------------------------------------------------------------


def _serve(conn: Connection, keys_dir: str) -> None:
    """Worker main: load the keys, then answer requests in order until "stop" or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the ledger process's to handle
    try:
        keyring = load_keyring(keys_dir)
    except LedgerError as exc:
        conn.send(("error", type(exc).__name__, str(exc)))
        return
    conn.send(("ready", keyring.public_keys().to_json()))
    busy = 0.0
    while True:
        try:
            call_id, op, args = conn.recv()
        except (EOFError, OSError):
            return  # the ledger process is gone
        if op == "stop":
            return
        start = time.perf_counter()
        try:
            value = busy if op == "busy" else _run(keyring, op, args)
        except Exception as exc:  # reported to the caller, the worker keeps serving
            conn.send((call_id, False, f"{type(exc).__name__}: {exc}"))
        else:
            conn.send((call_id, True, value))
        busy += time.perf_counter() - start


def _run(keyring: KeyRing, op: str, args: tuple[Any, ...]) -> Any:
    if op == "record":
        (message,) = args
        return sign_pae(message, keyring.record)
    if op == "checkpoint":
        size, root = args
        return sign_checkpoint(size, root, keyring.checkpoint)
    raise ValueError(f"unknown request {op!r}")
