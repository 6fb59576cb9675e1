//! Python bindings for the tree, leaf-input and chain half of the crate.
//!
//! Conventions: hashes are `bytes` of length 32, anything else raises `ValueError` naming
//! the argument; `verify_*` return `False` for proofs that simply do not verify; work that
//! scales with the input runs with the GIL released.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::marker::Ungil;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::batch;
use crate::chain::ChainBreak;
use crate::leaf::{self, LeafInput};
use crate::merkle::{self, Hash};

/// Hash operations below which the GIL is kept: releasing it costs little, but taking it
/// back can wait a whole switch interval when other Python threads are running.
const DETACH_MIN_WORK: usize = 2048;

/// Runs `f` with the GIL released when `work` (roughly, hash compressions) is large.
fn run<T: Ungil, F: Ungil + FnOnce() -> T>(py: Python<'_>, work: usize, f: F) -> T {
    if work >= DETACH_MIN_WORK {
        py.detach(f)
    } else {
        f()
    }
}

fn value_error(e: impl ToString) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// One 32-byte hash argument.
fn hash_arg(name: &str, bytes: &[u8]) -> PyResult<Hash> {
    merkle::hash_from_slice(name, bytes).map_err(value_error)
}

/// One element of a hash list; errors name it (`proof[3]`).
fn hash_item(name: &str, i: usize, b: &[u8]) -> PyResult<Hash> {
    Hash::try_from(b)
        .map_err(|_| value_error(format!("{name}[{i}] is {} bytes, expected 32", b.len())))
}

/// An already-extracted list of 32-byte hashes.
fn hash_list<T: AsRef<[u8]>>(name: &str, items: &[T]) -> PyResult<Vec<Hash>> {
    items
        .iter()
        .enumerate()
        .map(|(i, b)| hash_item(name, i, b.as_ref()))
        .collect()
}

/// A Python sequence of 32-byte hashes, copied straight out of each `bytes` object: for
/// million-leaf trees this is several times faster than extracting owned wrappers first.
fn hash_seq(name: &str, seq: &Bound<'_, PyAny>) -> PyResult<Vec<Hash>> {
    if seq.is_instance_of::<PyBytes>() || seq.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a list of bytes, not a single bytes/str object"
        )));
    }
    let mut out = Vec::with_capacity(seq.len().unwrap_or(0));
    for (i, item) in seq.try_iter()?.enumerate() {
        let item = item?;
        let hash = match item.downcast::<PyBytes>() {
            Ok(b) => hash_item(name, i, b.as_bytes())?,
            // bytearray, memoryview and other buffers take the slower generic path.
            Err(_) => hash_item(name, i, &item.extract::<PyBackedBytes>()?)?,
        };
        out.push(hash);
    }
    Ok(out)
}

/// Byte strings copied into one buffer: one allocation instead of one per item, and
/// plain `&[u8]` slices that can cross into GIL-free code.
struct Packed {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Packed {
    fn from_seq(name: &str, seq: &Bound<'_, PyAny>) -> PyResult<Self> {
        if seq.is_instance_of::<PyBytes>() || seq.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(format!(
                "{name} must be a list of bytes, not a single bytes/str object"
            )));
        }
        let n = seq.len().unwrap_or(0);
        let mut packed = Packed {
            data: Vec::with_capacity(n * leaf::LEAF_INPUT_LEN),
            ends: Vec::with_capacity(n),
        };
        for item in seq.try_iter()? {
            let item = item?;
            match item.downcast::<PyBytes>() {
                Ok(b) => packed.data.extend_from_slice(b.as_bytes()),
                Err(_) => packed
                    .data
                    .extend_from_slice(&item.extract::<PyBackedBytes>()?),
            }
            packed.ends.push(packed.data.len());
        }
        Ok(packed)
    }

    fn slices(&self) -> Vec<&[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| self.data.get(start..end).unwrap_or_default())
            .collect()
    }
}

fn to_bytes<'py>(py: Python<'py>, h: &Hash) -> Bound<'py, PyBytes> {
    PyBytes::new(py, h)
}

fn to_bytes_list<'py>(py: Python<'py>, hashes: &[Hash]) -> Vec<Bound<'py, PyBytes>> {
    hashes.iter().map(|h| to_bytes(py, h)).collect()
}

