//! Runs (DAGs), the event feed, the ledger export and the operator surfaces of
//! docs/CONTRACT.md §5, over a real socket, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::dag::report;
use common::{SseReader, serve_with};
use futures_util::StreamExt;
use leasehold_coordinator::store::Store;
use serde_json::{Value, json};

/// Generous: on PostgreSQL an event reaches live listeners once every older transaction in the
/// cluster has ended, and CI machines are busy.
const WAIT: Duration = Duration::from_secs(30);

struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (s, _, b) = self.send(reqwest::Method::POST, path, Some(body)).await;
        (s, b)
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        let (s, _, b) = self.send(reqwest::Method::GET, path, None).await;
        (s, b)
    }
    /// Claims everything ready in `queue` and returns the leases.
    async fn claim(&self, queue: &str) -> Vec<Value> {
        let (_, b) = self
            .post(
                "/v1/leases",
                json!({"worker_id": "t", "queues": [queue], "max_jobs": 100}),
            )
            .await;
        b["leases"].as_array().cloned().unwrap_or_default()
    }
    async fn finish(&self, lease: &Value, ok: bool) {
        let id = lease["job"]["id"].as_str().unwrap();
        let body = if ok {
            json!({"fencing_token": lease["fencing_token"], "result": "ok"})
        } else {
            json!({"fencing_token": lease["fencing_token"], "error": {"class": "Boom", "message": "no", "retryable": false}})
        };
        let (s, b) = self
            .post(
                &format!("/v1/jobs/{id}/{}", if ok { "complete" } else { "fail" }),
                body,
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }
}

async fn client(store: Arc<dyn Store>) -> (Client, common::Served) {
    let served = serve_with(store, |_| {}).await;
    (
        Client {
            http: reqwest::Client::new(),
            url: served.url.clone(),
        },
        served,
    )
}

fn dag() -> Value {
    json!({"run_token": "nightly-1", "name": "nightly", "jobs": [
        {"key": "d", "kind": "k", "queue": "dag", "depends_on": ["c"]},
        {"key": "a", "kind": "k", "queue": "dag"},
        {"key": "b", "kind": "k", "queue": "dag", "depends_on": ["a"]},
        {"key": "c", "kind": "k", "queue": "dag", "depends_on": ["a"]},
        {"key": "e", "kind": "k", "queue": "dag"}]})
}

