"""Key pairs of a ledger: generation, files, public-key export and key ids (docs §1).

A ledger has two key pairs for records (ECDSA P-256 and ML-DSA-65) and two distinct ones for
checkpoints, plus the checkpoint key name (also the log origin). Private keys are PKCS#8 PEM
files created with mode 0600 and written atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa

from ..durable import fsync_directory
from .codec import b64decode, b64encode
from .errors import FormatError, KeyFileError

__all__ = [
    "CHECKPOINT_ECDSA_FILE",
    "CHECKPOINT_MLDSA_FILE",
    "KEY_FILES",
    "MLDSA65_PUBLIC_KEY_SIZE",
    "MLDSA65_SIGNATURE_SIZE",
    "MLDSA_NOTE_IDENTIFIER",
    "NAME_FILE",
    "PUBLIC_KEYS_FORMAT",
    "RECORD_ECDSA_FILE",
    "RECORD_MLDSA_FILE",
    "CheckpointKeys",
    "KeyRing",
    "PublicKeys",
    "RecordKeys",
    "default_key_name",
    "ecdsa_key_id",
    "ecdsa_note_key_id",
    "generate_keyring",
    "generate_keys",
    "load_keyring",
    "load_public_keys",
    "mldsa_key_id",
    "mldsa_note_key_id",
    "mldsa_public_bytes",
    "spki_der",
    "validate_key_name",
    "write_keyring",
]

RECORD_ECDSA_FILE = "record-ecdsa-p256.pem"
RECORD_MLDSA_FILE = "record-ml-dsa-65.pem"
CHECKPOINT_ECDSA_FILE = "checkpoint-ecdsa-p256.pem"
CHECKPOINT_MLDSA_FILE = "checkpoint-ml-dsa-65.pem"
NAME_FILE = "checkpoint-name.txt"
KEY_FILES = (RECORD_ECDSA_FILE, RECORD_MLDSA_FILE, CHECKPOINT_ECDSA_FILE, CHECKPOINT_MLDSA_FILE)

PUBLIC_KEYS_FORMAT = "lineage-audit/public-keys/v1"
MLDSA65_PUBLIC_KEY_SIZE = 1952
MLDSA65_SIGNATURE_SIZE = 3309
MLDSA_NOTE_IDENTIFIER = b"lineage-audit/ml-dsa-65/v1\n"
MAX_KEY_NAME_LENGTH = 256

EcdsaPrivate = ec.EllipticCurvePrivateKey
EcdsaPublic = ec.EllipticCurvePublicKey
MldsaPrivate = mldsa.MLDSA65PrivateKey
MldsaPublic = mldsa.MLDSA65PublicKey


# --- encodings and key ids -------------------------------------------------------------


def spki_der(key: EcdsaPublic) -> bytes:
    """DER SubjectPublicKeyInfo of an ECDSA public key."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def mldsa_public_bytes(key: MldsaPublic) -> bytes:
    """Raw FIPS 204 encoding (1952 bytes) of an ML-DSA-65 public key."""
    return key.public_bytes_raw()


def ecdsa_key_id(key: EcdsaPublic) -> str:
    """Record key id ``ecdsa-p256:`` + hex(SHA-256(SPKI)[:8])."""
    return "ecdsa-p256:" + hashlib.sha256(spki_der(key)).digest()[:8].hex()


def mldsa_key_id(key: MldsaPublic) -> str:
    """Record key id ``ml-dsa-65:`` + hex(SHA-256(pk)[:8])."""
    return "ml-dsa-65:" + hashlib.sha256(mldsa_public_bytes(key)).digest()[:8].hex()


def ecdsa_note_key_id(key: EcdsaPublic) -> bytes:
    """Signed-note key id of a checkpoint ECDSA key: SHA-256(SPKI)[:4]."""
    return hashlib.sha256(spki_der(key)).digest()[:4]


def mldsa_note_key_id(name: str, key: MldsaPublic) -> bytes:
    """Signed-note key id of a checkpoint ML-DSA-65 key (type 0xff + identifier)."""
    material = (
        name.encode("utf-8") + b"\n" + b"\xff" + MLDSA_NOTE_IDENTIFIER + mldsa_public_bytes(key)
    )
    return hashlib.sha256(material).digest()[:4]