/// RFC 9162 leaf hash SHA-256(0x00 || data) of any byte string (normally a leaf input).
#[pyfunction]
fn leaf_hash<'py>(py: Python<'py>, leaf_input: &[u8]) -> Bound<'py, PyBytes> {
    let h = run(py, leaf_input.len() / 64, || merkle::leaf_hash(leaf_input));
    to_bytes(py, &h)
}

/// Interior node hash SHA-256(0x01 || left || right).
#[pyfunction]
fn node_hash<'py>(py: Python<'py>, left: &[u8], right: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let h = merkle::node_hash(&hash_arg("left", left)?, &hash_arg("right", right)?);
    Ok(to_bytes(py, &h))
}

/// Root of the empty tree, SHA-256("").
#[pyfunction]
fn empty_root(py: Python<'_>) -> Bound<'_, PyBytes> {
    to_bytes(py, &merkle::empty_root())
}

/// Merkle tree hash of a list of leaf hashes (parallel for large trees).
#[pyfunction]
fn root<'py>(py: Python<'py>, leaf_hashes: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let leaves = hash_seq("leaf_hashes", leaf_hashes)?;
    let r = run(py, leaves.len(), || batch::root_parallel(&leaves));
    Ok(to_bytes(py, &r))
}

/// Inclusion proof (bottom-up) for `index`; ValueError if index >= len(leaf_hashes).
#[pyfunction]
fn inclusion_proof<'py>(
    py: Python<'py>,
    leaf_hashes: &Bound<'py, PyAny>,
    index: u64,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let leaves = hash_seq("leaf_hashes", leaf_hashes)?;
    let proof = run(py, leaves.len(), || merkle::inclusion_proof(&leaves, index));
    Ok(to_bytes_list(py, &proof.map_err(value_error)?))
}

/// Consistency proof from the first `old_size` leaves to all of them; ValueError unless
/// 0 < old_size <= len(leaf_hashes).
#[pyfunction]
fn consistency_proof<'py>(
    py: Python<'py>,
    leaf_hashes: &Bound<'py, PyAny>,
    old_size: u64,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let leaves = hash_seq("leaf_hashes", leaf_hashes)?;
    let proof = run(py, leaves.len(), || {
        merkle::consistency_proof(&leaves, old_size)
    });
    Ok(to_bytes_list(py, &proof.map_err(value_error)?))
}

/// True when `leaf_hash` is at `index` of the tree (`tree_size`, `root`).
#[pyfunction]
#[pyo3(signature = (leaf_hash, index, tree_size, proof, root))]
fn verify_inclusion(
    leaf_hash: &[u8],
    index: u64,
    tree_size: u64,
    proof: Option<Vec<PyBackedBytes>>,
    root: &[u8],
) -> PyResult<bool> {
    let leaf = hash_arg("leaf_hash", leaf_hash)?;
    let root = hash_arg("root", root)?;
    let proof = hash_list("proof", proof.as_deref().unwrap_or_default())?;
    // At most 64 hashes: too little work to be worth releasing the GIL.
    Ok(merkle::verify_inclusion(&leaf, index, tree_size, &proof, &root).is_ok())
}

/// True when the tree (`new_size`, `new_root`) extends (`old_size`, `old_root`).
#[pyfunction]
#[pyo3(signature = (old_size, new_size, proof, old_root, new_root))]
fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: Option<Vec<PyBackedBytes>>,
    old_root: &[u8],
    new_root: &[u8],
) -> PyResult<bool> {
    let proof = proof.as_deref().unwrap_or_default();
    if old_size == new_size {
        // Equal sizes: the roots are only compared byte for byte, never parsed, as the
        // conformance suite requires (it has a passing vector with 12-byte roots).
        let verdict =
            merkle::verify_consistency_bytes(old_size, new_size, proof, old_root, new_root);
        return Ok(verdict.is_ok());
    }
    let old_root = hash_arg("old_root", old_root)?;
    let new_root = hash_arg("new_root", new_root)?;
    let proof = hash_list("proof", proof)?;
    Ok(merkle::verify_consistency(old_size, new_size, &proof, &old_root, &new_root).is_ok())
}