/// The key within `run` of its job `job_id`.
fn key_of(job_id: &Value, run: &Value) -> String {
    run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| &j["job_id"] == job_id)
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn states(run: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["key"].as_str().unwrap().to_owned(),
                j["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

async fn dag_runs_unblock_and_cascade(store: Arc<dyn Store>) {
    let (c, _s) = client(store).await;
    let (status, run) = c.post("/v1/runs", dag()).await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["status"], "pending");
    let order: Vec<&str> = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["key"].as_str().unwrap())
        .collect();
    assert_eq!(order, vec!["a", "b", "c", "d", "e"], "parents first");
    let id = run["id"].as_str().unwrap().to_owned();
    // Same token: the same run, 200.
    let (again_status, again) = c.post("/v1/runs", dag()).await;
    assert_eq!((again_status, &again["id"]), (200, &run["id"]));
    // Only the roots are claimable.
    let first = c.claim("dag").await;
    let keys: HashSet<String> = first
        .iter()
        .map(|l| l["job"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 2, "a and e");
    let (_, running) = c.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(running["status"], "running");
    assert!(running["started_at"].is_string());
    // a fails fatally: exactly its descendants b, c, d end cancelled upstream_failed; e runs on.
    let a_id = running["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == "a")
        .unwrap()["job_id"]
        .clone();
    for lease in &first {
        c.finish(lease, lease["job"]["id"] != a_id).await;
    }
    let (_, failed) = c.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(
        states(&failed),
        vec![
            ("a".into(), "dead".into()),
            ("b".into(), "cancelled".into()),
            ("c".into(), "cancelled".into()),
            ("d".into(), "cancelled".into()),
            ("e".into(), "succeeded".into())
        ]
    );
    for j in failed["jobs"].as_array().unwrap() {
        if ["b", "c", "d"].contains(&j["key"].as_str().unwrap()) {
            assert_eq!(j["cancel_reason"], "upstream_failed");
        }
    }
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["finished_at"].is_string() && failed["duration_seconds"].is_number(),
        "{failed}"
    );
    assert!(c.claim("dag").await.is_empty());
}

/// Outcomes reported in batches (`POST /v1/leases/outcomes`, as the SDKs send them) drive a run
/// like single-job reports: parents that succeed unblock their children, the run ends with its
/// jobs. (The batch path reads back only each job's state, except for jobs of a run.)
async fn batch_outcomes_drive_runs(store: Arc<dyn Store>) {
    let (c, _s) = client(store).await;
    let (_, run) = c.post("/v1/runs", dag()).await;
    let id = run["id"].as_str().unwrap().to_owned();
    // Roots a and e, in one batch.
    let roots = c.claim("dag").await;
    let batch: Vec<Value> = roots.iter().map(|l| report(l, true)).collect();
    let (s, r) = c
        .post("/v1/leases/outcomes", json!({"outcomes": batch}))
        .await;
    assert_eq!(s, 200, "{r}");
    assert!(
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["status"] == "ok" && x["state"] == "succeeded"),
        "{r}"
    );
    // b and c are unblocked; c succeeds, b fails for good, in one batch: d (after c) unblocks.
    let second = c.claim("dag").await;
    let mut keys: Vec<String> = second
        .iter()
        .map(|l| key_of(&l["job"]["id"], &run))
        .collect();
    keys.sort();
    assert_eq!(keys, ["b", "c"]);
    let batch: Vec<Value> = second
        .iter()
        .map(|l| report(l, key_of(&l["job"]["id"], &run) == "c"))
        .collect();
    let (s, r) = c
        .post("/v1/leases/outcomes", json!({"outcomes": batch}))
        .await;
    assert_eq!(s, 200, "{r}");
    let (_, now) = c.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(
        states(&now),
        vec![
            ("a".into(), "succeeded".into()),
            ("b".into(), "dead".into()),
            ("c".into(), "succeeded".into()),
            ("d".into(), "queued".into()),
            ("e".into(), "succeeded".into())
        ]
    );
    let last = c.claim("dag").await;
    assert_eq!(last.len(), 1);
    let (s, _) = c
        .post(
            "/v1/leases/outcomes",
            json!({"outcomes": [report(&last[0], true)]}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, done) = c.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["finished_at"].is_string());
}

