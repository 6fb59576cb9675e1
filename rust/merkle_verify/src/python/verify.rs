//! Python bindings for the signature/format half: key ids, ECDSA and ML-DSA verification,
//! DSSE envelopes, checkpoints, tlog-proofs and evidence bundles.
//!
//! Conventions: every function releases the GIL while it works (each does at least one
//! public-key operation). Unusable arguments (a bad key, a keys file that does not parse)
//! raise `ValueError` whose message starts with `keys:`; a failed verification raises
//! `ValueError` whose message starts with its reason code (`checkpoint_signature: ...`),
//! except the `verify_bundle`/`verify_tlog_proof` verdict dicts and the boolean checks.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict};

use crate::bundle::{self, Verdict};
use crate::checkpoint::verify_checkpoint as verify_checkpoint_note;
use crate::dsse::{self, Envelope, EnvelopeError};
use crate::keys::{CheckpointKeys, PublicKeys, RecordKeys};
use crate::signature;
use crate::tlog_proof;

fn keys_error(e: impl ToString) -> PyErr {
    PyValueError::new_err(format!("keys: {}", e.to_string()))
}

fn envelope_error_text(e: &EnvelopeError) -> String {
    format!("{}: {e}", e.reason_code())
}

fn verdict_dict<'py>(py: Python<'py>, v: &Verdict) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("valid", v.valid)?;
    d.set_item("reason", v.reason.map(bundle::Reason::as_str))?;
    d.set_item("seq", v.seq)?;
    d.set_item("message", &v.message)?;
    d.set_item("keys_pinned", v.keys_pinned)?;
    d.set_item("entries_checked", v.entries_checked)?;
    d.set_item("tree_size", v.tree_size)?;
    Ok(d)
}

/// `(ecdsa-p256:<16 hex>, ml-dsa-65:<16 hex>)` for a record key pair (keys are validated).
#[pyfunction]
fn record_key_ids(
    py: Python<'_>,
    ecdsa_spki: &[u8],
    mldsa_pk: &[u8],
) -> PyResult<(String, String)> {
    let keys = py
        .detach(|| RecordKeys::new(ecdsa_spki, mldsa_pk))
        .map_err(keys_error)?;
    Ok((keys.ecdsa_key_id, keys.mldsa_key_id))
}

/// Checkpoint note key ids `(ecdsa, ml_dsa)` as big-endian u32 (keys and name validated).
#[pyfunction]
fn checkpoint_key_ids(
    py: Python<'_>,
    name: &str,
    ecdsa_spki: &[u8],
    mldsa_pk: &[u8],
) -> PyResult<(u32, u32)> {
    let keys = py
        .detach(|| CheckpointKeys::new(name, ecdsa_spki, mldsa_pk))
        .map_err(keys_error)?;
    Ok((keys.ecdsa_note_id, keys.mldsa_note_id))
}

/// ECDSA P-256/SHA-256 over `msg` with a DER signature (high-S accepted).
#[pyfunction]
fn verify_ecdsa_p256(py: Python<'_>, spki: &[u8], msg: &[u8], der_sig: &[u8]) -> PyResult<bool> {
    py.detach(|| signature::verify_ecdsa_p256(spki, msg, der_sig))
        .map_err(keys_error)
}

/// Pure ML-DSA-65 (empty context); a signature that is not 3309 bytes is `False`.
#[pyfunction]
fn verify_ml_dsa_65(py: Python<'_>, pk: &[u8], msg: &[u8], sig: &[u8]) -> PyResult<bool> {
    py.detach(|| signature::verify_ml_dsa_65(pk, msg, sig))
        .map_err(keys_error)
}

/// Verifies one DSSE envelope (JSON bytes) under the AND policy; raises on failure.
#[pyfunction]
fn verify_envelope(
    py: Python<'_>,
    envelope_json: &[u8],
    ecdsa_spki: &[u8],
    mldsa_pk: &[u8],
) -> PyResult<()> {
    py.detach(|| {
        let keys = RecordKeys::new(ecdsa_spki, mldsa_pk).map_err(keys_error)?;
        Envelope::from_json(envelope_json)
            .and_then(|env| dsse::verify_envelope(&env, &keys))
            .map_err(|e| PyValueError::new_err(envelope_error_text(&e)))
    })
}

