"""Signing in a worker process (``Ledger.open(..., signer="process")``): same signatures,
same verdicts, and a dead or closed worker fails appends cleanly with nothing written."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from lineage_audit import _merkle_verify as ext
from lineage_audit.ledger import (
    KeyFileError,
    KeyMismatchError,
    Ledger,
    LedgerError,
    ProcessSigner,
    SignerError,
    verify_bundle,
    verify_ledger,
)
from lineage_audit.ledger.keys import spki_der, write_keyring
from lineage_audit.ledger.records import sign_pae

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def process_ledger(db_path: Path, keys_dir: Path) -> Iterator[Ledger]:
    ledger = Ledger.open(db_path, keys_dir, signer="process")
    try:
        yield ledger
    finally:
        ledger.close()


def _signer(ledger: Ledger) -> ProcessSigner:
    assert ledger.signer is not None
    return ledger.signer


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30  # a hang guard, not a timing assertion
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def _pair(ledger: Ledger, step: int) -> None:
    with ledger.action("signer.step", actor="tester", step=step) as act:
        act.result = {"step": step}


def test_default_signs_in_process(db_path: Path, keys_dir: Path) -> None:
    with Ledger.open(db_path, keys_dir) as ledger:
        _pair(ledger, 0)
        assert ledger.signer is None and ledger.keyring is not None
        assert multiprocessing.active_children() == []


@pytest.mark.parametrize("engine", ["python", "rust"])
def test_worker_signatures_verify_like_in_process_ones(
    process_ledger: Ledger, keyring, pubkeys_file: Path, db_path: Path, engine: str
) -> None:
    assert process_ledger.keyring is None  # no private key in this process
    assert process_ledger.public_keys == keyring.public_keys()
    threads = [
        threading.Thread(target=lambda w=w: [_pair(process_ledger, 10 * w + i) for i in range(5)])
        for w in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    process_ledger.checkpoint()  # signed by the worker too
    assert process_ledger.size == 30
    for entry in process_ledger.entries():
        envelope = entry.parsed_envelope()
        ecdsa_sig, mldsa_sig = (s.sig for s in envelope.signatures)
        # Deterministic ECDSA: the worker's signature is the in-process one, byte for byte.
        assert ecdsa_sig == sign_pae(envelope.pae(), keyring.record)[0]
        keyring.record.ecdsa.public_key().verify(
            ecdsa_sig, envelope.pae(), ec.ECDSA(hashes.SHA256())
        )
        keyring.record.mldsa.public_key().verify(mldsa_sig, envelope.pae())
    record_keys = (
        spki_der(keyring.record.ecdsa.public_key()),
        keyring.record.mldsa.public_key().public_bytes_raw(),
    )
    envelopes = [e.envelope for e in process_ledger.entries()]
    assert ext.verify_envelopes(envelopes, *record_keys) == [None] * len(envelopes)
    report = verify_ledger(db_path, pubkeys_file, engine=engine)
    assert report.valid and report.entries == 30 and report.checkpoints == 1, report


def test_worker_signed_bundle_verifies_with_merkle_verify(
    process_ledger: Ledger, tmp_path: Path, pubkeys_file: Path
) -> None:
    for i in range(4):
        _pair(process_ledger, i)
    process_ledger.checkpoint()
    bundle = process_ledger.evidence_bundle([0, 1, 7])
    assert verify_bundle(bundle, pubkeys_file).valid
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    binary = os.environ.get("MERKLE_VERIFY_BIN", str(ROOT / "target/release/merkle-verify"))
    proc = subprocess.run(
        [binary, str(path), "--keys", str(pubkeys_file)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_killed_worker_fails_pending_and_later_appends(
    process_ledger: Ledger, db_path: Path, pubkeys_file: Path
) -> None:
    _pair(process_ledger, 0)
    signer = _signer(process_ledger)
    os.kill(signer.pid, signal.SIGSTOP)  # hold the next request in the worker's queue
    errors: list[BaseException] = []
    ran: list[int] = []

    def pending_action() -> None:
        try:
            with process_ledger.action("signer.never", actor="tester"):
                ran.append(1)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=pending_action)
    thread.start()
    _wait_until(lambda: signer.pending() == 1)
    os.kill(signer.pid, signal.SIGKILL)
    thread.join(60)
    assert not ran  # the intent was never signed, so the body never ran
    assert len(errors) == 1 and isinstance(errors[0], SignerError), errors
    message = str(errors[0])
    assert f"process signer (pid {signer.pid})" in message and "SIGKILL" in message
    assert "nothing was written" in message
    with pytest.raises(SignerError, match=r"process signer .*SIGKILL"):
        process_ledger.append("record", "signer.later", "tester")
    with pytest.raises(SignerError, match="SIGKILL"):
        process_ledger.checkpoint()
    assert isinstance(errors[0], LedgerError)
    assert process_ledger.size == 2
    process_ledger.close()
    report = verify_ledger(db_path, pubkeys_file)
    assert report.valid and report.entries == 2, report


def test_killed_worker_mid_batch_writes_nothing(
    process_ledger: Ledger, db_path: Path, pubkeys_file: Path, helpers
) -> None:
    helpers.fill(process_ledger, 3)
    signer = _signer(process_ledger)
    os.kill(signer.pid, signal.SIGKILL)
    with pytest.raises(SignerError, match="SIGKILL"):
        helpers.fill(process_ledger, 5)
    assert process_ledger.size == 3
    process_ledger.close()
    assert verify_ledger(db_path, pubkeys_file).valid


def test_close_stops_the_worker(db_path: Path, keys_dir: Path) -> None:
    ledger = Ledger.open(db_path, keys_dir, signer="process")
    _pair(ledger, 0)
    signer = _signer(ledger)
    ledger.close()
    assert signer._process.exitcode == 0  # stopped on request, not killed
    assert multiprocessing.active_children() == []
    with pytest.raises(ProcessLookupError):
        os.kill(signer.pid, 0)
    with pytest.raises(SignerError, match="is closed"):
        signer.sign_record(b"message")


def test_process_signer_refusals(
    db_path: Path, keys_dir: Path, keyring, other_keyring, tmp_path: Path
) -> None:
    with pytest.raises(LedgerError, match="key directory"):
        Ledger.open(db_path, keyring, signer="process")
    with pytest.raises(LedgerError, match="expected 'inline' or 'process'"):
        Ledger.open(db_path, keys_dir, signer="thread")
    with pytest.raises(LedgerError, match="start method"):
        ProcessSigner(keys_dir, start_method="fork")
    with pytest.raises(KeyFileError, match="key directory not found"):
        Ledger.open(db_path, tmp_path / "missing", signer="process")
    with Ledger.open(db_path, keys_dir, signer="process") as ledger:
        _pair(ledger, 0)
    other = tmp_path / "other-keys"
    write_keyring(other_keyring, other)
    with pytest.raises(KeyMismatchError):
        Ledger.open(db_path, other, signer="process")
    assert multiprocessing.active_children() == []  # refused signers were stopped


def test_forkserver_start_method(db_path: Path, keys_dir: Path, pubkeys_file: Path) -> None:
    store_ledger = Ledger.open(db_path)
    signer = ProcessSigner(keys_dir, start_method="forkserver")
    ledger = Ledger.from_store(store_ledger.store, signer=signer)
    _pair(ledger, 0)
    ledger.close()
    assert signer.pending() == 0
    assert verify_ledger(db_path, pubkeys_file).valid


def test_refused_request_fails_only_its_caller(process_ledger: Ledger) -> None:
    signer = _signer(process_ledger)
    with pytest.raises(SignerError, match=r"could not sign .*unknown request"):
        signer._call("no-such-op", ())
    _pair(process_ledger, 0)  # the worker keeps serving
    assert process_ledger.size == 2
