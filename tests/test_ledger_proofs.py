"""Merkle proofs from the node store vs a from-scratch reference; conformance vectors."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from pathlib import Path

import pytest
from lineage_audit.ledger import Ledger, ProofError, SQLiteStore
from lineage_audit.ledger._vcore import RootAccumulator, verify_consistency, verify_inclusion
from lineage_audit.ledger.merkle import EMPTY_ROOT, consistency_ranges, perfect_cover
from lineage_audit.ledger.proofs import (
    format_consistency,
    parse_consistency,
    parse_tlog_proof,
)
from lineage_audit.ledger.store import PendingEntry

BIG = 3000


def _pending(i: int) -> PendingEntry:
    h = hashlib.sha256(str(i).encode()).digest()
    ptype = "https://lineage-audit.dev/predicate/record/v1"
    envelope = b'{"synthetic":%d}' % i
    return PendingEntry(envelope, h, h[::-1], hashlib.sha256(h).digest(), ptype, "synthetic", "t")


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    """A real SQLite store with BIG entries (synthetic envelopes: proofs ignore them)."""
    store = SQLiteStore(tmp_path_factory.mktemp("big") / "big.db")
    for start in range(0, BIG, 500):
        store.append([_pending(i) for i in range(start, start + 500)])
    yield store
    store.close()


@pytest.fixture(scope="module")
def big(big_store):
    ledger = Ledger.from_store(big_store)
    leaves = [e.leaf_hash for e in ledger.entries()]
    return ledger, leaves


def test_store_nodes_are_complete(big, big_store) -> None:
    ledger, leaves = big
    assert ledger.size == BIG and len(leaves) == BIG
    conn = big_store._conn
    expected = sum(BIG >> level for level in range(BIG.bit_length()))
    assert conn.execute("SELECT count(*) FROM nodes").fetchone()[0] == expected


def test_roots_match_reference(big, helpers) -> None:
    ledger, leaves = big
    ref = helpers.RefTree(leaves)
    assert ledger.root(0) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    acc = RootAccumulator()
    for n in range(1, BIG + 1):
        acc.push(leaves[n - 1])
        if n <= 70 or n % 97 == 0 or n == BIG:
            assert ledger.root(n) == ref.root(n) == acc.root(), n


def test_all_small_sizes_match_reference(big, helpers) -> None:
    ledger, leaves = big
    ref = helpers.RefTree(leaves)
    for size in range(1, 71):
        root = ref.root(size)
        for index in range(size):
            proof = ledger.inclusion_proof(index, size)
            assert proof == ref.inclusion(index, size), (index, size)
            assert verify_inclusion(index, size, leaves[index], proof, root)
        for old in range(1, size + 1):
            proof = ledger.consistency_proof(old, size)
            assert proof == ref.consistency(old, size), (old, size)
            assert verify_consistency(old, size, proof, ref.root(old), root)


def test_random_large_sizes_match_reference(big, helpers) -> None:
    ledger, leaves = big
    ref = helpers.RefTree(leaves)
    rng = random.Random(9162)
    sizes = [*rng.sample(range(71, BIG + 1), 40), 128, 256, 1024, 2048, 2047, 2049, BIG]
    for size in sizes:
        root = ref.root(size)
        for index in {0, size - 1, *rng.sample(range(size), 5)}:
            proof = ledger.inclusion_proof(index, size)
            assert proof == ref.inclusion(index, size)
            assert len(proof) <= 64 and verify_inclusion(index, size, leaves[index], proof, root)
            assert not verify_inclusion(index, size, leaves[index - 1], proof, root)
        for old in {1, size, size - 1, *rng.sample(range(1, size), 5)}:
            proof = ledger.consistency_proof(old, size)
            assert proof == ref.consistency(old, size)
            assert verify_consistency(old, size, proof, ref.root(old), root)
            if proof:
                bad = [bytes(32), *proof[1:]]
                assert not verify_consistency(old, size, bad, ref.root(old), root)


def test_proof_argument_errors(big) -> None:
    ledger, _ = big
    for call in (
        lambda: ledger.inclusion_proof(5, 5),
        lambda: ledger.inclusion_proof(0, BIG + 1),
        lambda: ledger.inclusion_proof(-1, 5),
        lambda: ledger.consistency_proof(0, 5),
        lambda: ledger.consistency_proof(6, 5),
        lambda: ledger.consistency_proof(1, BIG + 1),
        lambda: ledger.root(BIG + 1),
    ):
        with pytest.raises(ProofError):
            call()
    with pytest.raises(ProofError, match="not aligned"):
        perfect_cover(1, 3)
    with pytest.raises(ProofError):
        consistency_ranges(0, 3)
    assert consistency_ranges(4, 4) == []


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _b(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def test_text_forms(ledger, helpers) -> None:
    helpers.fill(ledger, 9)
    ledger.checkpoint()
    text = ledger.tlog_proof(4)
    parsed = parse_tlog_proof(text)
    assert text.startswith("c2sp.org/tlog-proof@v1\nextra ")
    assert parsed.index == 4 and parsed.extra == ledger.entry(4).leaf_input
    assert list(parsed.path) == ledger.inclusion_proof(4, 9)
    assert parsed.checkpoint == ledger.latest_checkpoint().note
    cons = ledger.consistency_text(3, 9)
    assert cons.startswith("old 3\n") and cons.endswith("\n")
    assert list(parse_consistency(cons).proof) == ledger.consistency_proof(3, 9)
    assert format_consistency(9, []) == "old 9\n"


def test_node_reads_use_the_primary_key(big_store) -> None:
    """Proofs must be O(log n) reads: the node lookup never scans the table."""
    conn = big_store._conn
    for count in (1, 2, 40, 64):
        sql = SQLiteStore.nodes_sql(count)
        plan = conn.execute("EXPLAIN QUERY PLAN " + sql, [0] * (2 * count)).fetchall()
        details = " ".join(row[-1] for row in plan)
        assert "SCAN nodes" not in details and "PRIMARY KEY" in details, details
