//! Step 8 of bundle verification: the `events` member of a lineage path proof
//! (`docs/formats.md` §6.1). Each event is the canonical JSON of one OpenLineage event with
//! its RFC 9162 inclusion path in the batch that a `lineage.ingest` intent of the bundle
//! attests: the intent's subject `openlineage-batch:<size>` carries the batch root as its
//! SHA-256 digest. The bundle's entries are verified first (steps 1-7), so the roots read
//! here are signed.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::bundle::{decode_hashes, BundleEntry, Failure, Reason, MAX_PATH_HASHES};
use crate::merkle::{self, Hash};

/// The subject name prefix of a batch root.
pub const BATCH_SUBJECT: &str = "openlineage-batch:";

/// One proved event, shape-checked (step 0).
#[derive(Clone, Debug)]
pub struct EventProof {
    pub record_seq: u64,
    pub index: u64,
    pub size: u64,
    pub event: Vec<u8>,
    pub path: Vec<Hash>,
}

#[derive(Deserialize)]
struct EventJson {
    record_seq: u64,
    index: u64,
    size: u64,
    event: String,
    path: Vec<String>,
}

/// Step 0 for `events`: every item has the right types; the error names the item.
pub fn parse_events(values: Vec<Value>) -> Result<Vec<EventProof>, Failure> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let fail = |what: String| Failure::malformed(format!("events[{i}]: {what}"));
            let json = EventJson::deserialize(value).map_err(|e| fail(e.to_string()))?;
            let event = B64
                .decode(&json.event)
                .map_err(|e| fail(format!("event is not base64: {e}")))?;
            if json.path.len() > MAX_PATH_HASHES {
                return Err(fail(format!(
                    "path has {} hashes, the limit is {MAX_PATH_HASHES}",
                    json.path.len()
                )));
            }
            let path = decode_hashes(&json.path).map_err(|e| fail(format!("path{e}")))?;
            Ok(EventProof {
                record_seq: json.record_seq,
                index: json.index,
                size: json.size,
                event,
                path,
            })
        })
        .collect()
}

/// `(size, root)` of every batch attested by an entry of the bundle, by the entry's seq.
fn batch_roots(entries: &[BundleEntry]) -> HashMap<u64, (u64, Hash)> {
    let mut roots = HashMap::new();
    for entry in entries {
        let Ok(statement) = serde_json::from_slice::<Value>(&entry.envelope.payload) else {
            continue;
        };
        let subjects = statement.get("subject").and_then(Value::as_array);
        for subject in subjects.into_iter().flatten() {
            let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
            let Some(size) = name.strip_prefix(BATCH_SUBJECT) else {
                continue;
            };
            let digest = subject.pointer("/digest/sha256").and_then(Value::as_str);
            let root = digest.and_then(|hex_root| hex::decode(hex_root).ok());
            if let (Ok(size), Some(Ok(root))) = (size.parse::<u64>(), root.map(Hash::try_from)) {
                roots.insert(entry.seq, (size, root));
            }
        }
    }
    roots
}

/// Step 8: each event is the leaf `index` of the batch its intent signs.
pub fn check_events(events: &[EventProof], entries: &[BundleEntry]) -> Result<(), Failure> {
    let roots = batch_roots(entries);
    for (i, e) in events.iter().enumerate() {
        let fail = |msg: String| {
            Failure::new(
                Reason::LineageEvent,
                Some(e.record_seq),
                format!("events[{i}]: {msg}"),
            )
        };
        let &(size, root) = roots.get(&e.record_seq).ok_or_else(|| {
            fail(format!(
                "seq {} is not a lineage.ingest intent of this bundle",
                e.record_seq
            ))
        })?;
        if e.size != size {
            return Err(fail(format!(
                "batch size {} differs from the signed size {size}",
                e.size
            )));
        }
        let leaf = merkle::leaf_hash(&e.event);
        merkle::verify_inclusion(&leaf, e.index, e.size, &e.path, &root).map_err(|err| {
            fail(format!(
                "event is not leaf {} of the attested batch: {err}",
                e.index
            ))
        })?;
    }
    Ok(())
}
