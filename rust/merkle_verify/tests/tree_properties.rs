//! Property tests: generated proofs verify, mutated ones do not, roots and proofs match the
//! recursive RFC 9162 definitions, and the parallel forms agree with the sequential ones.

use merkle_verify::batch;
use merkle_verify::chain;
use merkle_verify::leaf::LeafInput;
use merkle_verify::merkle::{self, Hash};
use proptest::prelude::*;

fn leaves(seed: u64, n: usize) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| merkle::leaf_hash(&[seed.to_be_bytes(), i.to_be_bytes()].concat()))
        .collect()
}

fn k_for(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH straight from RFC 9162 §2.1.1.
fn mth(d: &[Hash]) -> Hash {
    match d {
        [] => merkle::empty_root(),
        [one] => *one,
        _ => {
            let (l, r) = d.split_at(k_for(d.len()));
            merkle::node_hash(&mth(l), &mth(r))
        }
    }
}

/// PATH(m, D[n]) from RFC 9162 §2.1.3.1.
fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
    if d.len() <= 1 {
        return Vec::new();
    }
    let k = k_for(d.len());
    let (l, r) = d.split_at(k);
    if m < k {
        [path(m, l), vec![mth(r)]].concat()
    } else {
        [path(m - k, r), vec![mth(l)]].concat()
    }
}

/// SUBPROOF(m, D[n], b) from RFC 9162 §2.1.4.1.
fn subproof(m: usize, d: &[Hash], complete: bool) -> Vec<Hash> {
    if m == d.len() {
        return if complete { Vec::new() } else { vec![mth(d)] };
    }
    let k = k_for(d.len());
    let (l, r) = d.split_at(k);
    if m <= k {
        [subproof(m, l, complete), vec![mth(r)]].concat()
    } else {
        [subproof(m - k, r, false), vec![mth(l)]].concat()
    }
}

/// Left/right decisions of the audit path of `m` in a tree of `n`, bottom-up (true: the
/// sibling is on the left). Verification depends only on this shape, so a proof verifies
/// for another (index, size) exactly when the shapes agree.
fn shape(m: u64, n: u64) -> Vec<bool> {
    if n <= 1 {
        return Vec::new();
    }
    let k = k_for(n as usize) as u64;
    if m < k {
        [shape(m, k), vec![false]].concat()
    } else {
        [shape(m - k, n - k), vec![true]].concat()
    }
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out[bit / 8 % 32] ^= 1 << (bit % 8);
    out
}

