//! RFC 9162 Merkle trees: hashing, roots, inclusion and consistency proofs.
//!
//! Generation works on a slice of leaf hashes held in memory (the writer keeps its own node
//! store; these are for verifiers and tests). Verification follows RFC 9162 §2.1.3.2 and
//! §2.1.4.2, plus the edge rules pinned by `shared/conformance/merkle`:
//! - a proof must have exactly the expected number of hashes (no garbage before or after);
//! - consistency between equal sizes needs an empty proof and byte-equal roots;
//! - consistency from an old size of 0 is always rejected (it proves nothing).

use sha2::block_api::compress256;
use sha2::{Digest, Sha256};

/// A SHA-256 output: a leaf hash, interior node or root.
pub type Hash = [u8; 32];

/// Length in bytes of every hash in this module.
pub const HASH_LEN: usize = 32;

/// Why a proof did not verify or could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    #[error("index {index} is beyond tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("old tree size {old} is larger than new tree size {new}")]
    OldSizeExceedsNew { old: u64, new: u64 },
    #[error("old tree size is 0: a consistency proof from the empty tree proves nothing")]
    EmptyOldTree,
    #[error("proof has {got} hashes, expected {want}")]
    ProofLength { got: usize, want: usize },
    #[error("computed root does not match")]
    RootMismatch,
    #[error("computed old root does not match")]
    OldRootMismatch,
    #[error("computed new root does not match")]
    NewRootMismatch,
    #[error("both tree sizes are {size} but the roots differ")]
    EqualSizeRootsDiffer { size: u64 },
    #[error("{what} is {len} bytes, expected 32")]
    HashLength { what: String, len: usize },
    #[error("batch lists differ in length: {leaves} leaves, {indices} indices, {proofs} proofs")]
    BatchLength {
        leaves: usize,
        indices: usize,
        proofs: usize,
    },
    #[error("{what} is {len} bytes, not a multiple of {unit}")]
    PackedLength {
        what: String,
        len: usize,
        unit: usize,
    },
    #[error("batch lists differ in length: {leaves} leaf hashes, {indices} indices")]
    PackedBatchLength { leaves: usize, indices: usize },
    #[error(
        "packed_proofs is {got} bytes, expected {want}: 32 bytes per hash of the proofs of \
         these {count} indices in a tree of size {size}"
    )]
    PackedProofLength {
        got: usize,
        want: usize,
        count: usize,
        size: u64,
    },
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// SHA-256 initial state (FIPS 180-4 §5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Messages of up to this many padded blocks are hashed by [`sha256_prefixed`] on the stack.
const SMALL_BLOCKS: usize = 4;

/// SHA-256 state words to the big-endian digest.
fn digest_bytes(state: &[u32; 8]) -> Hash {
    let mut out = [0u8; HASH_LEN];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// SHA-256(prefix || data). Short messages (leaf inputs, nodes) are padded by hand into
/// stack blocks and fed straight to the compression function (SHA-NI where the CPU has
/// it): for a 2-3 block message the streaming `Digest` buffering costs a third as much
/// again as the compressions themselves.
fn sha256_prefixed(prefix: u8, data: &[u8]) -> Hash {
    let len = 1 + data.len();
    // 0x80 terminator and 64-bit bit length after the message.
    let blocks = (len + 9).div_ceil(64);
    if blocks > SMALL_BLOCKS {
        return Sha256::new()
            .chain_update([prefix])
            .chain_update(data)
            .finalize()
            .into();
    }
    let mut buf = [[0u8; 64]; SMALL_BLOCKS];
    let flat = buf.as_flattened_mut();
    flat[0] = prefix;
    flat[1..len].copy_from_slice(data);
    flat[len] = 0x80;
    let bits = (len as u64) * 8;
    flat[blocks * 64 - 8..blocks * 64].copy_from_slice(&bits.to_be_bytes());
    let mut state = SHA256_IV;
    compress256(&mut state, &buf[..blocks]);
    digest_bytes(&state)
}

/// RFC 9162 leaf hash: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256_prefixed(0x00, data)
}

