//! Wycheproof conformance: every ML-DSA-65 verify vector and every ECDSA P-256/SHA-256
//! vector (DER and P1363) from `shared/conformance/wycheproof` must give its `result`.

use std::path::PathBuf;

use merkle_verify::signature::{EcdsaP256PublicKey, MlDsa65PublicKey};
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/wycheproof/testvectors_v1"
    ))
}

fn load(name: &str) -> Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "conformance file {} is missing or unreadable: {e}",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    let s = v[key]
        .as_str()
        .unwrap_or_else(|| panic!("missing hex field {key}"));
    hex::decode(s).unwrap_or_else(|e| panic!("field {key}: bad hex: {e}"))
}

/// One vector: its id, whether it must verify, and what the verifier said.
struct Outcome {
    tc_id: u64,
    expected_valid: bool,
    verified: bool,
}

fn expected(test: &Value) -> bool {
    match test["result"].as_str() {
        Some("valid") => true,
        Some("invalid") => false,
        other => panic!(
            "tcId {}: unexpected result {other:?} (no `acceptable` case is expected)",
            test["tcId"]
        ),
    }
}

/// Runs `verify` over every test of every group; returns the outcomes.
fn run_file(doc: &Value, verify: impl Fn(&Value, &Value) -> bool) -> Vec<Outcome> {
    let groups = doc["testGroups"].as_array().expect("testGroups");
    groups
        .iter()
        .flat_map(|group| {
            let tests = group["tests"].as_array().expect("tests");
            tests.iter().map(|test| Outcome {
                tc_id: test["tcId"].as_u64().expect("tcId"),
                expected_valid: expected(test),
                verified: verify(group, test),
            })
        })
        .collect()
}

fn check(name: &str, outcomes: &[Outcome], want_total: usize, want_valid: usize) {
    let wrong: Vec<u64> = outcomes
        .iter()
        .filter(|o| o.expected_valid != o.verified)
        .map(|o| o.tc_id)
        .collect();
    assert!(
        wrong.is_empty(),
        "{name}: vectors with the wrong outcome: {wrong:?}"
    );
    let valid = outcomes.iter().filter(|o| o.expected_valid).count();
    assert_eq!(outcomes.len(), want_total, "{name}: test count");
    assert_eq!(valid, want_valid, "{name}: valid count");
}

fn declared_count(doc: &Value) -> usize {
    usize::try_from(doc["numberOfTests"].as_u64().expect("numberOfTests")).expect("fits")
}

#[test]
fn mldsa_65_verify_all_vectors() {
    let doc = load("mldsa_65_verify_test.json");
    let outcomes = run_file(&doc, |group, test| {
        // A public key of the wrong length is unusable: nothing verifies under it.
        let Ok(key) = MlDsa65PublicKey::from_bytes(&hex_field(group, "publicKey")) else {
            return false;
        };
        let msg = hex_field(test, "msg");
        let sig = hex_field(test, "sig");
        // The ledger uses the empty context; vectors that carry `ctx` exercise the
        // FIPS 204 context API (including contexts over 255 bytes, which must fail).
        match test.get("ctx") {
            Some(_) => key.verify_with_context(&msg, &hex_field(test, "ctx"), &sig),
            None => key.verify(&msg, &sig),
        }
    });
    assert_eq!(declared_count(&doc), 210);
    check("mldsa_65_verify", &outcomes, 210, 79);
}

#[test]
fn ecdsa_p256_sha256_der_all_vectors() {
    let doc = load("ecdsa_secp256r1_sha256_test.json");
    let outcomes = run_file(&doc, |group, test| {
        assert_eq!(group["sha"].as_str(), Some("SHA-256"));
        let key = EcdsaP256PublicKey::from_spki_der(&hex_field(group, "publicKeyDer"))
            .unwrap_or_else(|e| panic!("tcId {}: key: {e}", test["tcId"]));
        key.verify_der(&hex_field(test, "msg"), &hex_field(test, "sig"))
    });
    assert_eq!(declared_count(&doc), 484);
    check("ecdsa_der", &outcomes, 484, 174);
}

#[test]
fn ecdsa_p256_sha256_p1363_all_vectors() {
    let doc = load("ecdsa_secp256r1_sha256_p1363_test.json");
    let outcomes = run_file(&doc, |group, test| {
        assert_eq!(group["sha"].as_str(), Some("SHA-256"));
        let key = EcdsaP256PublicKey::from_spki_der(&hex_field(group, "publicKeyDer"))
            .unwrap_or_else(|e| panic!("tcId {}: key: {e}", test["tcId"]));
        key.verify_p1363(&hex_field(test, "msg"), &hex_field(test, "sig"))
    });
    assert_eq!(declared_count(&doc), 262);
    check("ecdsa_p1363", &outcomes, 262, 173);
}

/// High-S must be accepted: a valid vector's (r, n - s) twin verifies too.
#[test]
fn ecdsa_high_s_twin_is_accepted() {
    let doc = load("ecdsa_secp256r1_sha256_p1363_test.json");
    // n, the P-256 group order, big-endian.
    let n = hex::decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
        .expect("hex");
    let mut checked = 0;
    for group in doc["testGroups"].as_array().expect("groups") {
        let key =
            EcdsaP256PublicKey::from_spki_der(&hex_field(group, "publicKeyDer")).expect("key");
        for test in group["tests"].as_array().expect("tests") {
            let sig = hex_field(test, "sig");
            if test["result"] != "valid" || sig.len() != 64 {
                continue;
            }
            let msg = hex_field(test, "msg");
            let mut twin = sig[..32].to_vec();
            twin.extend(sub_be(&n, &sig[32..]));
            assert!(
                key.verify_p1363(&msg, &twin),
                "tcId {}: (r, n-s) rejected",
                test["tcId"]
            );
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} high-S twins checked");
}

/// Big-endian `a - b` for equal-length inputs with a >= b.
fn sub_be(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = u8::try_from(d).expect("byte");
    }
    out
}
