//! Flow control at lease time over real HTTP (docs/flow-control.md): rate and concurrency
//! limits, their answers and wake-ups, their operator surface, and one budget shared by two
//! replicas of the coordinator on one PostgreSQL; fairness across the queues of one claim.

mod blackouts;
mod breakers;
mod fairness;
mod limits;
mod replicas;