/// A batch that mixes jobs of a run with plain jobs, a repeat included, is applied in input
/// order exactly as if reported one by one (the store cuts it after each job of a run, whose
/// bookkeeping must run before the next outcome): every answer, the run's progress, and the
/// outcomes' events in the order they were sent.
async fn batches_mixing_runs_and_plain_jobs_apply_in_order(store: Arc<dyn Store>) {
    let (c, _s) = client(store.clone()).await;
    let (_, run) = c.post("/v1/runs", dag()).await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let (s, b) = c
            .post("/v1/jobs", json!({"queue": "plain", "kind": "k"}))
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let roots = c.claim("dag").await;
    let plain = c.claim("plain").await;
    assert_eq!((roots.len(), plain.len()), (2, 3));
    let a = roots
        .iter()
        .find(|l| key_of(&l["job"]["id"], &run) == "a")
        .unwrap();
    let e = roots
        .iter()
        .find(|l| key_of(&l["job"]["id"], &run) == "e")
        .unwrap();
    let sent = [
        (&plain[0], true),
        (a, true),
        (&plain[1], false),
        (e, true),
        (&plain[2], true),
        (a, true),
    ];
    let last_event = store
        .events_after(0, 100_000)
        .await
        .unwrap()
        .last()
        .map_or(0, |ev| ev.id);
    let batch: Vec<Value> = sent.iter().map(|(l, ok)| report(l, *ok)).collect();
    let (s, r) = c
        .post("/v1/leases/outcomes", json!({"outcomes": batch}))
        .await;
    assert_eq!(s, 200, "{r}");
    let answers: Vec<(String, String)> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["status"].as_str().unwrap().to_owned(),
                x["state"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    let expected = [
        ("ok", "succeeded"),
        ("ok", "succeeded"),
        ("ok", "dead"),
        ("ok", "succeeded"),
        ("ok", "succeeded"),
        // The same report again is answered as it was the first time (a worker retrying after
        // a lost answer) and changes nothing.
        ("ok", "succeeded"),
    ];
    assert_eq!(
        answers,
        expected.map(|(a, b)| (a.to_owned(), b.to_owned())),
        "{r}"
    );
    let (_, now) = c.get(&format!("/v1/runs/{run_id}")).await;
    assert_eq!(
        states(&now),
        vec![
            ("a".into(), "succeeded".into()),
            ("b".into(), "queued".into()),
            ("c".into(), "queued".into()),
            ("d".into(), "blocked".into()),
            ("e".into(), "succeeded".into())
        ]
    );
    // Every event, in the order of reporting one by one: each outcome's, and right after a
    // run's job its bookkeeping (children unblocked, the run's status); the repeat wrote none.
    let mut names: HashMap<String, String> = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            let id = j["job_id"].as_str().unwrap().to_owned();
            (id, j["key"].as_str().unwrap().to_owned())
        })
        .collect();
    for (i, lease) in plain.iter().enumerate() {
        let id = lease["job"]["id"].as_str().unwrap().to_owned();
        names.insert(id, format!("p{i}"));
    }
    let events: Vec<String> = store
        .events_after(last_event, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|ev| {
            let who = ev
                .job_id
                .map_or("run".to_owned(), |id| names[&id.to_string()].clone());
            format!("{who} {}", ev.kind)
        })
        .collect();
    let expected = [
        "p0 succeeded",
        "a succeeded",
        "b unblocked",
        "c unblocked",
        "p1 dead",
        "e succeeded",
        "p2 succeeded",
    ];
    assert_eq!(events, expected);
}

