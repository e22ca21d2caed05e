//! Where artifact blobs live on disk: content-addressed by their SHA-256 under the data
//! directory (`artifacts/sha256/<first two hex digits>/<the rest>`). The HTTP transfer
//! (`crate::http::artifacts`) and the outcome checks (`crate::leasing::checks`) share it.

use std::path::{Path, PathBuf};

/// Where the blob of `digest` (`sha256:<64 hex digits>`) lives under the data directory.
pub fn blob_path(root: &Path, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    root.join("artifacts")
        .join("sha256")
        .join(&hex[..2])
        .join(&hex[2..])
}

/// Lowercase hex of bytes (digests: every enqueue hashes its inputs, so no formatter per byte).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::hex;

    #[test]
    fn hex_is_two_lowercase_digits_per_byte_high_nibble_first() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xf0, 0xa5, 0xff]), "000ff0a5ff");
        let every: Vec<u8> = (0..=255).collect();
        let expected: String = every.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&every), expected);
    }
}
