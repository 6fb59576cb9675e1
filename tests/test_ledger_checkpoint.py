"""Checkpoints as signed notes (docs §4) and the log's refusal to sign inconsistent trees."""

from __future__ import annotations

import base64

import pytest
from lineage_audit.ledger import (
    CheckpointError,
    FormatError,
    Ledger,
    SignatureError,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from lineage_audit.ledger._vcore import verify_consistency
from lineage_audit.ledger.checkpoint import checkpoint_text
from lineage_audit.ledger.keys import ecdsa_note_key_id, mldsa_note_key_id

ROOT = bytes(range(32))


def test_note_layout(keyring) -> None:
    note = sign_checkpoint(42, ROOT, keyring.checkpoint)
    name = keyring.name
    text = f"{name}\n42\n{base64.b64encode(ROOT).decode()}\n"
    assert note.startswith(text + "\n")
    lines = note[len(text) + 1 :].split("\n")
    assert lines[-1] == "" and len(lines) == 3
    ecdsa, mldsa = (base64.b64decode(line.split(" ")[2]) for line in lines[:2])
    assert lines[0].startswith(f"\u2014 {name} ") and lines[1].startswith(f"\u2014 {name} ")
    pub = keyring.public_keys()
    assert ecdsa[:4] == ecdsa_note_key_id(pub.checkpoint_ecdsa)
    assert mldsa[:4] == mldsa_note_key_id(name, pub.checkpoint_mldsa)
    assert len(mldsa) == 4 + 3309
    pub.checkpoint_mldsa.verify(mldsa[4:], text.encode())
    parsed = verify_checkpoint(note, pub)
    assert (parsed.origin, parsed.size, parsed.root, parsed.text) == (name, 42, ROOT, text)
    # ECDSA over the note text is deterministic (RFC 6979).
    assert sign_checkpoint(42, ROOT, keyring.checkpoint).split("\n")[4] == note.split("\n")[4]


def test_verification_rules(keyring, other_keyring) -> None:
    pub = keyring.public_keys()
    note = sign_checkpoint(7, ROOT, keyring.checkpoint)
    witness = f"\u2014 witness.example/w {base64.b64encode(b'abcd' + b'x' * 64).decode()}\n"
    assert verify_checkpoint(note + witness, pub).size == 7  # unknown key ignored
    with pytest.raises(SignatureError, match="ML-DSA-65"):  # one of ours missing
        verify_checkpoint("\n".join(note.split("\n")[:5]) + "\n", pub)
    with pytest.raises(SignatureError):  # signed by another key pair of the same name
        verify_checkpoint(sign_checkpoint(7, ROOT, other_keyring.checkpoint), pub)
    forged = note.replace(base64.b64encode(ROOT).decode(), base64.b64encode(bytes(32)).decode())
    with pytest.raises(SignatureError, match="does not verify"):
        verify_checkpoint(forged, pub)
    with pytest.raises(CheckpointError, match="origin"):
        verify_checkpoint(note.replace(keyring.name + "\n", "other.example/x\n", 1), pub)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda n: n.replace("\n7\n", "\n07\n", 1), "checkpoint.size"),
        (lambda n: n.replace("\n7\n", "\n-7\n", 1), "checkpoint.size"),
        (lambda n: n.replace("\n7\n", "\n18446744073709551616\n", 1), "checkpoint.size"),
        (lambda n: n.replace("\n7\n", "\n7\next\n", 1), "exactly 3 lines"),
        (lambda n: n.replace("\n\n", "\n", 1), "blank line"),
        (lambda n: n[:-1], "newline"),
        (lambda n: n.replace("AAECAwQF", "AAECAwQ*", 1), "checkpoint.root"),
        (lambda n: n.replace("\u2014 ", "- ", 1), "checkpoint.signatures[0]"),
        (lambda n: n.split("\n\n")[0] + "\n\n", "no signature lines"),
        (lambda n: n + n.split("\n")[4] + "\n" * 1 + (n.split("\n")[4] + "\n") * 15, "16"),
        (lambda n: n.replace("\n7\n", "\n7\x01\n", 1), "control character"),
        (lambda n: n + "x" * 70000, "larger than"),
    ],
)
def test_parse_errors_name_the_part(keyring, mutate, field: str) -> None:
    note = sign_checkpoint(7, ROOT, keyring.checkpoint)
    with pytest.raises(FormatError) as info:
        parse_checkpoint(mutate(note))
    assert field in str(info.value)


def test_checkpoint_text_validation() -> None:
    with pytest.raises(FormatError, match="origin"):
        checkpoint_text("has space", 1, ROOT)
    with pytest.raises(FormatError, match="root"):
        checkpoint_text("a/b", 1, b"short")


def test_ledger_checkpoints(ledger: Ledger, helpers) -> None:
    with pytest.raises(CheckpointError, match="empty"):
        ledger.checkpoint()
    helpers.fill(ledger, 3)
    first = ledger.checkpoint()
    assert (first.size, first.root) == (3, ledger.root(3))
    assert ledger.checkpoint().note == first.note  # same size: the stored one, not a new one
    helpers.fill(ledger, 10)
    second = ledger.checkpoint()
    assert second.size == 13 and [c.size for c in ledger.checkpoints()] == [3, 13]
    proof = ledger.consistency_proof(3, 13)
    assert verify_consistency(3, 13, proof, first.root, second.root)
    verify_checkpoint(ledger.latest_checkpoint().note, ledger.public_keys)