/// One verdict per (leaf_hash, index, proof) triple, verified in parallel.
#[pyfunction]
fn verify_inclusion_batch(
    py: Python<'_>,
    leaf_hashes: &Bound<'_, PyAny>,
    indices: Vec<u64>,
    tree_size: u64,
    proofs: Vec<Vec<PyBackedBytes>>,
    root: &[u8],
) -> PyResult<Vec<bool>> {
    let leaves = hash_seq("leaf_hashes", leaf_hashes)?;
    let root = hash_arg("root", root)?;
    let proofs = proofs
        .iter()
        .enumerate()
        .map(|(i, p)| hash_list(&format!("proofs[{i}]"), p))
        .collect::<PyResult<Vec<_>>>()?;
    let work = proofs.iter().map(Vec::len).sum();
    let verdicts = run(py, work, || {
        batch::verify_inclusion_batch(&leaves, &indices, tree_size, &proofs, &root)
    })
    .map_err(value_error)?;
    Ok(verdicts.iter().map(Result::is_ok).collect())
}

/// [`verify_inclusion_batch`] with packed inputs: `leaf_hashes` is n × 32 bytes and
/// `packed_proofs` the proofs concatenated (each of `inclusion_proof_len(index, tree_size)`
/// hashes). Both buffers are read in place, in parallel, without the GIL.
#[pyfunction]
fn verify_inclusion_batch_packed(
    py: Python<'_>,
    leaf_hashes: &[u8],
    indices: Vec<u64>,
    tree_size: u64,
    packed_proofs: &[u8],
    root: &[u8],
) -> PyResult<Vec<bool>> {
    let root = hash_arg("root", root)?;
    run(py, packed_proofs.len() / merkle::HASH_LEN, || {
        batch::verify_inclusion_batch_packed(leaf_hashes, &indices, tree_size, packed_proofs, &root)
    })
    .map_err(value_error)
}

/// Inclusion proofs of `indices` in the tree over packed leaf hashes, concatenated in order
/// (the tree is built once, in parallel).
#[pyfunction]
fn inclusion_proofs_packed<'py>(
    py: Python<'py>,
    leaf_hashes: &[u8],
    indices: Vec<u64>,
) -> PyResult<Bound<'py, PyBytes>> {
    let proofs = run(py, leaf_hashes.len() / merkle::HASH_LEN, || {
        let leaves = batch::hashes_from_packed("leaf_hashes", leaf_hashes)?;
        batch::inclusion_proofs_packed(leaves, &indices)
    })
    .map_err(value_error)?;
    Ok(PyBytes::new(py, &proofs))
}

/// Merkle tree hash over packed leaf hashes (n × 32 bytes), in parallel.
#[pyfunction]
fn root_packed<'py>(py: Python<'py>, leaf_hashes: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let r = run(py, leaf_hashes.len() / merkle::HASH_LEN, || {
        batch::root_packed(leaf_hashes)
    })
    .map_err(value_error)?;
    Ok(to_bytes(py, &r))
}

/// The chain's starting point: the given hash, or the all-zero hash of a log's start.
fn prev_arg(prev_leaf_hash: Option<&[u8]>) -> PyResult<Hash> {
    prev_leaf_hash.map_or(Ok([0u8; 32]), |b| hash_arg("prev_leaf_hash", b))
}

/// `(True, None, None)` or `(False, first_bad_seq, reason)`.
fn chain_tuple(verdict: Result<Hash, ChainBreak>) -> (bool, Option<u64>, Option<String>) {
    match verdict {
        Ok(_) => (true, None, None),
        Err(b) => (false, Some(b.seq), Some(b.reason)),
    }
}

/// [`verify_chain`] over leaf inputs packed as n × 158 bytes (read in place).
#[pyfunction]
#[pyo3(signature = (leaf_inputs, first_seq=0, prev_leaf_hash=None))]
fn verify_chain_packed(
    py: Python<'_>,
    leaf_inputs: &[u8],
    first_seq: u64,
    prev_leaf_hash: Option<&[u8]>,
) -> PyResult<(bool, Option<u64>, Option<String>)> {
    let prev = prev_arg(prev_leaf_hash)?;
    // Each 158-byte leaf input is three SHA-256 blocks.
    let work = 3 * (leaf_inputs.len() / leaf::LEAF_INPUT_LEN);
    let verdict = run(py, work, || {
        batch::verify_chain_packed(leaf_inputs, first_seq, &prev)
    })
    .map_err(value_error)?;
    Ok(chain_tuple(verdict))
}

