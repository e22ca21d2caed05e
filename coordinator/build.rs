//! Build-time inputs Cargo does not watch on its own:
//! - `migrations/`: `sqlx::migrate!` embeds the directory at compile time;
//! - `../console/assets/`: the web console's files, embedded whole (`src/http/console.rs`).
//!   This script lists them in `$OUT_DIR/console_assets.rs`, so a new file needs no code change.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../console/assets");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    // A coordinator without its console's page is a broken build, not a smaller one.
    assert!(
        files.iter().any(|f| f.ends_with("index.html")),
        "no console page at {}: the console's files (console/assets/) must be beside the crate",
        root.display()
    );
    let mut table = String::from("&[\n");
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .expect("under the assets folder")
            .to_string_lossy()
            .replace('\\', "/");
        let abs = file.canonicalize().expect("an asset's path");
        let _ = writeln!(table, "    ({rel:?}, include_bytes!({:?})),", abs.display());
    }
    table.push(']');
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("console_assets.rs");
    std::fs::write(out, table).expect("write the console's asset table");
}

/// Every file under `dir`, depth first (none for a missing folder: the caller then stops).
fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}
