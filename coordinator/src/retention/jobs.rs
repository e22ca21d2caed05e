//! Finished jobs past their window: jobs of no run one tenant and queue at a time, runs whole
//! once every job of the run is past its own window.

use leasehold_proto::SweepReport;

use super::Sweeper;
use super::{Policies, RetentionConfig};
use crate::store::{FinishedRun, RunJobFact, ScopeCutoffs, StoreResult, is_failed_family};

/// Runs read per page.
const RUN_PAGE: u32 = 100;

/// Removes what is past its window; adds the counts to `report`.
pub(super) async fn remove_expired(
    state: &Sweeper,
    config: &RetentionConfig,
    report: &mut SweepReport,
) -> StoreResult<()> {
    let store = state.store.retention();
    let now = state.clock.now();
    let policies = Policies::new(
        config.succeeded,
        config.failed,
        &store.retention_policies(None).await?,
    );
    for (tenant, queue) in store.finished_scopes().await? {
        let windows = policies.resolve(&tenant, &queue);
        let cut = ScopeCutoffs {
            succeeded_before: windows.succeeded.0.cutoff(now),
            failed_before: windows.failed.0.cutoff(now),
            tenant,
            queue,
        };
        if cut.succeeded_before.is_none() && cut.failed_before.is_none() {
            continue;
        }
        loop {
            let removed = store.delete_finished_jobs(&cut, config.batch).await?;
            report.jobs_removed += removed;
            metrics::counter!(crate::metrics::RETENTION_JOBS_REMOVED).increment(removed);
            if removed < u64::from(config.batch) {
                break;
            }
        }
    }
    let mut after = None;
    loop {
        let page = store.finished_runs(after, RUN_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let full = page.len() == RUN_PAGE as usize;
        for run in page {
            if !run_expired(&run, &policies, now) {
                continue;
            }
            let removed = store.delete_run(&run).await?;
            if removed > 0 {
                report.runs_removed += 1;
                report.jobs_removed += removed;
                metrics::counter!(crate::metrics::RETENTION_RUNS_REMOVED).increment(1);
                metrics::counter!(crate::metrics::RETENTION_JOBS_REMOVED).increment(removed);
            }
        }
        if !full {
            break;
        }
    }
    Ok(())
}

/// A run goes when it has jobs and each of them is finished and past its own window: a run
/// with a job still live, or retried, or kept longer by its queue's policy, stays whole.
fn run_expired(run: &FinishedRun, policies: &Policies, now: chrono::DateTime<chrono::Utc>) -> bool {
    !run.jobs.is_empty() && run.jobs.iter().all(|job| job_expired(job, policies, now))
}

fn job_expired(job: &RunJobFact, policies: &Policies, now: chrono::DateTime<chrono::Utc>) -> bool {
    let Some(finished) = job.finished_at else {
        return false;
    };
    if !job.state.is_terminal() {
        return false;
    }
    let windows = policies.resolve(&job.tenant, &job.queue);
    let window = if is_failed_family(job.state) {
        windows.failed.0
    } else {
        windows.succeeded.0
    };
    window.cutoff(now).is_some_and(|cut| finished < cut)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::{Duration, Utc};
    use leasehold_proto::JobState;
    use uuid::Uuid;

    use super::*;
    use crate::retention::Window;

    fn job(state: JobState, age_h: i64) -> RunJobFact {
        RunJobFact {
            id: Uuid::now_v7(),
            tenant: "t".into(),
            queue: "q".into(),
            state,
            finished_at: state
                .is_terminal()
                .then(|| Utc::now() - Duration::hours(age_h)),
        }
    }

    #[test]
    fn a_run_goes_only_when_every_job_is_past_its_window() {
        let policies = Policies::new(
            Window::After(std::time::Duration::from_secs(3600)),
            Window::After(std::time::Duration::from_secs(10 * 3600)),
            &[],
        );
        let now = Utc::now();
        let run = |jobs| FinishedRun {
            id: Uuid::now_v7(),
            jobs,
        };
        assert!(run_expired(
            &run(vec![job(JobState::Succeeded, 2), job(JobState::Dead, 11)]),
            &policies,
            now
        ));
        // The dead job is inside the failed window.
        assert!(!run_expired(
            &run(vec![job(JobState::Succeeded, 2), job(JobState::Dead, 5)]),
            &policies,
            now
        ));
        assert!(!run_expired(
            &run(vec![job(JobState::Succeeded, 2), job(JobState::Queued, 0)]),
            &policies,
            now
        ));
        assert!(!run_expired(&run(vec![]), &policies, now));
    }
}