/// RFC 9162 interior node: SHA-256(0x01 || left || right), two compressions.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // 65-byte message: 0x01, left, 31 bytes of right | last byte, 0x80, zeros, 520 bits.
    let mut blocks = [[0u8; 64]; 2];
    let [first, second] = &mut blocks;
    first[0] = 0x01;
    first[1..=HASH_LEN].copy_from_slice(left);
    first[1 + HASH_LEN..].copy_from_slice(&right[..HASH_LEN - 1]);
    second[0] = right[HASH_LEN - 1];
    second[1] = 0x80;
    second[56..].copy_from_slice(&(65u64 * 8).to_be_bytes());
    let mut state = SHA256_IV;
    compress256(&mut state, &blocks);
    digest_bytes(&state)
}

/// Root of the empty tree: SHA-256("").
pub fn empty_root() -> Hash {
    sha256(b"")
}

/// Merkle tree hash of `leaves` (already leaf-hashed).
///
/// O(n) hashing and O(log n) memory: a stack of perfect subtrees whose sizes follow the
/// binary digits of the leaf count, folded right to left at the end. That is exactly the
/// RFC 9162 recursive definition (split at the largest power of two below n), without
/// recursion.
pub fn root(leaves: &[Hash]) -> Hash {
    let mut stack: Vec<(Hash, u32)> = Vec::with_capacity(64);
    for leaf in leaves {
        let mut cur = (*leaf, 0u32);
        // Merge while the top of the stack is a perfect subtree of the same height.
        while let Some(&(top, height)) = stack.last() {
            if height != cur.1 {
                break;
            }
            stack.pop();
            cur = (node_hash(&top, &cur.0), height + 1);
        }
        stack.push(cur);
    }
    let Some((mut acc, _)) = stack.pop() else {
        return empty_root();
    };
    while let Some((left, _)) = stack.pop() {
        acc = node_hash(&left, &acc);
    }
    acc
}

/// Largest power of two strictly below `n` (RFC 9162 `k`) for `n >= 2`; 1 otherwise, so
/// it never overflows a shift.
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n.max(2) - 1).leading_zeros())
}

/// `split_point` for in-memory lengths.
fn split_len(n: usize) -> usize {
    // usize -> u64 is lossless on every supported target and the result is below n.
    split_point(n as u64) as usize
}

/// Number of hashes in the inclusion proof of `index` in a tree of `size`; 0 when
/// `index >= size` (no proof exists). Walks the RFC 9162 `PATH` recursion without hashing.
pub fn inclusion_proof_len(mut index: u64, mut size: u64) -> usize {
    if index >= size {
        return 0;
    }
    let mut len = 0;
    while size > 1 {
        let k = split_point(size);
        if index < k {
            size = k;
        } else {
            index -= k;
            size -= k;
        }
        len += 1;
    }
    len
}

/// Number of hashes in the consistency proof from `old` to `new`; 0 unless
/// `0 < old < new`. Walks the RFC 9162 `SUBPROOF` recursion without hashing.
pub fn consistency_proof_len(mut old: u64, mut new: u64) -> usize {
    // Outside 0 < old < new there is no proof; inside it the loop keeps 0 < old <= new,
    // so it ends with old == new and `split_point` only ever sees new >= 2.
    if old == 0 || old >= new {
        return 0;
    }
    let mut len = 0;
    // `complete` stays true while the old tree is a left-aligned perfect subtree, whose
    // hash the verifier already knows (the old root), so it is not sent.
    let mut complete = true;
    while old != new {
        let k = split_point(new);
        if old <= k {
            new = k;
        } else {
            old -= k;
            new -= k;
            complete = false;
        }
        len += 1;
    }
    len + usize::from(!complete)
}

/// Inclusion proof (audit path) for leaf `index`, bottom-up, per RFC 9162 §2.1.3.1.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, MerkleError> {
    let size = leaves.len() as u64;
    let mut idx = usize::try_from(index)
        .ok()
        .filter(|&i| i < leaves.len())
        .ok_or(MerkleError::IndexOutOfRange { index, size })?;
    let mut range = leaves;
    let mut top_down = Vec::new();
    while range.len() > 1 {
        // k < range.len(), so the split is in bounds.
        let (left, right) = range.split_at(split_len(range.len()));
        if idx < left.len() {
            top_down.push(root(right));
            range = left;
        } else {
            top_down.push(root(left));
            idx -= left.len();
            range = right;
        }
    }
    top_down.reverse();
    Ok(top_down)
}

