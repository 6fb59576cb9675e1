"""Shared fixtures: real keys, real SQLite ledgers in tmp_path, a reference Merkle tree."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import pytest
from lineage_audit.ledger import KeyRing, Ledger, RecordSpec, generate_keyring
from lineage_audit.ledger.keys import write_keyring

ROOT = Path(__file__).resolve().parent.parent
PYTHON_SRC = ROOT / "python"
CONFORMANCE = ROOT.parent / "shared" / "conformance"


def sha_hex(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


# --- reference RFC 9162 implementation (from the RFC text, on plain lists) -----------------


def ref_leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class RefTree:
    """MTH, PATH and PROOF of RFC 9162 §2.1, computed from scratch over leaf hashes."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self.leaves = list(leaf_hashes)
        self.mth = lru_cache(maxsize=None)(self._mth)

    def _mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return self.leaves[start]
        k = _k(n)
        return ref_node(self.mth(start, start + k), self.mth(start + k, end))

    def root(self, size: int) -> bytes:
        return self.mth(0, size)

    def path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _k(n)
        if m < k:
            return [*self.path(m, start, start + k), self.mth(start + k, end)]
        return [*self.path(m - k, start + k, end), self.mth(start, start + k)]

    def subproof(self, m: int, start: int, end: int, b: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if b else [self.mth(start, end)]
        k = _k(n)
        if m <= k:
            return [*self.subproof(m, start, start + k, b), self.mth(start + k, end)]
        return [*self.subproof(m - k, start + k, end, False), self.mth(start, start + k)]

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return self.path(index, 0, size)

    def consistency(self, old: int, new: int) -> list[bytes]:
        return self.subproof(old, 0, new, True)


# --- keys and ledgers -------------------------------------------------------------------


@pytest.fixture(scope="session")
def keyring() -> KeyRing:
    return generate_keyring("lineage-audit.test/log")


@pytest.fixture(scope="session")
def other_keyring() -> KeyRing:
    return generate_keyring("lineage-audit.test/log")


@pytest.fixture
def keys_dir(tmp_path: Path, keyring: KeyRing) -> Path:
    path = tmp_path / "keys"
    write_keyring(keyring, path)
    return path


@pytest.fixture
def pubkeys_file(tmp_path: Path, keyring: KeyRing) -> Path:
    path = tmp_path / "pubkeys.json"
    path.write_text(json.dumps(keyring.public_keys().to_json()))
    return path


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(db_path: Path, keyring: KeyRing):
    with Ledger.open(db_path, keyring) as opened:
        yield opened


def fill(ledger: Ledger, count: int, action: str = "test.step") -> list:
    """Append ``count`` signed records (one transaction) with distinct subjects."""
    start = ledger.size
    specs = [
        RecordSpec("record", action, "tester", [(f"item-{start + i}", sha_hex(f"{start + i}"))],
                   {"i": start + i})
        for i in range(count)
    ]  # fmt: skip
    return ledger.append_many(specs)


@pytest.fixture
def helpers():
    """Helper functions for the ledger tests (tests/ is not a package, so no imports)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        sha_hex=sha_hex, RefTree=RefTree, fill=fill, leaf_hash=ref_leaf_hash, node=ref_node,
        conformance=CONFORMANCE, cli_env=cli_env,
    )  # fmt: skip


# --- running the CLI ----------------------------------------------------------------------


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m lineage_audit ...`` in a subprocess (real exit codes and stderr)."""

    def run(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lineage_audit", *map(str, args)],
            capture_output=True,
            text=True,
            env=cli_env(),
            cwd=cwd,
            timeout=120,
        )

    return run


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``lineage_audit.cli.main`` in-process; returns (exit code, stdout, stderr)."""
    from lineage_audit.cli import main

    def run(*args: object) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="session")
def merkle_verify_bin() -> str:
    """The built `merkle-verify` binary (make setup builds it; MERKLE_VERIFY_BIN overrides)."""
    path = Path(os.environ.get("MERKLE_VERIFY_BIN", ROOT / "target/release/merkle-verify"))
    assert path.exists(), f"{path} is missing: run `make setup`"
    return str(path)
