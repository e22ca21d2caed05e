//! Retry delays: the policy and the `leasehold-retry-v1` algorithm, defined once in the wire
//! crate (the coordinator computes the same schedule for failures reported without
//! `retry_at`); see [`leasehold_proto::retry`] and `docs/retries.md`.

pub use leasehold_proto::retry::{RetryPolicy, SplitMix64};