/// Consistency proof from the first `old_size` leaves to all of `leaves` (RFC 9162
/// §2.1.4.1). Empty when the sizes are equal; an old size of 0 is refused.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, MerkleError> {
    let new_size = leaves.len() as u64;
    check_consistency_sizes(old_size, new_size)?;
    // old_size <= leaves.len(), so it fits in usize.
    let mut old = usize::try_from(old_size).map_err(|_| MerkleError::OldSizeExceedsNew {
        old: old_size,
        new: new_size,
    })?;
    let mut range = leaves;
    let mut complete = true;
    let mut top_down = Vec::new();
    while old != range.len() {
        let (left, right) = range.split_at(split_len(range.len()));
        if old <= left.len() {
            top_down.push(root(right));
            range = left;
        } else {
            top_down.push(root(left));
            old -= left.len();
            range = right;
            complete = false;
        }
    }
    let mut proof = Vec::with_capacity(top_down.len() + 1);
    if !complete {
        proof.push(root(range));
    }
    proof.extend(top_down.into_iter().rev());
    Ok(proof)
}

/// Root implied by an inclusion proof (RFC 9162 §2.1.3.2 steps 1-5), after checking the
/// index and the proof length.
pub fn root_from_inclusion_proof(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let want = inclusion_proof_len(index, size);
    if proof.len() != want {
        return Err(MerkleError::ProofLength {
            got: proof.len(),
            want,
        });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            // Skip the levels where this subtree is the unpaired right edge.
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Guaranteed by the length check; kept as the RFC's final condition.
    if snode != 0 {
        return Err(MerkleError::ProofLength {
            got: proof.len(),
            want,
        });
    }
    Ok(r)
}

/// Verifies that `leaf` (a leaf hash) is at `index` in the tree of `size` with `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    let computed = root_from_inclusion_proof(leaf, index, size, proof)?;
    if computed == *root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

/// Sizes a consistency proof may connect: 0 < old <= new.
fn check_consistency_sizes(old: u64, new: u64) -> Result<(), MerkleError> {
    if old > new {
        return Err(MerkleError::OldSizeExceedsNew { old, new });
    }
    if old == 0 {
        return Err(MerkleError::EmptyOldTree);
    }
    Ok(())
}

/// Verifies that the tree (`new_size`, `new_root`) extends (`old_size`, `old_root`).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), MerkleError> {
    check_consistency_sizes(old_size, new_size)?;
    let want = consistency_proof_len(old_size, new_size);
    if proof.len() != want {
        return Err(MerkleError::ProofLength {
            got: proof.len(),
            want,
        });
    }
    if old_size == new_size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(MerkleError::EqualSizeRootsDiffer { size: old_size })
        };
    }
    let (old_computed, new_computed) = roots_from_consistency(old_size, new_size, proof, old_root)?;
    if old_computed != *old_root {
        return Err(MerkleError::OldRootMismatch);
    }
    if new_computed != *new_root {
        return Err(MerkleError::NewRootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2 steps 2-6 for 0 < old < new and a proof of the expected length:
/// returns the (old, new) roots the proof implies.
fn roots_from_consistency(
    old: u64,
    new: u64,
    proof: &[Hash],
    old_root: &Hash,
) -> Result<(Hash, Hash), MerkleError> {
    let short = || MerkleError::ProofLength {
        got: proof.len(),
        want: consistency_proof_len(old, new),
    };
    let mut path = proof.iter();
    // A power-of-two old tree is a node of the new tree: its root starts the path.
    let seed = if old.is_power_of_two() {
        *old_root
    } else {
        *path.next().ok_or_else(short)?
    };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (seed, seed);
    for c in path {
        if snode == 0 {
            return Err(short());
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(short());
    }
    Ok((fr, sr))
}

/// Converts untrusted bytes to a hash, naming the argument on failure.
pub fn hash_from_slice(what: &str, bytes: &[u8]) -> Result<Hash, MerkleError> {
    Hash::try_from(bytes).map_err(|_| MerkleError::HashLength {
        what: what.to_owned(),
        len: bytes.len(),
    })
}

/// Converts an untrusted proof; errors name the element (`proof[2]`).
pub fn proof_from_slices<T: AsRef<[u8]>>(proof: &[T]) -> Result<Vec<Hash>, MerkleError> {
    proof
        .iter()
        .enumerate()
        .map(|(i, h)| hash_from_slice(&format!("proof[{i}]"), h.as_ref()))
        .collect()
}

/// [`verify_inclusion`] over raw byte strings (as found in JSON test vectors): every hash
/// must be 32 bytes.
pub fn verify_inclusion_bytes<T: AsRef<[u8]>>(
    leaf: &[u8],
    index: u64,
    size: u64,
    proof: &[T],
    root: &[u8],
) -> Result<(), MerkleError> {
    let leaf = hash_from_slice("leaf hash", leaf)?;
    let root = hash_from_slice("root", root)?;
    let proof = proof_from_slices(proof)?;
    verify_inclusion(&leaf, index, size, &proof, &root)
}

/// [`verify_consistency`] over raw byte strings. Mirrors the reference verifier: when the
/// sizes are equal the roots are only compared byte for byte, so their length is not
/// checked there (a conformance vector requires this); everywhere else hashes must be 32
/// bytes.
pub fn verify_consistency_bytes<T: AsRef<[u8]>>(
    old_size: u64,
    new_size: u64,
    proof: &[T],
    old_root: &[u8],
    new_root: &[u8],
) -> Result<(), MerkleError> {
    check_consistency_sizes(old_size, new_size)?;
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(MerkleError::ProofLength {
                got: proof.len(),
                want: 0,
            });
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(MerkleError::EqualSizeRootsDiffer { size: old_size })
        };
    }
    let old_root = hash_from_slice("old root", old_root)?;
    let new_root = hash_from_slice("new root", new_root)?;
    let proof = proof_from_slices(proof)?;
    verify_consistency(old_size, new_size, &proof, &old_root, &new_root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let (l, r) = leaves.split_at(split_len(n));
                node_hash(&reference_root(l), &reference_root(r))
            }
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let got: String = empty_root().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, hex);
        assert_eq!(root(&[]), empty_root());
    }

    #[test]
    fn hand_padded_sha256_matches_digest() {
        let data: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..data.len() {
            for prefix in [0u8, 1] {
                let want: Hash = Sha256::new()
                    .chain_update([prefix])
                    .chain_update(&data[..len])
                    .finalize()
                    .into();
                assert_eq!(sha256_prefixed(prefix, &data[..len]), want, "len={len}");
            }
        }
        let (l, r) = (leaf_hash(b"l"), leaf_hash(b"r"));
        let want: Hash = Sha256::digest([&[1u8][..], &l, &r].concat()).into();
        assert_eq!(node_hash(&l, &r), want);
    }

    #[test]
    fn leaf_and_node_domain_separation() {
        // RFC 6962 leaf hash of the empty string.
        let got: String = leaf_hash(b"").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            got,
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let a = leaf_hash(b"a");
        assert_ne!(node_hash(&a, &a), leaf_hash(&[a, a].concat()));
    }

    #[test]
    fn proof_lengths_are_total() {
        assert_eq!(inclusion_proof_len(5, 5), 0);
        assert_eq!(inclusion_proof_len(u64::MAX, 0), 0);
        assert_eq!(inclusion_proof_len(0, u64::MAX), 64);
        assert_eq!(consistency_proof_len(0, 9), 0);
        assert_eq!(consistency_proof_len(9, 3), 0);
        assert_eq!(consistency_proof_len(1, u64::MAX), 64);
    }

    #[test]
    fn split_point_is_largest_power_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }

    #[test]
    fn root_matches_recursive_definition() {
        for n in 0..70 {
            let l = leaves(n);
            assert_eq!(root(&l), reference_root(&l), "n={n}");
        }
    }

    #[test]
    fn rfc_example_tree_of_seven() {
        // Shape from RFC 9162 §2.1.5: proof for d0 in a 7-leaf tree has 3 hashes.
        let l = leaves(7);
        let proof = inclusion_proof(&l, 0).unwrap();
        assert_eq!(proof.len(), 3);
        assert_eq!(proof[0], l[1]);
        assert_eq!(proof[2], reference_root(&l[4..]));
        // PROOF(3, D[7]) = [c, d, g, l], PROOF(4, D[7]) = [l], PROOF(6, D[7]) = [i, j, k].
        let p3 = consistency_proof(&l, 3).unwrap();
        assert_eq!(p3.len(), 4);
        assert_eq!((p3[0], p3[1]), (l[2], l[3]));
        assert_eq!(p3[3], reference_root(&l[4..]));
        assert_eq!(consistency_proof(&l, 4).unwrap().len(), 1);
        assert_eq!(consistency_proof(&l, 6).unwrap().len(), 3);
    }

    #[test]
    fn inclusion_roundtrip_and_errors() {
        let l = leaves(13);
        let r = root(&l);
        for (i, leaf) in l.iter().enumerate() {
            let p = inclusion_proof(&l, i as u64).unwrap();
            assert_eq!(p.len(), inclusion_proof_len(i as u64, 13));
            verify_inclusion(leaf, i as u64, 13, &p, &r).unwrap();
        }
        let p = inclusion_proof(&l, 3).unwrap();
        assert_eq!(
            verify_inclusion(&l[3], 13, 13, &p, &r),
            Err(MerkleError::IndexOutOfRange {
                index: 13,
                size: 13
            })
        );
        assert_eq!(
            verify_inclusion(&l[3], 3, 13, &p[1..], &r),
            Err(MerkleError::ProofLength { got: 3, want: 4 })
        );
        assert_eq!(
            verify_inclusion(&l[4], 3, 13, &p, &r),
            Err(MerkleError::RootMismatch)
        );
        assert!(inclusion_proof(&l, 13).is_err());
        assert!(inclusion_proof(&[], 0).is_err());
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let e = MerkleError::IndexOutOfRange { index: 9, size: 8 };
        assert_eq!(e.to_string(), "index 9 is beyond tree size 8");
        let e = MerkleError::ProofLength { got: 4, want: 3 };
        assert_eq!(e.to_string(), "proof has 4 hashes, expected 3");
        assert_eq!(
            MerkleError::RootMismatch.to_string(),
            "computed root does not match"
        );
    }

    #[test]
    fn consistency_roundtrip_and_edges() {
        let l = leaves(21);
        for n in 1..=l.len() {
            let new_root = root(&l[..n]);
            for m in 1..=n {
                let p = consistency_proof(&l[..n], m as u64).unwrap();
                assert_eq!(p.len(), consistency_proof_len(m as u64, n as u64));
                let old_root = root(&l[..m]);
                verify_consistency(m as u64, n as u64, &p, &old_root, &new_root).unwrap();
            }
        }
        let r = root(&l);
        assert_eq!(
            verify_consistency(0, 21, &[], &empty_root(), &r),
            Err(MerkleError::EmptyOldTree)
        );
        assert_eq!(
            verify_consistency(5, 4, &[], &r, &r),
            Err(MerkleError::OldSizeExceedsNew { old: 5, new: 4 })
        );
        assert!(consistency_proof(&l, 0).is_err());
        assert!(consistency_proof(&l, 22).is_err());
    }

    #[test]
    fn bytes_forms_check_lengths() {
        let l = leaves(4);
        let r = root(&l);
        let p = inclusion_proof(&l, 1).unwrap();
        verify_inclusion_bytes(&l[1], 1, 4, &p, &r).unwrap();
        let err = verify_inclusion_bytes(&l[1][..9], 1, 4, &p, &r).unwrap_err();
        assert_eq!(err.to_string(), "leaf hash is 9 bytes, expected 32");
        let mut bad: Vec<Vec<u8>> = p.iter().map(|h| h.to_vec()).collect();
        bad[1].clear();
        let err = verify_inclusion_bytes(&l[1], 1, 4, &bad, &r).unwrap_err();
        assert_eq!(err.to_string(), "proof[1] is 0 bytes, expected 32");
        // Equal sizes: roots compared as bytes.
        verify_consistency_bytes::<&[u8]>(1, 1, &[], b"same", b"same").unwrap();
        assert!(verify_consistency_bytes::<&[u8]>(1, 1, &[], b"same", b"diff").is_err());
        assert!(verify_consistency_bytes::<&[u8]>(0, 0, &[], b"same", b"same").is_err());
    }
}
