//! Flow control at lease time over real HTTP (docs/flow-control.md): rate and concurrency
//! limits, their answers and wake-ups, their operator surface, and one budget shared by two
//! replicas of the coordinator on one PostgreSQL; fairness across the queues of one claim and
//! across the tenants of a shared worker pool.

mod blackouts;
mod breakers;
mod fairness;
mod limits;
mod pools;
mod replicas;

use reqwest::Method;
use serde_json::Value;

use crate::common::keyed::{Coordinator, ROOT};

/// One call with the coordinator's own key that must succeed (2xx): its answer.
async fn call(c: &Coordinator, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, answer) = c.call(Some(ROOT), method.clone(), path, body, &[]).await;
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {answer}"
    );
    answer
}

/// `PUT /v1/limits/{key}` with `body` must be refused with 422 naming `field`.
async fn refused(c: &Coordinator, key: &str, body: Value, field: &str) {
    let path = format!("/v1/limits/{key}");
    let (status, answer) = c
        .call(Some(ROOT), Method::PUT, &path, Some(body), &[])
        .await;
    assert_eq!(
        (status, answer["error"]["details"]["field"].clone()),
        (422, Value::from(field)),
        "{answer}"
    );
}
