//! Helpers both stores use to record a batch of outcomes.

use leasehold_proto::JobState;
use uuid::Uuid;

use super::{Outcome, OutcomeKind};

/// Where the chunk of `outcomes` that starts at `start` ends (exclusive), for stores that write
/// a batch of outcomes a chunk at a time: at most `max` outcomes, ending before a job named a
/// second time (that report must see the first one's effect) and right after a job in `in_run`
/// (its DAG bookkeeping must run before the next outcome). Applying the chunks in order thus
/// gives exactly the results and events of applying the outcomes one by one.
pub(crate) fn outcome_chunk_end(
    outcomes: &[Outcome],
    start: usize,
    max: usize,
    in_run: &std::collections::HashSet<Uuid>,
) -> usize {
    let mut seen = std::collections::HashSet::new();
    let mut end = start;
    while end < outcomes.len() && end - start < max && seen.insert(outcomes[end].job_id) {
        end += 1;
        if in_run.contains(&outcomes[end - 1].job_id) {
            break;
        }
    }
    end
}

/// The jobs of `chunk` whose outcome was not recorded (`updated` holds `None` for them): their
/// lease was lost, or they do not exist; the caller looks up which.
pub(crate) fn lost_leases<T>(chunk: &[Outcome], updated: &[Option<T>]) -> Vec<Uuid> {
    chunk
        .iter()
        .zip(updated)
        .filter(|(_, job)| job.is_none())
        .map(|(o, _)| o.job_id)
        .collect()
}

/// The `dead` or `queued` state a failure leads to, given what the row says.
pub(crate) fn event_type_for(state: JobState, outcome: &OutcomeKind) -> &'static str {
    match (state, outcome) {
        (JobState::Succeeded, _) => "succeeded",
        (JobState::Cancelled, _) => "cancelled",
        (JobState::Dead, _) => "dead",
        (JobState::Queued, OutcomeKind::Release { .. }) => "released",
        (JobState::Queued, _) => "retry_scheduled",
        _ => "updated",
    }
}
