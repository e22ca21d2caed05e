//! The OpenAPI document, assembled from the handlers' annotations and the wire types' schemas.
//! `proto/openapi.json` is this document, committed; a test fails when it is stale.

use axum::{Router, routing};
use utoipa::OpenApi;

use super::AppState;
use super::extract::ApiJson;

/// The v1 API description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Leasehold coordinator", version = "1",
         description = "Issues fenced job leases and stores results, events and artifacts. \
                        Every error is `{\"error\": {code, message, details, request_id}}`."),
    paths(
        super::jobs::enqueue, super::jobs::list, super::jobs::get, super::jobs::cancel,
        super::jobs::retry, super::leases::claim, super::leases::heartbeat,
        super::leases::complete, super::leases::fail, super::leases::release,
        super::leases::outcomes, super::workers::connect, super::artifacts::put,
        super::artifacts::get, super::runs::submit, super::runs::list, super::runs::plan_only, super::runs::get,
        super::runs::cancel, super::feed::events, super::feed::ledger_export,
        super::compat::scheduler::record_scheduler_run,
        super::compat::scheduler::list_scheduler_runs,
        super::compat::runs_service::legacy_create, super::compat::runs_service::legacy_get,
        super::compat::runs_service::legacy_cancel, super::compat::runs_service::legacy_checkpoint,
        super::compat::runs_service::legacy_events,
        super::compat::runbook::runbook_start, super::compat::runbook::runbook_action,
        super::compat::runbook::runs_stream, super::compat::runbook::admin_health,
        super::queues::list, super::presence::list, super::queues::pause, super::queues::resume,
        super::keys::create, super::keys::list, super::keys::revoke, super::keys::whoami,
        super::audit::list, super::bulk::replay, super::bulk::cancel,
        super::limits::list, super::limits::show, super::limits::put, super::limits::delete,
        super::limits::incidents,
        super::queues::settings,
        super::retention::settings, super::retention::put_tenant, super::retention::delete_tenant,
        super::retention::effective, super::retention::put_queue, super::retention::delete_queue,
        super::retention::sweep_now, super::retention::segments,
        super::quotas::show, super::quotas::set, super::quotas::remove,
        super::stats::job_stats, super::stats::failures, super::stats::slo, super::stats::slo_one,
        super::stats::set_slo, super::stats::delete_slo,
        super::service::health, super::service::ready, super::service::metrics,
        openapi,
    ),
    components(schemas(
        leasehold_proto::ErrorEnvelope, leasehold_proto::ErrorBody, leasehold_proto::ErrorCode,
        leasehold_proto::Job, leasehold_proto::JobState, leasehold_proto::NewJob,
        leasehold_proto::EnqueueBatchRequest, leasehold_proto::EnqueueBatchResponse,
        super::jobs::EnqueueRequest, super::jobs::EnqueueAnswer,
        leasehold_proto::EnqueuedJob, leasehold_proto::JobList, leasehold_proto::BackoffHint,
        leasehold_proto::ClaimRequest, leasehold_proto::ClaimResponse, leasehold_proto::Lease,
        leasehold_proto::RetryHints, leasehold_proto::HeartbeatRequest,
        leasehold_proto::HeartbeatItem, leasehold_proto::HeartbeatResponse,
        leasehold_proto::HeartbeatResult, leasehold_proto::HeartbeatStatus,
        leasehold_proto::CompleteRequest, leasehold_proto::FailRequest,
        leasehold_proto::FailureInfo, leasehold_proto::ReleaseRequest, leasehold_proto::Artifact,
        leasehold_proto::QueueInfo, leasehold_proto::QueueDepth, leasehold_proto::QueueList, leasehold_proto::WorkerInfo, leasehold_proto::WorkerList,
        leasehold_proto::QueueSettings,
        leasehold_proto::Event, leasehold_proto::AuditList, leasehold_proto::ReplayRequest, leasehold_proto::CancellationRequest, leasehold_proto::CancellationResult,
        leasehold_proto::ReplayResult, super::jobs::CancelRequest, super::artifacts::ArtifactStored,
        leasehold_proto::OutcomeReport, leasehold_proto::OutcomeKind,
        leasehold_proto::OutcomesRequest, leasehold_proto::OutcomesResponse,
        leasehold_proto::OutcomeResult, leasehold_proto::OutcomeStatus,
        leasehold_proto::ClientMessage, leasehold_proto::ServerMessage,
        leasehold_proto::NewRun, leasehold_proto::RunJobSpec, leasehold_proto::Run,
        leasehold_proto::RunJob, leasehold_proto::RunStatus, leasehold_proto::RunPlan, leasehold_proto::RunList, leasehold_proto::RunSummary,
        leasehold_proto::SchedulerRunInput, leasehold_proto::SchedulerRun,
        leasehold_proto::LedgerManifest, super::compat::runs_service::CheckpointInput,
        leasehold_proto::RetentionPolicy, leasehold_proto::StoredRetentionPolicy,
        leasehold_proto::RetentionDefaults, leasehold_proto::RetentionSettings,
        leasehold_proto::EffectiveRetention, leasehold_proto::SweepReport,
        leasehold_proto::SegmentManifest, leasehold_proto::LedgerSegment,
        leasehold_proto::LedgerSegmentList, leasehold_proto::NewApiKey, leasehold_proto::ApiKey,
        leasehold_proto::CreatedApiKey, leasehold_proto::ApiKeyList,
        leasehold_proto::Throttled, leasehold_proto::LimitSpec, leasehold_proto::PutLimit,
        leasehold_proto::Limit, leasehold_proto::LimitBucket, leasehold_proto::LimitList,
        leasehold_proto::BreakerSpec, leasehold_proto::BreakerState, leasehold_proto::IncidentList,
        leasehold_proto::QuotaRequest, leasehold_proto::StoredQuota, leasehold_proto::QuotaUsage,
        leasehold_proto::QuotaStatus, leasehold_proto::Identity, leasehold_proto::JobStats, leasehold_proto::StatsPoint,
        leasehold_proto::FailureClasses, leasehold_proto::FailureClass, leasehold_proto::SloReport,
        leasehold_proto::QueueSlo, leasehold_proto::SloObjective, leasehold_proto::SloMeasure,
    )),
    modifiers(&Security),
    tags((name = "jobs"), (name = "leases"), (name = "queues"), (name = "artifacts"), (name = "runs"), (name = "events"),
          (name = "keys"), (name = "operators"), (name = "legacy"), (name = "service"))
)]
pub struct ApiDoc;

