//! `c2sp.org/tlog-proof@v1` inclusion proofs (docs/formats.md §5).
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <b64 leaf input>
//! index <seq>
//! <b64 hash>            (zero or more, leaf sibling first)
//!
//! <checkpoint verbatim>
//! ```
//! The extra data is our 158-byte leaf input. It is not trusted by itself: verification
//! checks the checkpoint signatures, that the leaf's seq equals `index`, and that the leaf
//! hash is included at `index` under the checkpoint root. The record signatures are not
//! part of a tlog-proof, so they are not checked here.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::bundle::{Failure, Reason, Verdict, MAX_PATH_HASHES};
use crate::checkpoint::{decode_hash, parse_decimal, verify_checkpoint, Checkpoint, MAX_NOTE_LEN};
use crate::keys::PublicKeys;
use crate::leaf::LeafInput;
use crate::merkle::{self, Hash};

/// First line of every proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
/// Size cap: a checkpoint note plus a generous allowance for the header and path.
pub const MAX_TLOG_PROOF_LEN: usize = MAX_NOTE_LEN + 64 * 1024;

/// A parsed (not yet verified) proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    pub path: Vec<Hash>,
    pub checkpoint: String,
}

/// A verified proof: the checkpoint it was checked against and the included leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedProof {
    pub checkpoint: Checkpoint,
    pub leaf: LeafInput,
    pub index: u64,
}

/// Takes the next `\n`-terminated line.
fn next_line(rest: &mut &str) -> Option<String> {
    let (line, tail) = rest.split_once('\n')?;
    *rest = tail;
    Some(line.to_owned())
}

impl TlogProof {
    /// Parses the text form; any deviation from the grammar is `malformed`.
    pub fn parse(text: &str) -> Result<Self, Failure> {
        let bad = |why: String| Failure::malformed(format!("tlog-proof: {why}"));
        if text.len() > MAX_TLOG_PROOF_LEN {
            return Err(bad(format!("larger than {MAX_TLOG_PROOF_LEN} bytes")));
        }
        let mut rest = text;
        let missing = || bad("truncated".into());
        if next_line(&mut rest).ok_or_else(missing)? != TLOG_PROOF_HEADER {
            return Err(bad(format!("first line must be {TLOG_PROOF_HEADER:?}")));
        }
        let mut line = next_line(&mut rest).ok_or_else(missing)?;
        let extra = match line.strip_prefix("extra ") {
            Some(b64) => {
                let raw = B64
                    .decode(b64)
                    .map_err(|e| bad(format!("extra is not base64: {e}")))?;
                line = next_line(&mut rest).ok_or_else(missing)?;
                Some(raw)
            }
            None => None,
        };
        let index = line
            .strip_prefix("index ")
            .and_then(parse_decimal)
            .ok_or_else(|| bad(format!("expected `index <decimal>`, got {line:?}")))?;
        let path = parse_path(&mut rest).map_err(bad)?;
        Ok(Self {
            extra,
            index,
            path,
            checkpoint: rest.to_owned(),
        })
    }
}

/// Hash lines up to the blank line that precedes the checkpoint.
fn parse_path(rest: &mut &str) -> Result<Vec<Hash>, String> {
    let mut path = Vec::new();
    loop {
        let line = next_line(rest).ok_or("no blank line before the checkpoint")?;
        if line.is_empty() {
            return Ok(path);
        }
        if path.len() == MAX_PATH_HASHES {
            return Err(format!("more than {MAX_PATH_HASHES} proof hashes"));
        }
        path.push(
            decode_hash(&line)
                .ok_or_else(|| format!("proof line {line:?} is not base64 of 32 bytes"))?,
        );
    }
}

/// Parses and verifies a proof against the pinned checkpoint keys.
pub fn verify(text: &str, keys: &PublicKeys) -> Result<VerifiedProof, Failure> {
    let proof = TlogProof::parse(text)?;
    let raw_leaf = proof.extra.as_deref().ok_or_else(|| {
        Failure::malformed("tlog-proof: no `extra` line (the leaf input is required)")
    })?;
    let leaf = LeafInput::parse(raw_leaf)
        .map_err(|e| Failure::malformed(format!("tlog-proof extra: {e}")))?;
    let checkpoint = verify_checkpoint(&proof.checkpoint, &keys.checkpoint)
        .map_err(|e| Failure::new(Reason::CheckpointSignature, None, e.to_string()))?;
    let seq = Some(proof.index);
    if leaf.seq != proof.index {
        let msg = format!(
            "leaf input seq is {}, proof index is {}",
            leaf.seq, proof.index
        );
        return Err(Failure::new(Reason::LeafMismatch, seq, msg));
    }
    merkle::verify_inclusion(
        &merkle::leaf_hash(raw_leaf),
        proof.index,
        checkpoint.size,
        &proof.path,
        &checkpoint.root,
    )
    .map_err(|e| {
        Failure::new(
            Reason::Inclusion,
            seq,
            format!("inclusion proof does not verify: {e}"),
        )
    })?;
    Ok(VerifiedProof {
        checkpoint,
        leaf,
        index: proof.index,
    })
}

/// [`verify`] as a verdict (keys are always pinned for a tlog-proof).
pub fn verify_to_verdict(text: &str, keys: &PublicKeys) -> Verdict {
    match verify(text, keys) {
        Ok(v) => Verdict {
            valid: true,
            reason: None,
            // Like a valid bundle verdict: `seq` only names a failing entry.
            seq: None,
            message: format!(
                "leaf seq {} is included in checkpoint {} at tree size {} (the proof carries no envelope: record signatures not checked)",
                v.index, v.checkpoint.origin, v.checkpoint.size
            ),
            keys_pinned: true,
            entries_checked: 1,
            tree_size: Some(v.checkpoint.size),
        },
        Err(f) => Verdict::failed(f, true, 0, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    #[test]
    fn parses_grammar() {
        let text = format!("{TLOG_PROOF_HEADER}\nextra AAEC\nindex 7\n{H}\n{H}\n\nnote\n");
        let Ok(p) = TlogProof::parse(&text) else {
            panic!("parses")
        };
        assert_eq!(p.extra, Some(vec![0, 1, 2]));
        assert_eq!((p.index, p.path.len()), (7, 2));
        assert_eq!(p.checkpoint, "note\n");
        let no_extra = format!("{TLOG_PROOF_HEADER}\nindex 0\n\nnote\n");
        assert!(matches!(
            TlogProof::parse(&no_extra),
            Ok(TlogProof { extra: None, .. })
        ));
    }

    #[test]
    fn rejects_bad_grammar() {
        for text in [
            String::new(),
            "c2sp.org/tlog-proof@v2\nindex 0\n\n".to_owned(),
            format!("{TLOG_PROOF_HEADER}\nindex 01\n\n"),
            format!("{TLOG_PROOF_HEADER}\nindex x\n\n"),
            format!("{TLOG_PROOF_HEADER}\nextra !\nindex 0\n\n"),
            format!("{TLOG_PROOF_HEADER}\nindex 0\nAAAA\n\n"),
            format!("{TLOG_PROOF_HEADER}\nindex 0\n{H}"),
            format!(
                "{TLOG_PROOF_HEADER}\nindex 0\n{}\n",
                format!("{H}\n").repeat(65)
            ),
        ] {
            let got = TlogProof::parse(&text);
            assert!(
                matches!(&got, Err(f) if f.reason == Reason::Malformed),
                "{text:?}: {got:?}"
            );
        }
    }
}
