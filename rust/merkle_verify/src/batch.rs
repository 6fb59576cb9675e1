//! Rayon-parallel forms of the tree and chain checks, using every core.
//!
//! Each gives exactly the answer of its sequential counterpart: the parallel chain verifier
//! reports the same lowest bad seq and reason as [`chain::verify_chain`].

use rayon::prelude::*;

use crate::chain::{self, ChainBreak};
use crate::leaf::LEAF_INPUT_LEN;
use crate::merkle::{self, Hash, MerkleError, HASH_LEN};
use crate::shared_paths::PathMemo;

/// Below this many items, rayon's scheduling costs more than it saves.
const MIN_PER_TASK: usize = 512;

/// Smallest subtree (in leaves) hashed as one parallel task by [`root_parallel`].
const MIN_SUBTREE: usize = 1 << 12;

/// Verifies many inclusion proofs against one tree. The three lists must have the same
/// length; the result holds one verdict per item, in order.
pub fn verify_inclusion_batch<P: AsRef<[Hash]> + Sync>(
    leaves: &[Hash],
    indices: &[u64],
    size: u64,
    proofs: &[P],
    root: &Hash,
) -> Result<Vec<Result<(), MerkleError>>, MerkleError> {
    if leaves.len() != indices.len() || leaves.len() != proofs.len() {
        return Err(MerkleError::BatchLength {
            leaves: leaves.len(),
            indices: indices.len(),
            proofs: proofs.len(),
        });
    }
    Ok(leaves
        .par_iter()
        .zip(indices.par_iter())
        .zip(proofs.par_iter())
        .with_min_len(64)
        .map(|((leaf, &index), proof)| {
            merkle::verify_inclusion(leaf, index, size, proof.as_ref(), root)
        })
        .collect())
}

/// Leaf hashes of many leaf inputs (or any byte strings), in parallel.
pub fn leaf_hashes_parallel<T: AsRef<[u8]> + Sync>(inputs: &[T]) -> Vec<Hash> {
    inputs
        .par_iter()
        .with_min_len(MIN_PER_TASK)
        .map(|input| merkle::leaf_hash(input.as_ref()))
        .collect()
}

/// Entries per task of [`verify_chain_parallel`]: each is hashed and checked in one pass.
const CHAIN_CHUNK: usize = 2048;

/// Same contract and answers as [`chain::verify_chain`], in parallel. Each task walks one
/// chunk in a single pass (hash entry i, check entry i + 1 against it while both are in
/// cache) and returns its first break and its last leaf hash; the links between chunks
/// are then checked in order, so the lowest failing seq and its reason are the ones the
/// sequential walk reports.
pub fn verify_chain_parallel<T: AsRef<[u8]> + Sync>(
    leaf_inputs: &[T],
    first_seq: u64,
    prev_leaf_hash: &Hash,
) -> Result<Hash, ChainBreak> {
    let chunks: Vec<(Option<ChainBreak>, Hash)> = leaf_inputs
        .par_chunks(CHAIN_CHUNK)
        .enumerate()
        .map(|(c, chunk)| {
            let start = c * CHAIN_CHUNK;
            let mut first_break = None;
            let mut prev: Option<Hash> = None;
            for (k, input) in chunk.iter().enumerate() {
                let input = input.as_ref();
                // The chunk's first entry links across chunks: checked below, in order.
                if let (Some(expected), None) = (&prev, &first_break) {
                    first_break = chain::seq_at(first_seq, start + k)
                        .and_then(|seq| chain::check_entry(seq, input, expected))
                        .err();
                }
                prev = Some(merkle::leaf_hash(input));
            }
            (first_break, prev.unwrap_or(*prev_leaf_hash))
        })
        .collect();
    let mut prev = *prev_leaf_hash;
    for (c, (inner_break, last)) in chunks.into_iter().enumerate() {
        let start = c * CHAIN_CHUNK;
        if let Some(first) = leaf_inputs.get(start) {
            chain::seq_at(first_seq, start)
                .and_then(|seq| chain::check_entry(seq, first.as_ref(), &prev))?;
        }
        if let Some(b) = inner_break {
            return Err(b);
        }
        prev = last;
    }
    Ok(prev)
}

