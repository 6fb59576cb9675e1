//! Batch inclusion verification that hashes each shared upper node once.
//!
//! Proofs are walked in leaf order. A walk's state after each proof element is the subtree
//! it has reached — `(levels climbed, fnode)`, which with the tree size fixes the RFC 9162
//! `(fn, sn)` pair — and that subtree's hash `r`. When the next proof reaches a subtree the
//! previous walk also reached, with the same `r` and the same remaining proof elements, the
//! rest of its walk would repeat the previous one input for input, so it takes the previous
//! verdict instead of hashing on. Anything that differs (a hash, a sibling, the index) falls
//! back to hashing, so every verdict equals [`merkle::verify_inclusion`]'s on that proof.

use crate::merkle::{self, Hash};

/// The state after consuming one proof element.
#[derive(Clone, Copy)]
struct Step {
    climbed: u32,
    fnode: u64,
    r: Hash,
}

/// The previous proof's walk: its steps, its proof elements and its verdict.
#[derive(Default)]
pub struct PathMemo<'p> {
    steps: Vec<Step>,
    proof: &'p [Hash],
    verdict: bool,
}

impl<'p> PathMemo<'p> {
    /// The step of the previous walk at `climbed` levels, searching upward from `from`.
    fn find(&self, from: &mut usize, climbed: u32) -> Option<Step> {
        while *from < self.steps.len() && self.steps[*from].climbed < climbed {
            *from += 1;
        }
        self.steps
            .get(*from)
            .copied()
            .filter(|s| s.climbed == climbed)
    }

    /// Verifies one proof (as [`merkle::verify_inclusion`]), reusing the previous walk.
    pub fn verify(
        &mut self,
        leaf: &Hash,
        index: u64,
        size: u64,
        proof: &'p [Hash],
        root: &Hash,
    ) -> bool {
        if index >= size || proof.len() != merkle::inclusion_proof_len(index, size) {
            *self = PathMemo::default();
            return false;
        }
        let (mut fnode, mut snode, mut climbed) = (index, size - 1, 0u32);
        let mut r = *leaf;
        let mut steps = Vec::with_capacity(proof.len());
        let mut at = 0usize;
        for (k, p) in proof.iter().enumerate() {
            if fnode & 1 == 1 || fnode == snode {
                r = merkle::node_hash(p, &r);
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                    climbed += 1;
                }
            } else {
                r = merkle::node_hash(&r, p);
            }
            fnode >>= 1;
            snode >>= 1;
            climbed += 1;
            steps.push(Step { climbed, fnode, r });
            if let Some(prev) = self.find(&mut at, climbed) {
                if prev.fnode == fnode && prev.r == r && self.proof[at + 1..] == proof[k + 1..] {
                    // The remaining walk is the previous one's: keep its upper steps.
                    steps.extend_from_slice(&self.steps[at + 1..]);
                    self.steps = steps;
                    self.proof = proof;
                    return self.verdict;
                }
            }
        }
        // snode == 0 is guaranteed by the length check (the RFC's final condition).
        let verdict = snode == 0 && r == *root;
        *self = PathMemo {
            steps,
            proof,
            verdict,
        };
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Walking sorted proofs with the memo gives exactly the per-proof verdicts, whatever
        /// is corrupted: a leaf, a low or a high proof element, or the root.
        #[test]
        fn memo_verdicts_equal_per_proof_verdicts(
            size in 1u64..300,
            picks in prop::collection::vec(0u64..400, 1..40),
            corrupt in prop::collection::vec((0usize..40, 0usize..12, any::<u8>()), 0..4),
            bad_leaf in prop::option::of(0usize..40),
            bad_root in any::<bool>(),
        ) {
            let tree = leaves(size);
            let mut root = merkle::root(&tree);
            if bad_root { root[0] ^= 1; }
            let mut indices: Vec<u64> = picks.iter().map(|&p| p % (size + 2)).collect();
            indices.sort_unstable();
            let mut items: Vec<(Hash, Vec<Hash>)> = indices.iter().map(|&i| {
                let leaf = tree.get(i as usize).copied().unwrap_or([9; 32]);
                (leaf, merkle::inclusion_proof(&tree, i).unwrap_or_default())
            }).collect();
            for &(which, element, bit) in &corrupt {
                let n = items.len();
                let proof = &mut items[which % n].1;
                if !proof.is_empty() {
                    let e = element % proof.len();
                    proof[e][0] ^= bit | 1;
                }
            }
            if let Some(which) = bad_leaf {
                let n = items.len();
                items[which % n].0[31] ^= 0x80;
            }
            let mut memo = PathMemo::default();
            for (&index, (leaf, proof)) in indices.iter().zip(&items) {
                let want = merkle::verify_inclusion(leaf, index, size, proof, &root).is_ok();
                prop_assert_eq!(memo.verify(leaf, index, size, proof, &root), want);
            }
        }
    }
}
