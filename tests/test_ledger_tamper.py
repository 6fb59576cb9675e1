"""Tampering with the database behind the ledger's back, with the real sqlite3 CLI.

Triggers refuse UPDATE/DELETE; an owner can drop them, and `ledger verify` must then name
the first bad seq and why (exit 1).
"""

from __future__ import annotations

import functools
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from lineage_audit.ledger import ConsistencyError, Ledger
from lineage_audit.ledger import verify_ledger as _verify_ledger
from lineage_audit.ledger.checkpoint import sign_checkpoint
from lineage_audit.ledger.records import make_record

SQLITE3 = shutil.which("sqlite3")
if SQLITE3 is None:  # `make setup` installs it; never skip the tamper tests silently
    raise RuntimeError("the sqlite3 command-line tool is needed (apt-get install sqlite3)")
ENGINE = "auto"
verify_ledger = _verify_ledger


@pytest.fixture(autouse=True, params=["rust", "python"])
def engine(request, monkeypatch) -> str:
    """Every tamper case runs against both signature engines of `ledger verify`."""
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "ENGINE", request.param)
    monkeypatch.setattr(
        module, "verify_ledger", functools.partial(_verify_ledger, engine=request.param)
    )
    return request.param


def sql(db: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SQLITE3, str(db)], input=script, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


@pytest.fixture
def filled(ledger: Ledger, db_path: Path, helpers) -> Path:
    helpers.fill(ledger, 6)
    ledger.checkpoint()
    helpers.fill(ledger, 4)
    ledger.checkpoint()
    ledger.close()
    return db_path


def verify_cli(run_cli, db: Path, pubkeys: Path) -> tuple[int, str]:
    result = run_cli("ledger", "verify", "--db", db, "--pubkeys", pubkeys, "--engine", ENGINE)
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout.strip()


def test_untouched_ledger_verifies(filled: Path, pubkeys_file: Path, run_cli) -> None:
    code, out = verify_cli(run_cli, filled, pubkeys_file)
    assert code == 0 and out == "VALID 10 entries, 2 checkpoint(s), latest at size 10"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE entries SET action = 'rewritten' WHERE seq = 2;",
        "DELETE FROM entries WHERE seq = 9;",
        "UPDATE nodes SET hash = zeroblob(32) WHERE level = 0 AND idx = 1;",
        "DELETE FROM nodes;",
        "DELETE FROM checkpoints;",
        "UPDATE checkpoints SET note = 'x';",
        "DELETE FROM meta;",
    ],
)
def test_triggers_refuse_update_and_delete(filled: Path, pubkeys_file, statement: str) -> None:
    result = sql(filled, statement)
    assert result.returncode != 0
    assert "ledger tables are append-only" in result.stderr
    assert verify_ledger(filled, pubkeys_file).valid


def test_changed_envelope_byte_is_caught(filled: Path, pubkeys_file, run_cli) -> None:
    with sqlite3.connect(filled) as conn:
        envelope = conn.execute("SELECT envelope FROM entries WHERE seq = 3").fetchone()[0]
    offset = envelope.index(b'"payload":"') + 40  # a byte inside the base64 payload
    new = b"A" if envelope[offset : offset + 1] != b"A" else b"B"
    result = sql(filled, f"""
        DROP TRIGGER entries_no_update;
        UPDATE entries SET envelope = CAST(substr(envelope, 1, {offset}) || X'{new.hex()}'
            || substr(envelope, {offset + 2}) AS BLOB) WHERE seq = 3;
    """)  # fmt: skip
    assert result.returncode == 0, result.stderr
    code, out = verify_cli(run_cli, filled, pubkeys_file)
    assert code == 1
    assert out.startswith("INVALID envelope_signature seq=3: ")
    report = verify_ledger(filled, pubkeys_file)
    assert "append-only trigger entries_no_update is missing" in report.warnings


def test_envelope_made_text_by_the_sqlite_cli_is_caught(
    filled: Path, pubkeys_file, run_cli
) -> None:
    # Without CAST the || operator leaves TEXT in the column; still named, never a crash.
    sql(
        filled,
        "DROP TRIGGER entries_no_update; "
        "UPDATE entries SET envelope = substr(envelope, 1, 30) || 'x' WHERE seq = 5;",
    )
    code, out = verify_cli(run_cli, filled, pubkeys_file)
    assert code == 1 and out.startswith("INVALID envelope_malformed seq=5: ")


def test_deleted_row_is_caught(filled: Path, pubkeys_file, run_cli) -> None:
    sql(filled, "DROP TRIGGER entries_no_delete; DELETE FROM entries WHERE seq = 4;")
    code, out = verify_cli(run_cli, filled, pubkeys_file)
    assert code == 1 and out.startswith("INVALID sequence seq=4: entry 4 is missing")


def test_deleted_last_rows_are_caught(filled: Path, pubkeys_file, run_cli) -> None:
    sql(filled, "DROP TRIGGER entries_no_delete; DELETE FROM entries WHERE seq >= 8;")
    code, out = verify_cli(run_cli, filled, pubkeys_file)
    assert code == 1 and out.startswith("INVALID tree seq=8: ")
    # Even with the tree nodes gone too, the signed checkpoint of size 10 remembers.
    sql(
        filled,
        "DROP TRIGGER nodes_no_delete; DELETE FROM nodes WHERE (idx << level) + (1 << level) > 8;",
    )
    code, out = verify_cli(run_cli, filled, pubkeys_file)
    assert code == 1 and out.startswith("INVALID consistency seq=8: signed checkpoint of size 10")


