//! End-to-end format tests: a small log is built and signed here with p256 and ml-dsa
//! (deterministic keys from fixed seeds), then bundles, checkpoints, envelopes and
//! tlog-proofs are verified and tampered with, checking each verdict reason code.

use std::path::PathBuf;
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ml_dsa::MlDsa65;
use p256::ecdsa::signature::{Keypair as _, Signer as _};
use p256::pkcs8::EncodePublicKey as _;
use serde_json::{json, Value};

use merkle_verify::bundle::{verify_bundle, Reason, Verdict};
use merkle_verify::checkpoint::{verify_checkpoint, CheckpointError};
use merkle_verify::dsse::{verify_envelope, verify_envelopes, Envelope, EnvelopeError};
use merkle_verify::keys::{checkpoint_ecdsa_key_id, checkpoint_mldsa_key_id, PublicKeys};
use merkle_verify::leaf::{pae, LeafInput};
use merkle_verify::merkle::{self, Hash};
use merkle_verify::tlog_proof;

const NAME: &str = "example.com/lineage-audit";
const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// One signer identity: an ECDSA P-256 and an ML-DSA-65 key pair.
struct KeyPair {
    ecdsa: p256::ecdsa::SigningKey,
    mldsa: ml_dsa::SigningKey<MlDsa65>,
}

impl KeyPair {
    fn new(seed: u8) -> Self {
        let mut scalar = [0u8; 32];
        scalar[31] = seed;
        scalar[0] = 0x11;
        let ecdsa = p256::ecdsa::SigningKey::from_slice(&scalar).expect("valid scalar");
        let mldsa = ml_dsa::SigningKey::<MlDsa65>::from_seed(&[seed; 32].into());
        Self { ecdsa, mldsa }
    }

    fn spki(&self) -> Vec<u8> {
        let vk = self.ecdsa.verifying_key();
        vk.to_public_key_der().expect("spki").as_bytes().to_vec()
    }

    fn mldsa_pk(&self) -> Vec<u8> {
        self.mldsa.verifying_key().encode().to_vec()
    }

    fn sign_ecdsa(&self, msg: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = self.ecdsa.sign(msg);
        sig.to_der().as_bytes().to_vec()
    }