/// [`merkle::root`] computed in parallel: equal power-of-two chunks are perfect subtrees,
/// so their roots (and the partial last chunk's) fold into the same tree hash.
pub fn root_parallel(leaves: &[Hash]) -> Hash {
    if leaves.len() <= 2 * MIN_SUBTREE {
        return merkle::root(leaves);
    }
    let tasks = 4 * rayon::current_num_threads().max(1);
    // Must be a power of two for the chunks to be subtrees of the RFC 9162 tree.
    let chunk = (leaves.len() / tasks).next_power_of_two().max(MIN_SUBTREE);
    let subtree_roots: Vec<Hash> = leaves.par_chunks(chunk).map(merkle::root).collect();
    merkle::root(&subtree_roots)
}

// ---------------------------------------------------------------------------------------
// Packed forms: hashes and proofs as flat byte buffers, so that tens of thousands of
// proofs cross from Python as two `bytes` objects instead of lists of lists.
// ---------------------------------------------------------------------------------------

/// Fewest items verified by one rayon task of the packed inclusion batch.
const PACKED_CHUNK: usize = 256;

/// `bytes` of n × 32 viewed as n hashes, without copying.
pub fn hashes_from_packed<'a>(what: &str, bytes: &'a [u8]) -> Result<&'a [Hash], MerkleError> {
    match bytes.as_chunks::<HASH_LEN>() {
        (hashes, []) => Ok(hashes),
        _ => Err(MerkleError::PackedLength {
            what: what.to_owned(),
            len: bytes.len(),
            unit: HASH_LEN,
        }),
    }
}

/// [`merkle::inclusion_proof_len`] in O(1): the audit path of `index` has one hash per
/// level below the highest bit where `index` and `size - 1` differ ("inner" part), plus one
/// per set bit of `index` above it (the left siblings on the right border).
pub fn inclusion_proof_len_fast(index: u64, size: u64) -> usize {
    if index >= size {
        return 0;
    }
    let inner = u64::BITS - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Verifies many inclusion proofs against one tree, with every input packed:
/// `leaf_hashes` is n × 32 bytes, `packed_proofs` the proofs concatenated in order, each
/// of [`merkle::inclusion_proof_len`]`(index, size)` hashes (none for an index beyond the
/// tree, whose verdict is then false). One verdict per item, in order; the same verdicts
/// as [`merkle::verify_inclusion`] on each item. Proofs are walked in leaf order so that
/// upper nodes shared by neighbours are hashed once ([`PathMemo`]). Errors only for
/// inconsistent lengths.
pub fn verify_inclusion_batch_packed(
    leaf_hashes: &[u8],
    indices: &[u64],
    size: u64,
    packed_proofs: &[u8],
    root: &Hash,
) -> Result<Vec<bool>, MerkleError> {
    let leaves = hashes_from_packed("leaf_hashes", leaf_hashes)?;
    if leaves.len() != indices.len() {
        return Err(MerkleError::PackedBatchLength {
            leaves: leaves.len(),
            indices: indices.len(),
        });
    }
    let proofs = hashes_from_packed("packed_proofs", packed_proofs)?;
    // Where each proof starts (in hashes); the total must match exactly.
    let mut offsets = Vec::with_capacity(indices.len());
    let mut total = 0usize;
    for &index in indices {
        offsets.push(total);
        total += inclusion_proof_len_fast(index, size);
    }
    if total != proofs.len() {
        return Err(MerkleError::PackedProofLength {
            got: packed_proofs.len(),
            want: total * HASH_LEN,
            count: indices.len(),
            size,
        });
    }
    // Walk proofs in leaf order, in a few large chunks per core: neighbours share upper
    // nodes, which PathMemo hashes once per chunk.
    let mut order: Vec<usize> = (0..indices.len()).collect();
    order.sort_unstable_by_key(|&i| indices[i]);
    let chunk = PACKED_CHUNK.max(order.len().div_ceil(4 * rayon::current_num_threads()));
    let offsets = &offsets;
    let found: Vec<(usize, bool)> = order
        .par_chunks(chunk)
        .flat_map_iter(|items| {
            let mut memo = PathMemo::default();
            items.iter().map(move |&i| {
                let (index, start) = (indices[i], offsets[i]);
                let len = inclusion_proof_len_fast(index, size);
                // In range: the lengths were summed above.
                let proof = proofs.get(start..start + len).unwrap_or_default();
                (i, memo.verify(&leaves[i], index, size, proof, root))
            })
        })
        .collect();
    let mut verdicts = vec![false; indices.len()];
    for (i, verdict) in found {
        verdicts[i] = verdict;
    }
    Ok(verdicts)
}

/// Every node of an RFC 9162 tree, built once in O(n): the complete subtrees of each level
/// plus, per level, the hash of the partial subtree on the right edge (if any). Any audit
/// path is then read off in O(log n) without hashing.
struct TreeLevels<'a> {
    leaves: &'a [Hash],
    /// `upper[l - 1]` holds the complete nodes of level `l >= 1` (`size >> l` of them).
    upper: Vec<Vec<Hash>>,
    /// `edge[l]`: hash of leaves `[(size >> l) << l, size)` when that range is non-empty.
    edge: Vec<Option<Hash>>,
}