/// Verifies many envelopes in parallel: `None` for each that passes, else
/// `"<reason>: <message>"`, in input order.
#[pyfunction]
fn verify_envelopes(
    py: Python<'_>,
    envelopes: Vec<PyBackedBytes>,
    ecdsa_spki: &[u8],
    mldsa_pk: &[u8],
) -> PyResult<Vec<Option<String>>> {
    py.detach(|| {
        let keys = RecordKeys::new(ecdsa_spki, mldsa_pk).map_err(keys_error)?;
        let refs: Vec<&[u8]> = envelopes.iter().map(|b| &**b).collect();
        Ok(dsse::verify_envelopes(&refs, &keys)
            .iter()
            .map(|r| r.as_ref().err().map(envelope_error_text))
            .collect())
    })
}

/// Verifies a checkpoint note; returns `(origin, size, root)` or raises
/// `ValueError("checkpoint_signature: ...")`.
#[pyfunction]
fn verify_checkpoint<'py>(
    py: Python<'py>,
    note: &str,
    name: &str,
    ecdsa_spki: &[u8],
    mldsa_pk: &[u8],
) -> PyResult<(String, u64, Bound<'py, PyBytes>)> {
    let cp = py.detach(|| {
        let keys = CheckpointKeys::new(name, ecdsa_spki, mldsa_pk).map_err(keys_error)?;
        verify_checkpoint_note(note, &keys)
            .map_err(|e| PyValueError::new_err(format!("checkpoint_signature: {e}")))
    })?;
    Ok((cp.origin, cp.size, PyBytes::new(py, &cp.root)))
}

/// Verifies a `c2sp.org/tlog-proof@v1` text against a public-keys JSON; returns the verdict
/// dict (`valid`, `reason`, `seq`, `message`, `keys_pinned`, `entries_checked`, `tree_size`).
#[pyfunction]
fn verify_tlog_proof<'py>(
    py: Python<'py>,
    text: &str,
    keys_json: &[u8],
) -> PyResult<Bound<'py, PyDict>> {
    let verdict = py.detach(|| {
        let keys = PublicKeys::from_json(keys_json).map_err(keys_error)?;
        Ok::<_, PyErr>(tlog_proof::verify_to_verdict(text, &keys))
    })?;
    verdict_dict(py, &verdict)
}

/// Verifies an evidence bundle; with `keys_json` the keys are pinned, else the bundle's own
/// keys are used (`keys_pinned` False). Returns the verdict dict.
#[pyfunction]
#[pyo3(signature = (bundle, keys_json=None))]
fn verify_bundle<'py>(
    py: Python<'py>,
    bundle: &[u8],
    keys_json: Option<&[u8]>,
) -> PyResult<Bound<'py, PyDict>> {
    let verdict = py.detach(|| {
        let keys = keys_json
            .map(PublicKeys::from_json)
            .transpose()
            .map_err(keys_error)?;
        Ok::<_, PyErr>(bundle::verify_bundle(bundle, keys.as_ref()))
    })?;
    verdict_dict(py, &verdict)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(record_key_ids, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint_key_ids, m)?)?;
    m.add_function(wrap_pyfunction!(verify_ecdsa_p256, m)?)?;
    m.add_function(wrap_pyfunction!(verify_ml_dsa_65, m)?)?;
    m.add_function(wrap_pyfunction!(verify_envelope, m)?)?;
    m.add_function(wrap_pyfunction!(verify_envelopes, m)?)?;
    m.add_function(wrap_pyfunction!(verify_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(verify_tlog_proof, m)?)?;
    m.add_function(wrap_pyfunction!(verify_bundle, m)?)?;
    Ok(())
}