def validate_key_name(name: object, field: str = "name") -> str:
    """Check a signed-note key name: non-empty, no Unicode spaces, no ``+``, no controls."""
    if not isinstance(name, str) or not name:
        raise FormatError(field, "key name must be a non-empty string", name)
    if len(name) > MAX_KEY_NAME_LENGTH:
        raise FormatError(field, f"key name longer than {MAX_KEY_NAME_LENGTH} characters", name)
    for ch in name:
        if ch == "+":
            raise FormatError(field, "key name must not contain '+'", name)
        if ch.isspace() or unicodedata.category(ch) in ("Zs", "Zl", "Zp", "Cc", "Cf"):
            raise FormatError(field, f"key name must not contain spaces or controls ({ch!r})", name)
    return name


def default_key_name() -> str:
    """A fresh local key name: ``lineage-audit.local/<8 random hex>``."""
    return f"lineage-audit.local/{secrets.token_hex(4)}"


# --- key containers --------------------------------------------------------------------


@dataclass(frozen=True)
class RecordKeys:
    """Private keys that sign records (DSSE envelopes)."""

    ecdsa: EcdsaPrivate
    mldsa: MldsaPrivate

    @property
    def ecdsa_key_id(self) -> str:
        return ecdsa_key_id(self.ecdsa.public_key())

    @property
    def mldsa_key_id(self) -> str:
        return mldsa_key_id(self.mldsa.public_key())


@dataclass(frozen=True)
class CheckpointKeys:
    """Private keys that sign checkpoints, and their note key name (= log origin)."""

    name: str
    ecdsa: EcdsaPrivate
    mldsa: MldsaPrivate


@dataclass(frozen=True)
class PublicKeys:
    """The public half of a :class:`KeyRing`, as exported to the public-keys JSON file."""

    record_ecdsa: EcdsaPublic
    record_mldsa: MldsaPublic
    checkpoint_name: str
    checkpoint_ecdsa: EcdsaPublic
    checkpoint_mldsa: MldsaPublic

    @property
    def record_ecdsa_key_id(self) -> str:
        return ecdsa_key_id(self.record_ecdsa)

    @property
    def record_mldsa_key_id(self) -> str:
        return mldsa_key_id(self.record_mldsa)

    def to_json(self, *, with_format: bool = True) -> dict[str, Any]:
        """The public-keys object (docs §1); without ``format`` it is a bundle's ``keys``."""
        obj: dict[str, Any] = {}
        if with_format:
            obj["format"] = PUBLIC_KEYS_FORMAT
        obj["record"] = {
            "ecdsa-p256": b64encode(spki_der(self.record_ecdsa)),
            "ml-dsa-65": b64encode(mldsa_public_bytes(self.record_mldsa)),
        }
        obj["checkpoint"] = {
            "name": self.checkpoint_name,
            "ecdsa-p256": b64encode(spki_der(self.checkpoint_ecdsa)),
            "ml-dsa-65": b64encode(mldsa_public_bytes(self.checkpoint_mldsa)),
        }
        return obj

    @classmethod
    def from_json(cls, obj: object, *, require_format: bool = True) -> PublicKeys:
        """Parse a public-keys object; errors name the offending field."""
        if not isinstance(obj, Mapping):
            raise FormatError("keys", "expected a JSON object", type(obj).__name__)
        if require_format and obj.get("format") != PUBLIC_KEYS_FORMAT:
            raise FormatError("format", f"expected {PUBLIC_KEYS_FORMAT!r}", obj.get("format"))
        record = obj.get("record")
        checkpoint = obj.get("checkpoint")
        if not isinstance(record, Mapping):
            raise FormatError("record", "expected a JSON object", record)
        if not isinstance(checkpoint, Mapping):
            raise FormatError("checkpoint", "expected a JSON object", checkpoint)
        return cls(
            record_ecdsa=_parse_ecdsa_public(record.get("ecdsa-p256"), "record.ecdsa-p256"),
            record_mldsa=_parse_mldsa_public(record.get("ml-dsa-65"), "record.ml-dsa-65"),
            checkpoint_name=validate_key_name(checkpoint.get("name"), "checkpoint.name"),
            checkpoint_ecdsa=_parse_ecdsa_public(
                checkpoint.get("ecdsa-p256"), "checkpoint.ecdsa-p256"
            ),
            checkpoint_mldsa=_parse_mldsa_public(
                checkpoint.get("ml-dsa-65"), "checkpoint.ml-dsa-65"
            ),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKeys):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_json(), sort_keys=True))


