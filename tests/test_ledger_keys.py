"""Key generation, files (mode 0600, no overwrite), loading errors, key ids (docs §1)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from lineage_audit.ledger import KeyFileError, PublicKeys, generate_keys, load_keyring
from lineage_audit.ledger.errors import FormatError
from lineage_audit.ledger.keys import (
    KEY_FILES,
    NAME_FILE,
    RECORD_ECDSA_FILE,
    RECORD_MLDSA_FILE,
    default_key_name,
    ecdsa_note_key_id,
    load_public_keys,
    mldsa_note_key_id,
    validate_key_name,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_writes_pkcs8_files_with_mode_0600(tmp_path: Path) -> None:
    old = os.umask(0)  # even with a permissive umask the files are created 0600
    try:
        keyring = generate_keys(tmp_path / "keys", "example.org/log")
    finally:
        os.umask(old)
    for name in KEY_FILES:
        path = tmp_path / "keys" / name
        assert _mode(path) == 0o600, name
        assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert (tmp_path / "keys" / NAME_FILE).read_text() == "example.org/log\n"
    assert not list((tmp_path / "keys").glob(".*tmp"))
    loaded = load_keyring(tmp_path / "keys")
    assert loaded.public_keys() == keyring.public_keys()
    assert loaded.name == "example.org/log"


def test_record_and_checkpoint_keys_are_distinct(tmp_path: Path) -> None:
    keyring = generate_keys(tmp_path / "k")
    pub = keyring.public_keys().to_json()
    assert pub["record"]["ecdsa-p256"] != pub["checkpoint"]["ecdsa-p256"]
    assert pub["record"]["ml-dsa-65"] != pub["checkpoint"]["ml-dsa-65"]
    # A key directory that reuses the record key as checkpoint key is refused.
    os.replace(tmp_path / "k" / RECORD_ECDSA_FILE, tmp_path / "k" / "x")
    (tmp_path / "k" / RECORD_ECDSA_FILE).write_bytes((tmp_path / "k" / "x").read_bytes())
    (tmp_path / "k" / "checkpoint-ecdsa-p256.pem").write_bytes((tmp_path / "k" / "x").read_bytes())
    with pytest.raises(
        KeyFileError, match=r"checkpoint-ecdsa-p256\.pem: checkpoint key must differ"
    ):
        load_keyring(tmp_path / "k")


def test_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    generate_keys(tmp_path / "keys")
    before = {n: (tmp_path / "keys" / n).read_bytes() for n in (*KEY_FILES, NAME_FILE)}
    with pytest.raises(KeyFileError, match="already exists"):
        generate_keys(tmp_path / "keys")
    after = {n: (tmp_path / "keys" / n).read_bytes() for n in (*KEY_FILES, NAME_FILE)}
    assert before == after
    generate_keys(tmp_path / "keys", force=True)
    forced = {n: (tmp_path / "keys" / n).read_bytes() for n in KEY_FILES}
    assert all(forced[n] != before[n] for n in KEY_FILES)
    assert all(_mode(tmp_path / "keys" / n) == 0o600 for n in KEY_FILES)


def test_refuses_when_a_single_key_file_exists(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / RECORD_MLDSA_FILE).write_text("precious")
    with pytest.raises(KeyFileError, match=RECORD_MLDSA_FILE):
        generate_keys(tmp_path / "keys")
    assert (tmp_path / "keys" / RECORD_MLDSA_FILE).read_text() == "precious"
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == [RECORD_MLDSA_FILE]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a key at all", "not a PKCS#8 PEM private key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "malformed PKCS#8"),
        (b"", "not a PKCS#8 PEM private key"),
    ],
)
def test_malformed_key_file_names_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    generate_keys(tmp_path / "keys")
    (tmp_path / "keys" / RECORD_ECDSA_FILE).write_bytes(content)
    with pytest.raises(KeyFileError) as info:
        load_keyring(tmp_path / "keys")
    assert RECORD_ECDSA_FILE in str(info.value)
    assert message in str(info.value)


def test_wrong_key_type_and_missing_files(tmp_path: Path) -> None:
    generate_keys(tmp_path / "keys")
    keys = tmp_path / "keys"
    (keys / RECORD_ECDSA_FILE).write_bytes((keys / RECORD_MLDSA_FILE).read_bytes())
    with pytest.raises(KeyFileError, match=r"record-ecdsa-p256\.pem: expected an ECDSA P-256 key"):
        load_keyring(keys)
    generate_keys(keys, force=True)
    (keys / RECORD_MLDSA_FILE).unlink()
    with pytest.raises(KeyFileError, match=r"record-ml-dsa-65\.pem: key file not found"):
        load_keyring(keys)
    with pytest.raises(KeyFileError, match="key directory not found"):
        load_keyring(tmp_path / "nope")


def test_bad_key_name_file(tmp_path: Path) -> None:
    generate_keys(tmp_path / "keys")
    (tmp_path / "keys" / NAME_FILE).write_text("has space\n")
    with pytest.raises(KeyFileError, match=r"checkpoint-name\.txt"):
        load_keyring(tmp_path / "keys")


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "nl\nx", "nbsp\u00a0x"])
def test_key_name_validation_rejects(name: str) -> None:
    with pytest.raises(FormatError, match="name"):
        validate_key_name(name)


def test_default_key_name() -> None:
    assert re.fullmatch(r"lineage-audit\.local/[0-9a-f]{8}", default_key_name())
    assert validate_key_name("example.com/log-1") == "example.com/log-1"


def test_key_ids_follow_the_doc(keyring) -> None:
    pub = keyring.public_keys()
    spki = pub.record_ecdsa.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    raw = pub.record_mldsa.public_bytes_raw()
    assert len(raw) == 1952
    assert pub.record_ecdsa_key_id == "ecdsa-p256:" + hashlib.sha256(spki).hexdigest()[:16]
    assert pub.record_mldsa_key_id == "ml-dsa-65:" + hashlib.sha256(raw).hexdigest()[:16]
    cp_spki = pub.checkpoint_ecdsa.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    cp_raw = pub.checkpoint_mldsa.public_bytes_raw()
    assert ecdsa_note_key_id(pub.checkpoint_ecdsa) == hashlib.sha256(cp_spki).digest()[:4]
    expected = hashlib.sha256(
        pub.checkpoint_name.encode() + b"\x0a\xff" + b"lineage-audit/ml-dsa-65/v1\n" + cp_raw
    ).digest()[:4]
    assert mldsa_note_key_id(pub.checkpoint_name, pub.checkpoint_mldsa) == expected


def test_public_keys_json_round_trip(tmp_path: Path, keyring) -> None:
    obj = keyring.public_keys().to_json()
    assert obj["format"] == "lineage-audit/public-keys/v1"
    assert set(obj["record"]) == {"ecdsa-p256", "ml-dsa-65"}
    assert set(obj["checkpoint"]) == {"name", "ecdsa-p256", "ml-dsa-65"}
    assert "format" not in keyring.public_keys().to_json(with_format=False)
    path = tmp_path / "pub.json"
    path.write_text(json.dumps(obj))
    assert load_public_keys(path) == keyring.public_keys()
    broken = json.loads(json.dumps(obj))
    broken["record"]["ml-dsa-65"] = broken["record"]["ml-dsa-65"][:-8]
    with pytest.raises(FormatError, match=r"record\.ml-dsa-65"):
        PublicKeys.from_json(broken)
    broken = json.loads(json.dumps(obj))
    broken["checkpoint"]["ecdsa-p256"] = broken["record"]["ml-dsa-65"]
    with pytest.raises(FormatError, match=r"checkpoint\.ecdsa-p256"):
        PublicKeys.from_json(broken)
    path.write_text("{not json")
    with pytest.raises(KeyFileError, match=r"pub\.json: not JSON"):
        load_public_keys(path)


def test_cli_keys_generate_and_export(tmp_path: Path, cli) -> None:
    code, out, _ = cli("keys", "generate", "--dir", tmp_path / "k", "--name", "example.net/l")
    assert code == 0 and "example.net/l" in out
    code, _, err = cli("keys", "generate", "--dir", tmp_path / "k")
    assert code == 2 and err.startswith("error: ") and "already exists" in err
    code, out, _ = cli("keys", "export", "--dir", tmp_path / "k")
    assert code == 0 and json.loads(out)["checkpoint"]["name"] == "example.net/l"
    code, _, _ = cli("keys", "export", "--dir", tmp_path / "k", "-o", tmp_path / "pub.json")
    assert code == 0 and load_public_keys(tmp_path / "pub.json").checkpoint_name == "example.net/l"
    code, _, err = cli("keys", "generate", "--dir", tmp_path / "k2", "--name", "bad name")
    assert code == 2 and "name" in err