/// Adds what the guard enforces to the document: the two ways to send a key, the scopes each
/// operation needs (as the security requirement's roles, which OpenAPI 3.1 allows for non-OAuth
/// schemes), and the 401, 403 and 429 answers every protected operation can give (and 415 for
/// those that change state).
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "ORCHESTRATOR_API_KEY, or a key from POST /v1/keys (docs/SECURITY.md)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                        .build(),
                )
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            if super::access::is_open(path) {
                continue;
            }
            let sample = super::scopes::sample_path(path);
            let operations = [
                (axum::http::Method::GET, &mut item.get),
                (axum::http::Method::POST, &mut item.post),
                (axum::http::Method::PUT, &mut item.put),
                (axum::http::Method::DELETE, &mut item.delete),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                let roles: Vec<&str> = super::scopes::needed(&method, &sample)
                    .unwrap_or_default()
                    .iter()
                    .map(|s| s.as_str())
                    .collect();
                operation.security = Some(vec![
                    SecurityRequirement::new("bearer", roles.clone()),
                    SecurityRequirement::new("api_key", roles),
                ]);
                let responses = &mut operation.responses.responses;
                responses
                    .entry("401".into())
                    .or_insert_with(|| error("no key, or a wrong, revoked or expired one").into());
                responses.entry("403".into()).or_insert_with(|| {
                    error("the key lacks the scope, or names another tenant than its own").into()
                });
                responses
                    .entry("429".into())
                    .or_insert_with(|| error("over the rate limit; see Retry-After").into());
                // crate::http::cross_site: the route's content type only, pages' origins refused.
                if method != axum::http::Method::GET {
                    responses.entry("415".into()).or_insert_with(|| {
                        error("the body's Content-Type is not the one this operation takes").into()
                    });
                }
                // What the extractors answer before a handler runs: an unparseable body or path
                // id (400), a body over the limit (413), a parameter or field out of its
                // bounds (422).
                let has_body = operation.request_body.is_some();
                let params = operation.parameters.as_ref().map_or(0, Vec::len);
                if has_body || path.contains('{') {
                    responses.entry("400".into()).or_insert_with(|| {
                        error("not parseable: bad JSON, or a path id of the wrong shape").into()
                    });
                }
                if has_body {
                    responses
                        .entry("413".into())
                        .or_insert_with(|| error("the body is over the size limit").into());
                }
                if has_body || params > 0 {
                    responses.entry("422".into()).or_insert_with(|| {
                        error("a field or parameter is invalid (details.field names it)").into()
                    });
                }
            }
        }
    }
}

/// The document as pretty JSON with a trailing newline (the committed file's exact bytes).
pub fn openapi_json() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

/// Serves this document at `/.well-known/openapi`.
pub(super) fn router() -> Router<AppState> {
    Router::new().route("/.well-known/openapi", routing::get(openapi))
}

/// This API's OpenAPI document, generated from the code.
#[utoipa::path(get, path = "/.well-known/openapi", tag = "service",
    responses((status = 200, description = "OpenAPI 3.1 document")))]
pub(crate) async fn openapi() -> ApiJson<utoipa::openapi::OpenApi> {
    ApiJson(ApiDoc::openapi())
}
