//! `include/leasehold.h` is generated from this crate by cbindgen and committed. This test
//! regenerates it in memory and fails when the committed file differs (a stale header).
//! `LEASEHOLD_BLESS=1 cargo test -p leasehold-c --test header` rewrites the file instead.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;

#[test]
fn header_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/lib.rs"))
        .generate()
        .unwrap()
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = root.join("include/leasehold.h");
    if std::env::var("LEASEHOLD_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: regenerate it with `LEASEHOLD_BLESS=1 cargo test -p leasehold-c --test header` \
         and commit it",
        path.display()
    );
}
