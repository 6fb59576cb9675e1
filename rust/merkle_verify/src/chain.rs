//! Hash-chain links between consecutive leaf inputs (`docs/formats.md` §3).
//!
//! Entry `seq` must parse, carry `seq` in its seq field, and carry in `prev_leaf_hash` the
//! leaf hash of entry `seq - 1` (32 zero bytes for seq 0). The first failure wins.

use std::fmt;

use crate::leaf::LeafInput;
use crate::merkle::{self, Hash};

/// The first entry at which the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: u64,
    pub reason: String,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chain broken at seq {}: {}", self.seq, self.reason)
    }
}

impl std::error::Error for ChainBreak {}

/// The whole hash in hex: a prefix can hide where two hashes differ.
fn full_hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// The seq of the entry at position `i`, or a break if it does not fit in a u64.
pub(crate) fn seq_at(first_seq: u64, i: usize) -> Result<u64, ChainBreak> {
    u64::try_from(i)
        .ok()
        .and_then(|i| first_seq.checked_add(i))
        .ok_or_else(|| ChainBreak {
            seq: u64::MAX,
            reason: format!("entry {i} after first seq {first_seq} overflows u64"),
        })
}

/// Checks one entry given the seq it must have and the leaf hash it must link to.
/// Pure, so the sequential and parallel verifiers give identical answers.
pub(crate) fn check_entry(seq: u64, input: &[u8], expected_prev: &Hash) -> Result<(), ChainBreak> {
    let fail = |reason: String| ChainBreak { seq, reason };
    let leaf = LeafInput::parse(input).map_err(|e| fail(format!("unparseable: {e}")))?;
    if leaf.seq != seq {
        return Err(fail(format!("seq field is {}, expected {seq}", leaf.seq)));
    }
    if seq == 0 && leaf.prev_leaf_hash != [0u8; 32] {
        return Err(fail(format!(
            "seq 0 must have an all-zero prev_leaf_hash, found {}",
            full_hex(&leaf.prev_leaf_hash)
        )));
    }
    if leaf.prev_leaf_hash != *expected_prev {
        return Err(fail(format!(
            "prev_leaf_hash {} does not match the leaf hash of the previous entry {}",
            full_hex(&leaf.prev_leaf_hash),
            full_hex(expected_prev)
        )));
    }
    Ok(())
}

/// Verifies the chain over `leaf_inputs`, whose first element has seq `first_seq` and must
/// link to `prev_leaf_hash` (the leaf hash of seq `first_seq - 1`; zeros when `first_seq`
/// is 0). Returns the leaf hash of the last entry (`prev_leaf_hash` when empty), so
/// segments can be chained.
pub fn verify_chain(
    leaf_inputs: &[impl AsRef<[u8]>],
    first_seq: u64,
    prev_leaf_hash: &Hash,
) -> Result<Hash, ChainBreak> {
    let mut prev = *prev_leaf_hash;
    for (i, input) in leaf_inputs.iter().enumerate() {
        let input = input.as_ref();
        check_entry(seq_at(first_seq, i)?, input, &prev)?;
        prev = merkle::leaf_hash(input);
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<[u8; 158]> {
        let mut prev = [0u8; 32];
        (0..n)
            .map(|seq| {
                let leaf = LeafInput::for_envelope(seq, prev, "t", &seq.to_be_bytes(), b"e", b"m");
                prev = leaf.leaf_hash();
                leaf.to_bytes()
            })
            .collect()
    }

    #[test]
    fn good_chain_returns_last_hash() {
        let c = chain(5);
        let last = verify_chain(&c, 0, &[0; 32]).unwrap();
        assert_eq!(last, merkle::leaf_hash(&c[4]));
        // A suffix verifies given the hash it links to.
        let mid = merkle::leaf_hash(&c[1]);
        assert_eq!(verify_chain(&c[2..], 2, &mid), Ok(last));
        let empty: [&[u8]; 0] = [];
        assert_eq!(verify_chain(&empty, 3, &mid), Ok(mid));
    }

    #[test]
    fn reports_first_break() {
        let mut c = chain(6);
        c[4][100] ^= 1; // changes entry 4's hash, so entry 5's link breaks
        let b = verify_chain(&c, 0, &[0; 32]).unwrap_err();
        assert_eq!(b.seq, 5);
        assert!(b.reason.contains("prev_leaf_hash"), "{b}");
        c[2][0] ^= 1;
        let b = verify_chain(&c, 0, &[0; 32]).unwrap_err();
        assert_eq!(b.seq, 2);
        assert!(b
            .to_string()
            .starts_with("chain broken at seq 2: unparseable"));
    }

    #[test]
    fn seq_gap_and_zero_prev() {
        let c = chain(4);
        let gap = [c[0], c[1], c[3]];
        let b = verify_chain(&gap, 0, &[0; 32]).unwrap_err();
        assert_eq!(
            (b.seq, b.reason.as_str()),
            (2, "seq field is 3, expected 2")
        );
        let mut first = LeafInput::parse(&c[0]).unwrap();
        first.prev_leaf_hash = [1; 32];
        let b = verify_chain(&[first.to_bytes()], 0, &[1; 32]).unwrap_err();
        assert_eq!(b.seq, 0);
        assert!(b.reason.contains("all-zero"));
        let b = verify_chain(&[vec![0u8; 3]], 9, &[0; 32]).unwrap_err();
        assert_eq!(
            b.to_string(),
            "chain broken at seq 9: unparseable: leaf input is 3 bytes, expected 158"
        );
    }

    #[test]
    fn seq_overflow_is_a_break() {
        assert!(seq_at(u64::MAX, 0).is_ok());
        assert_eq!(seq_at(u64::MAX, 1).unwrap_err().seq, u64::MAX);
    }
}