@dataclass(frozen=True)
class KeyRing:
    """All private keys of a ledger."""

    record: RecordKeys
    checkpoint: CheckpointKeys

    @property
    def name(self) -> str:
        return self.checkpoint.name

    def public_keys(self) -> PublicKeys:
        return PublicKeys(
            record_ecdsa=self.record.ecdsa.public_key(),
            record_mldsa=self.record.mldsa.public_key(),
            checkpoint_name=self.checkpoint.name,
            checkpoint_ecdsa=self.checkpoint.ecdsa.public_key(),
            checkpoint_mldsa=self.checkpoint.mldsa.public_key(),
        )


def _parse_ecdsa_public(value: object, field: str) -> EcdsaPublic:
    der = b64decode(value, field)
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        raise FormatError(field, "not a DER SubjectPublicKeyInfo", value) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise FormatError(field, "not an ECDSA P-256 public key", value)
    return key


def _parse_mldsa_public(value: object, field: str) -> MldsaPublic:
    raw = b64decode(value, field, MLDSA65_PUBLIC_KEY_SIZE)
    try:
        return mldsa.MLDSA65PublicKey.from_public_bytes(raw)
    except ValueError:
        raise FormatError(field, "not an ML-DSA-65 public key", value) from None


def load_public_keys(source: str | os.PathLike[str] | Mapping[str, Any]) -> PublicKeys:
    """Load a public-keys JSON file (or an already parsed object)."""
    if isinstance(source, Mapping):
        return PublicKeys.from_json(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read public keys file ({exc})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeyFileError(f"{path}: not JSON ({exc})") from None
    try:
        return PublicKeys.from_json(obj)
    except FormatError as exc:
        raise KeyFileError(f"{path}: {exc}") from None


# --- generation and files --------------------------------------------------------------


def generate_keyring(name: str | None = None) -> KeyRing:
    """Fresh key pairs; ``name`` defaults to :func:`default_key_name`."""
    key_name = validate_key_name(default_key_name() if name is None else name)
    return KeyRing(
        record=RecordKeys(
            ecdsa=ec.generate_private_key(ec.SECP256R1()),
            mldsa=mldsa.MLDSA65PrivateKey.generate(),
        ),
        checkpoint=CheckpointKeys(
            name=key_name,
            ecdsa=ec.generate_private_key(ec.SECP256R1()),
            mldsa=mldsa.MLDSA65PrivateKey.generate(),
        ),
    )


def _pem(key: EcdsaPrivate | MldsaPrivate) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_new_file(directory: Path, filename: str, data: bytes, mode: int, force: bool) -> None:
    """Write ``directory/filename`` atomically, created with ``mode`` (never chmod-ed later).

    The content goes to a fresh temporary file (O_EXCL, ``mode``) that is then renamed over
    the target (``force``) or hard-linked to it, which fails if the target exists.
    """
    final = directory / filename
    tmp = directory / f".{filename}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if force:
            os.replace(tmp, final)
        else:
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise KeyFileError(f"{final}: already exists (use force to overwrite)") from None
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_keyring(
    keyring: KeyRing, directory: str | os.PathLike[str], *, force: bool = False
) -> None:
    """Write the key files of ``keyring`` into ``directory`` (created with mode 0700).

    Refuses (:class:`KeyFileError`, nothing written) if any key file already exists, unless
    ``force``.
    """
    path = Path(directory)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create key directory ({exc})") from None
    if not force:
        existing = [name for name in (*KEY_FILES, NAME_FILE) if (path / name).exists()]
        if existing:
            raise KeyFileError(
                f"{path / existing[0]}: already exists; refusing to overwrite keys "
                "(use --force / force=True)"
            )
    contents = {
        RECORD_ECDSA_FILE: _pem(keyring.record.ecdsa),
        RECORD_MLDSA_FILE: _pem(keyring.record.mldsa),
        CHECKPOINT_ECDSA_FILE: _pem(keyring.checkpoint.ecdsa),
        CHECKPOINT_MLDSA_FILE: _pem(keyring.checkpoint.mldsa),
    }
    try:
        for filename, data in contents.items():
            _write_new_file(path, filename, data, 0o600, force)
        _write_new_file(path, NAME_FILE, (keyring.name + "\n").encode("utf-8"), 0o644, force)
    except KeyFileError:
        raise
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot write key files ({exc})") from None
    fsync_directory(path)


def generate_keys(
    directory: str | os.PathLike[str], name: str | None = None, *, force: bool = False
) -> KeyRing:
    """Generate a key ring and write it to ``directory`` (see :func:`write_keyring`)."""
    keyring = generate_keyring(name)
    write_keyring(keyring, directory, force=force)
    return keyring


def _read_private(path: Path, expected: str) -> object:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file ({exc})") from None
    if b"-----BEGIN PRIVATE KEY-----" not in data:
        raise KeyFileError(f"{path}: not a PKCS#8 PEM private key (expected {expected})")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(f"{path}: encrypted private keys are not supported") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path}: malformed PKCS#8 PEM private key ({exc})") from None


