//! Runs driven over a real socket the way workers drive them: leases taken by HTTP long poll or
//! pushed over a WebSocket session, outcomes reported by each path a worker can use.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// How long a step may take before a test gives up (CI machines are busy).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How a worker reports an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `POST /v1/jobs/{id}/complete|fail`.
    Single,
    /// `POST /v1/leases/outcomes` with this one outcome (what the SDKs send for one job).
    BatchOfOne,
    /// `POST /v1/leases/outcomes` with an unrelated job's outcome first.
    BatchOfMany,
    /// A worker session: leases pushed for credit, outcomes in an `outcomes` frame.
    WebSocket,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The HTTP API of one coordinator.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
}

impl Api {
    pub fn new(url: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.to_owned(),
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// Starts a run of `jobs`; its id and each key's job id.
    pub async fn start_run(&self, jobs: Value) -> (String, HashMap<String, String>) {
        let (status, run) = self.post("/v1/runs", json!({"jobs": jobs})).await;
        assert_eq!(status, 201, "{run}");
        let ids = run["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                (
                    j["key"].as_str().unwrap().to_owned(),
                    j["job_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (run["id"].as_str().unwrap().to_owned(), ids)
    }

    pub async fn run(&self, id: &str) -> Value {
        self.get(&format!("/v1/runs/{id}")).await
    }

    /// Each key's state and cancel reason.
    pub async fn run_jobs(&self, id: &str) -> HashMap<String, (String, Option<String>)> {
        self.run(id).await["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                (
                    j["key"].as_str().unwrap().to_owned(),
                    (
                        j["state"].as_str().unwrap().to_owned(),
                        j["cancel_reason"].as_str().map(str::to_owned),
                    ),
                )
            })
            .collect()
    }

    /// One HTTP claim of up to `max_jobs` from `queue`, long-polling up to `wait_ms`.
    pub async fn claim(&self, queue: &str, max_jobs: u32, wait_ms: u64) -> Vec<Value> {
        let (status, body) = self
            .post(
                "/v1/leases",
                json!({"worker_id": "dag-test", "queues": [queue], "max_jobs": max_jobs,
                       "wait_ms": wait_ms, "lease_ttl_ms": 30000}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["leases"].as_array().cloned().unwrap_or_default()
    }
}

/// A chain `a → b → …` of `n` jobs in `queue`, as run jobs.
pub fn chain(queue: &str, n: usize) -> Value {
    let keys: Vec<String> = (0..n)
        .map(|i| ((b'a' + i as u8) as char).to_string())
        .collect();
    Value::Array(
        keys.iter()
            .enumerate()
            .map(|(i, k)| {
                let deps: Vec<&String> = if i == 0 { vec![] } else { vec![&keys[i - 1]] };
                json!({"key": k, "kind": "step", "queue": queue, "depends_on": deps})
            })
            .collect(),
    )
}

/// The outcome report for `lease`: success, or a fatal (non-retryable) failure.
pub fn report(lease: &Value, ok: bool) -> Value {
    if ok {
        json!({"job_id": lease["job"]["id"], "fencing_token": lease["fencing_token"],
               "outcome": "complete", "result": {"ok": true}})
    } else {
        json!({"job_id": lease["job"]["id"], "fencing_token": lease["fencing_token"],
               "outcome": "fail", "error": {"class": "Fatal", "message": "no", "retryable": false}})
    }
}

/// A worker of one queue that takes leases and reports outcomes `via` one path.
pub struct Worker {
    pub api: Api,
    via: Via,
    queue: String,
    ws: Option<Socket>,
    seq: u64,
}

impl Worker {
    pub async fn new(api: &Api, via: Via, queue: &str) -> Self {
        let ws = if via == Via::WebSocket {
            let host = api.url.trim_start_matches("http://");
            let (mut ws, _) =
                tokio_tungstenite::connect_async(format!("ws://{host}/v1/workers/connect"))
                    .await
                    .unwrap();
            send(&mut ws, json!({"type": "hello", "worker_id": "dag-ws", "queues": [queue], "lease_ttl_ms": 30000})).await;
            let welcome = recv(&mut ws).await.expect("welcome");
            assert_eq!(welcome["type"], "welcome", "{welcome}");
            Some(ws)
        } else {
            None
        };
        Self {
            api: api.clone(),
            via,
            queue: queue.to_owned(),
            ws,
            seq: 0,
        }
    }

    /// The next lease of the queue (long poll, or one credit on the session).
    pub async fn take(&mut self) -> Value {
        match &mut self.ws {
            Some(_) => {
                self.credit(1).await;
                self.pushed().await
            }
            None => {
                let mut leases = self
                    .api
                    .claim(&self.queue, 1, PATIENCE.as_millis() as u64)
                    .await;
                assert_eq!(leases.len(), 1, "a lease of {}", self.queue);
                leases.remove(0)
            }
        }
    }

    /// Reports `lease` (`ok`, or a fatal failure) and returns the job's state as answered.
    pub async fn report(&mut self, lease: &Value, ok: bool) -> String {
        let answer = match self.via {
            Via::Single => {
                let id = lease["job"]["id"].as_str().unwrap();
                let path = format!("/v1/jobs/{id}/{}", if ok { "complete" } else { "fail" });
                // The batch form without the keys the single calls do not take (request
                // bodies are strict).
                let mut body = report(lease, ok);
                let fields = body.as_object_mut().unwrap();
                fields.remove("job_id");
                fields.remove("outcome");
                let (status, job) = self.api.post(&path, body).await;
                assert_eq!(status, 200, "{job}");
                return job["state"].as_str().unwrap().to_owned();
            }
            Via::BatchOfOne => self.batch(vec![report(lease, ok)]).await,
            Via::BatchOfMany => {
                // Another job's outcome in the same batch, ahead of this one.
                let filler = format!("filler-{}", uuid::Uuid::new_v4().simple());
                let (s, _) = self
                    .api
                    .post("/v1/jobs", json!({"queue": filler, "kind": "k"}))
                    .await;
                assert_eq!(s, 201);
                let other = self.api.claim(&filler, 1, 0).await.remove(0);
                self.batch(vec![report(&other, true), report(lease, ok)])
                    .await
            }
            Via::WebSocket => {
                self.seq += 1;
                let seq = self.seq;
                let ws = self.ws.as_mut().unwrap();
                send(
                    ws,
                    json!({"type": "outcomes", "seq": seq, "outcomes": [report(lease, ok)]}),
                )
                .await;
                loop {
                    let frame = recv(ws).await.expect("outcomes_ack");
                    if frame["type"] == "outcomes_ack" && frame["seq"] == seq {
                        break frame["results"].clone();
                    }
                }
            }
        };
        let last = answer.as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["status"], "ok", "{answer}");
        last["state"].as_str().unwrap().to_owned()
    }

    /// Gives the session `n` credit.
    pub async fn credit(&mut self, n: u32) {
        send(self.ws.as_mut().unwrap(), json!({"type": "credit", "n": n})).await;
    }

    /// The next lease the session pushes.
    pub async fn pushed(&mut self) -> Value {
        let ws = self.ws.as_mut().unwrap();
        loop {
            let frame = recv(ws).await.expect("a lease pushed");
            if frame["type"] == "leases" {
                return frame["leases"][0].clone();
            }
        }
    }

    async fn batch(&self, outcomes: Vec<Value>) -> Value {
        let (status, body) = self
            .api
            .post("/v1/leases/outcomes", json!({"outcomes": outcomes}))
            .await;
        assert_eq!(status, 200, "{body}");
        body["results"].clone()
    }
}

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next JSON frame, skipping pings; `None` on close or after [`PATIENCE`].
async fn recv(ws: &mut Socket) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}
