//! The 158-byte leaf input of `docs/formats.md` §3, and DSSE's PAE encoding.
//!
//! ```text
//! offset  len  field
//! 0       22   "lineage-audit/leaf/v1\n"
//! 22      8    seq, u64 big-endian
//! 30      32   prev_leaf_hash (leaf_hash of seq-1; zeros for seq 0)
//! 62      32   SHA-256(PAE(payloadType, payload))
//! 94      32   SHA-256(ECDSA signature DER bytes)
//! 126     32   SHA-256(ML-DSA signature bytes)
//! ```

use crate::merkle::{self, Hash};

/// Domain prefix every leaf input starts with.
pub const LEAF_PREFIX: &[u8; 22] = b"lineage-audit/leaf/v1\n";

/// Exact length of a leaf input.
pub const LEAF_INPUT_LEN: usize = 158;

/// Why bytes are not a leaf input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeafError {
    #[error("leaf input is {0} bytes, expected {LEAF_INPUT_LEN}")]
    WrongLength(usize),
    #[error("leaf input prefix is not \"lineage-audit/leaf/v1\\n\"")]
    WrongPrefix,
}

/// A decoded leaf input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeafInput {
    pub seq: u64,
    pub prev_leaf_hash: Hash,
    pub pae_hash: Hash,
    pub ecdsa_sig_hash: Hash,
    pub mldsa_sig_hash: Hash,
}

/// DSSE pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, LEN in ASCII decimal bytes.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let header = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    );
    let mut out = Vec::with_capacity(header.len() + payload.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads fixed-size fields front to back without indexing.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}

impl LeafInput {
    /// Builds the leaf input committing to a DSSE envelope's payload and both signatures.
    pub fn for_envelope(
        seq: u64,
        prev_leaf_hash: Hash,
        payload_type: &str,
        payload: &[u8],
        ecdsa_sig: &[u8],
        mldsa_sig: &[u8],
    ) -> Self {
        LeafInput {
            seq,
            prev_leaf_hash,
            pae_hash: merkle::sha256(&pae(payload_type, payload)),
            ecdsa_sig_hash: merkle::sha256(ecdsa_sig),
            mldsa_sig_hash: merkle::sha256(mldsa_sig),
        }
    }

    /// The 158 wire bytes.
    pub fn to_bytes(&self) -> [u8; LEAF_INPUT_LEN] {
        let seq = self.seq.to_be_bytes();
        let fields: [&[u8]; 6] = [
            LEAF_PREFIX,
            &seq,
            &self.prev_leaf_hash,
            &self.pae_hash,
            &self.ecdsa_sig_hash,
            &self.mldsa_sig_hash,
        ];
        // The fields add up to exactly LEAF_INPUT_LEN (checked by a unit test).
        let mut out = [0u8; LEAF_INPUT_LEN];
        for (dst, src) in out.iter_mut().zip(fields.iter().flat_map(|f| f.iter())) {
            *dst = *src;
        }
        out
    }

    /// Parses untrusted bytes: exact length first, then the prefix.
    pub fn parse(bytes: &[u8]) -> Result<Self, LeafError> {
        if bytes.len() != LEAF_INPUT_LEN {
            return Err(LeafError::WrongLength(bytes.len()));
        }
        let short = || LeafError::WrongLength(bytes.len());
        let mut r = Reader(bytes);
        if r.take::<22>().ok_or_else(short)? != *LEAF_PREFIX {
            return Err(LeafError::WrongPrefix);
        }
        Ok(LeafInput {
            seq: u64::from_be_bytes(r.take().ok_or_else(short)?),
            prev_leaf_hash: r.take().ok_or_else(short)?,
            pae_hash: r.take().ok_or_else(short)?,
            ecdsa_sig_hash: r.take().ok_or_else(short)?,
            mldsa_sig_hash: r.take().ok_or_else(short)?,
        })
    }

    /// RFC 9162 leaf hash of the wire bytes.
    pub fn leaf_hash(&self) -> Hash {
        merkle::leaf_hash(&self.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LeafInput {
        LeafInput::for_envelope(
            7,
            [9u8; 32],
            "application/vnd.in-toto+json",
            b"{}",
            b"ecdsa",
            b"mldsa",
        )
    }

    #[test]
    fn prefix_and_layout() {
        assert_eq!(LEAF_PREFIX.len(), 22);
        assert_eq!(22 + 8 + 4 * 32, LEAF_INPUT_LEN);
        let b = sample().to_bytes();
        assert_eq!(&b[..22], LEAF_PREFIX);
        assert_eq!(&b[22..30], &7u64.to_be_bytes());
        assert_eq!(&b[30..62], &[9u8; 32]);
        assert_eq!(
            &b[62..94],
            &merkle::sha256(&pae("application/vnd.in-toto+json", b"{}"))
        );
        assert_eq!(&b[94..126], &merkle::sha256(b"ecdsa"));
        assert_eq!(&b[126..], &merkle::sha256(b"mldsa"));
    }

    #[test]
    fn roundtrip_and_hash() {
        let leaf = sample();
        let bytes = leaf.to_bytes();
        assert_eq!(LeafInput::parse(&bytes), Ok(leaf));
        assert_eq!(leaf.leaf_hash(), merkle::leaf_hash(&bytes));
    }

    #[test]
    fn parse_errors_name_the_field() {
        let bytes = sample().to_bytes();
        let err = LeafInput::parse(&bytes[..157]).unwrap_err();
        assert_eq!(err, LeafError::WrongLength(157));
        assert_eq!(err.to_string(), "leaf input is 157 bytes, expected 158");
        assert_eq!(LeafInput::parse(&[]), Err(LeafError::WrongLength(0)));
        let mut bad = bytes;
        bad[3] ^= 1;
        let err = LeafInput::parse(&bad).unwrap_err();
        assert_eq!(err, LeafError::WrongPrefix);
        assert!(err.to_string().contains("prefix"));
    }

    #[test]
    fn pae_matches_dsse_spec_example() {
        // Example from the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }
}
