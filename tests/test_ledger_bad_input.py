"""Malformed input: clear errors naming the field, nothing written, CLI exit 2, no traceback."""

from __future__ import annotations

import base64
import copy
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from lineage_audit.ledger import Ledger, verify_bundle
from lineage_audit.ledger.errors import FormatError
from lineage_audit.ledger.keys import RECORD_ECDSA_FILE, RECORD_MLDSA_FILE
from lineage_audit.ledger.proofs import parse_consistency, parse_tlog_proof


@pytest.fixture
def bundle(ledger: Ledger, helpers) -> dict:
    helpers.fill(ledger, 4)
    ledger.checkpoint()
    helpers.fill(ledger, 2)
    ledger.checkpoint()
    return ledger.evidence_bundle([1, 2], since=4)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _set(obj: dict, path: list, value) -> dict:
    out = copy.deepcopy(obj)
    target = out
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


CASES = [
    (["format"], "lineage-audit/evidence-bundle/v0", "format"),
    (["kind"], "other", "kind"),
    (["checkpoint"], 5, "checkpoint: expected a string"),
    (["entries"], {}, "entries: expected a JSON array"),
    (["entries", 0, "seq"], "1", "entries[0].seq"),
    (["entries", 0, "seq"], True, "entries[0].seq"),
    (["entries", 0, "seq"], -1, "entries[0].seq"),
    (["entries", 0, "leaf_input"], _b64(bytes(157)), "entries[0].leaf_input: expected 158 bytes"),
    (["entries", 0, "leaf_input"], "AAA", "entries[0].leaf_input: not valid base64"),
    (["entries", 0, "leaf_input"], KeyError, "entries[0].leaf_input"),
    (["entries", 1, "envelope", "payload"], "***", "entries[1].envelope.payload"),
    (["entries", 1, "envelope", "payloadType"], None, "entries[1].envelope.payloadType"),
    (
        ["entries", 1, "envelope", "signatures", 0, "sig"],
        7,
        "entries[1].envelope.signatures[0].sig",
    ),
    (["entries", 1, "envelope", "signatures", 1], "x", "entries[1].envelope.signatures[1]"),
    (["entries", 0, "inclusion_proof"], [_b64(bytes(32))] * 65, "entries[0].inclusion_proof"),
    (["entries", 0, "inclusion_proof", 0], _b64(bytes(31)), "entries[0].inclusion_proof[0]"),
    (["keys"], KeyError, "keys: expected a JSON object"),
    (["keys", "record", "ml-dsa-65"], _b64(bytes(1951)), "keys.record.ml-dsa-65"),
    (["keys", "checkpoint", "ecdsa-p256"], _b64(b"junk"), "keys.checkpoint.ecdsa-p256"),
    (["keys", "checkpoint", "name"], "has space", "keys.checkpoint.name"),
    (["consistency", "proof"], "x", "consistency.proof"),
    (["consistency", "old_checkpoint"], KeyError, "consistency.old_checkpoint"),
]


@pytest.mark.parametrize(("path", "value", "field"), CASES)
def test_malformed_bundles_name_the_field(bundle: dict, path, value, field: str) -> None:
    verdict = verify_bundle(_set(bundle, path, value))
    assert (verdict.valid, verdict.reason, verdict.seq) == (False, "malformed", None)
    assert field in verdict.message, verdict.message
    assert verdict.exit_code == 2


def test_duplicate_seq_and_odd_json(bundle: dict, keyring) -> None:
    dup = copy.deepcopy(bundle)
    dup["entries"].append(dup["entries"][0])  # allowed: inclusion forces them to be equal
    assert verify_bundle(dup, keyring.public_keys()).valid
    leaf = bytearray(base64.b64decode(dup["entries"][0]["leaf_input"]))
    leaf[0] ^= 1
    dup["entries"][0]["leaf_input"] = _b64(bytes(leaf))
    verdict = verify_bundle(dup, keyring.public_keys())
    assert verdict.reason == "malformed" and "entries[0].leaf_input" in verdict.message
    assert "prefix" in verdict.message
    for text in ("", "[]", "null", '{"format": 1', "[" * 100_000 + "]" * 100_000):
        verdict = verify_bundle(text)
        assert verdict.reason == "malformed", text[:10]
    assert verify_bundle(b"\xff\xfe").reason == "malformed"


def test_bad_pinned_keys_are_malformed(bundle: dict, tmp_path: Path) -> None:
    path = tmp_path / "pub.json"
    path.write_text('{"format": "lineage-audit/public-keys/v1"}')
    verdict = verify_bundle(bundle, path)
    assert verdict.reason == "malformed" and "pinned keys.record" in verdict.message
    verdict = verify_bundle(bundle, tmp_path / "missing.json")
    assert verdict.reason == "malformed" and "missing.json" in verdict.message


