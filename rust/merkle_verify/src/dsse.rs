//! DSSE envelopes (docs/formats.md §2) and the AND signature policy.
//!
//! For each algorithm the verifier picks the first signature whose `keyid` equals the
//! trusted key's id; both must be present (else "signature missing") and both must verify
//! over `PAE(payloadType, payload)` (else "signature invalid"). Signatures from other keys
//! are ignored.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rayon::prelude::*;
use serde::Deserialize;

use crate::keys::RecordKeys;
use crate::leaf::pae;

/// A DSSE envelope with its base64 fields decoded.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "EnvelopeJson")]
pub struct Envelope {
    pub payload_type: String,
    pub payload: Vec<u8>,
    pub signatures: Vec<EnvelopeSignature>,
}

/// One DSSE signature. DSSE makes `keyid` optional, but the ledger's policy selects by
/// key id, so here it is required (a signature without one is malformed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeSignature {
    pub keyid: String,
    pub sig: Vec<u8>,
}

#[derive(Deserialize)]
struct EnvelopeJson {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<SignatureJson>,
}

#[derive(Deserialize)]
struct SignatureJson {
    keyid: String,
    sig: String,
}

impl TryFrom<EnvelopeJson> for Envelope {
    type Error = String;

    fn try_from(json: EnvelopeJson) -> Result<Self, String> {
        let payload = B64
            .decode(&json.payload)
            .map_err(|e| format!("envelope payload is not base64: {e}"))?;
        let signatures = json
            .signatures
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let sig = B64
                    .decode(&s.sig)
                    .map_err(|e| format!("envelope signatures[{i}].sig is not base64: {e}"))?;
                Ok(EnvelopeSignature {
                    keyid: s.keyid,
                    sig,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Envelope {
            payload_type: json.payload_type,
            payload,
            signatures,
        })
    }
}

/// Why an envelope does not pass; `reason_code` maps onto the bundle verdict codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("{0}")]
    Malformed(String),
    #[error("no signature with keyid {0}")]
    SignatureMissing(String),
    #[error("signature with keyid {0} does not verify over PAE")]
    SignatureInvalid(String),
}

impl EnvelopeError {
    /// `malformed`, `signature_missing` or `envelope_signature` (docs/formats.md §6).
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::SignatureMissing(_) => "signature_missing",
            Self::SignatureInvalid(_) => "envelope_signature",
        }
    }
}

/// The two signatures the AND policy selected.
#[derive(Clone, Copy, Debug)]
pub struct Selected<'a> {
    pub ecdsa_sig: &'a [u8],
    pub mldsa_sig: &'a [u8],
}

impl Envelope {
    /// Parses envelope JSON bytes (as stored; never re-serialised).
    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        serde_json::from_slice(bytes)
            .map_err(|e| EnvelopeError::Malformed(format!("envelope: {e}")))
    }

    /// `PAE(payloadType, payload)`: the bytes both signatures cover.
    pub fn pae(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    fn find(&self, keyid: &str) -> Option<&[u8]> {
        self.signatures
            .iter()
            .find(|s| s.keyid == keyid)
            .map(|s| s.sig.as_slice())
    }

    /// Picks the signature for each trusted key; both must be present.
    pub fn select(&self, keys: &RecordKeys) -> Result<Selected<'_>, EnvelopeError> {
        let ecdsa = self.find(&keys.ecdsa_key_id);
        let mldsa = self.find(&keys.mldsa_key_id);
        match (ecdsa, mldsa) {
            (Some(ecdsa_sig), Some(mldsa_sig)) => Ok(Selected {
                ecdsa_sig,
                mldsa_sig,
            }),
            (None, Some(_)) => Err(EnvelopeError::SignatureMissing(keys.ecdsa_key_id.clone())),
            (Some(_), None) => Err(EnvelopeError::SignatureMissing(keys.mldsa_key_id.clone())),
            (None, None) => Err(EnvelopeError::SignatureMissing(format!(
                "{} or {}",
                keys.ecdsa_key_id, keys.mldsa_key_id
            ))),
        }
    }
}

/// Verifies both selected signatures over `pae` (ECDSA first, then ML-DSA).
pub fn verify_selected(
    pae: &[u8],
    selected: &Selected<'_>,
    keys: &RecordKeys,
) -> Result<(), EnvelopeError> {
    if !keys.ecdsa.verify_der(pae, selected.ecdsa_sig) {
        return Err(EnvelopeError::SignatureInvalid(keys.ecdsa_key_id.clone()));
    }
    if !keys.mldsa.verify(pae, selected.mldsa_sig) {
        return Err(EnvelopeError::SignatureInvalid(keys.mldsa_key_id.clone()));
    }
    Ok(())
}

/// The AND policy: both signatures present, then both valid.
pub fn verify_envelope(envelope: &Envelope, keys: &RecordKeys) -> Result<(), EnvelopeError> {
    let selected = envelope.select(keys)?;
    verify_selected(&envelope.pae(), &selected, keys)
}

/// Parses and verifies many envelope JSON documents in parallel; results keep input order.
pub fn verify_envelopes(envelopes: &[&[u8]], keys: &RecordKeys) -> Vec<Result<(), EnvelopeError>> {
    envelopes
        .par_iter()
        .map(|bytes| Envelope::from_json(bytes).and_then(|env| verify_envelope(&env, keys)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_bad_shapes_without_panicking() {
        for bad in [
            &b""[..],
            b"{}",
            b"[]",
            br#"{"payloadType":"t","payload":"!!","signatures":[]}"#,
            br#"{"payloadType":"t","payload":"","signatures":[{"sig":"@"}]}"#,
            br#"{"payloadType":1,"payload":"","signatures":[]}"#,
        ] {
            assert!(matches!(
                Envelope::from_json(bad),
                Err(EnvelopeError::Malformed(_))
            ));
        }
    }

    #[test]
    fn parse_decodes_and_ignores_unknown_members() {
        let env = Envelope::from_json(
            br#"{"payloadType":"t","payload":"aGk=","signatures":[{"keyid":"k","sig":"AA=="}],"x":1}"#,
        );
        let Ok(env) = env else {
            panic!("valid envelope")
        };
        assert_eq!(env.payload, b"hi");
        assert_eq!(env.signatures[0].keyid, "k");
        assert_eq!(env.signatures[0].sig, vec![0u8]);
        let no_keyid = br#"{"payloadType":"t","payload":"","signatures":[{"sig":"AA=="}]}"#;
        assert!(matches!(
            Envelope::from_json(no_keyid),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}
