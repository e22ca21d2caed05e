//! The README's "Operating Leasehold" walkthrough, executed verbatim (only the port and the
//! temp paths change) against a real coordinator.
#![allow(clippy::unwrap_used, missing_docs)]

use leasehold_testkit::{Coordinator, workspace_root};

/// The `sh` blocks of a README section.
pub(crate) fn section_scripts(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let section = readme.split(heading).nth(1).expect("section");
    let section = section.split("\n## ").next().unwrap();
    section
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn operating_walkthrough_with_curl_works_verbatim() {
    let coord = Coordinator::spawn(None).await.unwrap();
    let port = coord.url.rsplit(':').next().unwrap().to_owned();
    let dir = std::env::temp_dir().join(format!("operating-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let script = section_scripts("## Operating Leasehold")[0]
        .replace("localhost:7070", &format!("localhost:{port}"))
        .replace("/tmp/", &format!("{}/", dir.display()));
    let out = tokio::process::Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(&script)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    let plan: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        plan["order"],
        serde_json::json!(["extract", "transform", "load"])
    );
    let run: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(run["status"], "pending");
    assert!(
        stdout.contains("event: run_created") && stdout.contains("id: "),
        "SSE frames: {stdout}"
    );
    let cancelled: serde_json::Value = serde_json::from_str(lines[lines.len() - 2]).unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    let manifest: serde_json::Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    assert_eq!(manifest["type"], "manifest");
    assert!(manifest["count"].as_u64().unwrap() >= 5, "{manifest}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn operating_walkthrough_with_the_cli_works_verbatim() {
    let coord = Coordinator::spawn(None).await.unwrap();
    let port = coord.url.rsplit(':').next().unwrap().to_owned();
    let dir = std::env::temp_dir().join(format!("operating-cli-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let scripts = section_scripts("## Operating Leasehold");
    // The DAG file comes from the first block; the CLI block follows.
    let setup = scripts[0].split("\n\n").next().unwrap().to_owned();
    let bin = leasehold_testkit::leasehold_bin().unwrap();
    // Temp paths first: the binary's own path may live under /tmp too.
    let script = format!("{setup}\n{}", scripts[1])
        .replace("/tmp/", &format!("{}/", dir.display()))
        .replace("./target/release/leasehold", &bin.display().to_string())
        .replace("localhost:7070", &format!("localhost:{port}"));
    let out = tokio::process::Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(&script)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}\n{stdout}");
    assert!(stdout.contains("nothing was created"), "plan: {stdout}");
    assert!(stdout.contains("run_created"), "events tail: {stdout}");
    assert!(stdout.contains("cancelled"), "cancel: {stdout}");
    assert!(stdout.contains("etl"), "queues list: {stdout}");
    assert!(
        stderr.contains("verified") || stdout.contains("verified"),
        "export verified: {stderr}{stdout}"
    );
    let ledger = std::fs::read_to_string(dir.join("ledger-cli.ndjson")).unwrap();
    assert!(ledger.lines().last().unwrap().contains("\"manifest\""));
    let _ = std::fs::remove_dir_all(dir);
}
