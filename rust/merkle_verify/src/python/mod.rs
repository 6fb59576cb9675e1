//! PyO3 bindings: the `lineage_audit._merkle_verify` extension module.
//! Every function that does real work releases the GIL.

use pyo3::prelude::*;

mod merkle;
mod verify;

#[pymodule]
fn _merkle_verify(m: &Bound<'_, PyModule>) -> PyResult<()> {
    merkle::register(m)?;
    verify::register(m)?;
    Ok(())
}
