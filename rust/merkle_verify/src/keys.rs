//! Public-key sets and key ids (docs/formats.md §1).
//!
//! Record keys sign DSSE envelopes; checkpoint keys sign the log's checkpoints. They are
//! distinct key pairs. The JSON form is the public-keys file (`format` =
//! `lineage-audit/public-keys/v1`) or, without `format`, an evidence bundle's `keys` member.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::signature::{EcdsaP256PublicKey, KeyError, MlDsa65PublicKey};

/// `format` of the public-keys file.
pub const PUBLIC_KEYS_FORMAT: &str = "lineage-audit/public-keys/v1";
/// Identifier following the 0xff signature type in the ML-DSA-65 note key id.
pub const MLDSA_NOTE_IDENTIFIER: &[u8] = b"lineage-audit/ml-dsa-65/v1\n";
/// Signed-note signature type byte for "no assigned byte" (C2SP signed-note).
const NOTE_TYPE_UNASSIGNED: u8 = 0xff;
/// Public keys files are tiny; anything bigger is not one.
const MAX_KEYS_FILE: usize = 1 << 20;

/// Why a public-keys document could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    #[error("public keys are not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("public keys `format` must be \"{PUBLIC_KEYS_FORMAT}\", got {0:?}")]
    Format(String),
    #[error("public keys field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
}

/// `ecdsa-p256:` + `hex(SHA-256(SPKI)[:8])`.
pub fn record_ecdsa_key_id(spki: &[u8]) -> String {
    format!("ecdsa-p256:{}", hex8(&Sha256::digest(spki)))
}

/// `ml-dsa-65:` + `hex(SHA-256(pk)[:8])`.
pub fn record_mldsa_key_id(pk: &[u8]) -> String {
    format!("ml-dsa-65:{}", hex8(&Sha256::digest(pk)))
}

/// Note key id of the checkpoint ECDSA key: `SHA-256(SPKI)[:4]` (C2SP type 0x02), big-endian.
pub fn checkpoint_ecdsa_key_id(spki: &[u8]) -> u32 {
    be_u32_prefix(&Sha256::digest(spki))
}

/// Note key id of the checkpoint ML-DSA-65 key:
/// `SHA-256(name ‖ 0x0A ‖ 0xFF ‖ "lineage-audit/ml-dsa-65/v1\n" ‖ pk)[:4]`, big-endian.
pub fn checkpoint_mldsa_key_id(name: &str, pk: &[u8]) -> u32 {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([b'\n', NOTE_TYPE_UNASSIGNED])
        .chain_update(MLDSA_NOTE_IDENTIFIER)
        .chain_update(pk)
        .finalize();
    be_u32_prefix(&digest)
}

fn hex8(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn be_u32_prefix(digest: &[u8]) -> u32 {
    let mut id = [0u8; 4];
    for (dst, src) in id.iter_mut().zip(digest) {
        *dst = *src;
    }
    u32::from_be_bytes(id)
}

/// The record (envelope) key pair's public halves, with their DSSE key ids.
#[derive(Clone, Debug)]
pub struct RecordKeys {
    pub ecdsa: EcdsaP256PublicKey,
    pub mldsa: MlDsa65PublicKey,
    pub ecdsa_key_id: String,
    pub mldsa_key_id: String,
}

impl RecordKeys {
    pub fn new(ecdsa_spki: &[u8], mldsa_pk: &[u8]) -> Result<Self, KeyError> {
        let ecdsa = EcdsaP256PublicKey::from_spki_der(ecdsa_spki)?;
        let mldsa = MlDsa65PublicKey::from_bytes(mldsa_pk)?;
        Ok(Self {
            ecdsa_key_id: record_ecdsa_key_id(ecdsa_spki),
            mldsa_key_id: record_mldsa_key_id(mldsa_pk),
            ecdsa,
            mldsa,
        })
    }
}

/// The checkpoint key pair's public halves, the note key name and the note key ids.
#[derive(Clone, Debug)]
pub struct CheckpointKeys {
    pub name: String,
    pub ecdsa: EcdsaP256PublicKey,
    pub mldsa: MlDsa65PublicKey,
    pub ecdsa_note_id: u32,
    pub mldsa_note_id: u32,
}

impl CheckpointKeys {
    pub fn new(name: &str, ecdsa_spki: &[u8], mldsa_pk: &[u8]) -> Result<Self, KeysError> {
        validate_key_name(name)?;
        let ecdsa = EcdsaP256PublicKey::from_spki_der(ecdsa_spki)
            .map_err(field_err("checkpoint.ecdsa-p256"))?;
        let mldsa =
            MlDsa65PublicKey::from_bytes(mldsa_pk).map_err(field_err("checkpoint.ml-dsa-65"))?;
        Ok(Self {
            name: name.to_owned(),
            ecdsa_note_id: checkpoint_ecdsa_key_id(ecdsa_spki),
            mldsa_note_id: checkpoint_mldsa_key_id(name, mldsa_pk),
            ecdsa,
            mldsa,
        })
    }
}

/// Signed-note key names: non-empty, no Unicode whitespace, no `+`.
pub fn validate_key_name(name: &str) -> Result<(), KeysError> {
    let bad = name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control());
    if bad {
        return Err(KeysError::Field {
            field: "checkpoint.name",
            reason: format!("{name:?} is not a valid note key name (non-empty, no spaces or '+')"),
        });
    }
    Ok(())
}