def test_entry_resigned_with_another_key(
    filled: Path, pubkeys_file, other_keyring, run_cli
) -> None:
    forged = make_record("record", "test.step", "tester", [], {"i": 2}, other_keyring.record)
    sql(
        filled,
        "DROP TRIGGER entries_no_update; "
        f"UPDATE entries SET envelope = X'{forged.envelope.raw.hex()}' WHERE seq = 2;",
    )
    code, out = verify_cli(run_cli, filled, pubkeys_file)
    assert code == 1 and out.startswith("INVALID signature_missing seq=2: ")


def test_entry_resigned_under_our_key_ids(filled: Path, pubkeys_file, keyring, other_keyring,
                                          run_cli) -> None:  # fmt: skip
    # Same key-id labels, other keys: present but not verifying.
    forged = make_record("record", "test.step", "tester", [], {"i": 2}, other_keyring.record)
    raw = forged.envelope.raw.decode()
    raw = raw.replace(other_keyring.record.ecdsa_key_id, keyring.record.ecdsa_key_id)
    raw = raw.replace(other_keyring.record.mldsa_key_id, keyring.record.mldsa_key_id)
    sql(
        filled,
        "DROP TRIGGER entries_no_update; "
        f"UPDATE entries SET envelope = X'{raw.encode().hex()}' WHERE seq = 7;",
    )
    code, out = verify_cli(run_cli, filled, pubkeys_file)
    assert code == 1 and out.startswith("INVALID envelope_signature seq=7: ")


def test_forged_checkpoint_for_an_inconsistent_tree(filled: Path, pubkeys_file, keyring,
                                                    run_cli) -> None:  # fmt: skip
    # Properly signed with the real checkpoint keys, but over a tree that is not this log's.
    note = sign_checkpoint(3, b"\x33" * 32, keyring.checkpoint)
    result = sql(filled, "INSERT INTO checkpoints (size, root, note, created_at) "
                         f"VALUES (3, X'{'33' * 32}', '{note}', 'now');")  # fmt: skip
    assert result.returncode == 0, result.stderr  # INSERT is allowed: append-only
    code, out = verify_cli(run_cli, filled, pubkeys_file)
    assert code == 1
    assert out.startswith("INVALID consistency seq=-: signed checkpoint of size 3 has a root")


def test_checkpoint_signature_forged(filled: Path, pubkeys_file, other_keyring, run_cli) -> None:
    note = sign_checkpoint(4, b"\x44" * 32, other_keyring.checkpoint)
    sql(filled, f"INSERT INTO checkpoints VALUES (4, X'{'44' * 32}', '{note}', 'now');")
    code, out = verify_cli(run_cli, filled, pubkeys_file)
    assert code == 1 and out.startswith("INVALID checkpoint_signature seq=-: checkpoint of size 4")


def test_full_rewrite_with_stolen_record_keys_is_caught(
    filled: Path, tmp_path: Path, keyring, pubkeys_file, run_cli, helpers
) -> None:
    """Entries, chain and tree all rebuilt consistently: only the checkpoints notice."""
    other = tmp_path / "other.db"
    with Ledger.open(other, keyring) as rewrite:
        helpers.fill(rewrite, 10, action="rewritten")
    result = sql(filled, f"""
        ATTACH '{other}' AS o;
        DROP TRIGGER entries_no_delete; DROP TRIGGER nodes_no_delete;
        DELETE FROM entries; DELETE FROM nodes;
        INSERT INTO entries SELECT * FROM o.entries;
        INSERT INTO nodes SELECT * FROM o.nodes;
    """)  # fmt: skip
    assert result.returncode == 0, result.stderr
    code, out = verify_cli(run_cli, filled, pubkeys_file)
    assert code == 1
    assert out.startswith("INVALID consistency seq=-: signed checkpoint of size 6")
    # The writer refuses to sign anything on top of the rewritten log.
    with Ledger.open(filled, keyring) as ledger, pytest.raises(ConsistencyError, match="refusing"):
        ledger.append("record", "more", "t")
        ledger.checkpoint()


def test_changed_tree_node_is_caught(filled: Path, pubkeys_file, run_cli) -> None:
    sql(
        filled,
        "DROP TRIGGER nodes_no_update; "
        "UPDATE nodes SET hash = zeroblob(32) WHERE level = 2 AND idx = 1;",
    )
    code, out = verify_cli(run_cli, filled, pubkeys_file)
    assert code == 1 and out.startswith("INVALID tree seq=4: stored tree node (2, 1)")


def test_changed_indexed_column_is_caught(filled: Path, pubkeys_file, run_cli) -> None:
    sql(
        filled,
        "DROP TRIGGER entries_no_update; UPDATE entries SET action = 'benign' WHERE seq = 1;",
    )
    code, out = verify_cli(run_cli, filled, pubkeys_file)
    assert code == 1 and out.startswith("INVALID metadata seq=1: ")


def test_checkpoint_refuses_inconsistent_latest(ledger: Ledger, keyring, db_path, helpers) -> None:
    helpers.fill(ledger, 3)
    ledger.checkpoint()
    helpers.fill(ledger, 2)
    forged = sign_checkpoint(4, b"\x44" * 32, keyring.checkpoint)
    sql(db_path, f"INSERT INTO checkpoints VALUES (4, X'{'44' * 32}', '{forged}', 'now');")
    with pytest.raises(
        ConsistencyError, match="not consistent with the signed checkpoint of size 4"
    ):
        ledger.checkpoint()
    assert [c.size for c in ledger.checkpoints()] == [3, 4]
