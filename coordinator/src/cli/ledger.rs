//! `leasehold ledger export`: streams `GET /v1/ledger/export` to a file and verifies the final
//! manifest line (event count, first and last id, sha256 of every byte before it).
//! `leasehold ledger verify`: checks the archived segments of a directory as one chain
//! (`crate::retention::archive::verify_dir`), without a coordinator.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use leasehold_proto::LedgerManifest;
use reqwest::Method;
use reqwest::header::ACCEPT;
use sha2::{Digest, Sha256};

use super::error::{CliError, CliResult};
use super::output;
use super::progress::{Progress, human_bytes};
use super::{Ctx, GlobalArgs};
use crate::blobs::hex;

/// `leasehold ledger …`.
#[derive(Debug, Args)]
pub struct LedgerArgs {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: LedgerCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LedgerCommand {
    /// Export the events of a time window as NDJSON, verified against the closing manifest.
    Export {
        /// Window start, inclusive (RFC 3339, e.g. 2026-11-22T00:00:00Z).
        #[arg(long, value_parser = parse_time)]
        from: DateTime<Utc>,
        /// Window end, exclusive (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        to: DateTime<Utc>,
        /// File to write (written as FILE.part, renamed once verified).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Verify archived ledger segments: each file against its manifest, and the chain of
    /// manifests (each names the digest of the previous one). Needs no coordinator.
    Verify {
        /// The coordinator's `--archive-dir` (or a copy of it).
        #[arg(long)]
        archive_dir: PathBuf,
    },
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 timestamp such as 2026-11-22T00:00:00Z ({e})"))
}

pub(crate) async fn run(ctx: &Ctx, command: LedgerCommand) -> CliResult {
    let (from, to, output) = match command {
        LedgerCommand::Export { from, to, output } => (from, to, output),
        LedgerCommand::Verify { archive_dir } => return verify(ctx, &archive_dir),
    };
    if from >= to {
        return Err(CliError::usage(format!(
            "--from ({}) must be before --to ({})",
            output::time(from),
            output::time(to)
        )));
    }
    let part = part_path(&output);
    let file = std::fs::File::create(&part)
        .map_err(|e| CliError::usage(format!("cannot create {}: {e}", part.display())))?;
    let result = tokio::select! {
        result = download(ctx, from, to, file, &part) => result,
        _ = tokio::signal::ctrl_c() => Err(CliError::Interrupted),
    };
    let (manifest, bytes) = match result {
        Ok(done) => done,
        Err(err) => {
            if matches!(err, CliError::Verify(_)) {
                eprintln!("the unverified download is left in {}", part.display());
            } else {
                let _ = std::fs::remove_file(&part);
            }
            return Err(err);
        }
    };
    std::fs::rename(&part, &output).map_err(|e| {
        CliError::usage(format!(
            "cannot move {} to {}: {e}",
            part.display(),
            output.display()
        ))
    })?;
    if ctx.json {
        return output::print_json(&manifest);
    }
    let ids = match (manifest.first_id, manifest.last_id) {
        (Some(a), Some(b)) => format!(", ids {a}..={b}"),
        _ => String::new(),
    };
    output::print(&format!(
        "exported {} events{ids} ({}) to {}\nverified: count and {} match the manifest",
        manifest.count,
        human_bytes(bytes),
        output.display(),
        manifest.sha256
    ))
}

fn verify(ctx: &Ctx, dir: &Path) -> CliResult {
    let summary = crate::retention::archive::verify_dir(dir).map_err(CliError::ArchiveVerify)?;
    if ctx.json {
        return output::print_json(&summary);
    }
    let ids = match (summary.first_id, summary.last_id) {
        (Some(a), Some(b)) => format!(", ids {a}..={b}"),
        _ => String::new(),
    };
    let head = summary.head.as_deref().unwrap_or("none");
    output::print(&format!(
        "verified {} segments in {}: {} events{ids}
chain head (the last manifest's digest;          compare with GET /v1/ledger/segments): {head}",
        summary.segments,
        dir.display(),
        summary.events
    ))
}

/// `FILE.part` beside `FILE`.
fn part_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    output.with_file_name(name)
}

/// Streams the export into `file`; returns the verified manifest and the byte count.
async fn download(
    ctx: &Ctx,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    file: std::fs::File,
    part: &Path,
) -> CliResult<(LedgerManifest, u64)> {
    let request = ctx
        .api
        .stream_request(Method::GET, "/v1/ledger/export")
        .header(ACCEPT, "application/x-ndjson")
        .query(&[
            ("from", from.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            ("to", to.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        ]);
    let url = ctx.api.url("/v1/ledger/export");
    let response = ctx.api.send(request).await?;
    let mut writer = std::io::BufWriter::with_capacity(256 * 1024, file);
    let write_err =
        |e: std::io::Error| CliError::usage(format!("cannot write {}: {e}", part.display()));
    let mut verifier = Verifier::default();
    let mut progress = Progress::new("ledger export");
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                progress.abandon();
                return Err(CliError::connect(&url, &e));
            }
        };
        writer.write_all(&chunk).map_err(write_err)?;
        verifier.feed(&chunk);
        progress.update(verifier.bytes, verifier.lines());
    }
    writer.flush().map_err(write_err)?;
    writer
        .into_inner()
        .map_err(|e| write_err(e.into_error()))?
        .sync_all()
        .map_err(write_err)?;
    let bytes = verifier.bytes;
    match verifier.finish() {
        Ok(manifest) => {
            progress.finish(bytes, manifest.count + 1);
            Ok((manifest, bytes))
        }
        Err(why) => {
            progress.abandon();
            Err(CliError::Verify(why))
        }
    }
}

/// Checks an NDJSON export as it streams past: every line but the last is an event and is
/// hashed; the last must be the manifest describing them.
#[derive(Default)]
struct Verifier {
    hasher: Sha256,
    /// Bytes seen in all.
    bytes: u64,
    /// Event lines hashed so far (every complete line but the one held back).
    hashed: u64,
    /// The most recent complete line: the manifest if nothing follows it.
    held: Option<Vec<u8>>,
    /// The line being received.
    current: Vec<u8>,
    first_id: Option<i64>,
    last_id: Option<i64>,
    /// The first event line that is not JSON with an integer `id`, if any.
    bad_line: Option<u64>,
}

impl Verifier {
    fn lines(&self) -> u64 {
        self.hashed + u64::from(self.held.is_some())
    }

