//! Evidence bundles (docs/formats.md §6): parse, then run the ordered checks.
//!
//! Steps run in the order of the table in §6, each over all entries in bundle order, and
//! the first failure is the verdict:
//! 0 `malformed`, 1 `checkpoint_signature`, 2 `signature_missing`, 3 `envelope_signature`,
//! 4 `leaf_mismatch`, 5 `inclusion`, 6 `chain`, 7 `consistency`.
//! Per-entry work runs on rayon, and `find_map_first` keeps the reported failure the first
//! one in bundle order, whatever the scheduling.

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::{verify_checkpoint, Checkpoint};
use crate::dsse::{verify_selected, Envelope};
use crate::keys::PublicKeys;
use crate::leaf::LeafInput;
use crate::lineage_events::{check_events, parse_events, EventProof};
use crate::merkle::{self, Hash};

/// The bundle `format` this verifier knows.
pub const BUNDLE_FORMAT: &str = "lineage-audit/evidence-bundle/v1";
/// Largest bundle accepted, in bytes.
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024 * 1024;
/// Most entries a bundle may hold.
pub const MAX_ENTRIES: usize = 1_000_000;
/// Most hashes in one inclusion path.
pub const MAX_PATH_HASHES: usize = 64;
const KINDS: [&str; 2] = ["evidence", "lineage-path"];

/// Verdict reason codes, in check order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Malformed,
    CheckpointSignature,
    SignatureMissing,
    EnvelopeSignature,
    LeafMismatch,
    Inclusion,
    Chain,
    Consistency,
    LineageEvent,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::CheckpointSignature => "checkpoint_signature",
            Self::SignatureMissing => "signature_missing",
            Self::EnvelopeSignature => "envelope_signature",
            Self::LeafMismatch => "leaf_mismatch",
            Self::Inclusion => "inclusion",
            Self::Chain => "chain",
            Self::Consistency => "consistency",
            Self::LineageEvent => "lineage_event",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed check: the reason code, the entry it concerns (if any) and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub seq: Option<u64>,
    pub message: String,
}

impl Failure {
    pub fn new(reason: Reason, seq: Option<u64>, message: impl Into<String>) -> Self {
        Self {
            reason,
            seq,
            message: message.into(),
        }
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(Reason::Malformed, None, message)
    }
}

/// The outcome every verifier reports (`{valid, reason, seq, message}` plus context).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub valid: bool,
    pub reason: Option<Reason>,
    pub seq: Option<u64>,
    pub message: String,
    /// False when the bundle's own keys were used: the verdict then only shows that the
    /// bundle is self-consistent, not who signed it.
    pub keys_pinned: bool,
    pub entries_checked: u64,
    pub tree_size: Option<u64>,
}

impl Verdict {
    pub(crate) fn failed(
        failure: Failure,
        keys_pinned: bool,
        entries: usize,
        tree_size: Option<u64>,
    ) -> Self {
        Self {
            valid: false,
            reason: Some(failure.reason),
            seq: failure.seq,
            message: failure.message,
            keys_pinned,
            entries_checked: u64::try_from(entries).unwrap_or(u64::MAX),
            tree_size,
        }
    }
}

/// One entry with its fields decoded and checked for shape.
#[derive(Clone, Debug)]
pub struct BundleEntry {
    pub seq: u64,
    pub leaf: LeafInput,
    pub leaf_hash: Hash,
    pub envelope: Envelope,
    pub inclusion_proof: Vec<Hash>,
}

/// The optional consistency member.
#[derive(Clone, Debug)]
pub struct ConsistencyProof {
    pub old_checkpoint: String,
    pub proof: Vec<Hash>,
}

/// A bundle that passed step 0 (shape). `keys` stays raw: it is ignored when keys are
/// pinned, so it is only validated when used.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub kind: String,
    pub checkpoint: String,
    pub keys: Option<Value>,
    pub entries: Vec<BundleEntry>,
    pub consistency: Option<ConsistencyProof>,
    /// A lineage path proof's events (step 8); empty for other bundles.
    pub events: Vec<EventProof>,
}

