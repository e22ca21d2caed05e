//! Artifact blobs no remaining job names, collected without ever losing one a completion is
//! about to name.
//!
//! The protocol (argued in docs/ARCHITECTURE.md, "Retention and the ledger archive"):
//!
//! - Whoever is about to name a blob — an upload that finds it stored already, a completion
//!   checking that its artifacts exist — **claims** it: opens it, sets its mtime to now through
//!   that open file, then checks that the path still leads to that same file ([`claim`]).
//! - The collector only considers blobs whose mtime is older than the grace period and that no
//!   job names. It **moves** each to `artifacts/trash/` (an atomic rename), then reads the mtime
//!   of the moved file: a claim that touched it before the move shows there, and the blob is
//!   moved back; otherwise it is deleted.
//!
//! A claim that touches after the move finds the path gone (or another file there) and fails,
//! so the completion is refused (422, upload again) instead of recorded: no job ever names a
//! deleted blob. A completion whose claim succeeded commits within the request timeout, far
//! inside the grace period, so its blob is either named by then or still too young to collect.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use leasehold_proto::SweepReport;

use super::Sweeper;
use crate::blobs::blob_path;
use crate::store::{StoreError, StoreResult};

/// Digests checked against the jobs per query.
const CHUNK: usize = 500;

fn system_time(t: DateTime<Utc>) -> SystemTime {
    SystemTime::from(t)
}

/// Claims the blob of `digest` for a new reference (see the module docs): true when it is
/// stored and now carries `now` as its mtime, false when it is not stored (or a collection
/// took it meanwhile).
pub async fn claim(data_dir: &Path, digest: &str, now: DateTime<Utc>) -> bool {
    let path = blob_path(data_dir, digest);
    tokio::task::spawn_blocking(move || claim_path(&path, system_time(now)).unwrap_or(false))
        .await
        .unwrap_or(false)
}

fn claim_path(path: &Path, now: SystemTime) -> std::io::Result<bool> {
    // A second try covers a copy uploaded at the path between our open and our check.
    for _ in 0..2 {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if touch_and_confirm(&file, path, now)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Sets `file`'s mtime to `now`, then checks that `path` still leads to `file`: a collection
/// may have moved it away between the open and the touch.
fn touch_and_confirm(file: &std::fs::File, path: &Path, now: SystemTime) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    file.set_modified(now)?;
    let held = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(at_path) => Ok(at_path.dev() == held.dev() && at_path.ino() == held.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Every stored blob whose mtime is before `cutoff`: `(digest, path)`.
fn old_blobs(root: &Path, cutoff: SystemTime) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let base = root.join("artifacts").join("sha256");
    let shards = match std::fs::read_dir(&base) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for shard in shards {
        let shard = shard?;
        let prefix = shard.file_name().to_string_lossy().into_owned();
        if !shard.file_type()?.is_dir() {
            continue;
        }
        for blob in std::fs::read_dir(shard.path())? {
            let blob = blob?;
            let rest = blob.file_name().to_string_lossy().into_owned();
            let digest = format!("sha256:{prefix}{rest}");
            if !crate::validate::is_digest(&digest) {
                continue;
            }
            let modified = blob.metadata()?.modified()?;
            if modified < cutoff {
                out.push((digest, blob.path()));
            }
        }
    }
    Ok(out)
}

/// What [`collect_one`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Collected {
    /// Deleted.
    Deleted,
    /// Claimed meanwhile: moved back.
    Restored,
    /// Already gone (another replica collected it).
    Gone,
}

/// Moves `path` to the trash, then deletes it unless a claim touched it (mtime at or after
/// `cutoff`), in which case it goes back.
pub(crate) fn collect_one(
    root: &Path,
    path: &Path,
    cutoff: SystemTime,
) -> std::io::Result<Collected> {
    let trash = root.join("artifacts").join("trash");
    std::fs::create_dir_all(&trash)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let moved = trash.join(format!("{name}.{}", uuid::Uuid::new_v4().simple()));
    match std::fs::rename(path, &moved) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Collected::Gone),
        Err(e) => return Err(e),
    }
    if std::fs::metadata(&moved)?.modified()? >= cutoff {
        // Same content by construction: replacing a copy uploaded meanwhile changes nothing.
        std::fs::rename(&moved, path)?;
        return Ok(Collected::Restored);
    }
    std::fs::remove_file(&moved)?;
    Ok(Collected::Deleted)
}