def _load_ecdsa(path: Path) -> EcdsaPrivate:
    key = _read_private(path, "ECDSA P-256")
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"{path}: expected an ECDSA P-256 key, got {_describe_key(key)}")
    return key


def _load_mldsa(path: Path) -> MldsaPrivate:
    key = _read_private(path, "ML-DSA-65")
    if not isinstance(key, mldsa.MLDSA65PrivateKey):
        raise KeyFileError(f"{path}: expected an ML-DSA-65 key, got {_describe_key(key)}")
    return key


def _describe_key(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an ECDSA {key.curve.name} key"
    return type(key).__name__.removeprefix("_")


def load_keyring(directory: str | os.PathLike[str]) -> KeyRing:
    """Load the key files written by :func:`write_keyring`; errors name the file."""
    path = Path(directory)
    if not path.is_dir():
        raise KeyFileError(f"{path}: key directory not found")
    record_ecdsa = _load_ecdsa(path / RECORD_ECDSA_FILE)
    record_mldsa = _load_mldsa(path / RECORD_MLDSA_FILE)
    checkpoint_ecdsa = _load_ecdsa(path / CHECKPOINT_ECDSA_FILE)
    checkpoint_mldsa = _load_mldsa(path / CHECKPOINT_MLDSA_FILE)
    name_path = path / NAME_FILE
    try:
        raw_name = name_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(f"{name_path}: key name file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{name_path}: cannot read key name ({exc})") from None
    name = raw_name[:-1] if raw_name.endswith("\n") else raw_name
    try:
        validate_key_name(name, str(name_path))
    except FormatError as exc:
        raise KeyFileError(str(exc)) from None
    if spki_der(record_ecdsa.public_key()) == spki_der(checkpoint_ecdsa.public_key()):
        raise KeyFileError(
            f"{path / CHECKPOINT_ECDSA_FILE}: checkpoint key must differ from the record key"
        )
    if mldsa_public_bytes(record_mldsa.public_key()) == mldsa_public_bytes(
        checkpoint_mldsa.public_key()
    ):
        raise KeyFileError(
            f"{path / CHECKPOINT_MLDSA_FILE}: checkpoint key must differ from the record key"
        )
    return KeyRing(
        record=RecordKeys(ecdsa=record_ecdsa, mldsa=record_mldsa),
        checkpoint=CheckpointKeys(name=name, ecdsa=checkpoint_ecdsa, mldsa=checkpoint_mldsa),
    )