#[derive(Deserialize)]
struct BundleJson {
    format: String,
    kind: String,
    checkpoint: String,
    #[serde(default)]
    keys: Option<Value>,
    entries: Vec<Value>,
    #[serde(default)]
    consistency: Option<ConsistencyJson>,
    #[serde(default)]
    events: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct EntryJson {
    seq: u64,
    leaf_input: String,
    envelope: Envelope,
    inclusion_proof: Vec<String>,
}

#[derive(Deserialize)]
struct ConsistencyJson {
    old_checkpoint: String,
    proof: Vec<String>,
}

impl Bundle {
    /// Step 0: size, JSON shape, `format`, `kind`, limits and every field's type/length.
    pub fn parse(bytes: &[u8]) -> Result<Self, Failure> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(Failure::malformed(format!(
                "bundle is {} bytes, the limit is {MAX_BUNDLE_BYTES}",
                bytes.len()
            )));
        }
        let json: BundleJson = serde_json::from_slice(bytes).map_err(|e| {
            Failure::malformed(format!("bundle is not a valid evidence bundle: {e}"))
        })?;
        if json.format != BUNDLE_FORMAT {
            return Err(Failure::malformed(format!(
                "unknown bundle format {:?}",
                json.format
            )));
        }
        if !KINDS.contains(&json.kind.as_str()) {
            return Err(Failure::malformed(format!(
                "unknown bundle kind {:?}",
                json.kind
            )));
        }
        if json.entries.len() > MAX_ENTRIES {
            return Err(Failure::malformed(format!(
                "bundle has {} entries, the limit is {MAX_ENTRIES}",
                json.entries.len()
            )));
        }
        let entries = parse_entries(json.entries)?;
        let consistency = json.consistency.map(parse_consistency).transpose()?;
        let events = parse_events(json.events.unwrap_or_default())?;
        Ok(Self {
            kind: json.kind,
            checkpoint: json.checkpoint,
            keys: json.keys,
            entries,
            consistency,
            events,
        })
    }

    /// Step 1: the checkpoint parses and both checkpoint signatures verify.
    pub fn check_checkpoint(&self, keys: &PublicKeys) -> Result<Checkpoint, Failure> {
        verify_checkpoint(&self.checkpoint, &keys.checkpoint)
            .map_err(|e| Failure::new(Reason::CheckpointSignature, None, e.to_string()))
    }

    /// Steps 2-8 against the verified checkpoint.
    pub fn check_entries(&self, checkpoint: &Checkpoint, keys: &PublicKeys) -> Result<(), Failure> {
        check_signatures_present(&self.entries, keys)?;
        check_signatures_valid(&self.entries, keys)?;
        check_leaf_binding(&self.entries, keys)?;
        check_inclusion(&self.entries, checkpoint)?;
        check_chain(&self.entries)?;
        if let Some(consistency) = &self.consistency {
            check_consistency(consistency, checkpoint, keys)?;
        }
        check_events(&self.events, &self.entries)
    }

    /// The bundle's own keys (used only when none are pinned).
    fn own_keys(&self) -> Result<PublicKeys, Failure> {
        let value = self
            .keys
            .as_ref()
            .ok_or_else(|| Failure::malformed("bundle has no `keys` and no keys were pinned"))?;
        PublicKeys::from_bundle_value(value)
            .map_err(|e| Failure::malformed(format!("bundle `keys`: {e}")))
    }
}

/// Parses and verifies a bundle. `pinned`: keys the verifier trusts; without them the
/// bundle's own keys are used and the verdict says `keys_pinned: false`.
pub fn verify_bundle(bytes: &[u8], pinned: Option<&PublicKeys>) -> Verdict {
    let keys_pinned = pinned.is_some();
    let bundle = match Bundle::parse(bytes) {
        Ok(b) => b,
        Err(f) => return Verdict::failed(f, keys_pinned, 0, None),
    };
    let n = bundle.entries.len();
    let own;
    let keys = match pinned {
        Some(k) => k,
        None => match bundle.own_keys() {
            Ok(k) => {
                own = k;
                &own
            }
            Err(f) => return Verdict::failed(f, keys_pinned, n, None),
        },
    };
    let checkpoint = match bundle.check_checkpoint(keys) {
        Ok(cp) => cp,
        Err(f) => return Verdict::failed(f, keys_pinned, n, None),
    };
    if let Err(f) = bundle.check_entries(&checkpoint, keys) {
        return Verdict::failed(f, keys_pinned, n, Some(checkpoint.size));
    }
    Verdict {
        valid: true,
        reason: None,
        seq: None,
        message: valid_message(&bundle, &checkpoint),
        keys_pinned,
        entries_checked: u64::try_from(n).unwrap_or(u64::MAX),
        tree_size: Some(checkpoint.size),
    }
}

