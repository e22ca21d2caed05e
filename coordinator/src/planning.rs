//! Planning a run: a DAG of jobs validated (unknown, duplicate and cyclic keys are named),
//! ordered parents first (ties keep submission order) and turned into rows whose jobs with
//! parents start `blocked`. Shared by `/v1/runs`, the runbook's start and the runs service's
//! `POST /runs`; knows nothing of HTTP.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use leasehold_proto::{NewJob, NewRun, RunJobSpec, RunPlan};
use serde_json::json;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::store::{NewRunRow, RunJobRow};
use crate::validate;

/// Validates a DAG and orders it parents first (ties keep submission order).
pub(crate) fn plan(jobs: Vec<RunJobSpec>) -> ApiResult<RunPlan> {
    if jobs.is_empty() || jobs.len() > validate::MAX_BATCH {
        return Err(ApiError::validation("jobs", "a run holds 1 to 1000 jobs"));
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut duplicates = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        validate::name("key", &job.key).map_err(|e| e.prefix_field(&format!("jobs[{i}]")))?;
        if index.insert(job.key.as_str(), i).is_some() {
            duplicates.push(job.key.clone());
        }
    }
    if !duplicates.is_empty() {
        duplicates.sort();
        duplicates.dedup();
        return Err(ApiError::validation(
            "jobs.key",
            format!("duplicate job keys: {}", duplicates.join(", ")),
        )
        .with_details(json!({"field": "jobs.key", "duplicates": duplicates})));
    }
    let mut unknown = Vec::new();
    for job in &jobs {
        for dep in &job.depends_on {
            if !index.contains_key(dep.as_str()) {
                unknown.push(json!({"key": job.key, "depends_on": dep}));
            }
        }
    }
    if !unknown.is_empty() {
        let names: Vec<String> = unknown
            .iter()
            .map(|u| {
                format!(
                    "{} → {}",
                    u["key"].as_str().unwrap_or(""),
                    u["depends_on"].as_str().unwrap_or("")
                )
            })
            .collect();
        return Err(ApiError::validation(
            "jobs.depends_on",
            format!("unknown dependencies: {}", names.join(", ")),
        )
        .with_details(json!({"field": "jobs.depends_on", "unknown": unknown})));
    }
    // Kahn's algorithm; a min-heap on submission index keeps the order stable.
    let mut indegree: Vec<usize> = jobs
        .iter()
        .map(|j| {
            let mut deps = j.depends_on.clone();
            deps.sort();
            deps.dedup();
            deps.len()
        })
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); jobs.len()];
    for (i, job) in jobs.iter().enumerate() {
        let mut deps = job.depends_on.clone();
        deps.sort();
        deps.dedup();
        for dep in deps {
            children[index[dep.as_str()]].push(i);
        }
    }
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = (0..jobs.len())
        .filter(|&i| indegree[i] == 0)
        .map(std::cmp::Reverse)
        .collect();
    let mut order = Vec::with_capacity(jobs.len());
    while let Some(std::cmp::Reverse(i)) = ready.pop() {
        order.push(i);
        for &c in &children[i] {
            indegree[c] -= 1;
            if indegree[c] == 0 {
                ready.push(std::cmp::Reverse(c));
            }
        }
    }
    if order.len() < jobs.len() {
        let mut cycle: Vec<String> = (0..jobs.len())
            .filter(|i| indegree[*i] > 0)
            .map(|i| jobs[i].key.clone())
            .collect();
        cycle.sort();
        return Err(ApiError::validation(
            "jobs.depends_on",
            format!(
                "the dependencies form a cycle through: {}",
                cycle.join(", ")
            ),
        )
        .with_details(json!({"field": "jobs.depends_on", "cycle": cycle})));
    }
    let mut slots: Vec<Option<RunJobSpec>> = jobs.into_iter().map(Some).collect();
    let jobs: Vec<RunJobSpec> = order.iter().filter_map(|&i| slots[i].take()).collect();
    Ok(RunPlan {
        order: jobs.iter().map(|j| j.key.clone()).collect(),
        jobs,
    })
}

/// Turns a validated run into rows: ids assigned parents first, jobs with parents `blocked`.
pub(crate) fn rows(
    run: NewRun,
    tenant: String,
    mode: Option<String>,
    now: DateTime<Utc>,
) -> ApiResult<(NewRunRow, RunPlan)> {
    validate::opt_label("run_token", &run.run_token)?;
    validate::opt_label("name", &run.name)?;
    let planned = plan(run.jobs)?;
    let run_id = Uuid::now_v7();
    // A run's jobs share the run's correlation id: the caller's, else the run id.
    let correlation_id = run.correlation_id.or_else(|| Some(run_id.to_string()));
    let mut ids: BTreeMap<String, Uuid> = BTreeMap::new();
    let mut out = Vec::with_capacity(planned.jobs.len());
    for (i, spec) in planned.jobs.iter().enumerate() {
        let job = NewJob {
            queue: spec.queue.clone(),
            kind: spec.kind.clone(),
            payload: spec.payload.clone(),
            priority: spec.priority,
            max_attempts: spec.max_attempts,
            run_at: None,
            idempotency_key: None,
            correlation_id: correlation_id.clone(),
            project: run.project.clone(),
            tenant: None,
            backoff: spec.backoff.clone(),
            timeout_ms: spec.timeout_ms,
            limit_keys: spec.limit_keys.clone(),
        };
        let mut row = validate::new_job(job, &tenant, None, now)
            .map_err(|e| e.prefix_field(&format!("jobs[{i}]")))?;
        row.run_id = Some(run_id);
        let mut parents: Vec<Uuid> = spec
            .depends_on
            .iter()
            .filter_map(|k| ids.get(k).copied())
            .collect();
        parents.sort();
        parents.dedup();
        if !parents.is_empty() {
            row.state = leasehold_proto::JobState::Blocked;
        }
        ids.insert(spec.key.clone(), row.id);
        out.push(RunJobRow {
            row,
            key: spec.key.clone(),
            parents,
        });
    }
    let new = NewRunRow {
        id: run_id,
        tenant,
        run_token: run.run_token,
        name: run.name,
        project: run.project,
        correlation_id,
        mode,
        jobs: out,
    };
    Ok((new, planned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(key: &str, deps: &[&str]) -> RunJobSpec {
        serde_json::from_value(json!({"key": key, "kind": "k", "depends_on": deps}))
            .unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn orders_parents_first_and_names_problems() {
        let p = plan(vec![
            spec("c", &["a", "b"]),
            spec("a", &[]),
            spec("b", &["a"]),
        ])
        .map_err(|e| e.message)
        .unwrap_or_else(|m| panic!("{m}"));
        assert_eq!(p.order, vec!["a", "b", "c"]);
        let dup = plan(vec![spec("a", &[]), spec("a", &[])])
            .err()
            .map(|e| e.details);
        assert_eq!(
            dup.as_ref().map(|d| d["duplicates"].clone()),
            Some(json!(["a"]))
        );
        let unknown = plan(vec![spec("a", &["zz"])]).err().map(|e| e.details);
        assert_eq!(
            unknown.map(|d| d["unknown"][0]["depends_on"].clone()),
            Some(json!("zz"))
        );
        let cycle = plan(vec![
            spec("a", &["c"]),
            spec("b", &["a"]),
            spec("c", &["b"]),
            spec("d", &[]),
        ])
        .err()
        .map(|e| e.details);
        assert_eq!(
            cycle.map(|d| d["cycle"].clone()),
            Some(json!(["a", "b", "c"]))
        );
    }
}
