//! Python bindings of the Leasehold SDK. The PyO3 module arrives with the Python SDK issue.

pub use leasehold::proto;
