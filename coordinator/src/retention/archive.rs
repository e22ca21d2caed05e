//! The ledger archive: events older than the ledger window are written to an NDJSON segment —
//! the lines `GET /v1/ledger/export` gives for them, then a manifest line naming the previous
//! segment's manifest digest — fsynced, recorded in `ledger_segments` in the transaction that
//! deletes them, and only so deleted. [`verify_dir`] checks a directory of segments as a chain.
//!
//! A sweep that dies after writing a file but before its transaction leaves an unrecorded file
//! under the name the next attempt computes (sequence number and first event id): the next
//! sweep adopts it when it is whole, so the same ids never get two different segments; files
//! are created with a hard link, which never replaces one another sweep wrote.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use leasehold_proto::{Event, LedgerSegment, SegmentManifest, SweepReport};
use sha2::{Digest, Sha256};

use super::RetentionConfig;
use super::Sweeper;
use crate::blobs::hex;
use crate::store::{EventFilter, StoreError, StoreResult};

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// A segment's file name: its place in the chain and its first event id.
fn file_name(seq: i64, first_id: i64) -> String {
    format!("ledger-{seq:08}-{first_id:020}.ndjson")
}

/// One segment file's bytes and what it records.
#[derive(Debug, Clone)]
struct Segment {
    bytes: Vec<u8>,
    manifest: SegmentManifest,
    manifest_sha256: String,
}

/// Renders `events` (oldest first, not empty) as a segment after `prev`.
fn render(events: &[Event], cutoff: DateTime<Utc>, seq: i64, prev: Option<String>) -> Segment {
    let mut bytes = Vec::with_capacity(events.len() * 256);
    for e in events {
        // The export's exact line: `serde_json::to_vec` of the event, then a newline.
        if let Ok(line) = serde_json::to_vec(e) {
            bytes.extend_from_slice(&line);
            bytes.push(b'\n');
        }
    }
    let manifest = SegmentManifest {
        kind: "manifest".into(),
        count: events.len() as u64,
        first_id: events.first().map(|e| e.id),
        last_id: events.last().map(|e| e.id),
        from: events.first().map_or(cutoff, |e| e.at),
        to: cutoff,
        sha256: digest(&bytes),
        seq,
        prev,
    };
    let mut line = serde_json::to_vec(&manifest).unwrap_or_default();
    line.push(b'\n');
    let manifest_sha256 = digest(&line);
    bytes.extend_from_slice(&line);
    Segment {
        bytes,
        manifest,
        manifest_sha256,
    }
}

/// Checks one segment file's bytes: the last line is a manifest whose count, ids and digest
/// match the lines before it. Answers the manifest and the digest of its line.
fn check(bytes: &[u8]) -> Result<(SegmentManifest, String), String> {
    let body_end = bytes
        .strip_suffix(b"\n")
        .ok_or("the file does not end with a newline: cut short")?;
    let split = body_end
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let (events, line) = bytes.split_at(split);
    let manifest: SegmentManifest = serde_json::from_slice(line)
        .ok()
        .filter(|m: &SegmentManifest| m.kind == "manifest")
        .ok_or("the last line is not a segment manifest")?;
    let actual = digest(events);
    if manifest.sha256 != actual {
        return Err(format!(
            "the manifest says {} but the events hash to {actual}",
            manifest.sha256
        ));
    }
    let mut ids = Vec::new();
    for (n, raw) in events
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        #[derive(serde::Deserialize)]
        struct Id {
            id: i64,
        }
        let Id { id } = serde_json::from_slice(raw)
            .map_err(|_| format!("line {} is not an event with an integer id", n + 1))?;
        ids.push(id);
    }
    if manifest.count != ids.len() as u64 {
        return Err(format!(
            "the manifest counts {} events but the file holds {}",
            manifest.count,
            ids.len()
        ));
    }
    if manifest.first_id != ids.first().copied() || manifest.last_id != ids.last().copied() {
        return Err(format!(
            "the manifest names ids {:?}..{:?} but the events run {:?}..{:?}",
            manifest.first_id,
            manifest.last_id,
            ids.first(),
            ids.last()
        ));
    }
    if ids.windows(2).any(|w| w[0] >= w[1]) {
        return Err("event ids are not strictly increasing".into());
    }
    Ok((manifest, digest(line)))
}

/// What [`verify_dir`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainSummary {
    /// Segments checked.
    pub segments: u64,
    /// Events in them.
    pub events: u64,
    /// First and last event id archived.
    pub first_id: Option<i64>,
    /// Last event id archived.
    pub last_id: Option<i64>,
    /// The manifest digest of the last segment: compare with `GET /v1/ledger/segments`.
    pub head: Option<String>,
}

