//! C2SP signed notes and tlog checkpoints (docs/formats.md §4).
//!
//! ```text
//! <origin>\n<size>\n<b64 root>\n[extension lines\n]
//! \n
//! — <name> <b64(keyid[4] ‖ signature)>\n   (one line per signature, at most 16)
//! ```
//! Signature lines whose (name, key id) is unknown are ignored; a known key whose signature
//! fails rejects the note; both of our checkpoint signatures must be present and valid.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::keys::CheckpointKeys;
use crate::merkle::Hash;

/// Note size cap (bytes).
pub const MAX_NOTE_LEN: usize = 64 * 1024;
/// Most signature lines a note may carry.
pub const MAX_SIGNATURES: usize = 16;
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a checkpoint is not acceptable. All map to the `checkpoint_signature` verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("note is larger than {MAX_NOTE_LEN} bytes")]
    TooLarge,
    #[error("note contains a control character other than newline")]
    ControlCharacter,
    #[error("malformed note: {0}")]
    MalformedNote(String),
    #[error("malformed checkpoint body: {0}")]
    MalformedBody(String),
    #[error("note has more than {MAX_SIGNATURES} signature lines")]
    TooManySignatures,
    #[error("{0} checkpoint signature does not verify")]
    SignatureInvalid(&'static str),
    #[error("no {0} checkpoint signature from key {1:?}")]
    SignatureMissing(&'static str, String),
    #[error("checkpoint origin {origin:?} is not the checkpoint key name {name:?}")]
    OriginMismatch { origin: String, name: String },
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    pub sig: Vec<u8>,
}

/// A note split into its signed text (with final newline) and signature lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedNote<'a> {
    pub text: &'a str,
    pub signatures: Vec<NoteSignature>,
}

/// The parsed checkpoint body. `extensions` lists any extension lines (ours have none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub extensions: Vec<String>,
}

/// Splits a signed note; checks size, control characters and signature-line syntax.
pub fn parse_note(note: &str) -> Result<SignedNote<'_>, CheckpointError> {
    if note.len() > MAX_NOTE_LEN {
        return Err(CheckpointError::TooLarge);
    }
    if note.chars().any(|c| c < ' ' && c != '\n') {
        return Err(CheckpointError::ControlCharacter);
    }
    // The text ends at the last blank line; everything after it is signature lines.
    let split = note.rfind("\n\n").ok_or_else(|| {
        CheckpointError::MalformedNote("no blank line before the signatures".into())
    })?;
    // `split` indexes an ASCII "\n\n", so both cuts fall on character boundaries.
    let text = note.get(..=split).unwrap_or_default();
    let sig_block = note.get(split + 2..).unwrap_or_default();
    let signatures = parse_signature_lines(sig_block)?;
    Ok(SignedNote { text, signatures })
}

fn parse_signature_lines(block: &str) -> Result<Vec<NoteSignature>, CheckpointError> {
    if block.is_empty() {
        return Err(CheckpointError::MalformedNote(
            "note has no signature lines".into(),
        ));
    }
    let body = block
        .strip_suffix('\n')
        .ok_or_else(|| CheckpointError::MalformedNote("note does not end with a newline".into()))?;
    let lines: Vec<&str> = body.split('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(CheckpointError::TooManySignatures);
    }
    lines.into_iter().map(parse_signature_line).collect()
}

fn parse_signature_line(line: &str) -> Result<NoteSignature, CheckpointError> {
    let bad = |why: &str| CheckpointError::MalformedNote(format!("signature line {line:?}: {why}"));
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or_else(|| bad("must start with an em dash and a space"))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or_else(|| bad("missing key name or signature"))?;
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(bad("invalid key name"));
    }
    let raw = B64
        .decode(b64)
        .map_err(|_| bad("signature is not standard padded base64"))?;
    // A key id followed by an empty signature is as malformed as a short key id.
    let (id, sig) = raw
        .split_first_chunk::<4>()
        .filter(|(_, sig)| !sig.is_empty())
        .ok_or_else(|| bad("shorter than a key id plus a signature"))?;
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: u32::from_be_bytes(*id),
        sig: sig.to_vec(),
    })
}

/// Parses a checkpoint note text: origin, size, base64 root, then extension lines.
pub fn parse_body(text: &str) -> Result<Checkpoint, CheckpointError> {
    let bad = |why: String| CheckpointError::MalformedBody(why);
    let body = text
        .strip_suffix('\n')
        .ok_or_else(|| bad("text must end with a newline".into()))?;
    let mut lines = body.split('\n');
    let origin = lines.next().unwrap_or_default();
    let size_line = lines
        .next()
        .ok_or_else(|| bad("missing tree size line".into()))?;
    let root_line = lines
        .next()
        .ok_or_else(|| bad("missing root hash line".into()))?;
    if origin.is_empty() {
        return Err(bad("empty origin".into()));
    }
    let size = parse_decimal(size_line)
        .ok_or_else(|| bad(format!("tree size {size_line:?} is not canonical decimal")))?;
    let root = decode_hash(root_line)
        .ok_or_else(|| bad(format!("root {root_line:?} is not base64 of 32 bytes")))?;
    let extensions: Vec<String> = lines.map(str::to_owned).collect();
    if extensions.iter().any(String::is_empty) {
        return Err(bad("empty extension line".into()));
    }
    Ok(Checkpoint {
        origin: origin.to_owned(),
        size,
        root,
        extensions,
    })
}