impl<'a> TreeLevels<'a> {
    fn build(leaves: &'a [Hash]) -> Self {
        let mut tree = TreeLevels {
            leaves,
            upper: Vec::new(),
            edge: vec![None],
        };
        let n = leaves.len();
        let mut level = 0usize;
        // Until one node covers all n leaves (n <= 2^level).
        while n.saturating_sub(1) >> level > 0 {
            let cur = tree.level(level);
            let next: Vec<Hash> = cur
                .par_chunks_exact(2)
                .with_min_len(MIN_PER_TASK)
                .map(|pair| merkle::node_hash(&pair[0], &pair[1]))
                .collect();
            // The partial node at level + 1: its left child (index 2k) is complete when
            // the remainder covers at least one level-`level` subtree.
            let k = n >> (level + 1);
            let rem = n - (k << (level + 1));
            let edge = if rem == 0 {
                None
            } else if rem >= 1 << level {
                let left = cur.get(2 * k).copied().unwrap_or_default();
                Some(match tree.edge[level] {
                    Some(right) => merkle::node_hash(&left, &right),
                    None => left,
                })
            } else {
                tree.edge[level]
            };
            tree.upper.push(next);
            tree.edge.push(edge);
            level += 1;
        }
        tree
    }

    fn level(&self, l: usize) -> &[Hash] {
        match l.checked_sub(1) {
            None => self.leaves,
            Some(u) => self.upper.get(u).map(Vec::as_slice).unwrap_or_default(),
        }
    }

    /// Appends the audit path of `index` (< size), bottom-up, to `out`.
    fn push_proof(&self, index: usize, out: &mut Vec<u8>) {
        let n = self.leaves.len();
        for l in 0..self.edge.len() {
            let sibling = (index >> l) ^ 1;
            // The sibling subtree starts at sibling << l; it exists when that is < n.
            if (sibling as u128) << l >= n as u128 {
                continue;
            }
            let hash = match self.level(l).get(sibling) {
                Some(h) => h,
                None => match &self.edge[l] {
                    Some(h) => h,
                    None => continue,
                },
            };
            out.extend_from_slice(hash);
        }
    }
}

