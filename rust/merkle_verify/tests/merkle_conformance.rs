//! Runs every RFC 6962/9162 proof vector in `shared/conformance/merkle` (from
//! transparency-dev/merkle): a verifier must return an error exactly when `wantErr` is true.

use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use merkle_verify::merkle::{self, Hash};
use serde::Deserialize;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/conformance/merkle"
);

/// The suite has 196 vectors; fewer means a broken checkout, not a pass.
const MIN_VECTORS: usize = 190;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InclusionCase {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsistencyCase {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

fn suite(name: &str) -> Vec<PathBuf> {
    let dir = Path::new(VECTORS).join(name);
    assert!(
        dir.is_dir(),
        "conformance vectors missing: {} (is shared/ checked out beside the repo?)",
        dir.display()
    );
    let mut files = Vec::new();
    json_files(&dir, &mut files);
    files.sort();
    files
}

fn b64(s: &str) -> Vec<u8> {
    STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("bad base64 {s:?}: {e}"))
}

fn b64_list(v: &Option<Vec<String>>) -> Vec<Vec<u8>> {
    v.iter().flatten().map(|s| b64(s)).collect()
}

fn load<T: for<'de> Deserialize<'de>>(path: &Path) -> T {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run_inclusion(c: &InclusionCase) -> Result<(), merkle::MerkleError> {
    merkle::verify_inclusion_bytes(
        &b64(&c.leaf_hash),
        c.leaf_idx,
        c.tree_size,
        &b64_list(&c.proof),
        &b64(&c.root),
    )
}

fn run_consistency(c: &ConsistencyCase) -> Result<(), merkle::MerkleError> {
    merkle::verify_consistency_bytes(
        c.size1,
        c.size2,
        &b64_list(&c.proof),
        &b64(&c.root1),
        &b64(&c.root2),
    )
}

/// Records a mismatch between the verdict and `wantErr`.
fn check(
    failures: &mut Vec<String>,
    path: &Path,
    desc: &str,
    want_err: bool,
    got: Result<(), merkle::MerkleError>,
) {
    if got.is_err() != want_err {
        failures.push(format!(
            "{} ({desc}): wantErr={want_err}, got {got:?}",
            path.display()
        ));
    }
}

fn subdir_count(files: &[PathBuf], part: &str) -> usize {
    files
        .iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == part))
        .count()
}

#[test]
fn every_vector_errs_exactly_when_expected() {
    let inclusion = suite("inclusion");
    let consistency = suite("consistency");
    let total = inclusion.len() + consistency.len();
    assert!(
        total >= MIN_VECTORS,
        "only {total} vectors read from {VECTORS}, expected at least {MIN_VECTORS}"
    );
    assert!(
        subdir_count(&inclusion, "additional") > 0,
        "inclusion/additional missing"
    );
    assert!(
        subdir_count(&inclusion, "single-entry") > 0,
        "inclusion/single-entry missing"
    );
    assert!(
        subdir_count(&consistency, "additional") > 0,
        "consistency/additional missing"
    );

    let mut failures = Vec::new();
    let mut positives = 0;
    for path in &inclusion {
        let c: InclusionCase = load(path);
        positives += usize::from(!c.want_err);
        check(&mut failures, path, &c.desc, c.want_err, run_inclusion(&c));
    }
    for path in &consistency {
        let c: ConsistencyCase = load(path);
        positives += usize::from(!c.want_err);
        check(
            &mut failures,
            path,
            &c.desc,
            c.want_err,
            run_consistency(&c),
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {total} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(positives >= 10, "only {positives} happy-path vectors");
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    if let Some(byte) = out.get_mut(bit / 8) {
        *byte ^= 1 << (bit % 8);
    }
    out
}

fn hashes(v: &[Vec<u8>]) -> Vec<Hash> {
    v.iter()
        .map(|b| Hash::try_from(b.as_slice()).expect("32-byte hash in a happy path"))
        .collect()
}

/// Beyond the vectors' own mutations: every single-bit change to a happy-path proof, leaf
/// or root must be rejected by the typed API, which must also accept the original.
#[test]
fn happy_paths_reject_every_bit_flip() {
    let mut checked = 0;
    for path in suite("inclusion") {
        let c: InclusionCase = load(&path);
        if c.want_err {
            continue;
        }
        let leaf = Hash::try_from(b64(&c.leaf_hash).as_slice()).expect("leaf hash");
        let root = Hash::try_from(b64(&c.root).as_slice()).expect("root");
        let proof = hashes(&b64_list(&c.proof));
        let verify = |l: &Hash, p: &[Hash], r: &Hash| {
            merkle::verify_inclusion(l, c.leaf_idx, c.tree_size, p, r)
        };
        assert_eq!(verify(&leaf, &proof, &root), Ok(()), "{}", path.display());
        for bit in 0..256 {
            assert!(verify(&flip(&leaf, bit), &proof, &root).is_err());
            assert!(verify(&leaf, &proof, &flip(&root, bit)).is_err());
            for i in 0..proof.len() {
                let mut p = proof.clone();
                p[i] = flip(&p[i], bit);
                assert!(
                    verify(&leaf, &p, &root).is_err(),
                    "{} proof[{i}] bit {bit}",
                    path.display()
                );
            }
        }
        checked += 1;
    }
    for path in suite("consistency") {
        let c: ConsistencyCase = load(&path);
        let (Ok(r1), Ok(r2)) = (
            Hash::try_from(b64(&c.root1).as_slice()),
            Hash::try_from(b64(&c.root2).as_slice()),
        ) else {
            continue;
        };
        if c.want_err {
            continue;
        }
        let proof = hashes(&b64_list(&c.proof));
        let verify =
            |p: &[Hash], a: &Hash, b: &Hash| merkle::verify_consistency(c.size1, c.size2, p, a, b);
        assert_eq!(verify(&proof, &r1, &r2), Ok(()), "{}", path.display());
        for bit in 0..256 {
            assert!(verify(&proof, &flip(&r1, bit), &r2).is_err());
            assert!(verify(&proof, &r1, &flip(&r2, bit)).is_err());
            for i in 0..proof.len() {
                let mut p = proof.clone();
                p[i] = flip(&p[i], bit);
                assert!(
                    verify(&p, &r1, &r2).is_err(),
                    "{} proof[{i}] bit {bit}",
                    path.display()
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} happy paths exercised");
}