fn field_err(field: &'static str) -> impl Fn(KeyError) -> KeysError {
    move |e| KeysError::Field {
        field,
        reason: e.to_string(),
    }
}

/// Both key sets: what a verifier trusts.
#[derive(Clone, Debug)]
pub struct PublicKeys {
    pub record: RecordKeys,
    pub checkpoint: CheckpointKeys,
}

#[derive(Deserialize)]
struct KeysFileJson {
    format: Option<String>,
    #[serde(flatten)]
    keys: KeysJson,
}

/// The `keys` member shape (also the keys file without `format`).
#[derive(Deserialize)]
pub(crate) struct KeysJson {
    record: RecordJson,
    checkpoint: CheckpointJson,
}

#[derive(Deserialize)]
struct RecordJson {
    #[serde(rename = "ecdsa-p256")]
    ecdsa: String,
    #[serde(rename = "ml-dsa-65")]
    mldsa: String,
}

#[derive(Deserialize)]
struct CheckpointJson {
    name: String,
    #[serde(rename = "ecdsa-p256")]
    ecdsa: String,
    #[serde(rename = "ml-dsa-65")]
    mldsa: String,
}

impl PublicKeys {
    /// Parses the public-keys file; `format` must be `lineage-audit/public-keys/v1`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, KeysError> {
        if bytes.len() > MAX_KEYS_FILE {
            return Err(KeysError::Json(format!(
                "larger than {MAX_KEYS_FILE} bytes"
            )));
        }
        let file: KeysFileJson =
            serde_json::from_slice(bytes).map_err(|e| KeysError::Json(e.to_string()))?;
        match file.format.as_deref() {
            Some(PUBLIC_KEYS_FORMAT) => Self::from_parsed(&file.keys),
            other => Err(KeysError::Format(other.unwrap_or("<missing>").to_owned())),
        }
    }

    /// Parses an evidence bundle's `keys` member (no `format`; unknown members ignored).
    pub fn from_bundle_value(value: &serde_json::Value) -> Result<Self, KeysError> {
        let parsed = KeysJson::deserialize(value).map_err(|e| KeysError::Json(e.to_string()))?;
        Self::from_parsed(&parsed)
    }

    pub(crate) fn from_parsed(keys: &KeysJson) -> Result<Self, KeysError> {
        let rec_ecdsa = decode_b64("record.ecdsa-p256", &keys.record.ecdsa)?;
        let rec_mldsa = decode_b64("record.ml-dsa-65", &keys.record.mldsa)?;
        let record = RecordKeys::new(&rec_ecdsa, &rec_mldsa).map_err(|e| KeysError::Field {
            field: match e {
                KeyError::EcdsaSpki => "record.ecdsa-p256",
                KeyError::MlDsaLength(_) => "record.ml-dsa-65",
            },
            reason: e.to_string(),
        })?;
        let cp = &keys.checkpoint;
        let cp_ecdsa = decode_b64("checkpoint.ecdsa-p256", &cp.ecdsa)?;
        let cp_mldsa = decode_b64("checkpoint.ml-dsa-65", &cp.mldsa)?;
        let checkpoint = CheckpointKeys::new(&cp.name, &cp_ecdsa, &cp_mldsa)?;
        Ok(Self { record, checkpoint })
    }
}

fn decode_b64(field: &'static str, text: &str) -> Result<Vec<u8>, KeysError> {
    B64.decode(text).map_err(|e| KeysError::Field {
        field,
        reason: format!("not standard padded base64: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_shapes() {
        let id = record_ecdsa_key_id(b"spki");
        assert!(id.starts_with("ecdsa-p256:") && id.len() == "ecdsa-p256:".len() + 16);
        let id = record_mldsa_key_id(b"pk");
        assert!(id.starts_with("ml-dsa-65:") && id.len() == "ml-dsa-65:".len() + 16);
        // SHA-256("") = e3b0c442...
        assert_eq!(checkpoint_ecdsa_key_id(b""), 0xe3b0_c442);
    }

    #[test]
    fn key_names() {
        assert!(validate_key_name("example.com/log").is_ok());
        for bad in ["", "a b", "a+b", "a\u{2003}b", "a\nb"] {
            assert!(validate_key_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_file_errors() {
        assert!(matches!(
            PublicKeys::from_json(b"not json"),
            Err(KeysError::Json(_))
        ));
        assert!(matches!(
            PublicKeys::from_json(br#"{"format":"x","record":{"ecdsa-p256":"","ml-dsa-65":""},"checkpoint":{"name":"n","ecdsa-p256":"","ml-dsa-65":""}}"#),
            Err(KeysError::Format(_))
        ));
    }
}