    fn feed(&mut self, mut chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            self.current.extend_from_slice(&chunk[..=pos]);
            chunk = &chunk[pos + 1..];
            let line = std::mem::take(&mut self.current);
            if let Some(previous) = self.held.replace(line) {
                self.hash(&previous);
            }
        }
        self.current.extend_from_slice(chunk);
    }

    fn hash(&mut self, line: &[u8]) {
        self.hasher.update(line);
        self.hashed += 1;
        #[derive(serde::Deserialize)]
        struct Id {
            id: i64,
        }
        match serde_json::from_slice::<Id>(line) {
            Ok(Id { id }) => {
                self.first_id.get_or_insert(id);
                self.last_id = Some(id);
            }
            Err(_) => {
                self.bad_line.get_or_insert(self.hashed);
            }
        }
    }

    fn finish(mut self) -> Result<LedgerManifest, String> {
        if !self.current.is_empty() {
            let last = std::mem::take(&mut self.current);
            if let Some(previous) = self.held.replace(last) {
                self.hash(&previous);
            }
        }
        let Some(line) = self.held.take() else {
            return Err("the export is empty: no manifest line".to_owned());
        };
        let manifest: LedgerManifest = serde_json::from_slice(&line)
            .ok()
            .filter(|m: &LedgerManifest| m.kind == "manifest")
            .ok_or_else(|| {
                "the last line is not a manifest: the stream was cut short".to_owned()
            })?;
        if let Some(n) = self.bad_line {
            return Err(format!(
                "line {n} is not an event (JSON with an integer id)"
            ));
        }
        if manifest.count != self.hashed {
            return Err(format!(
                "the manifest counts {} events but {} arrived",
                manifest.count, self.hashed
            ));
        }
        let digest = format!("sha256:{}", hex(&self.hasher.finalize()));
        if manifest.sha256 != digest {
            return Err(format!(
                "the manifest says {} but the events hash to {digest}",
                manifest.sha256
            ));
        }
        if manifest.first_id != self.first_id || manifest.last_id != self.last_id {
            return Err(format!(
                "the manifest names ids {:?}..{:?} but the events run {:?}..{:?}",
                manifest.first_id, manifest.last_id, self.first_id, self.last_id
            ));
        }
        Ok(manifest)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn export(events: &[&str], tamper: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut body = Vec::new();
        for e in events {
            body.extend_from_slice(e.as_bytes());
            body.push(b'\n');
        }
        let mut manifest = serde_json::json!({
            "type": "manifest", "count": events.len(),
            "first_id": if events.is_empty() { None } else { Some(1) },
            "last_id": if events.is_empty() { None } else { Some(events.len()) },
            "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z",
            "sha256": format!("sha256:{}", hex(&Sha256::digest(&body))),
        });
        tamper(&mut manifest);
        body.extend_from_slice(manifest.to_string().as_bytes());
        body.push(b'\n');
        body
    }

    fn verify(bytes: &[u8], chunk: usize) -> Result<LedgerManifest, String> {
        let mut v = Verifier::default();
        for c in bytes.chunks(chunk) {
            v.feed(c);
        }
        v.finish()
    }

    #[test]
    fn a_whole_export_verifies_in_any_chunking() {
        let body = export(
            &[r#"{"id":1,"type":"a"}"#, r#"{"id":2,"type":"b"}"#],
            |_| {},
        );
        for chunk in [1, 3, 7, 1000] {
            let m = verify(&body, chunk).unwrap();
            assert_eq!((m.count, m.first_id, m.last_id), (2, Some(1), Some(2)));
        }
        let empty = export(&[], |_| {});
        assert_eq!(verify(&empty, 5).unwrap().count, 0);
        // A manifest line without its final newline still verifies.
        assert!(verify(&body[..body.len() - 1], 4).is_ok());
    }

    #[test]
    fn tampering_and_truncation_are_caught() {
        let events = [r#"{"id":1,"type":"a"}"#, r#"{"id":2,"type":"b"}"#];
        let wrong_count = export(&events, |m| m["count"] = 3.into());
        assert!(verify(&wrong_count, 8).unwrap_err().contains("counts 3"));
        let wrong_hash = export(&events, |m| {
            m["sha256"] = format!("sha256:{}", "0".repeat(64)).into()
        });
        assert!(verify(&wrong_hash, 8).unwrap_err().contains("hash"));
        let body = export(&events, |_| {});
        let cut = &body[..30];
        assert!(verify(cut, 8).unwrap_err().contains("not a manifest"));
        assert!(verify(b"", 8).unwrap_err().contains("empty"));
    }

    #[test]
    fn part_files_sit_beside_the_output() {
        assert_eq!(
            part_path(Path::new("/tmp/x.ndjson")),
            PathBuf::from("/tmp/x.ndjson.part")
        );
        assert_eq!(part_path(Path::new("x")), PathBuf::from("x.part"));
    }
}