@pytest.mark.parametrize(
    "content",
    [
        lambda b: json.dumps(b)[: len(json.dumps(b)) // 2],  # truncated
        lambda b: "",
        lambda b: "not json at all",
        lambda b: json.dumps({**b, "format": "nope"}),
    ],
)
def test_cli_verify_malformed_file_exits_2(bundle, tmp_path: Path, run_cli, content) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(content(bundle))
    result = run_cli("verify", path)
    assert result.returncode == 2, result
    assert result.stderr.startswith("error: malformed seq=-: ") and not result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_unusable_inputs_exit_2(tmp_path: Path, cli, keys_dir: Path, pubkeys_file) -> None:
    assert cli("verify", tmp_path / "missing.json")[0] == 2
    assert cli("verify", tmp_path)[0] == 2  # a directory
    not_db = tmp_path / "not.db"
    not_db.write_bytes(b"this is not a database" * 100)
    for args in (
        ("ledger", "verify", "--db", not_db, "--pubkeys", pubkeys_file),
        ("ledger", "verify", "--db", tmp_path / "none.db", "--pubkeys", pubkeys_file),
        ("ledger", "verify", "--db", not_db, "--pubkeys", tmp_path / "none.json"),
        ("ledger", "prove", "--db", not_db, "--seq", 0),
        ("ledger", "append", "--db", not_db, "--keys", keys_dir, "--action", "a", "--actor", "b"),
    ):
        code, out, err = cli(*args)
        assert code == 2, (args, out, err)
        assert err.startswith("error: ") and "Traceback" not in err


def test_cli_usage_errors_exit_2(cli) -> None:
    assert cli("ledger", "prove", "--seq", "-1")[0] == 2
    assert cli("ledger", "append", "--kind", "nope", "--action", "a", "--actor", "b")[0] == 2
    assert cli()[0] == 2
    assert cli("--version")[0] == 0


def test_truncated_database_is_unusable_or_tampered(
    ledger, db_path, pubkeys_file, helpers, run_cli
):
    helpers.fill(ledger, 300)
    ledger.checkpoint()
    ledger.close()
    data = db_path.read_bytes()
    db_path.write_bytes(data[: len(data) // 2])
    result = run_cli("ledger", "verify", "--db", db_path, "--pubkeys", pubkeys_file)
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    assert result.returncode == 1 or result.stderr.startswith("error: ")


def test_malformed_key_file_writes_nothing(tmp_path: Path, keys_dir: Path, run_cli) -> None:
    (keys_dir / RECORD_ECDSA_FILE).write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n")
    db = tmp_path / "new.db"
    result = run_cli("ledger", "append", "--db", db, "--keys", keys_dir, "--action", "a",
                     "--actor", "b")  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and RECORD_ECDSA_FILE in result.stderr
    assert not db.exists()
    pem = (keys_dir / RECORD_MLDSA_FILE).read_bytes()
    (keys_dir / RECORD_MLDSA_FILE).write_bytes(pem[: len(pem) // 2])  # truncated
    result = run_cli("ledger", "checkpoint", "--db", db, "--keys", keys_dir)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_bad_append_input_writes_nothing(ledger: Ledger, db_path: Path, keys_dir, cli) -> None:
    ledger.append("record", "ok", "t")
    for extra in (
        ["--subject", "corpus=nothex"],
        ["--subject", "noequals"],
        ["--field", "nonce=00"],
        ["--field", "=1"],
    ):
        code, _, err = cli("ledger", "append", "--db", db_path, "--keys", keys_dir,
                           "--action", "a", "--actor", "b", *extra)  # fmt: skip
        assert code == 2 and err.startswith("error: "), (extra, err)
    with closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT count(*) FROM entries").fetchone()[0] == 1


def test_cli_proof_requests_out_of_range(ledger, db_path, helpers, cli) -> None:
    helpers.fill(ledger, 3)
    ledger.checkpoint()
    code, _, err = cli("ledger", "prove", "--db", db_path, "--seq", 9)
    assert code == 2 and "seq 9" in err
    code, _, err = cli("ledger", "prove", "--db", db_path, "--consistency", 0, 3)
    assert code == 2 and "consistency 0->3" in err
    code, _, err = cli("ledger", "export-bundle", "--db", db_path, "--seq", 3, "-o", "x.json")
    assert code == 2 and "not covered" in err


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("nope\n\ncp", "tlog-proof.header"),
        ("c2sp.org/tlog-proof@v1\nindex 01\n\ncp", "tlog-proof.index"),
        ("c2sp.org/tlog-proof@v1\nextra !!\nindex 1\n\ncp", "tlog-proof.extra"),
        ("c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\ncp", "tlog-proof.path[0]"),
        ("c2sp.org/tlog-proof@v1\nindex 1", "blank line"),
    ],
)
def test_tlog_proof_parse_errors(text: str, field: str) -> None:
    with pytest.raises(FormatError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_tlog_proof(text)


def test_consistency_text_parse_errors() -> None:
    assert parse_consistency("old 3\n").proof == ()
    for text, field in (("old 3", "newline"), ("new 3\n", "consistency.old"),
                        ("old 3\nAAAA\n", "consistency.proof[0]")):  # fmt: skip
        with pytest.raises(FormatError) as info:
            parse_consistency(text)
        assert field in str(info.value)