/// Verifies every `ledger-*.ndjson` in `dir` as one chain: each file whole against its own
/// manifest, sequence numbers consecutive, each `prev` the digest of the previous manifest
/// line, event ids increasing across files. The error names the file.
pub fn verify_dir(dir: &Path) -> Result<ChainSummary, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ledger-") && n.ends_with(".ndjson"))
        })
        .collect();
    files.sort();
    let mut summary = ChainSummary {
        segments: 0,
        events: 0,
        first_id: None,
        last_id: None,
        head: None,
    };
    let mut previous: Option<SegmentManifest> = None;
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let bytes = std::fs::read(path).map_err(|e| format!("{name}: {e}"))?;
        let (manifest, line_digest) = check(&bytes).map_err(|why| format!("{name}: {why}"))?;
        let expected = file_name(manifest.seq, manifest.first_id.unwrap_or(0));
        if name != expected {
            return Err(format!(
                "{name}: its manifest describes {expected}: the file was altered or renamed"
            ));
        }
        if let Some(prev) = &previous {
            if manifest.seq != prev.seq + 1 {
                return Err(format!(
                    "{name}: segment {} follows segment {}: one is missing",
                    manifest.seq, prev.seq
                ));
            }
            if manifest.prev != summary.head {
                return Err(format!(
                    "{name}: its prev {:?} is not the digest of segment {}'s manifest {:?}: \
                     that segment was altered",
                    manifest.prev, prev.seq, summary.head
                ));
            }
            if manifest.first_id <= prev.last_id {
                return Err(format!("{name}: its ids overlap segment {}", prev.seq));
            }
        } else if manifest.seq == 1 && manifest.prev.is_some() {
            return Err(format!("{name}: the first segment names a previous one"));
        }
        summary.segments += 1;
        summary.events += manifest.count;
        summary.first_id = summary.first_id.or(manifest.first_id);
        summary.last_id = manifest.last_id;
        summary.head = Some(line_digest);
        previous = Some(manifest);
    }
    Ok(summary)
}

fn io(err: std::io::Error) -> StoreError {
    StoreError::Internal(format!("ledger archive: {err}"))
}

