//! The Leasehold worker SDK.
//!
//! The worker runtime and client land with the "Rust worker SDK core" issue; today the crate
//! re-exports the wire types so that dependants can already name them.

pub use leasehold_proto as proto;
