//! Artifacts: content digests, name rules, manifests and streaming staging.
//!
//! - A digest is `sha256:<64 lowercase hex>` of the exact bytes ([`digest_bytes`],
//!   [`Sha256Stream`]).
//! - A job's manifest is its artifacts sorted by name, each `{name, digest, size, media_type}`;
//!   the manifest digest is the `sha256:` of the RFC 8785 (JCS) form of that JSON array
//!   ([`manifest_digest`]). `proto/vectors/` pins both.
//! - Names are relative, `/`-separated, at most 1024 bytes, with no empty, `.` or `..` segment, no
//!   leading `/`, no backslash and no NUL ([`validate_name`]), exactly as the coordinator checks
//!   them.
//!
//! Uploads go to `PUT /v1/artifacts/{digest}`, so the digest must be known before the body is
//! sent: [`stage`] copies the reader into a temporary file while hashing it (never holding the
//! whole content in memory), and the file is then streamed up.

use std::path::{Path, PathBuf};

use leasehold_proto::Artifact;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::idempotency::canonical_json;

/// Media type used when none is given.
pub const DEFAULT_MEDIA_TYPE: &str = "application/octet-stream";

/// Longest artifact name in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// Checks an artifact name against the coordinator's rules.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || name.starts_with('/')
        || name.contains('\0')
        || name.contains('\\')
        || name
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad {
        return Err(Error::InvalidArgument(format!(
            "artifact name {name:?} must be relative, '/'-separated, at most {MAX_NAME_BYTES} \
             bytes, without '..', '.', empty segments, a leading '/', backslashes or NUL"
        )));
    }
    Ok(())
}

/// Checks a media type the way the coordinator checks labels: 1-255 bytes, no control
/// characters.
pub fn validate_media_type(media_type: &str) -> Result<()> {
    if media_type.is_empty() || media_type.len() > 255 || media_type.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "media type {media_type:?} must be 1-255 bytes without control characters"
        )));
    }
    Ok(())
}

/// Whether `s` is `sha256:` followed by 64 lowercase hex digits.
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Incremental SHA-256 producing our digest format.
#[derive(Debug, Clone, Default)]
pub struct Sha256Stream {
    hasher: Sha256,
    size: u64,
}

impl Sha256Stream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// `sha256:<hex>` of everything fed.
    pub fn finish(self) -> String {
        hex_digest(&self.hasher.finalize())
    }
}

fn hex_digest(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(7 + 2 * bytes.len());
    out.push_str("sha256:");
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_bytes(bytes: &[u8]) -> String {
    hex_digest(&Sha256::digest(bytes))
}

/// `sha256:` of the JCS form of `value` (the coordinator's `inputs_hash` of a payload).
pub fn json_digest(value: &serde_json::Value) -> Result<String> {
    Ok(digest_bytes(&canonical_json(value)?))
}

/// The manifest: `artifacts` sorted by name. Fails on a bad or repeated name.
pub fn manifest(artifacts: &[Artifact]) -> Result<Vec<Artifact>> {
    let mut list = artifacts.to_vec();
    for a in &list {
        validate_name(&a.name)?;
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(w) = list.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(Error::InvalidArgument(format!(
            "artifact name {:?} is used twice in one job",
            w[0].name
        )));
    }
    Ok(list)
}

/// `sha256:` of the JCS form of the name-sorted manifest.
pub fn manifest_digest(artifacts: &[Artifact]) -> Result<String> {
    let sorted = manifest(artifacts)?;
    let value = serde_json::to_value(&sorted)
        .map_err(|e| Error::InvalidArgument(format!("cannot serialize the manifest: {e}")))?;
    json_digest(&value)
}

/// Content copied to a temporary file with its digest and size; the file is removed on drop.
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    /// `sha256:<hex>` of the content.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

impl Staged {
    /// Where the content is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copies `reader` into a new file under `dir` while hashing it, in 64 KiB chunks.
pub async fn stage<R: AsyncRead + Unpin>(reader: &mut R, dir: &Path) -> Result<Staged> {
    let path = dir.join(format!(
        ".leasehold-upload-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .await?;
    // From here on the guard removes the file, whatever happens.
    let mut staged = Staged {
        path,
        digest: String::new(),
        size: 0,
    };
    let mut hash = Sha256Stream::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        file.write_all(&buf[..n]).await?;
    }
    file.flush().await?;
    file.sync_data().await?;
    staged.size = hash.size();
    staged.digest = hash.finish();
    Ok(staged)
}

/// Digest and size of the file at `path`, read in 64 KiB chunks.
pub async fn digest_file(path: &Path) -> Result<(String, u64)> {
    let fail = |e| Error::file(path, e);
    let mut file = tokio::fs::File::open(path).await.map_err(fail)?;
    let mut hash = Sha256Stream::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).await.map_err(fail)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    let size = hash.size();
    Ok((hash.finish(), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "a/b.txt", "out/x/y", "...", "a..b"] {
            assert!(validate_name(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "", "/a", "a//b", "a/../b", "..", "./a", "a/", "a\0b", "a\\b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_name(&"a".repeat(1025)).is_err());
    }

    #[test]
    fn empty_digest() {
        assert_eq!(
            digest_bytes(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(is_digest(&digest_bytes(b"x")));
    }

    #[tokio::test]
    async fn staging_hashes_and_cleans_up() -> Result<()> {
        let data = vec![7u8; 200_000];
        let dir = std::env::temp_dir();
        let path;
        {
            let staged = stage(&mut data.as_slice(), &dir).await?;
            assert_eq!(staged.digest, digest_bytes(&data));
            assert_eq!(staged.size, 200_000);
            path = staged.path().to_path_buf();
            assert_eq!(std::fs::read(&path)?, data);
        }
        assert!(!path.exists());
        Ok(())
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let a = Artifact {
            name: "x".into(),
            digest: digest_bytes(b""),
            size: 0,
            media_type: DEFAULT_MEDIA_TYPE.into(),
        };
        assert!(manifest(&[a.clone(), a]).is_err());
    }
}
