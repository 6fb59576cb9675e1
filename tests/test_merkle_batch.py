"""Packed batch forms of the extension agree with the per-item forms, and say what is wrong."""

from __future__ import annotations

import hashlib
import random

import pytest
from lineage_audit import _merkle_verify as ext


def _leaves(rng: random.Random, n: int) -> list[bytes]:
    return [ext.leaf_hash(rng.randbytes(rng.randrange(0, 40))) for _ in range(n)]


def test_packed_inclusion_agrees_with_per_proof_verify() -> None:
    rng = random.Random(20240229)
    size = rng.randrange(3000, 9000)
    leaves = _leaves(rng, size)
    root = ext.root(leaves)
    assert ext.root_packed(b"".join(leaves)) == root
    count = 3000
    indices = [rng.randrange(size) for _ in range(count)]
    packed = ext.inclusion_proofs_packed(b"".join(leaves), indices)
    proofs = []
    at = 0
    for index in indices:
        proof = ext.inclusion_proof(leaves, index)
        assert packed[at : at + 32 * len(proof)] == b"".join(proof)
        at += 32 * len(proof)
        proofs.append(proof)
    assert at == len(packed)

    # Corrupt about a tenth: a flipped bit in a proof hash or in the leaf hash, a leaf hash
    # swapped for another's, an index moved past the end (its proof hashes dropped).
    leaf_batch = [leaves[i] for i in indices]
    for k in rng.sample(range(count), count // 10):
        what = rng.choice(["proof", "leaf", "swap", "beyond"])
        if what == "proof":
            j = rng.randrange(len(proofs[k]))
            bad = bytearray(proofs[k][j])
            bad[rng.randrange(32)] ^= 1 << rng.randrange(8)
            proofs[k] = [*proofs[k][:j], bytes(bad), *proofs[k][j + 1 :]]
        elif what == "leaf":
            bad = bytearray(leaf_batch[k])
            bad[0] ^= 0x80
            leaf_batch[k] = bytes(bad)
        elif what == "swap":
            leaf_batch[k] = leaves[(indices[k] + 1) % size]
        else:
            indices[k] = size + rng.randrange(5)
            proofs[k] = []
    want = [
        ext.verify_inclusion(leaf, index, size, proof, root)
        for leaf, index, proof in zip(leaf_batch, indices, proofs, strict=True)
    ]
    got = ext.verify_inclusion_batch_packed(
        b"".join(leaf_batch), indices, size, b"".join(b"".join(p) for p in proofs), root
    )
    assert got == want
    assert want.count(False) >= count // 10 - 5
    assert got == ext.verify_inclusion_batch(leaf_batch, indices, size, proofs, root)
    wrong_root = hashlib.sha256(root).digest()
    flat = b"".join(b"".join(p) for p in proofs)
    assert not any(
        ext.verify_inclusion_batch_packed(b"".join(leaf_batch), indices, size, flat, wrong_root)
    )


def test_packed_inclusion_small_trees() -> None:
    rng = random.Random(7)
    for size in range(1, 40):
        leaves = _leaves(rng, size)
        indices = list(range(size))
        packed = ext.inclusion_proofs_packed(b"".join(leaves), indices)
        assert packed == b"".join(b"".join(ext.inclusion_proof(leaves, i)) for i in indices)
        verdicts = ext.verify_inclusion_batch_packed(
            b"".join(leaves), indices, size, packed, ext.root(leaves)
        )
        assert verdicts == [True] * size
    assert ext.inclusion_proofs_packed(b"", []) == b""
    assert ext.verify_inclusion_batch_packed(b"", [], 5, b"", bytes(32)) == []
    assert ext.root_packed(b"") == ext.empty_root()


def test_packed_inclusion_length_errors() -> None:
    rng = random.Random(3)
    leaves = _leaves(rng, 9)
    root = ext.root(leaves)
    batch = leaves[2] + leaves[8]
    packed = ext.inclusion_proofs_packed(b"".join(leaves), [2, 8])
    assert len(packed) == 32 * (4 + 1)
    verify = ext.verify_inclusion_batch_packed
    with pytest.raises(ValueError, match=r"^leaf_hashes is 63 bytes, not a multiple of 32$"):
        verify(batch[:63], [2, 8], 9, packed, root)
    with pytest.raises(
        ValueError, match=r"^batch lists differ in length: 1 leaf hashes, 2 indices$"
    ):
        verify(batch[:32], [2, 8], 9, packed, root)
    with pytest.raises(ValueError, match=r"^packed_proofs is 159 bytes, not a multiple of 32$"):
        verify(batch, [2, 8], 9, packed[:-1], root)
    with pytest.raises(
        ValueError,
        match=r"^packed_proofs is 128 bytes, expected 160: 32 bytes per hash of the proofs "
        r"of these 2 indices in a tree of size 9$",
    ):
        verify(batch, [2, 8], 9, packed[32:], root)
    with pytest.raises(ValueError, match=r"^root is 31 bytes, expected 32$"):
        verify(batch, [2, 8], 9, packed, root[:31])
    with pytest.raises(ValueError, match=r"^index 9 is beyond tree size 9$"):
        ext.inclusion_proofs_packed(b"".join(leaves), [1, 9])
    with pytest.raises(ValueError, match=r"^leaf_hashes is 33 bytes, not a multiple of 32$"):
        ext.inclusion_proofs_packed(bytes(33), [0])
    with pytest.raises(ValueError, match=r"^leaf_hashes is 33 bytes, not a multiple of 32$"):
        ext.root_packed(bytes(33))
    with pytest.raises(TypeError):
        verify(list(leaves[:2]), [2, 8], 9, packed, root)  # type: ignore[arg-type]


def _chain(n: int) -> list[bytes]:
    out, prev = [], bytes(32)
    for seq in range(n):
        payload = seq.to_bytes(4, "big")
        leaf = ext.build_leaf_input(seq, prev, "t", payload, b"e" + payload, b"m" + payload)
        out.append(leaf)
        prev = ext.leaf_hash(leaf)
    return out


def test_packed_chain_agrees_with_list_form() -> None:
    chain = _chain(3000)
    packed = b"".join(chain)
    assert ext.verify_chain_packed(packed) == ext.verify_chain(chain) == (True, None, None)
    mid = ext.leaf_hash(chain[999])
    assert ext.verify_chain_packed(packed[158 * 1000 :], 1000, mid) == (True, None, None)
    assert ext.verify_chain_packed(b"", 5, mid) == (True, None, None)
    rng = random.Random(11)
    for _ in range(20):
        bad = bytearray(packed)
        for _ in range(rng.randrange(1, 4)):
            bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
        listed = [bytes(bad[i : i + 158]) for i in range(0, len(bad), 158)]
        assert ext.verify_chain_packed(bytes(bad)) == ext.verify_chain(listed)
        assert ext.verify_chain_packed(bytes(bad))[0] in (True, False)


def test_packed_chain_length_errors() -> None:
    packed = b"".join(_chain(3))
    with pytest.raises(ValueError, match=r"^leaf_inputs is 473 bytes, not a multiple of 158$"):
        ext.verify_chain_packed(packed[:-1])
    with pytest.raises(ValueError, match=r"^prev_leaf_hash is 3 bytes, expected 32$"):
        ext.verify_chain_packed(packed, 0, b"abc")
