//! A job's artifacts from C: `lh_job_put_artifact_path` (a file, hashed then streamed without
//! copying) and `lh_job_put_artifact_buffer` (bytes in memory).

use std::ffi::c_char;

use crate::cancel::{self, block_on, lh_cancel};
use crate::error::{Failure, guard, lh_result};
use crate::job::lh_job;
use crate::mem::{Out, handle, lh_bytes, opt_text, slice, text};

fn artifact_out(
    out: Option<Out<lh_bytes>>,
    artifact: &leasehold::proto::Artifact,
) -> Result<(), Failure> {
    if let Some(out) = out {
        let bytes = serde_json::to_vec(artifact)
            .map_err(|e| Failure::new(lh_result::LH_INTERNAL, e.to_string()))?;
        out.write(lh_bytes::from_vec(bytes));
    }
    Ok(())
}

/// Uploads the file at `path` as artifact `name` without copying it (hashed in one pass,
/// streamed in a second; the file must not change in between). `media_type` may be NULL or
/// empty for `application/octet-stream`. The completion lists it in the job's manifest; putting
/// the same name again replaces the entry. Unless `out` is NULL, writes the artifact as JSON
/// (`{"name", "digest", "size", "media_type"}`, free with `lh_bytes_free`). Blocks until
/// uploaded; `cancel` (may be NULL) stops the wait.
///
/// Errors: `LH_INVALID_ARGUMENT` (a bad name or media type), `LH_IO`, `LH_LEASE_LOST`,
/// `LH_ALREADY_ENDED`, `LH_UNREACHABLE`, `LH_COORDINATOR`, `LH_CANCELLED`.
///
/// # Safety
/// `job` is NULL or live; each (pointer, length) pair is valid for reads; `cancel` is NULL or
/// live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn lh_job_put_artifact_path(
    job: *const lh_job,
    name: *const c_char,
    name_len: usize,
    media_type: *const c_char,
    media_type_len: usize,
    path: *const c_char,
    path_len: usize,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract (all of the below).
        let j = unsafe { handle(job, "job") }?;
        let name = unsafe { text(name, name_len, "name") }?;
        let media_type = unsafe { opt_text(media_type, media_type_len, "media_type") }?
            .unwrap_or(leasehold::artifact::DEFAULT_MEDIA_TYPE);
        if path.is_null() {
            return Err(Failure::null("path"));
        }
        let path = unsafe { text(path, path_len, "path") }?;
        let cancel = unsafe { cancel::optional(cancel) };
        let out = unsafe { Out::optional(out) };
        j.ensure_open()?;
        let artifact = block_on(j.core.runtime(), cancel, async {
            Ok(j.ctx
                .put_artifact_file(name, media_type, std::path::Path::new(path))
                .await?)
        })?;
        artifact_out(out, &artifact)
    })
}

/// Uploads `len` bytes at `data` as artifact `name`; otherwise as `lh_job_put_artifact_path`.
///
/// # Safety
/// As `lh_job_put_artifact_path`; `data` is valid for reads of `len` bytes (NULL if `len` is 0).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn lh_job_put_artifact_buffer(
    job: *const lh_job,
    name: *const c_char,
    name_len: usize,
    media_type: *const c_char,
    media_type_len: usize,
    data: *const u8,
    len: usize,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract (all of the below).
        let j = unsafe { handle(job, "job") }?;
        let name = unsafe { text(name, name_len, "name") }?;
        let media_type = unsafe { opt_text(media_type, media_type_len, "media_type") }?
            .unwrap_or(leasehold::artifact::DEFAULT_MEDIA_TYPE);
        let data = unsafe { slice(data, len, "data") }?.to_vec();
        let cancel = unsafe { cancel::optional(cancel) };
        let out = unsafe { Out::optional(out) };
        j.ensure_open()?;
        let artifact = block_on(j.core.runtime(), cancel, async {
            Ok(j.ctx.put_artifact_bytes(name, media_type, data).await?)
        })?;
        artifact_out(out, &artifact)
    })
}
