//! `/v1/keys`: create, list and revoke API keys (scope `admin`; see [`crate::keys`]). A key's
//! admin manages its own tenant's keys; `ORCHESTRATOR_API_KEY` every tenant's.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing;
use chrono::{DateTime, Utc};
use leasehold_proto::{
    ApiKey, ApiKeyList, CreatedApiKey, ErrorCode, ErrorEnvelope, Identity, NewApiKey,
};

use super::AppState;
use super::extract::{ApiJson, QueryParams, Tenant};
use crate::error::{ApiError, ApiResult};
use crate::keys::{self, Principal, Scope, Scopes};
use crate::store::KeyRow;
use crate::validate;

/// `/v1/keys`: create and list; `/v1/keys/{id}`: revoke.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/keys", routing::post(create).get(list))
        .route("/v1/keys/{id}", routing::delete(revoke))
        .route("/v1/whoami", routing::get(whoami))
}

/// Who the caller is: the tenant it acts for, how (a created key, the coordinator's own key,
/// or keyless) and its scopes. Any valid key may ask; nothing secret is answered.
#[utoipa::path(get, path = "/v1/whoami", tag = "keys",
    responses((status = 200, body = Identity), (status = 401, body = ErrorEnvelope)))]
pub(crate) async fn whoami(tenant: Tenant, principal: Principal) -> ApiJson<Identity> {
    let every = || Scope::ALL.iter().map(|s| s.as_str().to_owned()).collect();
    ApiJson(match principal {
        Principal::Key(grant) => Identity {
            tenant: tenant.0,
            principal: "key".into(),
            key_id: Some(grant.id),
            key_name: Some(grant.name),
            scopes: grant.scopes.names(),
        },
        Principal::Root => Identity {
            tenant: tenant.0,
            principal: "root".into(),
            key_id: None,
            key_name: None,
            scopes: every(),
        },
        Principal::Open => Identity {
            tenant: tenant.0,
            principal: "keyless".into(),
            key_id: None,
            key_name: None,
            scopes: every(),
        },
    })
}

/// Longest key label.
const MAX_NAME: usize = 200;

fn view(row: KeyRow) -> ApiKey {
    ApiKey {
        id: row.id,
        name: row.name,
        tenant: row.tenant,
        scopes: row.scopes,
        created_at: row.created_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
        last_used_at: row.last_used_at,
    }
}

/// The tenant whose keys the caller means: the one named (query or body), else its own; a key
/// may only mean its own tenant's (403 otherwise).
fn target(principal: &Principal, named: Option<&str>) -> Result<Option<String>, ApiError> {
    if let Some(t) = named {
        validate::name("tenant", t)?;
    }
    let own = principal.bound_tenant();
    let tenant = match (principal, named) {
        // The coordinator's own key and a keyless coordinator see every tenant unless told.
        (Principal::Root | Principal::Open, named) => named.map(str::to_owned),
        (Principal::Key(_), named) => Some(named.or(own).unwrap_or_default().to_owned()),
    };
    if let Some(t) = &tenant
        && !principal.manages(t)
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "this API key manages the keys of tenant `{}` only, not `{t}`",
                own.unwrap_or_default()
            ),
        )
        .with_details(serde_json::json!({"field": "tenant"})));
    }
    Ok(tenant)
}

/// Create an API key for a tenant with scopes. The token is in this answer only.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = NewApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 403, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<NewApiKey>,
) -> ApiResult<(StatusCode, ApiJson<CreatedApiKey>)> {
    let tenant = target(&principal, body.tenant.as_deref())?
        .unwrap_or_else(|| leasehold_proto::DEFAULT_TENANT.to_owned());
    if body.scopes.is_empty() {
        return Err(ApiError::validation(
            "scopes",
            format!(
                "name at least one scope: {}",
                Scope::ALL.map(Scope::as_str).join(", ")
            ),
        ));
    }
    let scopes = Scopes::parse(&body.scopes).map_err(|unknown| {
        ApiError::validation(
            "scopes",
            format!(
                "unknown scope `{unknown}`; known: {}",
                Scope::ALL.map(Scope::as_str).join(", ")
            ),
        )
    })?;
    let name = body.name.unwrap_or_default();
    if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "name",
            format!("a key's name is at most {MAX_NAME} characters, without control characters"),
        ));
    }
    let now = state.clock.now();
    if let Some(at) = body.expires_at
        && at <= now
    {
        return Err(ApiError::validation(
            "expires_at",
            "expires_at must be in the future",
        ));
    }
    let (id, token) = keys::new_token()
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("no random source: {e}")))?;
    let row = KeyRow {
        id,
        name,
        tenant,
        scopes: scopes.names(),
        token_sha256: keys::digest(&token).to_vec(),
        created_at: now,
        expires_at: body.expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    state.store.insert_key(&row).await?;
    state.keys.invalidate();
    let target = serde_json::json!({"key_id": row.id, "name": row.name, "scopes": row.scopes});
    crate::audit::record(
        &*state.store,
        &row.tenant,
        &principal,
        "keys.create",
        target,
        None,
        now,
    )
    .await;
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedApiKey {
            key: view(row),
            token,
        }),
    ))
}

/// List API keys (revoked ones included), newest first: the caller's tenant's, or with the
/// coordinator's own key every tenant's (`?tenant=` narrows).
#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    params(("tenant" = Option<String>, Query, description = "Only this tenant's keys")),
    responses((status = 200, body = ApiKeyList), (status = 403, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: QueryParams,
) -> ApiResult<ApiJson<ApiKeyList>> {
    query.only(&["tenant"])?;
    let tenant = target(&principal, query.get("tenant"))?;
    let rows = state.store.list_keys(tenant.as_deref()).await?;
    Ok(ApiJson(ApiKeyList {
        keys: rows.into_iter().map(view).collect(),
    }))
}

/// Revoke an API key: from now on it is refused (401) on every replica within two seconds.
/// Revoking a revoked key answers it unchanged.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "The key's id (`k_…`)")),
    responses((status = 200, body = ApiKey), (status = 404, body = ErrorEnvelope)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<ApiKey>> {
    let tenant = target(&principal, None)?;
    let now: DateTime<Utc> = state.clock.now();
    let row = state
        .store
        .revoke_key(tenant.as_deref(), &id, now)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no API key {id:?}")))?;
    state.keys.invalidate();
    let target = serde_json::json!({"key_id": row.id, "name": row.name});
    crate::audit::record(
        &*state.store,
        &row.tenant,
        &principal,
        "keys.revoke",
        target,
        None,
        now,
    )
    .await;
    Ok(ApiJson(view(row)))
}
