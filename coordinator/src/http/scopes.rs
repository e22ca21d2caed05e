//! Which scopes each route needs: one of those listed (an empty list: any key). The table for
//! people is docs/SECURITY.md; a test walks the OpenAPI document so that no route is left out.

use axum::http::Method;

use crate::keys::Scope::{self, *};

/// The scopes `method` on `path` needs (one of them); `None` for a route the coordinator does
/// not have (the router answers 404 or 405 to a caller whose key is good).
pub(crate) fn needed(method: &Method, path: &str) -> Option<&'static [Scope]> {
    let read = *method == Method::GET || *method == Method::HEAD;
    let post = *method == Method::POST;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let scopes: &'static [Scope] = match segments.as_slice() {
        [".well-known", "openapi"] | ["v1", "whoami"] if read => &[],
        ["v1", "jobs"] if read => &[JobsRead],
        ["v1", "jobs"] if post => &[JobsWrite],
        ["v1", "jobs", _] if read => &[JobsRead],
        ["v1", "jobs", _, "cancel" | "retry"] if post => &[JobsWrite],
        ["v1", "jobs", _, "complete" | "fail" | "release"] if post => &[Worker],
        ["v1", "leases"] | ["v1", "leases", "heartbeat" | "outcomes"] if post => &[Worker],
        ["v1", "workers", "connect"] if read => &[Worker],
        ["v1", "workers"] if read => &[JobsRead],
        ["v1", "artifacts", _] if read => &[JobsRead, Worker],
        ["v1", "artifacts", _] if *method == Method::PUT => &[Worker],
        ["v1", "queues"] if read => &[JobsRead],
        ["v1", "queues", _, "pause" | "resume" | "settings"] => &[Admin],
        ["v1", "retention", ..] => &[Admin],
        ["v1", "ledger", "export" | "segments"] if read => &[Events],
        ["v1", "events"] if read => &[Events],
        ["v1", "runs", ..] => &[Runs],
        ["v1", "keys", ..] => &[Admin],
        ["v1", "audit"] if read => &[Admin],
        ["v1", "replays"] if post => &[OrchBackfill],
        ["v1", "cancellations"] if post => &[JobsWrite],
        ["v1", "limits"] | ["v1", "limits", _] | ["v1", "incidents"] if read => &[JobsRead],
        ["v1", "limits", _] if *method == Method::PUT || *method == Method::DELETE => &[OrchQuota],
        ["v1", "quota"] if read => &[JobsRead],
        ["v1", "stats" | "failures" | "slo"] | ["v1", "slo", _] if read => &[JobsRead],
        ["v1", "slo", _] if *method == Method::PUT || *method == Method::DELETE => &[Admin],
        ["v1", "quota"] if *method == Method::PUT || *method == Method::DELETE => &[OrchQuota],
        // The surfaces of the replaced systems.
        ["runs", _, "events"] | ["runs", "stream"] if read => &[Events, Runs],
        ["runs", ..] | ["api", "v1", "orchestrator", "runs"] | ["orchestrator", "runs"] => &[Runs],
        ["admin", "health"] | ["api", "v1", "orchestrator", "admin", "health"] if read => &[Admin],
        _ => return None,
    };
    Some(scopes)
}

/// `path` of the OpenAPI document with a sample value in each parameter (`{id}` → `x`), as a
/// request would spell it.
pub(crate) fn sample_path(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg.split_once('}') {
            Some((_, rest)) if seg.starts_with('{') => format!("x{rest}"),
            _ => seg.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_the_scopes_the_docs_list() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(needed(&get, "/v1/jobs/0193"), Some(&[JobsRead][..]));
        assert_eq!(needed(&post, "/v1/jobs"), Some(&[JobsWrite][..]));
        assert_eq!(needed(&post, "/v1/jobs/x/complete"), Some(&[Worker][..]));
        assert_eq!(needed(&get, "/v1/workers/connect"), Some(&[Worker][..]));
        assert_eq!(needed(&Method::DELETE, "/v1/keys/k_1"), Some(&[Admin][..]));
        assert_eq!(needed(&get, "/runs/r1/events"), Some(&[Events, Runs][..]));
        assert_eq!(needed(&get, "/v1/quota"), Some(&[JobsRead][..]));
        assert_eq!(needed(&Method::PUT, "/v1/quota"), Some(&[OrchQuota][..]));
        assert_eq!(needed(&Method::DELETE, "/v1/quota"), Some(&[OrchQuota][..]));
        assert_eq!(needed(&post, "/v1/quota"), None);
        assert_eq!(needed(&get, "/nowhere"), None);
        assert_eq!(needed(&Method::DELETE, "/v1/jobs"), None);
    }

    #[test]
    fn every_documented_operation_has_its_scopes() {
        let doc: serde_json::Value =
            serde_json::from_str(&crate::http::openapi::openapi_json()).expect("the document");
        let paths = doc["paths"].as_object().expect("paths");
        let mut checked = 0;
        for (path, ops) in paths {
            if crate::http::access::is_open(path) {
                continue;
            }
            let sample = sample_path(path);
            for method in ops.as_object().expect("operations").keys() {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
                assert!(
                    needed(&method, &sample).is_some(),
                    "{method} {path} has no scope in the table"
                );
                checked += 1;
            }
        }
        assert!(checked > 40, "only {checked} operations seen");
    }
}