async fn dag_success_and_cancel(store: Arc<dyn Store>) {
    let (c, _s) = client(store).await;
    let (_, run) = c.post("/v1/runs", json!({"jobs": [
        {"key": "fetch", "kind": "k", "queue": "s"}, {"key": "parse", "kind": "k", "queue": "s", "depends_on": ["fetch"]}]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    let l = c.claim("s").await;
    assert_eq!(l.len(), 1);
    c.finish(&l[0], true).await;
    let l = c.claim("s").await;
    assert_eq!(l.len(), 1, "parse unblocked once fetch succeeded");
    c.finish(&l[0], true).await;
    let (_, done) = c.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(done["status"], "succeeded");
    // Cancelling a run cascades to every waiting job, and is idempotent.
    let (_, run) = c.post("/v1/runs", json!({"jobs": [
        {"key": "x", "kind": "k", "queue": "c"}, {"key": "y", "kind": "k", "queue": "c", "depends_on": ["x"]}]})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    let leased = c.claim("c").await;
    for _ in 0..2 {
        let (s, r) = c.post(&format!("/v1/runs/{id}/cancel"), json!({})).await;
        assert_eq!((s, &r["status"]), (200, &json!("cancelled")), "{r}");
        assert_eq!(
            states(&r),
            vec![
                ("x".into(), "leased".into()),
                ("y".into(), "cancelled".into())
            ]
        );
    }
    let hb = c.post("/v1/leases/heartbeat", json!({"worker_id": "t", "leases": [{"job_id": leased[0]["job"]["id"], "fencing_token": leased[0]["fencing_token"]}]})).await;
    assert_eq!(hb.1["leases"][0]["status"], "cancel_requested");
    // Bad DAGs are refused, naming the problem.
    let (s, e) = c.post("/v1/runs", json!({"jobs": [{"key": "a", "kind": "k", "depends_on": ["b"]}, {"key": "b", "kind": "k", "depends_on": ["a"]}]})).await;
    assert_eq!(
        (s, &e["error"]["details"]["cycle"]),
        (422, &json!(["a", "b"]))
    );
    let (s, e) = c
        .post(
            "/v1/runs",
            json!({"jobs": [{"key": "a", "kind": "k", "depends_on": ["ghost"]}]}),
        )
        .await;
    assert_eq!(
        (s, &e["error"]["details"]["unknown"][0]["depends_on"]),
        (422, &json!("ghost"))
    );
    let (s, e) = c
        .post(
            "/v1/runs",
            json!({"jobs": [{"key": "a", "kind": "k"}, {"key": "a", "kind": "k"}]}),
        )
        .await;
    assert_eq!(
        (s, &e["error"]["details"]["duplicates"]),
        (422, &json!(["a"]))
    );
    let (s, _) = c.get(&format!("/v1/runs/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(s, 404);
    let (s, plan) = c.post("/v1/runs/plan", dag()).await;
    assert_eq!(
        (s, &plan["order"]),
        (200, &json!(["a", "b", "c", "d", "e"]))
    );
}

async fn event_feed_resumes_without_gap_or_duplicate(store: Arc<dyn Store>) {
    let (c, _s) = client(store.clone()).await;
    for i in 0..12 {
        c.post(
            "/v1/jobs",
            json!({"queue": "feed", "kind": "k", "payload": {"i": i}}),
        )
        .await;
    }
    let expected: Vec<String> = store
        .events_after(0, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.queue.as_deref() == Some("feed"))
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(expected.len(), 12);
    let open = |last: Option<String>| {
        let mut req = c.http.get(format!("{}/v1/events?queue=feed", c.url));
        if let Some(id) = last {
            req = req.header("Last-Event-ID", id);
        }
        req.send()
    };
    let mut first = SseReader::new(open(None).await.unwrap());
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(first.next(WAIT).await.unwrap().id.unwrap());
    }
    drop(first); // disconnect mid-stream
    // More events arrive while disconnected.
    for i in 12..15 {
        c.post(
            "/v1/jobs",
            json!({"queue": "feed", "kind": "k", "payload": {"i": i}}),
        )
        .await;
    }
    let mut second = SseReader::new(open(got.last().cloned()).await.unwrap());
    while got.len() < 15 {
        let ev = second
            .next(WAIT)
            .await
            .expect("resumed stream delivers the rest");
        assert_eq!(ev.event.as_deref(), Some("enqueued"));
        got.push(ev.id.unwrap());
    }
    let all: Vec<String> = store
        .events_after(0, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.queue.as_deref() == Some("feed"))
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(got, all, "every event exactly once, in order");
    assert!(second.next(Duration::from_millis(300)).await.is_none());
    let (s, e) = c.get("/v1/events?run_id=nope").await;
    assert_eq!((s, &e["error"]["code"]), (422, &json!("validation_failed")));
}

/// `tail=N` starts with the last N matching events, then follows live; a reconnect's
/// `Last-Event-ID` wins over it; bad values are named.
async fn event_feed_starts_at_its_tail(store: Arc<dyn Store>) {
    let (c, _s) = client(store.clone()).await;
    for i in 0..8 {
        c.post(
            "/v1/jobs",
            json!({"queue": "tailq", "kind": "k", "payload": {"i": i}}),
        )
        .await;
        c.post(
            "/v1/jobs",
            json!({"queue": "other", "kind": "k", "payload": {"i": i}}),
        )
        .await;
    }
    let ids: Vec<String> = store
        .events_after(0, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.queue.as_deref() == Some("tailq"))
        .map(|e| e.id.to_string())
        .collect();
    let open = |query: &str, last: Option<&str>| {
        let mut req = c.http.get(format!("{}/v1/events?{query}", c.url));
        if let Some(id) = last {
            req = req.header("Last-Event-ID", id);
        }
        req.send()
    };
    let mut feed = SseReader::new(open("queue=tailq&tail=3", None).await.unwrap());
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(feed.next(WAIT).await.unwrap().id.unwrap());
    }
    assert_eq!(got, ids[5..], "the last three, oldest first");
    c.post(
        "/v1/jobs",
        json!({"queue": "tailq", "kind": "k", "payload": {}}),
    )
    .await;
    let live = feed.next(WAIT).await.expect("then live").id.unwrap();
    assert!(live.parse::<i64>().unwrap() > ids[7].parse::<i64>().unwrap());
    drop(feed);
    // A reconnect resumes after its last id, whatever the tail says.
    let mut again = SseReader::new(open("queue=tailq&tail=3", Some(&ids[1])).await.unwrap());
    assert_eq!(again.next(WAIT).await.unwrap().id.unwrap(), ids[2]);
    // More than there are: from the first.
    let mut all = SseReader::new(open("queue=tailq&tail=1000", None).await.unwrap());
    assert_eq!(all.next(WAIT).await.unwrap().id.unwrap(), ids[0]);
    for bad in ["tail=0", "tail=1001", "tail=x", "tail=3&after=1"] {
        let (s, e) = c.get(&format!("/v1/events?{bad}")).await;
        assert_eq!(
            (s, &e["error"]["details"]["field"]),
            (422, &json!("tail")),
            "{bad}: {e}"
        );
    }
}

async fn legacy_runs_service(store: Arc<dyn Store>) {
    let (c, _s) = client(store.clone()).await;
    let before = store.events_after(0, 10_000).await.unwrap().len();
    let (s, h, plan) = c
        .send(reqwest::Method::POST, "/runs?mode=plan", Some(dag()))
        .await;
    assert_eq!(
        (s, &plan["order"]),
        (200, &json!(["a", "b", "c", "d", "e"]))
    );
    assert_eq!(h.get("deprecation").unwrap(), "true");
    assert_eq!(
        store.events_after(0, 10_000).await.unwrap().len(),
        before,
        "plan creates nothing"
    );
    let (s, _, bad) = c
        .send(reqwest::Method::POST, "/runs?mode=docker", Some(dag()))
        .await;
    assert_eq!(
        (s, &bad["error"]["details"]["field"]),
        (422, &json!("mode"))
    );
    let (s, h, created) = c
        .send(
            reqwest::Method::POST,
            "/runs?mode=k8s",
            Some(json!({"jobs": [{"key": "only", "kind": "k", "queue": "legacy"}]})),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let run_id = created["runId"].as_str().unwrap().to_owned();
    assert_eq!(created["mode"], "k8s");
    assert_eq!(
        h.get("link").unwrap().to_str().unwrap(),
        format!("</v1/runs/{run_id}>; rel=\"successor-version\"")
    );
    let (s, h, got) = c
        .send(reqwest::Method::GET, &format!("/runs/{run_id}"), None)
        .await;
    assert_eq!((s, &got["runId"]), (200, &json!(run_id)));
    assert!(h.contains_key("deprecation"));
    // SSE: hello, then checkpoint and status events with resumable ids.
    let mut sse = SseReader::new(
        c.http
            .get(format!("{}/runs/{run_id}/events", c.url))
            .send()
            .await
            .unwrap(),
    );
    let hello = sse.next(WAIT).await.unwrap();
    assert_eq!(hello.event.as_deref(), Some("hello"));
    let (s, cp) = c
        .post(
            &format!("/runs/{run_id}/checkpoints"),
            json!({"name": "stage-1", "data": {"rows": 10}}),
        )
        .await;
    assert_eq!((s, &cp["name"]), (201, &json!("stage-1")));
    let ev = sse.next(WAIT).await.unwrap();
    assert_eq!(ev.event.as_deref(), Some("checkpoint"));
    let data: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(data["data"]["rows"], 10);
    let checkpoint_id = ev.id.clone().unwrap();
    let lease = c.claim("legacy").await;
    let ev = sse.next(WAIT).await.unwrap();
    assert_eq!(ev.event.as_deref(), Some("status"));
    assert_eq!(
        serde_json::from_str::<Value>(&ev.data).unwrap()["status"],
        "running"
    );
    drop(sse);
    c.finish(&lease[0], true).await;
    // Resume after the checkpoint: only the later status events come, each once.
    let resumed = c
        .http
        .get(format!("{}/runs/{run_id}/events", c.url))
        .header("Last-Event-ID", &checkpoint_id)
        .send()
        .await
        .unwrap();
    let mut sse = SseReader::new(resumed);
    assert_eq!(
        sse.next(WAIT).await.unwrap().event.as_deref(),
        Some("hello")
    );
    let statuses: Vec<String> = [sse.next(WAIT).await.unwrap(), sse.next(WAIT).await.unwrap()]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(&e.data).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(statuses, vec!["running", "succeeded"]);
    let (s, _, cancelled) = c
        .send(reqwest::Method::DELETE, &format!("/runs/{run_id}"), None)
        .await;
    assert_eq!(
        (s, &cancelled["status"]),
        (200, &json!("succeeded")),
        "cancelling a finished run changes nothing"
    );
    let (s, _, missing) = c.send(reqwest::Method::GET, "/runs/not-a-run", None).await;
    assert_eq!((s, &missing["error"]["code"]), (404, &json!("not_found")));
    let (s, _) = c
        .post(&format!("/runs/{run_id}/checkpoints"), json!({"data": 1}))
        .await;
    assert_eq!(s, 422, "name is required");
}

async fn runbook_surface_and_ledger(store: Arc<dyn Store>) {
    let (c, _s) = client(store.clone()).await;
    let ws_url = c.url.replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{ws_url}/runs/stream"))
        .await
        .unwrap();
    let from = chrono::Utc::now() - chrono::Duration::seconds(1);
    let (s, run) = c.post("/api/v1/orchestrator/runs", json!({"jobs": [{"key": "a", "kind": "k", "queue": "rb"}, {"key": "b", "kind": "k", "queue": "rb", "depends_on": ["a"]}]})).await;
    assert_eq!(s, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let (s, r) = c.post(&format!("/runs/{id}:cancel"), json!({})).await;
        assert_eq!((s, &r["status"]), (200, &json!("cancelled")));
    }
    let (s, _) = c.post(&format!("/runs/{id}:pause"), json!({})).await;
    assert_eq!(s, 404);
    // The stream saw the run appear and get cancelled.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let Ok(msg) = tokio::time::timeout(WAIT, ws.next()).await else {
            let events: Vec<String> = store
                .events_after(0, 1000)
                .await
                .unwrap()
                .iter()
                .map(|e| format!("{}:{}", e.id, e.kind))
                .collect();
            panic!("no run status on /runs/stream; seen {seen:?}; ledger {events:?}");
        };
        let msg = msg.unwrap().unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["runId"], json!(id));
            seen.push(v["status"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, vec!["pending", "cancelled"]);
    for path in ["/admin/health", "/api/v1/orchestrator/admin/health"] {
        let (s, h) = c.get(path).await;
        assert_eq!(
            (s, &h["live"], &h["ready"]),
            (200, &json!(true), &json!(true)),
            "{path}"
        );
        assert_eq!(h["queues"][0]["name"], "rb");
    }
    // Ledger export: NDJSON of the window, then a manifest whose sha256 covers the lines.
    let to = chrono::Utc::now() + chrono::Duration::seconds(1);
    let q = format!(
        "from={}&to={}",
        urlencode(&from.to_rfc3339()),
        urlencode(&to.to_rfc3339())
    );
    let r = c
        .http
        .get(format!("{}/v1/ledger/export?{q}", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers().get("content-type").unwrap(),
        "application/x-ndjson"
    );
    let body = r.bytes().await.unwrap();
    let text = std::str::from_utf8(&body).unwrap();
    let (events, manifest) = text.trim_end().rsplit_once('\n').unwrap();
    let manifest: Value = serde_json::from_str(manifest).unwrap();
    use sha2::Digest;
    let digest = format!(
        "sha256:{}",
        leasehold_coordinator::http::artifacts::hex(&sha2::Sha256::digest(
            format!("{events}\n").as_bytes()
        ))
    );
    assert_eq!(manifest["sha256"], json!(digest));
    let lines: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(manifest["count"], json!(lines.len()));
    assert_eq!(manifest["first_id"], lines[0]["id"]);
    assert_eq!(manifest["last_id"], lines[lines.len() - 1]["id"]);
    assert!(lines.iter().any(|l| l["type"] == "run_created"));
    let (s, e) = c.get("/v1/ledger/export?from=yesterday&to=now").await;
    assert_eq!((s, &e["error"]["details"]["field"]), (422, &json!("from")));
    let (_, metrics) = c.get("/metrics").await;
    let text = metrics.as_str().unwrap().to_owned();
    for name in [
        "orchestrator_runs_total",
        "orchestrator_queue_depth",
        "orchestrator_run_duration_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn scheduler_run_records(store: Arc<dyn Store>) {
    let (c, _s) = client(store).await;
    // The seed's request body, verbatim.
    let seed = json!({
        "started_at": "2026-04-25T14:00:00.000000+00:00",
        "completed_at": "2026-04-25T14:02:45.000000+00:00",
        "status": "completed",
        "tables_assessed": 247, "tables_skipped": 180, "tables_healthy": 42,
        "jobs_submitted": 25, "jobs_completed": 24, "jobs_failed": 1,
        "dry_run": false, "error": null});
    let (s, stored) = c.post("/orchestrator/runs", seed.clone()).await;
    assert_eq!(s, 201, "{stored}");
    assert!(stored["id"].is_i64());
    for (k, v) in seed.as_object().unwrap() {
        assert_eq!(&stored[k], v, "field {k} echoed");
    }
    // The seed's curl example: defaults fill the rest.
    let (s, short) = c.post("/orchestrator/runs", json!({"started_at": "2026-04-25T14:00:00+00:00", "completed_at": "2026-04-25T14:02:45+00:00", "status": "completed", "tables_assessed": 247, "jobs_submitted": 25, "jobs_completed": 24, "jobs_failed": 1})).await;
    assert_eq!(
        (
            s,
            &short["tables_skipped"],
            &short["dry_run"],
            &short["error"]
        ),
        (201, &json!(0), &json!(false), &Value::Null)
    );
    for _ in 0..3 {
        c.post("/orchestrator/runs", seed.clone()).await;
    }
    let (s, list) = c.get("/orchestrator/runs").await;
    let ids: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(s, 200);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let (_, two) = c.get("/orchestrator/runs?limit=2").await;
    assert_eq!(two.as_array().unwrap().len(), 2);
    let (s, capped) = c.get("/orchestrator/runs?limit=1000").await;
    assert_eq!((s, capped.as_array().unwrap().len()), (200, 5));
    for bad in ["limit=0", "limit=-5", "limit=abc"] {
        let (s, e) = c.get(&format!("/orchestrator/runs?{bad}")).await;
        assert_eq!(
            (s, &e["error"]["code"]),
            (422, &json!("validation_failed")),
            "{bad}"
        );
    }
    for body in [
        json!({"completed_at": "2026-04-25T14:02:45+00:00", "status": "completed"}),
        json!({"started_at": "yesterday", "completed_at": "2026-04-25T14:02:45+00:00", "status": "x"}),
        json!({"started_at": "2026-04-25T14:00:00+00:00", "completed_at": "2026-04-25T14:02:45+00:00", "status": "x", "tables_assessed": "many"}),
        json!({"started_at": "2026-04-25T14:00:00+00:00", "completed_at": "2026-04-25T14:02:45+00:00"}),
    ] {
        let (s, e) = c.post("/orchestrator/runs", body.clone()).await;
        assert_eq!(
            (s, &e["error"]["code"]),
            (422, &json!("validation_failed")),
            "{body}"
        );
    }
}

on_both_backends!(
    dag_runs_unblock_and_cascade,
    dag_success_and_cancel,
    batch_outcomes_drive_runs,
    batches_mixing_runs_and_plain_jobs_apply_in_order,
    event_feed_resumes_without_gap_or_duplicate,
    event_feed_starts_at_its_tail,
    legacy_runs_service,
    runbook_surface_and_ledger,
    scheduler_run_records,
);