/// Hash-chain check, in parallel: `(True, None, None)` or `(False, first_bad_seq, reason)`.
#[pyfunction]
#[pyo3(signature = (leaf_inputs, first_seq=0, prev_leaf_hash=None))]
fn verify_chain(
    py: Python<'_>,
    leaf_inputs: &Bound<'_, PyAny>,
    first_seq: u64,
    prev_leaf_hash: Option<&[u8]>,
) -> PyResult<(bool, Option<u64>, Option<String>)> {
    let prev = prev_arg(prev_leaf_hash)?;
    let packed = Packed::from_seq("leaf_inputs", leaf_inputs)?;
    let inputs = packed.slices();
    // Each 158-byte leaf input is three SHA-256 blocks.
    let verdict = run(py, 3 * inputs.len(), || {
        batch::verify_chain_parallel(&inputs, first_seq, &prev)
    });
    Ok(chain_tuple(verdict))
}

/// The 158-byte leaf input for a DSSE envelope's payload and its two signatures.
#[pyfunction]
fn build_leaf_input<'py>(
    py: Python<'py>,
    seq: u64,
    prev_leaf_hash: &[u8],
    payload_type: &str,
    payload: &[u8],
    ecdsa_sig: &[u8],
    mldsa_sig: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let prev = hash_arg("prev_leaf_hash", prev_leaf_hash)?;
    let leaf = LeafInput::for_envelope(seq, prev, payload_type, payload, ecdsa_sig, mldsa_sig);
    Ok(PyBytes::new(py, &leaf.to_bytes()))
}

/// Decodes a leaf input into a dict (plus its `leaf_hash`); ValueError if malformed.
#[pyfunction]
fn parse_leaf_input<'py>(py: Python<'py>, leaf_input: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    let leaf = LeafInput::parse(leaf_input).map_err(value_error)?;
    let d = PyDict::new(py);
    d.set_item("seq", leaf.seq)?;
    d.set_item("prev_leaf_hash", to_bytes(py, &leaf.prev_leaf_hash))?;
    d.set_item("pae_hash", to_bytes(py, &leaf.pae_hash))?;
    d.set_item("ecdsa_sig_hash", to_bytes(py, &leaf.ecdsa_sig_hash))?;
    d.set_item("mldsa_sig_hash", to_bytes(py, &leaf.mldsa_sig_hash))?;
    d.set_item("leaf_hash", to_bytes(py, &merkle::leaf_hash(leaf_input)))?;
    Ok(d)
}

/// DSSE pre-authentication encoding of (payload_type, payload).
#[pyfunction]
fn pae<'py>(py: Python<'py>, payload_type: &str, payload: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &leaf::pae(payload_type, payload))
}

/// Adds this half's functions to the extension module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(leaf_hash, m)?)?;
    m.add_function(wrap_pyfunction!(node_hash, m)?)?;
    m.add_function(wrap_pyfunction!(empty_root, m)?)?;
    m.add_function(wrap_pyfunction!(root, m)?)?;
    m.add_function(wrap_pyfunction!(inclusion_proof, m)?)?;
    m.add_function(wrap_pyfunction!(consistency_proof, m)?)?;
    m.add_function(wrap_pyfunction!(verify_inclusion, m)?)?;
    m.add_function(wrap_pyfunction!(verify_consistency, m)?)?;
    m.add_function(wrap_pyfunction!(verify_inclusion_batch, m)?)?;
    m.add_function(wrap_pyfunction!(verify_inclusion_batch_packed, m)?)?;
    m.add_function(wrap_pyfunction!(inclusion_proofs_packed, m)?)?;
    m.add_function(wrap_pyfunction!(root_packed, m)?)?;
    m.add_function(wrap_pyfunction!(verify_chain, m)?)?;
    m.add_function(wrap_pyfunction!(verify_chain_packed, m)?)?;
    m.add_function(wrap_pyfunction!(build_leaf_input, m)?)?;
    m.add_function(wrap_pyfunction!(parse_leaf_input, m)?)?;
    m.add_function(wrap_pyfunction!(pae, m)?)?;
    Ok(())
}