/// ASCII decimal u64 with no sign and no leading zeros (except "0").
pub(crate) fn parse_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical {
        text.parse().ok()
    } else {
        None
    }
}

/// Standard padded base64 of exactly 32 bytes.
pub(crate) fn decode_hash(text: &str) -> Option<Hash> {
    let raw = B64.decode(text).ok()?;
    Hash::try_from(raw.as_slice()).ok()
}

/// Parses and verifies a checkpoint against our checkpoint keys.
pub fn verify_checkpoint(note: &str, keys: &CheckpointKeys) -> Result<Checkpoint, CheckpointError> {
    let signed = parse_note(note)?;
    let checkpoint = parse_body(signed.text)?;
    verify_note_signatures(&signed, keys)?;
    if checkpoint.origin != keys.name {
        return Err(CheckpointError::OriginMismatch {
            origin: checkpoint.origin,
            name: keys.name.clone(),
        });
    }
    Ok(checkpoint)
}

/// Applies the signed-note rules: unknown keys ignored, known keys must verify, and both
/// of our signatures must be present.
pub fn verify_note_signatures(
    note: &SignedNote<'_>,
    keys: &CheckpointKeys,
) -> Result<(), CheckpointError> {
    let msg = note.text.as_bytes();
    let (mut ecdsa_ok, mut mldsa_ok) = (false, false);
    for sig in note.signatures.iter().filter(|s| s.name == keys.name) {
        if sig.key_id == keys.ecdsa_note_id {
            if !keys.ecdsa.verify_der(msg, &sig.sig) {
                return Err(CheckpointError::SignatureInvalid("ECDSA P-256"));
            }
            ecdsa_ok = true;
        } else if sig.key_id == keys.mldsa_note_id {
            if !keys.mldsa.verify(msg, &sig.sig) {
                return Err(CheckpointError::SignatureInvalid("ML-DSA-65"));
            }
            mldsa_ok = true;
        }
    }
    if !ecdsa_ok {
        return Err(CheckpointError::SignatureMissing(
            "ECDSA P-256",
            keys.name.clone(),
        ));
    }
    if !mldsa_ok {
        return Err(CheckpointError::SignatureMissing(
            "ML-DSA-65",
            keys.name.clone(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    fn note_with(text: &str, sigs: &str) -> String {
        format!("{text}\n{sigs}")
    }

    #[test]
    fn parses_body_and_extensions() {
        let text = format!("example.com/log\n0\n{ROOT}\next one\n");
        let Ok(cp) = parse_body(&text) else {
            panic!("body parses")
        };
        assert_eq!((cp.origin.as_str(), cp.size), ("example.com/log", 0));
        assert_eq!(cp.extensions, vec!["ext one".to_owned()]);
    }

    #[test]
    fn rejects_bad_bodies() {
        for text in [
            "".to_owned(),
            "o\n".to_owned(),
            format!("o\n01\n{ROOT}\n"),
            format!("o\n-1\n{ROOT}\n"),
            format!("o\n18446744073709551616\n{ROOT}\n"),
            "o\n1\nAAAA\n".to_owned(),
            format!("\n1\n{ROOT}\n"),
            format!("o\n1\n{ROOT}"),
        ] {
            assert!(parse_body(&text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn note_split_and_signature_lines() {
        let note = note_with(&format!("o\n1\n{ROOT}\n"), "\u{2014} o AQIDBAU=\n");
        let Ok(signed) = parse_note(&note) else {
            panic!("note parses")
        };
        assert_eq!(signed.text, format!("o\n1\n{ROOT}\n"));
        assert_eq!(signed.signatures[0].key_id, 0x0102_0304);
        assert_eq!(signed.signatures[0].sig, vec![5u8]);
    }

    #[test]
    fn note_limits() {
        let text = format!("o\n1\n{ROOT}\n");
        let many = "\u{2014} o AQIDBAU=\n".repeat(MAX_SIGNATURES + 1);
        assert_eq!(
            parse_note(&note_with(&text, &many)),
            Err(CheckpointError::TooManySignatures)
        );
        let sixteen = "\u{2014} o AQIDBAU=\n".repeat(MAX_SIGNATURES);
        assert!(parse_note(&note_with(&text, &sixteen)).is_ok());
        let tab = note_with(&format!("o\t\n1\n{ROOT}\n"), "\u{2014} o AQIDBAU=\n");
        assert_eq!(parse_note(&tab), Err(CheckpointError::ControlCharacter));
        let big = "x".repeat(MAX_NOTE_LEN + 1);
        assert_eq!(parse_note(&big), Err(CheckpointError::TooLarge));
        for sigs in [
            "",
            "\u{2014} o AQID\n",
            "\u{2014} o AQIDBA==\n",
            "- o AQIDBAU=\n",
            "\u{2014} o AQIDBAU=",
            "\u{2014} o+x AQIDBAU=\n",
        ] {
            assert!(parse_note(&note_with(&text, sigs)).is_err(), "{sigs:?}");
        }
    }
}