fn io(err: std::io::Error) -> StoreError {
    StoreError::Internal(format!("artifact collection: {err}"))
}

/// Deletes the blobs older than `grace` that no remaining job names.
pub(super) async fn collect(
    state: &Sweeper,
    grace: Duration,
    report: &mut SweepReport,
) -> StoreResult<()> {
    let now = state.clock.now();
    let cutoff = system_time(now)
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let root = state.data_dir.clone();
    let candidates = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || old_blobs(&root, cutoff))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .map_err(io)?
    };
    for chunk in candidates.chunks(CHUNK) {
        let digests: Vec<String> = chunk.iter().map(|(d, _)| d.clone()).collect();
        let named = state.store.retention().referenced_digests(&digests).await?;
        let unnamed: Vec<(String, PathBuf)> = chunk
            .iter()
            .filter(|(d, _)| !named.contains(d))
            .cloned()
            .collect();
        let root = root.clone();
        let deleted = tokio::task::spawn_blocking(move || {
            let mut deleted = Vec::new();
            for (digest, path) in unnamed {
                if collect_one(&root, &path, cutoff)? == Collected::Deleted {
                    deleted.push(digest);
                }
            }
            Ok::<_, std::io::Error>(deleted)
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
        .map_err(io)?;
        // Nobody owns deleted bytes; a tenant that uploaded them again since keeps its row.
        let before = DateTime::<Utc>::from(cutoff);
        state.store.forget_artifact_owners(&deleted, before).await?;
        let deleted = deleted.len() as u64;
        report.blobs_collected += deleted;
        metrics::counter!(crate::metrics::ARTIFACTS_COLLECTED).increment(deleted);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn setup() -> (PathBuf, PathBuf, String) {
        let root =
            std::env::temp_dir().join(format!("leasehold-blobs-{}", uuid::Uuid::new_v4().simple()));
        let digest = format!("sha256:{}", "ab".repeat(32));
        let path = blob_path(&root, &digest);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"bytes").unwrap();
        let old = SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        (root, path, digest)
    }

    fn an_hour_ago() -> SystemTime {
        SystemTime::now() - Duration::from_secs(3600)
    }

    #[test]
    fn an_old_unclaimed_blob_is_deleted() {
        let (root, path, _) = setup();
        assert_eq!(old_blobs(&root, an_hour_ago()).unwrap().len(), 1);
        assert_eq!(
            collect_one(&root, &path, an_hour_ago()).unwrap(),
            Collected::Deleted
        );
        assert!(!path.exists());
        assert_eq!(
            collect_one(&root, &path, an_hour_ago()).unwrap(),
            Collected::Gone
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_claim_before_the_move_brings_the_blob_back() {
        let (root, path, _) = setup();
        // The collector listed it as old and unnamed; a completion claims it just then.
        let listed = old_blobs(&root, an_hour_ago()).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(claim_path(&path, SystemTime::now()).unwrap());
        assert_eq!(
            collect_one(&root, &path, an_hour_ago()).unwrap(),
            Collected::Restored
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"bytes");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_claim_that_touches_after_the_move_fails_so_nothing_names_a_deleted_blob() {
        let (root, path, _) = setup();
        // The claimer opened the file; the collector moves it and, seeing an old mtime,
        // deletes it; the claimer's touch then reaches the deleted file, and its check fails.
        let opened = std::fs::File::open(&path).unwrap();
        assert_eq!(
            collect_one(&root, &path, an_hour_ago()).unwrap(),
            Collected::Deleted
        );
        assert!(!touch_and_confirm(&opened, &path, SystemTime::now()).unwrap());
        assert!(!claim_path(&path, SystemTime::now()).unwrap());
        std::fs::remove_dir_all(root).unwrap();
    }
}
