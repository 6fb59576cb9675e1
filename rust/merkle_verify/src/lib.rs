//! Offline verifier for lineage-audit ledgers (see `docs/formats.md`).
//!
//! One module per concern: `merkle` (RFC 9162 trees and proofs), `leaf` (the 158-byte leaf
//! input), `chain` (hash-chain links), `signature` (ECDSA P-256 and ML-DSA-65), `dsse`
//! (envelopes and PAE), `keys` (public-key sets and key ids), `checkpoint` (C2SP signed
//! notes), `tlog_proof` (c2sp.org/tlog-proof@v1), `bundle` (evidence bundles) and `batch`
//! (rayon-parallel forms). Nothing here panics on input: every parser returns an error.

pub mod batch;
pub mod bundle;
pub mod chain;
pub mod checkpoint;
pub mod dsse;
pub mod keys;
pub mod leaf;
pub mod lineage_events;
pub mod merkle;
pub mod shared_paths;
pub mod signature;
pub mod tlog_proof;

#[cfg(feature = "python")]
mod python;
