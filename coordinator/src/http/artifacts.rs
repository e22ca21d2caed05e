//! Content-addressed artifact blobs under `<data-dir>/artifacts/sha256/<2 hex>/<62 hex>`.
//! Uploads stream to a temp file while hashing; the blob is kept only when the digest matches
//! (422 otherwise, nothing kept), and an existing blob is never rewritten (deduplication).
//! The bytes are stored once, but each tenant sees only the digests it uploaded itself
//! (`crate::store::ArtifactOwners`): another tenant's digest is 404 and uploading bytes another
//! tenant stored answers as a new upload, so nothing tells a tenant what another stored.

use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing;
use futures_util::StreamExt;
use leasehold_proto::{ErrorCode, ErrorEnvelope};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::blobs::blob_path;
pub use crate::blobs::hex;

use super::AppState;
use super::extract::{ApiJson, ArtifactDigest, Tenant};
use crate::error::{ApiError, ApiResult};

/// Artifact upload and download (streamed bodies: no request timeout).
pub(super) fn streams() -> Router<AppState> {
    Router::new().route("/v1/artifacts/{digest}", routing::put(put).get(get))
}

/// Answer of an upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ArtifactStored {
    /// The verified digest.
    digest: String,
    /// Size in bytes.
    size: u64,
    /// False when this tenant had stored these bytes already.
    created: bool,
}

fn io_error(err: std::io::Error) -> ApiError {
    tracing::error!(%err, "artifact storage failed");
    ApiError::new(
        ErrorCode::Unavailable,
        "artifact storage is unavailable; retry later",
    )
}

/// Upload a blob whose SHA-256 is `digest`.
#[utoipa::path(put, path = "/v1/artifacts/{digest}", tag = "artifacts",
    params(("digest" = String, Path, description = "sha256:<64 lowercase hex>")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ArtifactStored), (status = 200, description = "this tenant stored it already", body = ArtifactStored),
              (status = 413, body = ErrorEnvelope), (status = 422, description = "digest mismatch or malformed", body = ErrorEnvelope)))]
pub(crate) async fn put(
    State(state): State<AppState>,
    tenant: Tenant,
    ArtifactDigest(digest): ArtifactDigest,
    body: Body,
) -> ApiResult<Response> {
    let final_path = blob_path(&state.data_dir, &digest);
    let tmp_dir = state.data_dir.join("artifacts").join("tmp");
    tokio::fs::create_dir_all(&tmp_dir)
        .await
        .map_err(io_error)?;
    let tmp_path = tmp_dir.join(uuid::Uuid::new_v4().simple().to_string());
    // Removes the temp file on every early return.
    let guard = TempFile(tmp_path.clone());
    let mut file = tokio::fs::File::create(&tmp_path).await.map_err(io_error)?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::invalid_request(format!("upload interrupted: {e}")))?;
        size += chunk.len() as u64;
        if size > state.max_artifact_bytes {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "artifact is over the {} byte limit",
                    state.max_artifact_bytes
                ),
            ));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io_error)?;
    }
    file.flush().await.map_err(io_error)?;
    file.sync_all().await.map_err(io_error)?;
    // The blob's mtime is when it was last claimed, by the coordinator's clock: what the
    // retention sweep's grace period counts from (crate::retention::blobs).
    let now = state.clock.now();
    let file = file.into_std().await;
    tokio::task::spawn_blocking(move || file.set_modified(std::time::SystemTime::from(now)))
        .await
        .map_err(|e| io_error(std::io::Error::other(e)))?
        .map_err(io_error)?;
    let actual = format!("sha256:{}", hex(&hasher.finalize()));
    if actual != digest {
        return Err(ApiError::validation(
            "digest",
            format!("the body hashes to {actual}, not {digest}; nothing was stored"),
        ));
    }
    // An existing blob is claimed (its mtime refreshed, still in place); one a collection took
    // meanwhile is stored again from this upload.
    if !crate::retention::blobs::claim(&state.data_dir, &digest, now).await {
        if let Some(parent) = final_path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io_error)?;
        }
        // Same filesystem: the rename is atomic, so readers never see a partial blob.
        tokio::fs::rename(&tmp_path, &final_path)
            .await
            .map_err(io_error)?;
    }
    drop(guard);
    // Whether *this tenant* had it: another tenant's copy must not show.
    let created = state.store.own_artifact(&tenant.0, &digest, now).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        ApiJson(ArtifactStored {
            digest,
            size,
            created,
        }),
    )
        .into_response())
}

/// Download a blob.
#[utoipa::path(get, path = "/v1/artifacts/{digest}", tag = "artifacts",
    params(("digest" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream"), (status = 404, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    ArtifactDigest(digest): ArtifactDigest,
) -> ApiResult<Response> {
    // The same answer whether nobody or only another tenant stored it.
    let not_stored = || ApiError::not_found(format!("artifact {digest} is not stored"));
    if !state.store.owns_artifact(&tenant.0, &digest).await? {
        return Err(not_stored());
    }
    let path = blob_path(&state.data_dir, &digest);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_stored());
        }
        Err(e) => return Err(io_error(e)),
    };
    let len = file.metadata().await.map_err(io_error)?.len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{digest}\"")) {
        headers.insert(header::ETAG, etag);
    }
    Ok(response)
}

struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
