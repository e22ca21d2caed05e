//! `GET /v1/runs`: a tenant's runs newest first, filtered by status, name, project, correlation
//! id and submission time, in cursor pages, each with its status (as `GET /v1/runs/{id}` says)
//! and its jobs counted by state; bad filters named; another tenant's runs invisible. Both
//! stores.

use std::sync::Arc;

use leasehold_coordinator::store::Store;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::keyed::{Coordinator, ROOT};

async fn submit(c: &Coordinator, key: &str, name: &str, project: &str, corr: &str) -> String {
    let body = json!({"name": name, "project": project, "correlation_id": corr, "jobs": [
        {"key": "first", "kind": "k", "queue": format!("q-{name}")},
        {"key": "second", "kind": "k", "queue": format!("q-{name}"), "depends_on": ["first"]},
    ]});
    let (s, run) = c
        .call(Some(key), Method::POST, "/v1/runs", Some(body), &[])
        .await;
    assert_eq!(s, 201, "{run}");
    run["id"].as_str().unwrap().to_owned()
}

async fn list(c: &Coordinator, key: &str, query: &str) -> Value {
    let (s, answer) = c
        .call(
            Some(key),
            Method::GET,
            &format!("/v1/runs{query}"),
            None,
            &[],
        )
        .await;
    assert_eq!(s, 200, "{query}: {answer}");
    answer
}

fn ids(answer: &Value) -> Vec<String> {
    answer["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Leases and completes every ready job of queue `q-<name>`.
async fn work(c: &Coordinator, name: &str) {
    let body = json!({"worker_id": "w", "queues": [format!("q-{name}")], "max_jobs": 10});
    let (_, claimed) = c
        .call(Some(ROOT), Method::POST, "/v1/leases", Some(body), &[])
        .await;
    for lease in claimed["leases"].as_array().unwrap() {
        let path = format!("/v1/jobs/{}/complete", lease["job"]["id"].as_str().unwrap());
        let done = json!({"fencing_token": lease["fencing_token"], "result": {}});
        let (s, a) = c
            .call(Some(ROOT), Method::POST, &path, Some(done), &[])
            .await;
        assert_eq!(s, 200, "{a}");
    }
}

async fn runs_are_listed_newest_first_with_filters_and_pages(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    let a = submit(&c, ROOT, "nightly", "etl", "corr-1").await;
    let b = submit(&c, ROOT, "hourly", "etl", "corr-2").await;
    let d = submit(&c, ROOT, "nightly", "ml", "corr-3").await;
    let (_, beta) = c.key("beta", &["runs", "jobs:write"]).await;
    let theirs = submit(&c, &beta, "nightly", "etl", "corr-1").await;

    let all = list(&c, ROOT, "").await;
    assert_eq!(ids(&all), [d.as_str(), b.as_str(), a.as_str()], "{all}");
    assert_eq!(all["next_cursor"], Value::Null);
    let first = &all["runs"][2];
    assert_eq!(
        (
            &first["name"],
            &first["project"],
            &first["correlation_id"],
            &first["status"]
        ),
        (
            &json!("nightly"),
            &json!("etl"),
            &json!("corr-1"),
            &json!("pending")
        )
    );
    assert_eq!(first["jobs"], json!({"blocked": 1, "queued": 1}), "{first}");

    // The first run's first job done: running; both done: succeeded — as GET of the run says.
    work(&c, "nightly").await;
    let status_of = |v: &Value, id: &str| {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .map(|r| r["status"].clone())
    };
    let now = list(&c, ROOT, "").await;
    let (_, run) = c
        .call(Some(ROOT), Method::GET, &format!("/v1/runs/{a}"), None, &[])
        .await;
    assert_eq!(
        status_of(&now, &a),
        Some(run["status"].clone()),
        "{now} {run}"
    );
    assert_eq!(status_of(&now, &a), Some(json!("running")));
    work(&c, "nightly").await;
    work(&c, "nightly").await;
    let done = list(&c, ROOT, "?status=succeeded").await;
    assert_eq!(ids(&done), [d.as_str(), a.as_str()], "{done}");
    assert_eq!(done["runs"][0]["jobs"], json!({"succeeded": 2}));

    // Filters.
    assert_eq!(ids(&list(&c, ROOT, "?name=hourly").await), [b.as_str()]);
    assert_eq!(ids(&list(&c, ROOT, "?project=ml").await), [d.as_str()]);
    assert_eq!(
        ids(&list(&c, ROOT, "?correlation_id=corr-1").await),
        [a.as_str()]
    );
    assert_eq!(ids(&list(&c, ROOT, "?status=pending").await), [b.as_str()]);
    let ahead = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let ahead = ahead.replace('+', "%2B");
    assert!(ids(&list(&c, ROOT, &format!("?since={ahead}")).await).is_empty());
    assert_eq!(
        ids(&list(&c, ROOT, &format!("?until={ahead}")).await).len(),
        3
    );
    assert!(ids(&list(&c, ROOT, "?until=2020-01-01T00:00:00Z").await).is_empty());

    // Pages.
    let page = list(&c, ROOT, "?limit=2").await;
    assert_eq!(ids(&page), [d.as_str(), b.as_str()]);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let rest = list(&c, ROOT, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&rest), [a.as_str()]);
    assert_eq!(rest["next_cursor"], Value::Null);

    // Another tenant sees its own run only.
    assert_eq!(ids(&list(&c, &beta, "").await), [theirs]);
}

async fn bad_run_filters_are_named(store: Arc<dyn Store>) {
    let c = Coordinator::start(store, Some(ROOT)).await;
    for (query, status, field) in [
        ("?status=finished", 422, "status"),
        ("?since=yesterday", 422, "since"),
        ("?until=2026-13-01", 422, "until"),
        ("?limit=0", 422, "limit"),
        ("?limit=501", 422, "limit"),
        ("?state=queued", 422, "state"),
        ("?name=", 422, "name"),
        ("?cursor=nonsense", 400, "cursor"),
    ] {
        let (s, a) = c
            .call(
                Some(ROOT),
                Method::GET,
                &format!("/v1/runs{query}"),
                None,
                &[],
            )
            .await;
        assert_eq!(
            (s, a["error"]["details"]["field"].clone()),
            (status, json!(field)),
            "{query}: {a}"
        );
    }
    // A key without the `runs` scope cannot list.
    let (_, reader) = c.key("default", &["jobs:read"]).await;
    let (s, a) = c
        .call(Some(&reader), Method::GET, "/v1/runs", None, &[])
        .await;
    assert_eq!(s, 403, "{a}");
}

crate::on_both_backends!(
    runs_are_listed_newest_first_with_filters_and_pages,
    bad_run_filters_are_named
);