fn tree_and_index() -> impl Strategy<Value = (usize, usize)> {
    (1usize..=300).prop_flat_map(|n| (Just(n), 0..n))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn root_is_rfc_mth(seed: u64, n in 0usize..=300) {
        let l = leaves(seed, n);
        prop_assert_eq!(merkle::root(&l), mth(&l));
        prop_assert_eq!(batch::root_parallel(&l), mth(&l));
    }

    #[test]
    fn inclusion_proof_verifies_and_matches_rfc_path(seed: u64, (n, i) in tree_and_index()) {
        let l = leaves(seed, n);
        let root = merkle::root(&l);
        let proof = merkle::inclusion_proof(&l, i as u64).unwrap();
        prop_assert_eq!(&proof, &path(i, &l));
        prop_assert_eq!(merkle::verify_inclusion(&l[i], i as u64, n as u64, &proof, &root), Ok(()));
    }

    #[test]
    fn inclusion_fails_for_other_index(seed: u64, (n, i) in tree_and_index(), extra in 0u64..1000) {
        let l = leaves(seed, n);
        let root = merkle::root(&l);
        let proof = merkle::inclusion_proof(&l, i as u64).unwrap();
        for j in (0..n as u64).chain([n as u64 + extra, u64::MAX]) {
            if j != i as u64 {
                prop_assert!(merkle::verify_inclusion(&l[i], j, n as u64, &proof, &root).is_err());
            }
        }
    }

    #[test]
    fn inclusion_fails_for_flipped_bit(seed: u64, (n, i) in tree_and_index(), pick: usize, bit in 0usize..256) {
        let l = leaves(seed, n);
        let root = merkle::root(&l);
        let mut proof = merkle::inclusion_proof(&l, i as u64).unwrap();
        let (n, i64) = (n as u64, i as u64);
        prop_assert!(merkle::verify_inclusion(&flip(&l[i], bit), i64, n, &proof, &root).is_err());
        prop_assert!(merkle::verify_inclusion(&l[i], i64, n, &proof, &flip(&root, bit)).is_err());
        if !proof.is_empty() {
            let at = pick % proof.len();
            proof[at] = flip(&proof[at], bit);
            prop_assert!(merkle::verify_inclusion(&l[i], i64, n, &proof, &root).is_err());
        }
    }

    #[test]
    fn inclusion_with_wrong_size_fails_unless_same_shape(seed: u64, (n, i) in tree_and_index(), other in 0u64..=600) {
        prop_assume!(other != n as u64);
        let l = leaves(seed, n);
        let root = merkle::root(&l);
        let proof = merkle::inclusion_proof(&l, i as u64).unwrap();
        let ok = merkle::verify_inclusion(&l[i], i as u64, other, &proof, &root).is_ok();
        let same_shape = (i as u64) < other && shape(i as u64, other) == shape(i as u64, n as u64);
        prop_assert_eq!(ok, same_shape);
    }

    #[test]
    fn inclusion_fails_with_extra_or_missing_hash(seed: u64, (n, i) in tree_and_index()) {
        let l = leaves(seed, n);
        let root = merkle::root(&l);
        let proof = merkle::inclusion_proof(&l, i as u64).unwrap();
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(merkle::verify_inclusion(&l[i], i as u64, n as u64, &longer, &root).is_err());
        if let Some((_, shorter)) = proof.split_last() {
            prop_assert!(merkle::verify_inclusion(&l[i], i as u64, n as u64, shorter, &root).is_err());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn consistency_for_every_old_size(seed: u64, n in 1usize..=300, pick: usize, bit in 0usize..256) {
        let l = leaves(seed, n);
        let new_root = merkle::root(&l);
        for m in 1..=n {
            let old_root = merkle::root(&l[..m]);
            let (m64, n64) = (m as u64, n as u64);
            let mut proof = merkle::consistency_proof(&l, m64).unwrap();
            prop_assert_eq!(&proof, &subproof(m, &l, true));
            prop_assert_eq!(merkle::verify_consistency(m64, n64, &proof, &old_root, &new_root), Ok(()));
            prop_assert!(merkle::verify_consistency(m64, n64, &proof, &flip(&old_root, bit), &new_root).is_err());
            prop_assert!(merkle::verify_consistency(m64, n64, &proof, &old_root, &flip(&new_root, bit)).is_err());
            prop_assert!(merkle::verify_consistency(m64, n64, &proof, &new_root, &old_root).is_err() || m == n);
            let mut longer = proof.clone();
            longer.push(new_root);
            prop_assert!(merkle::verify_consistency(m64, n64, &longer, &old_root, &new_root).is_err());
            if !proof.is_empty() {
                let at = pick % proof.len();
                proof[at] = flip(&proof[at], bit);
                prop_assert!(merkle::verify_consistency(m64, n64, &proof, &old_root, &new_root).is_err());
                proof.pop();
                prop_assert!(merkle::verify_consistency(m64, n64, &proof, &old_root, &new_root).is_err());
            }
        }
        prop_assert!(merkle::verify_consistency(0, n as u64, &[], &merkle::empty_root(), &new_root).is_err());
    }

    #[test]
    fn root_parallel_matches_on_large_trees(seed: u64, n in 8_000usize..70_000) {
        let l = leaves(seed, n);
        prop_assert_eq!(batch::root_parallel(&l), merkle::root(&l));
    }
}

/// A valid chain of `n` leaf inputs.
fn chain_of(n: u64) -> Vec<Vec<u8>> {
    let mut prev = [0u8; 32];
    (0..n)
        .map(|seq| {
            let leaf = LeafInput::for_envelope(seq, prev, "t", &seq.to_le_bytes(), b"e", b"m");
            prev = leaf.leaf_hash();
            leaf.to_bytes().to_vec()
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Corruption {
    FlipBit { at: usize, bit: usize },
    Truncate { at: usize, len: usize },
    Append { at: usize },
    Swap { a: usize, b: usize },
    Remove { at: usize },
    Duplicate { at: usize },
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        (any::<usize>(), 0usize..158 * 8).prop_map(|(at, bit)| Corruption::FlipBit { at, bit }),
        (any::<usize>(), 0usize..158).prop_map(|(at, len)| Corruption::Truncate { at, len }),
        any::<usize>().prop_map(|at| Corruption::Append { at }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Corruption::Swap { a, b }),
        any::<usize>().prop_map(|at| Corruption::Remove { at }),
        any::<usize>().prop_map(|at| Corruption::Duplicate { at }),
    ]
}

fn apply(c: &mut Vec<Vec<u8>>, k: &Corruption) {
    let n = c.len();
    if n == 0 {
        return;
    }
    match *k {
        Corruption::FlipBit { at, bit } => {
            if let Some(byte) = c[at % n].get_mut(bit / 8) {
                *byte ^= 1 << (bit % 8);
            }
        }
        Corruption::Truncate { at, len } => c[at % n].truncate(len),
        Corruption::Append { at } => c[at % n].push(0),
        Corruption::Swap { a, b } => c.swap(a % n, b % n),
        Corruption::Remove { at } => {
            c.remove(at % n);
        }
        Corruption::Duplicate { at } => {
            let e = c[at % n].clone();
            c.insert(at % n, e);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn parallel_chain_agrees_with_sequential(
        n in 0u64..3000,
        start: usize,
        corruptions in proptest::collection::vec(corruption(), 0..4),
    ) {
        let full = chain_of(n);
        // Verify a suffix too, so first_seq and the given prev hash vary.
        let start = if n == 0 { 0 } else { start % n as usize };
        let prev = start.checked_sub(1).map_or([0u8; 32], |p| merkle::leaf_hash(&full[p]));
        let mut c = full[start..].to_vec();
        for k in &corruptions {
            apply(&mut c, k);
        }
        let seq = chain::verify_chain(&c, start as u64, &prev);
        let par = batch::verify_chain_parallel(&c, start as u64, &prev);
        prop_assert_eq!(&seq, &par);
        if corruptions.is_empty() {
            prop_assert!(seq.is_ok());
        }
    }
}
