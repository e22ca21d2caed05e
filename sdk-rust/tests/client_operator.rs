//! The client's operator calls against a real coordinator process (`LEASEHOLD_BIN`, else the
//! workspace's `target/debug/leasehold`: `cargo build -p leasehold-coordinator`): job listings
//! by run, correlation id and time; run and worker listings; cancel and replay by filter, dry
//! run first; and the arguments refused before anything is sent.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use leasehold::proto::{
    CancellationRequest, ErrorCode, JobState, NewRun, ReplayRequest, RunJobSpec, RunStatus,
};
use leasehold::{Client, Error, HandlerError, JobContext, JobSpec, ListJobs, ListRuns, Worker};
use serde_json::{Value, json};

/// `leasehold serve` on a free port with SQLite in a temporary directory; killed on drop.
struct Coordinator {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Coordinator {
    async fn spawn() -> Result<Self> {
        let bin = std::env::var_os("LEASEHOLD_BIN").map_or_else(
            || {
                std::env::var_os("CARGO_TARGET_DIR")
                    .map_or_else(
                        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
                        PathBuf::from,
                    )
                    .join("debug/leasehold")
            },
            PathBuf::from,
        );
        if !bin.exists() {
            bail!(
                "no coordinator binary at {}: run `cargo build -p leasehold-coordinator` or set LEASEHOLD_BIN",
                bin.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("leasehold-sdk-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::File::create(dir.join("coordinator.log"))?;
        let child = Command::new(&bin)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(&dir)
            .env_remove("DATABASE_URL")
            .env_remove("LEASEHOLD_DATABASE_URL")
            .env_remove("ORCHESTRATOR_API_KEY")
            .env("LEASEHOLD_LOG", "warn")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let mut me = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/ready", me.url)).send().await
                && r.status().is_success()
            {
                return Ok(me);
            }
            let log =
                || std::fs::read_to_string(me.dir.join("coordinator.log")).unwrap_or_default();
            if me.child.try_wait()?.is_some() || Instant::now() > deadline {
                bail!("the coordinator did not start; log: {}", log());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn jobs(query: impl FnOnce(&mut ListJobs)) -> ListJobs {
    let mut q = ListJobs::default();
    query(&mut q);
    q
}

fn runs(query: impl FnOnce(&mut ListRuns)) -> ListRuns {
    let mut q = ListRuns::default();
    query(&mut q);
    q
}

fn justified<T: Default>(fill: impl FnOnce(&mut T)) -> T {
    let mut r = T::default();
    fill(&mut r);
    r
}

#[tokio::test]
async fn listings_by_run_correlation_id_and_time() -> Result<()> {
    let coord = Coordinator::spawn().await?;
    let client = Client::new(&coord.url)?;
    let a = client
        .enqueue(
            JobSpec::new("k", json!(1))
                .queue("ops")
                .correlation_id("req-1"),
        )
        .await?;
    let b = client
        .enqueue(
            JobSpec::new("k", json!(2))
                .queue("ops")
                .correlation_id("req-2"),
        )
        .await?;
    let run = client
        .submit_run(&NewRun {
            run_token: None,
            name: Some("nightly".into()),
            project: Some("etl".into()),
            correlation_id: Some("req-run".into()),
            jobs: ["fetch", "parse"]
                .iter()
                .enumerate()
                .map(|(i, key)| RunJobSpec {
                    key: (*key).into(),
                    kind: "k".into(),
                    queue: "ops".into(),
                    payload: json!(null),
                    depends_on: if i == 0 { vec![] } else { vec!["fetch".into()] },
                    priority: 0,
                    max_attempts: None,
                    backoff: None,
                    timeout_ms: None,
                    limit_keys: vec![],
                })
                .collect(),
            tenant: None,
        })
        .await?;

    // Jobs: by correlation id, by run, by time (a span back from now and RFC 3339).
    let ids =
        |list: leasehold::proto::JobList| list.jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let by_corr = client
        .list(&jobs(|q| q.correlation_id = Some("req-1".into())))
        .await?;
    assert_eq!(ids(by_corr), vec![a.job.id]);
    let of_run = client.list(&jobs(|q| q.run_id = Some(run.id))).await?;
    let mut want: Vec<_> = run.jobs.iter().map(|j| j.job_id).collect();
    want.sort_unstable_by(|x, y| y.cmp(x));
    assert_eq!(ids(of_run), want, "the run's jobs, newest first");
    let recent = client
        .list(&jobs(|q| {
            q.queue = Some("ops".into());
            q.since = Some("15m".into());
        }))
        .await?;
    assert_eq!(recent.jobs.len(), 4);
    let old = client
        .list(&jobs(|q| {
            q.queue = Some("ops".into());
            q.until = Some("2020-01-01T00:00:00Z".into());
        }))
        .await?;
    assert!(old.jobs.is_empty());
    let page = client
        .list(&jobs(|q| {
            q.correlation_id = Some("req-2".into());
            q.state = Some(JobState::Queued);
            q.since = Some((b.job.created_at - chrono::Duration::seconds(1)).to_rfc3339());
            q.limit = Some(1);
        }))
        .await?;
    assert_eq!(ids(page), vec![b.job.id]);

    // A malformed time is the coordinator's 422 naming the parameter.
    match client
        .list(&jobs(|q| q.since = Some("yesterday".into())))
        .await
    {
        Err(Error::Api {
            status: 422,
            code: ErrorCode::ValidationFailed,
            message,
            ..
        }) => assert!(message.contains("since"), "{message}"),
        other => panic!("expected a 422 naming since, got {other:?}"),
    }

    // Runs: summaries with their jobs counted by state, filtered and paged.
    let other = client
        .submit_run(&NewRun {
            run_token: None,
            name: Some("adhoc".into()),
            project: None,
            correlation_id: None,
            jobs: vec![serde_json::from_value(
                json!({"key": "one", "kind": "k", "queue": "ops"}),
            )?],
            tenant: None,
        })
        .await?;
    let nightly = client
        .list_runs(&runs(|q| q.name = Some("nightly".into())))
        .await?;
    assert_eq!(nightly.runs.len(), 1);
    let summary = &nightly.runs[0];
    assert_eq!(summary.id, run.id);
    assert_eq!(summary.project.as_deref(), Some("etl"));
    assert_eq!(summary.correlation_id.as_deref(), Some("req-run"));
    assert_eq!(summary.status, RunStatus::Pending);
    assert_eq!(summary.jobs.values().sum::<u64>(), 2, "{:?}", summary.jobs);
    let first = client.list_runs(&runs(|q| q.limit = Some(1))).await?;
    assert_eq!(
        first.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![other.id]
    );
    let cursor = first.next_cursor.expect("a second page");
    let second = client
        .list_runs(&runs(|q| {
            q.limit = Some(1);
            q.cursor = Some(cursor);
        }))
        .await?;
    assert_eq!(second.runs[0].id, run.id);
    client.cancel_run(other.id).await?;
    let cancelled = client
        .list_runs(&runs(|q| {
            q.status = Some(RunStatus::Cancelled);
            q.since = Some("1h".into());
        }))
        .await?;
    assert_eq!(
        cancelled.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![other.id]
    );
    let none = client
        .list_runs(&runs(|q| q.correlation_id = Some("nobody".into())))
        .await?;
    assert!(none.runs.is_empty() && none.next_cursor.is_none());
    Ok(())
}

#[tokio::test]
async fn cancel_and_replay_by_filter_and_workers() -> Result<()> {
    let coord = Coordinator::spawn().await?;
    let client = Client::new(&coord.url)?;
    let mut batch = Vec::new();
    for i in 0..3 {
        batch.push(
            JobSpec::new("k", json!(i))
                .queue("bulk")
                .correlation_id("incident-7"),
        );
    }
    batch.push(JobSpec::new("k", json!("bystander")).queue("bulk"));
    let enqueued = client.enqueue_many(batch).await?;
    let bystander = enqueued[3].job.id;

    // Dry run: counted and named, nothing changed, nothing recorded.
    let filter = |dry_run| CancellationRequest {
        correlation_id: Some("incident-7".into()),
        dry_run,
        reason: Some("bad deploy".into()),
        ticket: Some("OPS-7".into()),
        ..CancellationRequest::default()
    };
    let dry = client.cancel_jobs(&filter(true)).await?;
    assert!(dry.dry_run && dry.matched == 3 && dry.cancelled == 0);
    assert!(dry.audit_event_id.is_none());
    let mut three: Vec<_> = enqueued[..3].iter().map(|e| e.job.id).collect();
    three.sort_unstable_by(|x, y| y.cmp(x));
    assert_eq!(dry.job_ids, three);
    assert_eq!(client.get(three[0]).await?.state, JobState::Queued);

    let done = client.cancel_jobs(&filter(false)).await?;
    assert!(!done.dry_run && done.matched == 3 && done.cancelled == 3);
    assert!(done.audit_event_id.is_some());
    for id in &three {
        assert_eq!(client.get(*id).await?.state, JobState::Cancelled);
    }
    assert_eq!(client.get(bystander).await?.state, JobState::Queued);

    // Replay the cancelled ones by the same filter.
    let replay = ReplayRequest {
        correlation_id: Some("incident-7".into()),
        state: Some("cancelled".into()),
        reason: Some("deploy fixed".into()),
        ticket: Some("OPS-7".into()),
        ..ReplayRequest::default()
    };
    let replayed = client.replay_jobs(&replay).await?;
    assert!(!replayed.dry_run && replayed.matched == 3 && replayed.replayed == 3);
    assert_eq!(replayed.job_ids, three);
    let queued = client
        .list(&jobs(|q| {
            q.correlation_id = Some("incident-7".into());
            q.state = Some(JobState::Queued);
        }))
        .await?;
    assert_eq!(queued.jobs.len(), 3);

    // Missing justification: refused by the SDK, naming the field, before anything is sent.
    let unjustified = justified::<ReplayRequest>(|r| {
        r.ticket = Some("OPS-7".into());
        r.reason = Some("   ".into());
    });
    match client.replay_jobs(&unjustified).await {
        Err(Error::InvalidArgument(m)) => assert!(m.starts_with("reason is required"), "{m}"),
        other => panic!("expected an invalid argument naming reason, got {other:?}"),
    }
    let no_ticket = justified::<CancellationRequest>(|r| r.reason = Some("why".into()));
    match client.cancel_jobs(&no_ticket).await {
        Err(Error::InvalidArgument(m)) => assert!(m.starts_with("ticket is required"), "{m}"),
        other => panic!("expected an invalid argument naming ticket, got {other:?}"),
    }
    let bad_queue = justified::<CancellationRequest>(|r| {
        r.queue = Some("no spaces".into());
        r.reason = Some("why".into());
        r.ticket = Some("T-1".into());
    });
    assert!(matches!(
        client.cancel_jobs(&bad_queue).await,
        Err(Error::InvalidArgument(_))
    ));
    // A bad state is the coordinator's to refuse.
    let bad_state = ReplayRequest {
        state: Some("queued".into()),
        ..replay.clone()
    };
    assert!(matches!(
        client.replay_jobs(&bad_state).await,
        Err(Error::Api { status: 422, .. })
    ));
    assert_eq!(client.get(bystander).await?.state, JobState::Queued);

    // A worker that fails its job fatally: seen in the worker list, its dead job replayed.
    let dead = client
        .enqueue(JobSpec::new("boom", json!({})).queue("fails"))
        .await?;
    let worker = Worker::builder(&coord.url)
        .queues(["fails"])
        .worker_id("ops-test-worker")
        .app_version("ops/1")
        .poll_wait(Duration::from_secs(1))
        .handler("boom", |_: JobContext| async move {
            Err::<Value, _>(HandlerError::fatal("bad input"))
        })
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    let ended = client.wait(dead.job.id, Duration::from_secs(30)).await?;
    assert_eq!(ended.state, JobState::Dead);
    let workers = client.workers(Some("10m")).await?;
    let me = workers
        .iter()
        .find(|w| w.worker_id == "ops-test-worker")
        .unwrap_or_else(|| panic!("ops-test-worker not in {workers:?}"));
    assert_eq!(me.queues, vec!["fails".to_owned()]);
    assert!(
        me.version.as_deref().is_some_and(|v| v.contains("ops/1")),
        "{me:?}"
    );
    assert!(
        client
            .workers(None)
            .await?
            .iter()
            .any(|w| w.worker_id == "ops-test-worker")
    );
    let _ = stop.send(());
    running.await??;

    let dry = client
        .replay_jobs(&ReplayRequest {
            kind: Some("boom".into()),
            dry_run: true,
            reason: Some("retry after fix".into()),
            ticket: Some("OPS-8".into()),
            ..ReplayRequest::default()
        })
        .await?;
    assert!(dry.dry_run && dry.matched == 1 && dry.replayed == 0);
    assert_eq!(dry.job_ids, vec![dead.job.id]);
    assert_eq!(client.get(dead.job.id).await?.state, JobState::Dead);

    // What the worker did, counted: per minute, by failure class, against the objectives.
    let stats = client.stats(Some("15m"), Some("fails")).await?;
    assert_eq!(stats.bucket_secs, 60);
    assert!(stats.points.iter().all(|p| p.queue == "fails"), "{stats:?}");
    let sum = |f: fn(&leasehold::proto::StatsPoint) -> u64| stats.points.iter().map(f).sum::<u64>();
    assert_eq!(
        (sum(|p| p.leased), sum(|p| p.dead), sum(|p| p.succeeded)),
        (1, 1, 0)
    );
    assert!(
        client
            .stats(None, None)
            .await?
            .points
            .iter()
            .any(|p| p.queue == "bulk")
    );
    let failures = client.failures(Some("1h"), None).await?;
    let fails: Vec<_> = failures
        .classes
        .iter()
        .filter(|c| c.queue == "fails")
        .collect();
    assert_eq!(fails.len(), 1, "{failures:?}");
    assert_eq!(fails[0].count, 1);
    let report = client.slo(Some("30m")).await?;
    assert_eq!(report.window_secs, 1800);
    let fails = report.queues.iter().find(|q| q.queue == "fails").unwrap();
    assert_eq!((fails.success.good, fails.success.total), (0, 1));
    assert!(!fails.configured);
    assert_eq!(client.slo(None).await?.window_secs, 3600);
    for refused in [
        client.stats(Some("yesterday"), None).await.map(|_| ()),
        client.failures(Some("yesterday"), None).await.map(|_| ()),
        client.slo(Some("10s")).await.map(|_| ()),
    ] {
        assert!(
            matches!(refused, Err(Error::Api { status: 422, .. })),
            "{refused:?}"
        );
    }
    assert!(matches!(
        client.stats(None, Some("no spaces")).await,
        Err(Error::InvalidArgument(_))
    ));
    Ok(())
}
