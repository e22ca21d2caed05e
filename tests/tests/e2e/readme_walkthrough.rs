//! The README's curl walkthrough, executed verbatim (only the port changes) against a real
//! coordinator on a fresh SQLite database.
#![allow(clippy::unwrap_used, missing_docs)]

use leasehold_testkit::{Coordinator, workspace_root};

/// The first `sh` block after the walkthrough heading.
fn walkthrough_script() -> String {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let section = readme
        .split("## Walkthrough with curl")
        .nth(1)
        .expect("walkthrough section");
    let block = section.split("```sh\n").nth(1).expect("sh block");
    block.split("\n```").next().unwrap().to_owned()
}

#[tokio::test]
async fn readme_curl_walkthrough_works_verbatim() {
    let coord = Coordinator::spawn(None).await.unwrap();
    let port = coord.url.rsplit(':').next().unwrap().to_owned();
    let script = walkthrough_script().replace("localhost:7070", &format!("localhost:{port}"));
    let dir = std::env::temp_dir().join(format!("readme-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = tokio::process::Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script.replace("/tmp/lease.json", &dir.join("lease.json").to_string_lossy()))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "script failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    assert_eq!(lines[0]["state"], "queued");
    assert_eq!(lines[1]["leases"][0]["fencing_token"], 1);
    assert_eq!(lines[2]["state"], "succeeded");
    assert_eq!(lines[3]["result"]["delivered"], true);
    assert_eq!(lines[4]["queues"][0]["depth"]["succeeded"], 1);
    assert_eq!(lines[5]["error"]["code"], "lease_lost");
    let _ = std::fs::remove_dir_all(dir);
}