fn valid_message(bundle: &Bundle, cp: &Checkpoint) -> String {
    let consistency = match &bundle.consistency {
        Some(_) => ", consistent with the older checkpoint",
        None => "",
    };
    let events = match bundle.events.len() {
        0 => String::new(),
        n => format!(", {n} lineage events proved in their attested batches"),
    };
    format!(
        "{} entries verified against checkpoint {} at tree size {}{consistency}{events}",
        bundle.entries.len(),
        cp.origin,
        cp.size
    )
}

/// Consumes the JSON values (moving their strings) so the bundle is not held twice.
fn parse_entries(values: Vec<Value>) -> Result<Vec<BundleEntry>, Failure> {
    let parsed: Vec<Result<BundleEntry, Failure>> = values
        .into_par_iter()
        .enumerate()
        .map(|(i, v)| parse_entry(i, v))
        .collect();
    parsed.into_iter().collect()
}

fn parse_entry(index: usize, value: Value) -> Result<BundleEntry, Failure> {
    // Step 0 is document-level: `seq` stays null and the message names the entry.
    let fail = |what: String| Failure::malformed(format!("entries[{index}]: {what}"));
    let json = EntryJson::deserialize(value).map_err(|e| fail(e.to_string()))?;
    let raw_leaf = B64
        .decode(&json.leaf_input)
        .map_err(|e| fail(format!("leaf_input is not base64: {e}")))?;
    let leaf = LeafInput::parse(&raw_leaf).map_err(|e| fail(format!("leaf_input: {e}")))?;
    if json.inclusion_proof.len() > MAX_PATH_HASHES {
        return Err(fail(format!(
            "inclusion_proof has {} hashes, the limit is {MAX_PATH_HASHES}",
            json.inclusion_proof.len()
        )));
    }
    let inclusion_proof =
        decode_hashes(&json.inclusion_proof).map_err(|e| fail(format!("inclusion_proof{e}")))?;
    Ok(BundleEntry {
        seq: json.seq,
        leaf,
        leaf_hash: merkle::leaf_hash(&raw_leaf),
        envelope: json.envelope,
        inclusion_proof,
    })
}

fn parse_consistency(json: ConsistencyJson) -> Result<ConsistencyProof, Failure> {
    let proof = decode_hashes(&json.proof)
        .map_err(|e| Failure::malformed(format!("consistency.proof{e}")))?;
    Ok(ConsistencyProof {
        old_checkpoint: json.old_checkpoint,
        proof,
    })
}

/// Base64 hashes of exactly 32 bytes; the error names the element (`[i]: ...`).
pub(crate) fn decode_hashes(items: &[String]) -> Result<Vec<Hash>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            crate::checkpoint::decode_hash(s)
                .ok_or_else(|| format!("[{i}] is not base64 of 32 bytes"))
        })
        .collect()
}

/// Step 2: for each entry, both trusted keys have a signature.
fn check_signatures_present(entries: &[BundleEntry], keys: &PublicKeys) -> Result<(), Failure> {
    for e in entries {
        e.envelope
            .select(&keys.record)
            .map_err(|err| Failure::new(Reason::SignatureMissing, Some(e.seq), err.to_string()))?;
    }
    Ok(())
}