    fn sign_mldsa(&self, msg: &[u8]) -> Vec<u8> {
        self.mldsa.sign(msg).encode().to_vec()
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn record_key_id(prefix: &str, key: &[u8]) -> String {
    let d = merkle::sha256(key);
    format!("{prefix}:{}", hex::encode(&d[..8]))
}

/// A signed envelope plus the raw signatures the leaf input commits to.
#[derive(Clone)]
struct SignedRecord {
    envelope: Value,
    payload: Vec<u8>,
    ecdsa_sig: Vec<u8>,
    mldsa_sig: Vec<u8>,
}

struct Ledger {
    record: KeyPair,
    checkpoint: KeyPair,
}

impl Ledger {
    fn new() -> Self {
        Self {
            record: KeyPair::new(1),
            checkpoint: KeyPair::new(2),
        }
    }

    fn keys_value(&self) -> Value {
        json!({
            "record": {"ecdsa-p256": b64(&self.record.spki()), "ml-dsa-65": b64(&self.record.mldsa_pk())},
            "checkpoint": {"name": NAME, "ecdsa-p256": b64(&self.checkpoint.spki()),
                           "ml-dsa-65": b64(&self.checkpoint.mldsa_pk())},
        })
    }

    fn keys_file(&self) -> Vec<u8> {
        let mut v = self.keys_value();
        v["format"] = json!("lineage-audit/public-keys/v1");
        serde_json::to_vec(&v).expect("json")
    }

    fn public_keys(&self) -> PublicKeys {
        PublicKeys::from_json(&self.keys_file()).expect("keys parse")
    }

    fn sign_record(&self, payload: &[u8]) -> SignedRecord {
        self.sign_record_with(payload, &self.record)
    }

    /// Signs with `signer` but labels the signatures with the trusted record key ids.
    fn sign_record_with(&self, payload: &[u8], signer: &KeyPair) -> SignedRecord {
        let pae_bytes = pae(PAYLOAD_TYPE, payload);
        let ecdsa_sig = signer.sign_ecdsa(&pae_bytes);
        let mldsa_sig = signer.sign_mldsa(&pae_bytes);
        let envelope = json!({
            "payloadType": PAYLOAD_TYPE,
            "payload": b64(payload),
            "signatures": [
                {"keyid": record_key_id("ecdsa-p256", &self.record.spki()), "sig": b64(&ecdsa_sig)},
                {"keyid": record_key_id("ml-dsa-65", &self.record.mldsa_pk()), "sig": b64(&mldsa_sig)},
            ],
        });
        SignedRecord {
            envelope,
            payload: payload.to_vec(),
            ecdsa_sig,
            mldsa_sig,
        }
    }

    fn note_text(size: u64, root: &Hash) -> String {
        format!("{NAME}\n{size}\n{}\n", b64(root))
    }

    fn sign_checkpoint(&self, size: u64, root: &Hash) -> String {
        let text = Self::note_text(size, root);
        self.sign_note_text(&text)
    }

    fn sign_note_text(&self, text: &str) -> String {
        let cp = &self.checkpoint;
        let ecdsa_id = checkpoint_ecdsa_key_id(&cp.spki()).to_be_bytes();
        let mldsa_id = checkpoint_mldsa_key_id(NAME, &cp.mldsa_pk()).to_be_bytes();
        let ecdsa_sig = [&ecdsa_id[..], &cp.sign_ecdsa(text.as_bytes())].concat();
        let mldsa_sig = [&mldsa_id[..], &cp.sign_mldsa(text.as_bytes())].concat();
        format!(
            "{text}\n\u{2014} {NAME} {}\n\u{2014} {NAME} {}\n",
            b64(&ecdsa_sig),
            b64(&mldsa_sig)
        )
    }
}

/// A log of `n` signed records, correctly chained.
struct Log {
    records: Vec<SignedRecord>,
    leaves: Vec<LeafInput>,
}

impl Log {
    fn build(ledger: &Ledger, n: u64) -> Self {
        let records: Vec<SignedRecord> = (0..n)
            .map(|seq| ledger.sign_record(format!("{{\"record\":{seq}}}").as_bytes()))
            .collect();
        Self::from_records(records)
    }

    fn from_records(records: Vec<SignedRecord>) -> Self {
        let mut prev = [0u8; 32];
        let leaves = records
            .iter()
            .zip(0u64..)
            .map(|(r, seq)| {
                let leaf = LeafInput::for_envelope(
                    seq,
                    prev,
                    PAYLOAD_TYPE,
                    &r.payload,
                    &r.ecdsa_sig,
                    &r.mldsa_sig,
                );
                prev = leaf.leaf_hash();
                leaf
            })
            .collect();
        Self { records, leaves }
    }

    fn hashes(&self) -> Vec<Hash> {
        self.leaves.iter().map(LeafInput::leaf_hash).collect()
    }

    fn root(&self) -> Hash {
        merkle::root(&self.hashes())
    }

    fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    fn entry(&self, seq: u64) -> Value {
        let i = usize::try_from(seq).expect("seq");
        let proof = merkle::inclusion_proof(&self.hashes(), seq).expect("proof");
        json!({
            "seq": seq,
            "leaf_input": b64(&self.leaves[i].to_bytes()),
            "envelope": self.records[i].envelope,
            "inclusion_proof": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
        })
    }

    fn bundle(&self, ledger: &Ledger, seqs: &[u64]) -> Value {
        json!({
            "format": "lineage-audit/evidence-bundle/v1",
            "kind": "evidence",
            "checkpoint": ledger.sign_checkpoint(self.size(), &self.root()),
            "keys": ledger.keys_value(),
            "entries": seqs.iter().map(|&s| self.entry(s)).collect::<Vec<_>>(),
            "consistency": null,
        })
    }
}

fn verify(bundle: &Value, keys: Option<&PublicKeys>) -> Verdict {
    verify_bundle(&serde_json::to_vec(bundle).expect("json"), keys)
}

fn assert_reason(verdict: &Verdict, reason: Reason, seq: Option<u64>) {
    assert!(
        !verdict.valid,
        "expected {reason:?}, got a valid verdict: {verdict:?}"
    );
    assert_eq!(
        (verdict.reason, verdict.seq),
        (Some(reason), seq),
        "{verdict:?}"
    );
}

fn fixture() -> (Ledger, Log) {
    let ledger = Ledger::new();
    let log = Log::build(&ledger, 7);
    (ledger, log)
}

#[test]
fn valid_bundle_verifies_pinned_and_unpinned() {
    let (ledger, log) = fixture();
    let bundle = log.bundle(&ledger, &[2, 3, 6]);
    let keys = ledger.public_keys();
    let pinned = verify(&bundle, Some(&keys));
    assert!(pinned.valid, "{pinned:?}");
    assert!(pinned.keys_pinned);
    assert_eq!((pinned.entries_checked, pinned.tree_size), (3, Some(7)));
    let unpinned = verify(&bundle, None);
    assert!(unpinned.valid && !unpinned.keys_pinned, "{unpinned:?}");
}

#[test]
fn lineage_path_kind_and_unknown_members_are_accepted() {
    let (ledger, log) = fixture();
    let mut bundle = log.bundle(&ledger, &[0, 1]);
    bundle["kind"] = json!("lineage-path");
    bundle["something_new"] = json!({"x": [1, 2]});
    bundle["entries"][0]["note"] = json!("ignored");
    assert!(verify(&bundle, None).valid);
}

#[test]
fn payload_bit_flip_is_envelope_signature() {
    let (ledger, log) = fixture();
    let mut bundle = log.bundle(&ledger, &[1, 4]);
    let mut payload = log.records[4].payload.clone();
    payload[3] ^= 0x01;
    bundle["entries"][1]["envelope"]["payload"] = json!(b64(&payload));
    assert_reason(
        &verify(&bundle, Some(&ledger.public_keys())),
        Reason::EnvelopeSignature,
        Some(4),
    );
}

#[test]
fn stripped_signature_is_signature_missing() {
    let (ledger, log) = fixture();
    for keep in [0usize, 1] {
        let mut bundle = log.bundle(&ledger, &[5]);
        let sigs = bundle["entries"][0]["envelope"]["signatures"]
            .as_array()
            .expect("sigs")
            .clone();
        bundle["entries"][0]["envelope"]["signatures"] = json!([sigs[keep]]);
        assert_reason(&verify(&bundle, None), Reason::SignatureMissing, Some(5));
    }
}

#[test]
fn signature_under_another_key_is_envelope_signature() {
    let (ledger, log) = fixture();
    let intruder = KeyPair::new(9);
    let forged = ledger.sign_record_with(b"{\"forged\":true}", &intruder);
    for which in [0usize, 1] {
        // Only one of the two signatures is forged; the other stays genuine.
        let mut records = log.records.clone();
        let genuine = ledger.sign_record(b"{\"forged\":true}");
        let mut rec = genuine.clone();
        rec.envelope["signatures"][which] = forged.envelope["signatures"][which].clone();
        if which == 0 {
            rec.ecdsa_sig = forged.ecdsa_sig.clone();
        } else {
            rec.mldsa_sig = forged.mldsa_sig.clone();
        }
        records[3] = rec;
        let log = Log::from_records(records);
        let bundle = log.bundle(&ledger, &[3]);
        assert_reason(
            &verify(&bundle, Some(&ledger.public_keys())),
            Reason::EnvelopeSignature,
            Some(3),
        );
    }
}

#[test]
fn pinned_keys_override_bundle_keys() {
    let (ledger, log) = fixture();
    let other = Ledger {
        record: KeyPair::new(7),
        checkpoint: KeyPair::new(8),
    };
    // A bundle whose own keys are consistent with themselves but not with the pinned ones.
    let bundle = log.bundle(&ledger, &[0]);
    assert!(verify(&bundle, None).valid);
    assert_reason(
        &verify(&bundle, Some(&other.public_keys())),
        Reason::CheckpointSignature,
        None,
    );
}

#[test]
fn high_s_ecdsa_record_signature_is_accepted() {
    let ledger = Ledger::new();
    let mut rec = ledger.sign_record(b"{\"high\":\"s\"}");
    rec.ecdsa_sig = high_s_twin(&rec.ecdsa_sig);
    rec.envelope["signatures"][0]["sig"] = json!(b64(&rec.ecdsa_sig));
    let log = Log::from_records(vec![rec]);
    let verdict = verify(&log.bundle(&ledger, &[0]), Some(&ledger.public_keys()));
    assert!(verdict.valid, "{verdict:?}");
}

/// Re-encodes a DER signature (r, s) as (r, n - s), whichever half s was in.
fn high_s_twin(der: &[u8]) -> Vec<u8> {
    let sig = p256::ecdsa::Signature::from_der(der).expect("der");
    let (r, s) = sig.split_scalars();
    let neg_s = -*s;
    let twin = p256::ecdsa::Signature::from_scalars(r.to_bytes(), neg_s.to_bytes()).expect("twin");
    assert_ne!(twin.to_der().as_bytes(), der);
    twin.to_der().as_bytes().to_vec()
}

#[test]
fn leaf_input_not_binding_the_envelope_is_leaf_mismatch() {
    let (ledger, log) = fixture();
    // Entry 2 carries entry 3's (valid) envelope: signatures verify, the leaf disagrees.
    let mut bundle = log.bundle(&ledger, &[2]);
    bundle["entries"][0]["envelope"] = log.records[3].envelope.clone();
    assert_reason(&verify(&bundle, None), Reason::LeafMismatch, Some(2));
    // Entry claims seq 3 but carries leaf 2 (whose seq field says 2).
    let mut bundle = log.bundle(&ledger, &[2]);
    bundle["entries"][0]["seq"] = json!(3);
    assert_reason(&verify(&bundle, None), Reason::LeafMismatch, Some(3));
}

#[test]
fn checkpoint_with_wrong_size_is_inclusion() {
    let (ledger, log) = fixture();
    let mut bundle = log.bundle(&ledger, &[1, 6, 2]);
    // Properly signed, but for size 8 with the size-7 root. Seq 1's path is the same in
    // both trees (it lies in the complete left subtree), seq 6's is not.
    bundle["checkpoint"] = json!(ledger.sign_checkpoint(8, &log.root()));
    assert_reason(&verify(&bundle, None), Reason::Inclusion, Some(6));
    // A checkpoint too small to hold the entry.
    let small = Log {
        records: log.records[..2].to_vec(),
        leaves: log.leaves[..2].to_vec(),
    };
    let mut bundle = log.bundle(&ledger, &[2]);
    bundle["checkpoint"] = json!(ledger.sign_checkpoint(2, &small.root()));
    let verdict = verify(&bundle, None);
    assert_reason(&verdict, Reason::Inclusion, Some(2));
    assert!(
        verdict.message.contains("not below tree size 2"),
        "{verdict:?}"
    );
}

#[test]
fn broken_chain_link_is_chain() {
    let (ledger, log) = fixture();
    let mut leaves = log.leaves.clone();
    leaves[4].prev_leaf_hash[0] ^= 0xff;
    // Re-chain from 5 on so only the 3 -> 4 link is broken; the tree commits to it all.
    for i in 5..leaves.len() {
        leaves[i].prev_leaf_hash = leaves[i - 1].leaf_hash();
    }
    let broken = Log {
        records: log.records.clone(),
        leaves,
    };
    // Entries 3 and 4 both present: the link is checked and fails at 4.
    assert_reason(
        &verify(&broken.bundle(&ledger, &[4, 3]), None),
        Reason::Chain,
        Some(4),
    );
    // Entry 4 alone: its predecessor is absent, so nothing to compare.
    assert!(verify(&broken.bundle(&ledger, &[4, 5]), None).valid);
}

#[test]
fn seq_zero_must_link_to_zeros() {
    let (ledger, log) = fixture();
    let mut leaves = log.leaves.clone();
    leaves[0].prev_leaf_hash = [1u8; 32];
    let broken = Log {
        records: log.records.clone(),
        leaves,
    };
    assert_reason(
        &verify(&broken.bundle(&ledger, &[0]), None),
        Reason::Chain,
        Some(0),
    );
}

#[test]
fn tampered_checkpoint_is_checkpoint_signature() {
    let (ledger, log) = fixture();
    let bundle = log.bundle(&ledger, &[1]);
    let note = bundle["checkpoint"].as_str().expect("note").to_owned();
    for tampered in [
        note.replacen("\n7\n", "\n6\n", 1),
        note.replacen(NAME, "example.org/other", 1),
        note.replace('\u{2014}', "-"),
        note.lines()
            .take(4)
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
        String::new(),
    ] {
        let mut b = bundle.clone();
        b["checkpoint"] = json!(tampered);
        assert_reason(&verify(&b, None), Reason::CheckpointSignature, None);
    }
}

#[test]
fn unknown_note_signatures_are_ignored_known_failing_ones_reject() {
    let (ledger, log) = fixture();
    let note = ledger.sign_checkpoint(log.size(), &log.root());
    let keys = ledger.public_keys();
    let ecdsa_id = keys.checkpoint.ecdsa_note_id.to_be_bytes();
    // Unknown name, and our name with an unknown key id: both ignored.
    let junk = |id: &[u8]| b64(&[id, &[0xAB; 70][..]].concat());
    let extra = format!(
        "\u{2014} witness.example/w1 {}\n\u{2014} {NAME} {}\n",
        junk(&[1, 2, 3, 4]),
        junk(&(keys.checkpoint.ecdsa_note_id ^ 1).to_be_bytes())
    );
    let with_extra = format!("{note}{extra}");
    assert!(verify_checkpoint(&with_extra, &keys.checkpoint).is_ok());
    let mut bundle = log.bundle(&ledger, &[0]);
    bundle["checkpoint"] = json!(with_extra);
    assert!(verify(&bundle, None).valid);
    // A known key id whose signature fails rejects the note even though ours are valid.
    let bad_known = format!("{note}\u{2014} {NAME} {}\n", junk(&ecdsa_id));
    assert_eq!(
        verify_checkpoint(&bad_known, &keys.checkpoint),
        Err(CheckpointError::SignatureInvalid("ECDSA P-256"))
    );
}

#[test]
fn both_checkpoint_signatures_are_required() {
    let (ledger, log) = fixture();
    let keys = ledger.public_keys();
    let note = ledger.sign_checkpoint(log.size(), &log.root());
    let lines: Vec<&str> = note.split_inclusive('\n').collect();
    let (body, ecdsa_line, mldsa_line) = (lines[..4].concat(), lines[4], lines[5]);
    assert!(matches!(
        verify_checkpoint(&format!("{body}{ecdsa_line}"), &keys.checkpoint),
        Err(CheckpointError::SignatureMissing("ML-DSA-65", _))
    ));
    assert!(matches!(
        verify_checkpoint(&format!("{body}{mldsa_line}"), &keys.checkpoint),
        Err(CheckpointError::SignatureMissing("ECDSA P-256", _))
    ));
    // Order of signature lines does not matter.
    assert!(
        verify_checkpoint(&format!("{body}{mldsa_line}{ecdsa_line}"), &keys.checkpoint).is_ok()
    );
}

#[test]
fn checkpoint_extension_lines_are_tolerated_and_reported() {
    let (ledger, log) = fixture();
    let text = format!(
        "{}ext-line one\n",
        Ledger::note_text(log.size(), &log.root())
    );
    let note = ledger.sign_note_text(&text);
    let cp = verify_checkpoint(&note, &ledger.public_keys().checkpoint).expect("verifies");
    assert_eq!(cp.extensions, vec!["ext-line one".to_owned()]);
    assert_eq!((cp.size, cp.root), (log.size(), log.root()));
}

#[test]
fn consistency_proof_checks() {
    let (ledger, log) = fixture();
    let hashes = log.hashes();
    let old_root = merkle::root(&hashes[..3]);
    let proof: Vec<String> = merkle::consistency_proof(&hashes, 3)
        .expect("proof")
        .iter()
        .map(|h| b64(h))
        .collect();
    let mut bundle = log.bundle(&ledger, &[2]);
    bundle["consistency"] =
        json!({"old_checkpoint": ledger.sign_checkpoint(3, &old_root), "proof": proof});
    assert!(verify(&bundle, None).valid);

    let mut bad_proof = bundle.clone();
    bad_proof["consistency"]["proof"][0] = json!(b64(&[0u8; 32]));
    assert_reason(&verify(&bad_proof, None), Reason::Consistency, None);

    let mut bad_old = bundle.clone();
    let tampered = ledger
        .sign_checkpoint(3, &old_root)
        .replacen("\n3\n", "\n4\n", 1);
    bad_old["consistency"]["old_checkpoint"] = json!(tampered);
    assert_reason(&verify(&bad_old, None), Reason::Consistency, None);

    let mut wrong_root = bundle.clone();
    wrong_root["consistency"]["old_checkpoint"] = json!(ledger.sign_checkpoint(3, &[9u8; 32]));
    assert_reason(&verify(&wrong_root, None), Reason::Consistency, None);
}

#[test]
fn steps_run_in_order_and_report_the_first_entry_in_bundle_order() {
    let (ledger, log) = fixture();
    let mut bundle = log.bundle(&ledger, &[6, 1, 4]);
    // Entry seq 1: invalid signature (step 3); entry seq 4: missing signature (step 2).
    bundle["entries"][1]["envelope"]["payload"] = json!(b64(b"tampered"));
    let sigs = bundle["entries"][2]["envelope"]["signatures"][0].clone();
    bundle["entries"][2]["envelope"]["signatures"] = json!([sigs]);
    assert_reason(&verify(&bundle, None), Reason::SignatureMissing, Some(4));
    // Two invalid signatures: the first in bundle order (6, then 1) is reported.
    let mut bundle = log.bundle(&ledger, &[6, 1, 4]);
    bundle["entries"][1]["envelope"]["payload"] = json!(b64(b"tampered"));
    bundle["entries"][0]["envelope"]["payload"] = json!(b64(b"tampered too"));
    for _ in 0..5 {
        assert_reason(&verify(&bundle, None), Reason::EnvelopeSignature, Some(6));
    }
}

#[test]
fn malformed_bundles_never_panic() {
    let (ledger, log) = fixture();
    let bundle = log.bundle(&ledger, &[1, 2]);
    let bytes = serde_json::to_vec(&bundle).expect("json");
    for cut in (0..bytes.len()).step_by(97) {
        let v = verify_bundle(&bytes[..cut], None);
        assert_eq!(v.reason, Some(Reason::Malformed), "cut at {cut}: {v:?}");
    }
    for garbage in [
        &b""[..],
        b"null",
        b"[]",
        b"{}",
        b"\xff\xfe",
        b"{\"format\":1}",
        &[b'['; 100_000],
    ] {
        assert_eq!(verify_bundle(garbage, None).reason, Some(Reason::Malformed));
    }
    let mutations: Vec<(&str, Value)> = vec![
        ("/format", json!("lineage-audit/evidence-bundle/v2")),
        ("/kind", json!("other")),
        ("/checkpoint", json!(5)),
        ("/keys", json!({"record": {}})),
        ("/entries", json!({})),
        ("/entries/0/seq", json!(-1)),
        ("/entries/0/seq", json!("1")),
        ("/entries/0/leaf_input", json!(b64(&[0u8; 157]))),
        ("/entries/0/leaf_input", json!(b64(&[0u8; 158]))),
        ("/entries/0/leaf_input", json!("not base64!")),
        ("/entries/0/envelope", json!("string")),
        ("/entries/0/envelope/payload", json!("%%%")),
        ("/entries/0/envelope/signatures/0/sig", json!(7)),
        ("/entries/0/inclusion_proof/0", json!(b64(&[0u8; 31]))),
        (
            "/entries/0/inclusion_proof",
            json!(vec![b64(&[0u8; 32]); 65]),
        ),
        ("/consistency", json!({"old_checkpoint": "x"})),
        (
            "/consistency",
            json!({"old_checkpoint": "x", "proof": ["AAAA"]}),
        ),
    ];
    for (path, value) in mutations {
        let mut b = bundle.clone();
        *b.pointer_mut(path).expect("path exists") = value;
        let v = verify(&b, None);
        assert_eq!(v.reason, Some(Reason::Malformed), "{path}: {v:?}");
    }
    let mut too_many = bundle.clone();
    too_many["entries"] = json!(vec![0; 1_000_001]);
    assert_eq!(verify(&too_many, None).reason, Some(Reason::Malformed));
}

#[test]
fn envelope_api_distinguishes_missing_invalid_malformed() {
    let ledger = Ledger::new();
    let keys = ledger.public_keys();
    let rec = ledger.sign_record(b"{}");
    let good = serde_json::to_vec(&rec.envelope).expect("json");
    let env = Envelope::from_json(&good).expect("parses");
    assert_eq!(verify_envelope(&env, &keys.record), Ok(()));

    let mut missing = rec.envelope.clone();
    missing["signatures"][1]["keyid"] = json!("ml-dsa-65:0000000000000000");
    let mut invalid = rec.envelope.clone();
    invalid["payload"] = json!(b64(b"{ }"));
    let mut short = rec.envelope.clone();
    short["signatures"][1]["sig"] = json!(b64(&rec.mldsa_sig[..3308]));
    let docs = [
        good.clone(),
        serde_json::to_vec(&missing).expect("json"),
        serde_json::to_vec(&invalid).expect("json"),
        serde_json::to_vec(&short).expect("json"),
        b"{".to_vec(),
    ];
    let refs: Vec<&[u8]> = docs.iter().map(Vec::as_slice).collect();
    let codes: Vec<&str> = verify_envelopes(&refs, &keys.record)
        .iter()
        .map(|r| r.as_ref().err().map_or("ok", EnvelopeError::reason_code))
        .collect();
    assert_eq!(
        codes,
        [
            "ok",
            "signature_missing",
            "envelope_signature",
            "envelope_signature",
            "malformed"
        ]
    );
}

fn tlog_proof_text(ledger: &Ledger, log: &Log, seq: u64, index: u64) -> String {
    let i = usize::try_from(seq).expect("seq");
    let proof = merkle::inclusion_proof(&log.hashes(), seq).expect("proof");
    let lines: String = proof.iter().map(|h| format!("{}\n", b64(h))).collect();
    format!(
        "c2sp.org/tlog-proof@v1\nextra {}\nindex {index}\n{lines}\n{}",
        b64(&log.leaves[i].to_bytes()),
        ledger.sign_checkpoint(log.size(), &log.root())
    )
}

#[test]
fn tlog_proof_verifies_and_rejects() {
    let (ledger, log) = fixture();
    let keys = ledger.public_keys();
    let good = tlog_proof_text(&ledger, &log, 5, 5);
    let v = tlog_proof::verify_to_verdict(&good, &keys);
    assert!(v.valid, "{v:?}");
    assert_eq!((v.seq, v.tree_size), (None, Some(7)));
    assert!(
        v.message.starts_with("leaf seq 5 is included"),
        "{}",
        v.message
    );

    let wrong_index = tlog_proof_text(&ledger, &log, 5, 4);
    assert_reason(
        &tlog_proof::verify_to_verdict(&wrong_index, &keys),
        Reason::LeafMismatch,
        Some(4),
    );

    let bad_path = good.replacen(
        "\nindex 5\n",
        "\nindex 5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        1,
    );
    assert_reason(
        &tlog_proof::verify_to_verdict(&bad_path, &keys),
        Reason::Inclusion,
        Some(5),
    );

    let bad_cp = good.replacen(&format!("{NAME}\n7\n"), &format!("{NAME}\n8\n"), 1);
    assert_reason(
        &tlog_proof::verify_to_verdict(&bad_cp, &keys),
        Reason::CheckpointSignature,
        None,
    );

    for cut in (0..good.len()).step_by(53) {
        if let Some(prefix) = good.get(..cut) {
            assert!(!tlog_proof::verify_to_verdict(prefix, &keys).valid);
        }
    }
}

// ---- the CLI binary ----

fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("merkle-verify-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn run_cli(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_merkle-verify"))
        .args(args)
        .output()
        .expect("binary runs");
    let code = out.status.code().expect("exit code");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8");
    (code, text(out.stdout), text(out.stderr))
}

