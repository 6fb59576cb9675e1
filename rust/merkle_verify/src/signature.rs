//! Signature primitives: ECDSA P-256/SHA-256 and pure ML-DSA-65 (FIPS 204).
//!
//! Both key types keep the exact public-key bytes they were parsed from, because key ids are
//! hashes of those bytes (docs/formats.md §1). Verification functions return `bool`: a
//! malformed signature is simply a signature that does not verify.

use ml_dsa::{EncodedVerifyingKey, MlDsa65};
use p256::ecdsa::{Signature as EcdsaSignature, VerifyingKey as EcdsaVerifyingKey};
use p256::pkcs8::DecodePublicKey;
// `signature` is also this module's name, so the trait is reached through p256's re-export.
use p256::ecdsa::signature::Verifier;

/// Raw (IEEE P1363, `r || s`) ECDSA P-256 signature length.
pub const ECDSA_P1363_LEN: usize = 64;
/// FIPS 204 ML-DSA-65 public-key length.
pub const MLDSA65_PK_LEN: usize = 1952;
/// FIPS 204 ML-DSA-65 signature length.
pub const MLDSA65_SIG_LEN: usize = 3309;
/// FIPS 204 caps the context string at 255 bytes.
pub const MLDSA_MAX_CONTEXT_LEN: usize = 255;

/// A public key that cannot be used at all (as opposed to a signature that fails).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("ECDSA P-256 public key is not a valid DER SubjectPublicKeyInfo")]
    EcdsaSpki,
    #[error("ML-DSA-65 public key must be {MLDSA65_PK_LEN} bytes, got {0}")]
    MlDsaLength(usize),
}

/// An ECDSA P-256 public key, parsed from DER SubjectPublicKeyInfo.
#[derive(Clone, Debug)]
pub struct EcdsaP256PublicKey {
    key: EcdsaVerifyingKey,
    spki: Vec<u8>,
}

impl EcdsaP256PublicKey {
    /// Parses a DER SPKI; the curve must be P-256 and the point valid.
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, KeyError> {
        let key = EcdsaVerifyingKey::from_public_key_der(spki).map_err(|_| KeyError::EcdsaSpki)?;
        Ok(Self {
            key,
            spki: spki.to_vec(),
        })
    }

    /// The SPKI bytes exactly as given (what key ids hash).
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// Verifies a DER signature over `msg` (hashed with SHA-256). High-S is accepted.
    pub fn verify_der(&self, msg: &[u8], der_sig: &[u8]) -> bool {
        // Strict DER: BER variants (long lengths, padding) fail to parse and are rejected.
        match EcdsaSignature::from_der(der_sig) {
            Ok(sig) => self.verify_signature(msg, &sig),
            Err(_) => false,
        }
    }

    /// Verifies a raw `r || s` (64-byte) signature, the WebCrypto/P1363 form.
    pub fn verify_p1363(&self, msg: &[u8], raw_sig: &[u8]) -> bool {
        if raw_sig.len() != ECDSA_P1363_LEN {
            return false;
        }
        match EcdsaSignature::from_slice(raw_sig) {
            Ok(sig) => self.verify_signature(msg, &sig),
            Err(_) => false,
        }
    }

    fn verify_signature(&self, msg: &[u8], sig: &EcdsaSignature) -> bool {
        // The ledger accepts high-S signatures (other signers do not normalise), so verify
        // the low-S twin: (r, s) and (r, n - s) are equally valid ECDSA signatures.
        let low_s = sig.normalize_s();
        self.key.verify(msg, &low_s).is_ok()
    }
}

/// An ML-DSA-65 public key (raw FIPS 204 encoding, 1952 bytes).
#[derive(Clone, Debug)]
pub struct MlDsa65PublicKey {
    // Boxed: the decoded key carries the expanded matrix A (tens of KiB).
    key: Box<ml_dsa::VerifyingKey<MlDsa65>>,
    bytes: Vec<u8>,
}

impl MlDsa65PublicKey {
    /// Parses a raw public key; any 1952-byte string is a well-formed key.
    pub fn from_bytes(pk: &[u8]) -> Result<Self, KeyError> {
        let encoded = EncodedVerifyingKey::<MlDsa65>::try_from(pk)
            .map_err(|_| KeyError::MlDsaLength(pk.len()))?;
        Ok(Self {
            key: Box::new(ml_dsa::VerifyingKey::<MlDsa65>::decode(&encoded)),
            bytes: pk.to_vec(),
        })
    }

    /// The raw key bytes (what key ids hash).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Pure ML-DSA-65 verification with the empty context (the ledger's policy).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.verify_with_context(msg, &[], sig)
    }

    /// Pure ML-DSA-65 verification with an explicit context (conformance vectors only).
    pub fn verify_with_context(&self, msg: &[u8], ctx: &[u8], sig: &[u8]) -> bool {
        if sig.len() != MLDSA65_SIG_LEN || ctx.len() > MLDSA_MAX_CONTEXT_LEN {
            return false;
        }
        match ml_dsa::Signature::<MlDsa65>::try_from(sig) {
            Ok(sig) => self.key.verify_with_context(msg, ctx, &sig),
            Err(_) => false,
        }
    }
}

/// One-shot ECDSA P-256 DER verification from SPKI bytes.
pub fn verify_ecdsa_p256(spki: &[u8], msg: &[u8], der_sig: &[u8]) -> Result<bool, KeyError> {
    Ok(EcdsaP256PublicKey::from_spki_der(spki)?.verify_der(msg, der_sig))
}

/// One-shot pure ML-DSA-65 verification (empty context) from raw key bytes.
pub fn verify_ml_dsa_65(pk: &[u8], msg: &[u8], sig: &[u8]) -> Result<bool, KeyError> {
    Ok(MlDsa65PublicKey::from_bytes(pk)?.verify(msg, sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_keys_are_errors() {
        assert_eq!(
            EcdsaP256PublicKey::from_spki_der(b"nope").err(),
            Some(KeyError::EcdsaSpki)
        );
        assert_eq!(
            MlDsa65PublicKey::from_bytes(&[0u8; 1951]).err(),
            Some(KeyError::MlDsaLength(1951))
        );
    }

    #[test]
    fn wrong_length_mldsa_signature_is_rejected() {
        let key = MlDsa65PublicKey::from_bytes(&[0u8; MLDSA65_PK_LEN]);
        let Ok(key) = key else {
            panic!("a 1952-byte key must parse");
        };
        assert!(!key.verify(b"m", &[0u8; MLDSA65_SIG_LEN - 1]));
        assert!(!key.verify(b"m", &[0u8; MLDSA65_SIG_LEN + 1]));
        assert!(!key.verify(b"m", &[]));
    }
}
