//! Rayon-parallel forms of the tree and chain checks, using every core.
//!
//! Each gives exactly the answer of its sequential counterpart: the parallel chain verifier
//! reports the same lowest bad seq and reason as [`chain::verify_chain`].

use rayon::prelude::*;

use crate::chain::{self, ChainBreak};
use crate::merkle::{self, Hash, MerkleError};

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

/// Same contract and answers as [`chain::verify_chain`]: hashes every entry in parallel,
/// then checks every link in parallel and reports the lowest failing seq.
pub fn verify_chain_parallel<T: AsRef<[u8]> + Sync>(
    leaf_inputs: &[T],
    first_seq: u64,
    prev_leaf_hash: &Hash,
) -> Result<Hash, ChainBreak> {
    let hashes = leaf_hashes_parallel(leaf_inputs);
    // Entry i links to the hash of entry i-1 (computed whether or not i-1 parses: if it
    // does not, i-1 is reported first anyway, as in the sequential walk).
    let first_break = leaf_inputs
        .par_iter()
        .enumerate()
        .with_min_len(MIN_PER_TASK)
        .find_map_first(|(i, input)| {
            let expected_prev = match i.checked_sub(1) {
                None => Some(prev_leaf_hash),
                Some(j) => hashes.get(j),
            }?;
            chain::seq_at(first_seq, i)
                .and_then(|seq| chain::check_entry(seq, input.as_ref(), expected_prev))
                .err()
        });
    match first_break {
        Some(b) => Err(b),
        None => Ok(hashes.last().copied().unwrap_or(*prev_leaf_hash)),
    }
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
