//! C ABI of the Leasehold SDK. The `lh_` exports arrive with the C and Go SDK issue.

pub use leasehold::proto;