/// Runs `check` over entries in parallel; returns the first failure in bundle order.
fn first_failure<F>(entries: &[BundleEntry], check: F) -> Result<(), Failure>
where
    F: Fn(&BundleEntry) -> Result<(), Failure> + Sync,
{
    match entries.par_iter().find_map_first(|e| check(e).err()) {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

/// Step 3: both selected signatures verify over PAE.
fn check_signatures_valid(entries: &[BundleEntry], keys: &PublicKeys) -> Result<(), Failure> {
    first_failure(entries, |e| {
        let fail = |msg: String| Failure::new(Reason::EnvelopeSignature, Some(e.seq), msg);
        let selected = e
            .envelope
            .select(&keys.record)
            .map_err(|err| fail(err.to_string()))?;
        verify_selected(&e.envelope.pae(), &selected, &keys.record)
            .map_err(|err| fail(err.to_string()))
    })
}

/// Step 4: the leaf input commits to this entry's seq, PAE and both selected signatures.
fn check_leaf_binding(entries: &[BundleEntry], keys: &PublicKeys) -> Result<(), Failure> {
    first_failure(entries, |e| {
        let fail = |msg: String| Failure::new(Reason::LeafMismatch, Some(e.seq), msg);
        let selected = e
            .envelope
            .select(&keys.record)
            .map_err(|err| fail(err.to_string()))?;
        let leaf = &e.leaf;
        if leaf.seq != e.seq {
            return Err(fail(format!(
                "leaf input seq is {}, entry seq is {}",
                leaf.seq, e.seq
            )));
        }
        if leaf.pae_hash != merkle::sha256(&e.envelope.pae()) {
            return Err(fail(
                "leaf input PAE hash does not match the envelope".into(),
            ));
        }
        if leaf.ecdsa_sig_hash != merkle::sha256(selected.ecdsa_sig) {
            return Err(fail(
                "leaf input ECDSA signature hash does not match the envelope".into(),
            ));
        }
        if leaf.mldsa_sig_hash != merkle::sha256(selected.mldsa_sig) {
            return Err(fail(
                "leaf input ML-DSA signature hash does not match the envelope".into(),
            ));
        }
        Ok(())
    })
}

/// Step 5: seq < tree size and the path leads to the checkpoint root.
fn check_inclusion(entries: &[BundleEntry], cp: &Checkpoint) -> Result<(), Failure> {
    first_failure(entries, |e| {
        let fail = |msg: String| Failure::new(Reason::Inclusion, Some(e.seq), msg);
        if e.seq >= cp.size {
            return Err(fail(format!(
                "seq {} is not below tree size {}",
                e.seq, cp.size
            )));
        }
        merkle::verify_inclusion(&e.leaf_hash, e.seq, cp.size, &e.inclusion_proof, &cp.root)
            .map_err(|err| fail(format!("inclusion proof does not verify: {err}")))
    })
}

/// Step 6: links between entries k and k+1 when both are present; seq 0 links to zeros.
fn check_chain(entries: &[BundleEntry]) -> Result<(), Failure> {
    // After step 5 two entries with one seq have the same leaf, so any of them will do.
    let by_seq: HashMap<u64, Hash> = entries.iter().map(|e| (e.seq, e.leaf_hash)).collect();
    for e in entries {
        let broken = match e.seq.checked_sub(1) {
            None => (e.leaf.prev_leaf_hash != [0u8; 32])
                .then(|| "seq 0 must have an all-zero prev_leaf_hash".to_owned()),
            Some(prev) => by_seq
                .get(&prev)
                .filter(|want| **want != e.leaf.prev_leaf_hash)
                .map(|_| format!("prev_leaf_hash is not the leaf hash of entry {prev}")),
        };
        if let Some(what) = broken {
            return Err(Failure::new(Reason::Chain, Some(e.seq), what));
        }
    }
    Ok(())
}

/// Step 7: the older checkpoint is ours, and the bundle's checkpoint extends it.
fn check_consistency(
    c: &ConsistencyProof,
    new: &Checkpoint,
    keys: &PublicKeys,
) -> Result<(), Failure> {
    let fail = |msg: String| Failure::new(Reason::Consistency, None, msg);
    let old = verify_checkpoint(&c.old_checkpoint, &keys.checkpoint)
        .map_err(|e| fail(format!("old checkpoint: {e}")))?;
    merkle::verify_consistency(old.size, new.size, &c.proof, &old.root, &new.root).map_err(|e| {
        fail(format!(
            "consistency proof from size {} to size {} does not verify: {e}",
            old.size, new.size
        ))
    })
}