#[test]
fn cli_exit_codes() {
    let (ledger, log) = fixture();
    let dir = scratch_dir("cli");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    };
    let keys = write("keys.json", &ledger.keys_file());
    let good = write(
        "good.json",
        &serde_json::to_vec(&log.bundle(&ledger, &[1, 2])).expect("json"),
    );
    let mut tampered = log.bundle(&ledger, &[1, 2]);
    tampered["entries"][1]["envelope"]["payload"] = json!(b64(b"x"));
    let bad = write("bad.json", &serde_json::to_vec(&tampered).expect("json"));
    let garbage = write("garbage.bin", b"\x00\x01 definitely not a bundle");
    let truncated = write("truncated.json", b"{\"format\": \"lineage-");
    let proof = write(
        "p.tlog-proof",
        tlog_proof_text(&ledger, &log, 3, 3).as_bytes(),
    );
    let bad_keys = write(
        "bad-keys.json",
        b"{\"format\": \"lineage-audit/public-keys/v1\"}",
    );
    let missing = dir.join("does-not-exist.json");
    let k = keys.as_os_str();

    let (code, stdout, stderr) = run_cli(&[good.as_os_str(), "--keys".as_ref(), k]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("VALID entries=2 tree_size=7 keys=pinned"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1);

    let (code, stdout, stderr) = run_cli(&[good.as_os_str()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("keys=unpinned") && stderr.starts_with("warning:"),
        "{stdout}{stderr}"
    );

    let (code, stdout, _) = run_cli(&[bad.as_os_str(), "--keys".as_ref(), k]);
    assert_eq!(code, 1);
    assert!(
        stdout.starts_with("INVALID envelope_signature seq=2: "),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1);

    let (code, stdout, _) = run_cli(&[bad.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&stdout).expect("json verdict");
    assert_eq!(
        (v["valid"].clone(), v["reason"].clone(), v["seq"].clone()),
        (json!(false), json!("envelope_signature"), json!(2))
    );

    let (code, stdout, _) = run_cli(&[proof.as_os_str(), "--keys".as_ref(), k]);
    assert_eq!(code, 0, "{stdout}");

    for args in [
        vec![missing.as_os_str()],
        vec![garbage.as_os_str()],
        vec![truncated.as_os_str()],
        vec![proof.as_os_str()],
        vec![good.as_os_str(), "--keys".as_ref(), bad_keys.as_os_str()],
        vec![good.as_os_str(), "--keys".as_ref(), missing.as_os_str()],
        vec![good.as_os_str(), "--bogus".as_ref()],
        vec![],
    ] {
        let (code, stdout, stderr) = run_cli(&args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.lines().count() <= 2,
            "{args:?}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- never panic on arbitrary input ----

mod fuzz {
    use super::*;
    use merkle_verify::checkpoint::parse_note;
    use merkle_verify::tlog_proof::TlogProof;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    /// One signed bundle, built once for all cases.
    fn sample() -> &'static (Vec<u8>, PublicKeys) {
        static SAMPLE: OnceLock<(Vec<u8>, PublicKeys)> = OnceLock::new();
        SAMPLE.get_or_init(|| {
            let (ledger, log) = fixture();
            let bytes = serde_json::to_vec(&log.bundle(&ledger, &[0, 1])).expect("json");
            (bytes, ledger.public_keys())
        })
    }

    /// The members verification reads under pinned keys: the bundle's own `keys` and
    /// unknown members are ignored, and an absent `consistency` equals null.
    fn normalised(bytes: &[u8]) -> Option<Value> {
        let mut v = serde_json::from_slice::<Value>(bytes).ok()?;
        let obj = v.as_object_mut()?;
        obj.retain(|k, _| {
            ["format", "kind", "checkpoint", "entries", "consistency"].contains(&k.as_str())
        });
        if obj.get("consistency") == Some(&Value::Null) {
            obj.remove("consistency");
        }
        Some(v)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_note(&text);
            let _ = TlogProof::parse(&text);
            let _ = Envelope::from_json(&bytes);
            let _ = PublicKeys::from_json(&bytes);
            let v = verify_bundle(&bytes, None);
            prop_assert_eq!(v.reason, Some(Reason::Malformed));
        }

        /// Any one-byte change to a signed bundle either leaves the same JSON document
        /// (apart from the ignored `keys`) or makes the verdict invalid.
        #[test]
        fn mutated_bundle_is_never_valid(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let (bytes, keys) = sample();
            let mut mutated = bytes.clone();
            let i = pos.index(mutated.len());
            mutated[i] = byte;
            let v = verify_bundle(&mutated, Some(keys));
            let same = normalised(&mutated) == normalised(bytes);
            prop_assert!(!v.valid || same, "byte {} -> {:#04x} still valid: {:?}", i, byte, v);
        }
    }
}
