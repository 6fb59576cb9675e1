"""RFC 9162 Merkle tree hashing and proof generation from a store of perfect subtrees.

The store keeps every *complete* subtree hash: node ``(level, index)`` is the hash of leaves
``[index * 2**level, (index + 1) * 2**level)``. Every range an RFC 9162 proof needs is a
right fold of at most 64 such nodes, so an inclusion or consistency proof for any tree size
costs O(log n) node reads. The functions here are pure: they plan which nodes are needed and
fold them; reading the nodes is the caller's (the store's) job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

from .errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "MAX_TREE_SIZE",
    "NodeFetcher",
    "NodeKey",
    "consistency_proof",
    "consistency_ranges",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "nodes_for_append",
    "perfect_cover",
    "range_hashes",
    "root_hash",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()
MAX_TREE_SIZE = 2**63

NodeKey = tuple[int, int]
"""``(level, index)`` of a complete subtree."""

NodeFetcher = Callable[[Sequence[NodeKey]], Mapping[NodeKey, bytes]]
"""Reads the given complete-subtree hashes (all must exist)."""


def leaf_hash(leaf_input: bytes) -> bytes:
    """``SHA-256(0x00 || leaf_input)``."""
    return hashlib.sha256(b"\x00" + leaf_input).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_cover(start: int, end: int) -> list[NodeKey]:
    """The complete subtrees, largest first, whose right fold is ``MTH(D[start:end])``.

    ``start`` must be aligned as in every range an RFC 9162 proof uses (a multiple of the
    smallest power of two >= ``end - start``); the empty range has no cover.
    """
    n = end - start
    if n <= 0:
        raise ProofError(f"range [{start}, {end}) is empty")
    keys: list[NodeKey] = []
    pos = start
    for level in range(n.bit_length() - 1, -1, -1):
        if n >> level & 1:
            width = 1 << level
            if pos % width:
                raise ProofError(f"range [{start}, {end}) is not aligned to complete subtrees")
            keys.append((level, pos >> level))
            pos += width
    return keys


def _fold(hashes: Sequence[bytes]) -> bytes:
    acc = hashes[-1]
    for item in reversed(hashes[:-1]):
        acc = node_hash(item, acc)
    return acc


def range_hashes(ranges: Sequence[tuple[int, int]], fetch: NodeFetcher) -> list[bytes]:
    """``MTH(D[a:b])`` for each range, reading all needed nodes with one ``fetch`` call."""
    covers = [perfect_cover(a, b) for a, b in ranges]
    wanted = sorted({key for cover in covers for key in cover})
    nodes = fetch(wanted) if wanted else {}
    out = []
    for cover in covers:
        try:
            out.append(_fold([nodes[key] for key in cover]))
        except KeyError as exc:
            raise ProofError(f"tree node {exc.args[0]} is missing from the store") from None
    return out


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose hashes form ``PATH(index, D[0:size])`` (RFC 9162 §2.1.3.1)."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The ranges whose hashes form ``PROOF(old, D[0:new])`` (RFC 9162 §2.1.4.1).

    ``0 < old <= new``; equal sizes give an empty proof.
    """
    if not 0 < old <= new:
        raise ProofError(
            f"no consistency proof from size {old} to size {new} (need 0 < old <= new)"
        )
    ranges: list[tuple[int, int]] = []
    start, end, m, complete = 0, new, old, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                ranges.append((start, end))
            break
        k = _split(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            complete = False
    ranges.reverse()
    return ranges


def root_hash(size: int, fetch: NodeFetcher) -> bytes:
    """``MTH(D[0:size])``; the empty tree's root is ``SHA-256("")``."""
    if size < 0:
        raise ProofError(f"tree size {size} is negative")
    if size == 0:
        return EMPTY_ROOT
    return range_hashes([(0, size)], fetch)[0]


def inclusion_proof(index: int, size: int, fetch: NodeFetcher) -> list[bytes]:
    """The RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
    return range_hashes(inclusion_ranges(index, size), fetch)


def consistency_proof(old: int, new: int, fetch: NodeFetcher) -> list[bytes]:
    """The RFC 9162 consistency proof from tree size ``old`` to ``new``."""
    return range_hashes(consistency_ranges(old, new), fetch)


def nodes_for_append(
    index: int, new_leaf_hash: bytes, lookup: Callable[[NodeKey], bytes]
) -> list[tuple[int, int, bytes]]:
    """The complete-subtree nodes created by appending leaf ``index``.

    Returns ``(level, index, hash)`` rows: the leaf itself and every subtree it completes.
    ``lookup`` reads an existing node (the left siblings on the tree's right edge).
    """
    if not 0 <= index < MAX_TREE_SIZE:
        raise ProofError(f"leaf index {index} out of range")
    rows = [(0, index, new_leaf_hash)]
    acc, level, pos = new_leaf_hash, 0, index
    while pos & 1:
        acc = node_hash(lookup((level, pos - 1)), acc)
        level += 1
        pos >>= 1
        rows.append((level, pos, acc))
    return rows