/// Writes `bytes` to `path` durably and only if no file is there: a temporary file, fsynced,
/// hard-linked to `path` (which fails when it exists, unlike a rename), directory fsynced.
/// Answers false when `path` existed.
fn create_durably(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    let linked = std::fs::hard_link(&tmp, path);
    std::fs::remove_file(&tmp)?;
    match linked {
        Ok(()) => {
            std::fs::File::open(dir)?.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// A whole segment at `path` that takes `fresh`'s place in the chain, if there is one.
fn adoptable(path: &Path, fresh: &Segment) -> Option<Segment> {
    let bytes = std::fs::read(path).ok()?;
    let (manifest, manifest_sha256) = check(&bytes).ok()?;
    (manifest.seq == fresh.manifest.seq
        && manifest.prev == fresh.manifest.prev
        && manifest.first_id == fresh.manifest.first_id)
        .then_some(Segment {
            bytes,
            manifest,
            manifest_sha256,
        })
}

/// The segment to record for `fresh`'s place in the chain: a whole file already there (left
/// by an interrupted sweep) adopted as it is, else `fresh`, written. A file there that is not
/// a whole segment for this place (never recorded, or the count check would have kept its
/// events) is replaced.
fn settle_file(dir: &Path, fresh: Segment) -> std::io::Result<Segment> {
    let Some(first_id) = fresh.manifest.first_id else {
        return Ok(fresh);
    };
    let path = dir.join(file_name(fresh.manifest.seq, first_id));
    for _ in 0..2 {
        if let Some(existing) = adoptable(&path, &fresh) {
            tracing::info!(file = %path.display(), "adopting a ledger segment an interrupted sweep wrote");
            return Ok(existing);
        }
        if create_durably(dir, &path, &fresh.bytes)? {
            return Ok(fresh);
        }
        // Something unusable is there: set it aside, then try again.
        let aside = dir.join(format!(
            ".unusable-{}-{}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            uuid::Uuid::new_v4().simple()
        ));
        match std::fs::rename(&path, &aside) {
            Ok(()) => {
                tracing::warn!(file = %aside.display(), "set aside an unusable ledger segment")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "{} keeps changing under the sweep",
        path.display()
    )))
}

/// Archives then trims the events older than the ledger window, a segment at a time.
pub(super) async fn archive(
    state: &Sweeper,
    config: &RetentionConfig,
    report: &mut SweepReport,
) -> StoreResult<()> {
    let Some(cutoff) = config.ledger.cutoff(state.clock.now()) else {
        return Ok(());
    };
    let store = state.store.retention();
    loop {
        let head = store.ledger_segments(true).await?.pop();
        let filter = EventFilter {
            after: head.as_ref().map_or(0, |h| h.last_id),
            limit: config.segment_events,
            // Only events no running transaction can still precede: the segment's id range
            // is final once cut.
            settled: true,
            ..Default::default()
        };
        let page = state.store.list_events(&filter).await?;
        let full = page.len() == config.segment_events as usize;
        let events: Vec<Event> = page.into_iter().take_while(|e| e.at < cutoff).collect();
        if events.is_empty() {
            return Ok(());
        }
        let reached_cutoff = events.len() < config.segment_events as usize;
        let seq = head.as_ref().map_or(1, |h| h.seq + 1);
        let fresh = render(&events, cutoff, seq, head.map(|h| h.manifest_sha256));
        let dir = config.archive_dir.clone();
        let segment = tokio::task::spawn_blocking(move || settle_file(&dir, fresh))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .map_err(io)?;
        let m = &segment.manifest;
        let (Some(first_id), Some(last_id)) = (m.first_id, m.last_id) else {
            return Ok(());
        };
        let recorded = store
            .record_segment(&LedgerSegment {
                seq: m.seq,
                first_id,
                last_id,
                count: m.count,
                sha256: m.sha256.clone(),
                manifest_sha256: segment.manifest_sha256.clone(),
                prev: m.prev.clone(),
                file: file_name(m.seq, first_id),
                archived_at: state.clock.now(),
            })
            .await;
        if let Err(err) = recorded {
            // Another sweep recorded this place first (it wrote or adopted the same file):
            // nothing to do. Anything else is an error, and nothing was trimmed.
            let moved_on = store
                .ledger_segments(true)
                .await?
                .first()
                .is_some_and(|h| h.seq >= m.seq);
            if moved_on {
                return Ok(());
            }
            return Err(err);
        }
        report.segments_written += 1;
        report.events_archived += m.count;
        metrics::counter!(crate::metrics::LEDGER_SEGMENTS_WRITTEN).increment(1);
        metrics::counter!(crate::metrics::LEDGER_EVENTS_ARCHIVED).increment(m.count);
        if reached_cutoff || !full {
            return Ok(());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn event(id: i64) -> Event {
        serde_json::from_value(serde_json::json!({
            "id": id, "type": "enqueued", "tenant": "default", "at": "2026-01-01T00:00:00Z",
            "data": {}
        }))
        .unwrap()
    }

    fn chain(dir: &Path) -> Vec<PathBuf> {
        let cutoff = Utc::now();
        let mut prev = None;
        let mut paths = Vec::new();
        for (seq, ids) in [(1, 1..=3), (2, 4..=5), (3, 6..=9)] {
            let events: Vec<Event> = ids.map(event).collect();
            let s = render(&events, cutoff, seq, prev.take());
            let path = dir.join(file_name(seq, events[0].id));
            assert!(create_durably(dir, &path, &s.bytes).unwrap());
            prev = Some(s.manifest_sha256);
            paths.push(path);
        }
        paths
    }

    fn temp() -> PathBuf {
        std::env::temp_dir().join(format!("leasehold-chain-{}", uuid::Uuid::new_v4().simple()))
    }

    #[test]
    fn a_chain_verifies_and_any_altered_byte_is_found() {
        let dir = temp();
        let paths = chain(&dir);
        let summary = verify_dir(&dir).unwrap();
        assert_eq!((summary.segments, summary.events), (3, 9));
        assert_eq!((summary.first_id, summary.last_id), (Some(1), Some(9)));
        let original = std::fs::read(&paths[1]).unwrap();
        // Every single byte of the middle segment matters, manifest line included.
        for at in 0..original.len() - 1 {
            let mut bytes = original.clone();
            bytes[at] ^= 0x01;
            std::fs::write(&paths[1], &bytes).unwrap();
            let err = verify_dir(&dir).unwrap_err();
            // Named directly, or as the segment the next one's `prev` no longer matches.
            assert!(
                err.contains("ledger-00000002") || err.contains("segment 2's manifest"),
                "byte {at}: {err}"
            );
        }
        std::fs::write(&paths[1], &original).unwrap();
        // A whole segment removed breaks the chain too.
        std::fs::remove_file(&paths[1]).unwrap();
        assert!(verify_dir(&dir).unwrap_err().contains("missing"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unrecorded_whole_segment_is_adopted_a_torn_one_rewritten() {
        let dir = temp();
        let cutoff = Utc::now();
        let events: Vec<Event> = (1..=3).map(event).collect();
        let first = render(&events, cutoff, 1, None);
        let path = dir.join(file_name(1, 1));
        assert!(create_durably(&dir, &path, &first.bytes).unwrap());
        // A later attempt sees more events, but the file already written for these ids wins.
        let more: Vec<Event> = (1..=5).map(event).collect();
        let adopted = settle_file(&dir, render(&more, cutoff, 1, None)).unwrap();
        assert_eq!(adopted.manifest.last_id, Some(3));
        assert_eq!(adopted.manifest_sha256, first.manifest_sha256);
        // A torn file is not adopted: it is replaced.
        std::fs::write(&path, &first.bytes[..20]).unwrap();
        let written = settle_file(&dir, render(&more, cutoff, 1, None)).unwrap();
        assert_eq!(written.manifest.last_id, Some(5));
        assert_eq!(std::fs::read(&path).unwrap(), written.bytes);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