/// Inclusion proofs of many leaves of one tree, concatenated in the order of `indices`
/// (the layout [`verify_inclusion_batch_packed`] reads). Builds the tree once, so many
/// proofs of a large tree cost O(n + proofs × log n) instead of O(n) each.
pub fn inclusion_proofs_packed(leaves: &[Hash], indices: &[u64]) -> Result<Vec<u8>, MerkleError> {
    let size = leaves.len() as u64;
    if let Some(&index) = indices.iter().find(|&&i| i >= size) {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let tree = TreeLevels::build(leaves);
    let parts: Vec<Vec<u8>> = indices
        .par_chunks(PACKED_CHUNK)
        .map(|chunk| {
            let mut out = Vec::with_capacity(chunk.len() * HASH_LEN * tree.edge.len());
            for &index in chunk {
                // index < size = leaves.len(), so it fits in usize.
                tree.push_proof(index as usize, &mut out);
            }
            out
        })
        .collect();
    Ok(parts.concat())
}

/// [`root_parallel`] over n × 32 packed leaf hashes.
pub fn root_packed(leaf_hashes: &[u8]) -> Result<Hash, MerkleError> {
    Ok(root_parallel(hashes_from_packed(
        "leaf_hashes",
        leaf_hashes,
    )?))
}

/// [`verify_chain_parallel`] over leaf inputs packed as n × 158 bytes; an error when
/// the buffer is not a whole number of leaf inputs.
pub fn verify_chain_packed(
    leaf_inputs: &[u8],
    first_seq: u64,
    prev_leaf_hash: &Hash,
) -> Result<Result<Hash, ChainBreak>, MerkleError> {
    match leaf_inputs.as_chunks::<LEAF_INPUT_LEN>() {
        (inputs, []) => Ok(verify_chain_parallel(inputs, first_seq, prev_leaf_hash)),
        _ => Err(MerkleError::PackedLength {
            what: "leaf_inputs".to_owned(),
            len: leaf_inputs.len(),
            unit: LEAF_INPUT_LEN,
        }),
    }
}

// ---------------------------------------------------------------------------------------
// Envelope batch verification (`verify_envelopes`) goes below this line; it is owned by
// the signature/DSSE side of the crate.
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf::LeafInput;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n as u64)
            .map(|i| merkle::leaf_hash(&i.to_le_bytes()))
            .collect()
    }

    #[test]
    fn root_parallel_matches_sequential() {
        for n in [0, 1, 7, 8192, 8193, 3 * 8192 + 5, 100_000] {
            let l = leaves(n);
            assert_eq!(root_parallel(&l), merkle::root(&l), "n={n}");
        }
    }

    #[test]
    fn inclusion_batch() {
        let l = leaves(37);
        let r = merkle::root(&l);
        let idx: Vec<u64> = (0..37).collect();
        let mut proofs: Vec<Vec<Hash>> = idx
            .iter()
            .map(|&i| merkle::inclusion_proof(&l, i).unwrap())
            .collect();
        proofs[5][0][0] ^= 1;
        let out = verify_inclusion_batch(&l, &idx, 37, &proofs, &r).unwrap();
        assert_eq!(out.iter().filter(|v| v.is_err()).count(), 1);
        assert_eq!(out[5], Err(MerkleError::RootMismatch));
        assert!(verify_inclusion_batch(&l, &idx[1..], 37, &proofs, &r).is_err());
    }

    fn packed(hashes: &[Hash]) -> Vec<u8> {
        hashes.concat()
    }

    #[test]
    fn fast_proof_len_matches() {
        for size in 0..300u64 {
            for index in 0..size + 3 {
                assert_eq!(
                    inclusion_proof_len_fast(index, size),
                    merkle::inclusion_proof_len(index, size),
                    "{index}/{size}"
                );
            }
        }
        for (i, n) in [(0, u64::MAX), (u64::MAX - 1, u64::MAX), (1 << 40, 1 << 41)] {
            assert_eq!(
                inclusion_proof_len_fast(i, n),
                merkle::inclusion_proof_len(i, n)
            );
        }
    }

    #[test]
    fn packed_proofs_match_unpacked() {
        for n in [1usize, 2, 3, 5, 7, 8, 9, 31, 64, 100, 1000, 4097] {
            let l = leaves(n);
            let idx: Vec<u64> = (0..n as u64).collect();
            let got = inclusion_proofs_packed(&l, &idx).unwrap();
            let want: Vec<u8> = idx
                .iter()
                .flat_map(|&i| packed(&merkle::inclusion_proof(&l, i).unwrap()))
                .collect();
            assert_eq!(got, want, "n={n}");
            let r = merkle::root(&l);
            assert_eq!(root_packed(&packed(&l)).unwrap(), r);
            let ok = verify_inclusion_batch_packed(&packed(&l), &idx, n as u64, &got, &r).unwrap();
            assert!(ok.iter().all(|&v| v), "n={n}");
        }
        assert!(inclusion_proofs_packed(&[], &[]).unwrap().is_empty());
        assert_eq!(
            inclusion_proofs_packed(&leaves(3), &[1, 3]),
            Err(MerkleError::IndexOutOfRange { index: 3, size: 3 })
        );
    }

    #[test]
    fn packed_verdicts_match_unpacked() {
        let n = 37u64;
        let l = leaves(n as usize);
        let r = merkle::root(&l);
        // Repeats, out-of-order, one beyond the tree (no proof hashes; false).
        let idx: Vec<u64> = vec![5, 0, 36, 5, 17, 40, 8];
        let lv: Vec<Hash> = idx
            .iter()
            .map(|&i| l.get(i as usize).copied().unwrap_or([7; 32]))
            .collect();
        let mut proofs: Vec<Vec<Hash>> = idx
            .iter()
            .map(|&i| merkle::inclusion_proof(&l, i).unwrap_or_default())
            .collect();
        proofs[3][2][9] ^= 0x40;
        let mut lv_bad = lv.clone();
        lv_bad[4][0] ^= 1;
        let flat: Vec<u8> = proofs.iter().flat_map(|p| packed(p)).collect();
        for leaves_in in [&lv, &lv_bad] {
            let want: Vec<bool> = verify_inclusion_batch(leaves_in, &idx, n, &proofs, &r)
                .unwrap()
                .iter()
                .map(Result::is_ok)
                .collect();
            let got = verify_inclusion_batch_packed(&packed(leaves_in), &idx, n, &flat, &r);
            assert_eq!(got.unwrap(), want);
        }
        assert_eq!(
            verify_inclusion_batch_packed(&packed(&lv), &idx, n, &flat, &r).unwrap(),
            vec![true, true, true, false, true, false, true]
        );
        // A wrong root fails everything.
        let bad_root = [0u8; 32];
        let got = verify_inclusion_batch_packed(&packed(&lv), &idx, n, &flat, &bad_root);
        assert!(got.unwrap().iter().all(|&v| !v));
    }

    #[test]
    fn packed_length_errors() {
        let l = leaves(9);
        let r = merkle::root(&l);
        let idx = [2u64, 8];
        let flat = inclusion_proofs_packed(&l, &idx).unwrap();
        let lv = packed(&[l[2], l[8]]);
        assert_eq!(flat.len(), (4 + 1) * 32);
        let e = verify_inclusion_batch_packed(&lv[..63], &idx, 9, &flat, &r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "leaf_hashes is 63 bytes, not a multiple of 32"
        );
        let e = verify_inclusion_batch_packed(&lv[..32], &idx, 9, &flat, &r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "batch lists differ in length: 1 leaf hashes, 2 indices"
        );
        let e = verify_inclusion_batch_packed(&lv, &idx, 9, &flat[..flat.len() - 1], &r);
        assert_eq!(
            e.unwrap_err().to_string(),
            "packed_proofs is 159 bytes, not a multiple of 32"
        );
        let e = verify_inclusion_batch_packed(&lv, &idx, 9, &flat[32..], &r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "packed_proofs is 128 bytes, expected 160: 32 bytes per hash of the proofs of \
             these 2 indices in a tree of size 9"
        );
        let e = root_packed(&[0u8; 33]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "leaf_hashes is 33 bytes, not a multiple of 32"
        );
        let e = verify_chain_packed(&[0u8; 159], 0, &[0; 32]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "leaf_inputs is 159 bytes, not a multiple of 158"
        );
    }

    #[test]
    fn packed_chain_matches_list_form() {
        let mut prev = [0u8; 32];
        let mut c: Vec<u8> = Vec::new();
        for seq in 0..3000u64 {
            let leaf = LeafInput::for_envelope(seq, prev, "t", &seq.to_be_bytes(), b"e", b"m");
            prev = leaf.leaf_hash();
            c.extend_from_slice(&leaf.to_bytes());
        }
        let z = [0u8; 32];
        assert_eq!(verify_chain_packed(&c, 0, &z).unwrap(), Ok(prev));
        assert_eq!(verify_chain_packed(&[], 4, &prev).unwrap(), Ok(prev));
        // Breaks on both sides of a chunk boundary, reported with the sequential reason.
        for at in [0, 1, CHAIN_CHUNK - 1, CHAIN_CHUNK, CHAIN_CHUNK + 1, 2999] {
            for byte in [5, 25, 40] {
                let mut bad = c.clone();
                bad[158 * at + byte] ^= 1;
                let list: Vec<&[u8]> = bad.chunks(158).collect();
                let seq = chain::verify_chain(&list, 0, &z);
                assert_eq!(seq.as_ref().unwrap_err().seq, at as u64);
                assert_eq!(verify_chain_packed(&bad, 0, &z).unwrap(), seq);
            }
        }
        c[158 * 2500 + 70] ^= 1;
        let list: Vec<&[u8]> = c.chunks(158).collect();
        let seq = chain::verify_chain(&list, 0, &z);
        // Byte 70 is in the PAE hash: entry 2500 still parses, the next link breaks.
        assert_eq!(seq.as_ref().unwrap_err().seq, 2501);
        assert_eq!(verify_chain_packed(&c, 0, &z).unwrap(), seq);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn packed_agrees_with_unpacked(
            n in 1usize..=600,
            picks in proptest::collection::vec(0u64..700, 0..40),
            flip in proptest::collection::vec(0usize..40, 0..4),
        ) {
            let l = leaves(n);
            let r = merkle::root(&l);
            let size = n as u64;
            let idx: Vec<u64> = picks.iter().map(|&p| p % (size + 2)).collect();
            let lv: Vec<Hash> = idx
                .iter()
                .map(|&i| l.get(i as usize).copied().unwrap_or([1; 32]))
                .collect();
            let mut proofs: Vec<Vec<Hash>> = idx
                .iter()
                .map(|&i| merkle::inclusion_proof(&l, i).unwrap_or_default())
                .collect();
            let inside: Vec<u64> = idx.iter().copied().filter(|&i| i < size).collect();
            let generated = inclusion_proofs_packed(&l, &inside).unwrap();
            let reference: Vec<u8> = inside
                .iter()
                .flat_map(|&i| packed(&merkle::inclusion_proof(&l, i).unwrap()))
                .collect();
            proptest::prop_assert_eq!(generated, reference);
            for &f in &flip {
                if let Some(p) = proofs.get_mut(f) {
                    if let Some(h) = p.first_mut() {
                        h[0] ^= 1;
                    }
                }
            }
            let flat: Vec<u8> = proofs.iter().flat_map(|p| packed(p)).collect();
            let want: Vec<bool> = verify_inclusion_batch(&lv, &idx, size, &proofs, &r)
                .unwrap()
                .iter()
                .map(Result::is_ok)
                .collect();
            let got = verify_inclusion_batch_packed(&packed(&lv), &idx, size, &flat, &r).unwrap();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn parallel_chain_matches_sequential() {
        let mut prev = [0u8; 32];
        let mut c: Vec<Vec<u8>> = (0..5000u64)
            .map(|seq| {
                let leaf = LeafInput::for_envelope(seq, prev, "t", b"p", b"e", b"m");
                prev = leaf.leaf_hash();
                leaf.to_bytes().to_vec()
            })
            .collect();
        let z = [0u8; 32];
        assert_eq!(verify_chain_parallel(&c, 0, &z), Ok(prev));
        c[4000].truncate(10);
        c[1234][40] ^= 1;
        let seq = chain::verify_chain(&c, 0, &z);
        assert_eq!(verify_chain_parallel(&c, 0, &z), seq);
        assert_eq!(seq.unwrap_err().seq, 1234);
    }
}
