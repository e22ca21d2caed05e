//! Decoding the WebSocket frames that carry batches, without serde's detour.
//!
//! [`ClientMessage`] and [`ServerMessage`] are tagged by a `type` field inside the object, and
//! serde decodes such an enum by first copying the whole object into an untyped tree, then
//! decoding the variant from that tree: for a `leases` frame of 256 jobs the tree cost about a
//! quarter of the Rust SDK's CPU in the W1 benchmark (`perf`; bench/README.md). `from_json`
//! reads the tag alone first (skipping everything else without allocating), then decodes the
//! batch frames (`leases`, the acks, `outcomes`, `heartbeat`) straight from the text. Other
//! frames, and any frame the direct decoding refuses, take serde's own path, so what is accepted
//! and the error messages stay exactly serde's.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::lease::{HeartbeatItem, HeartbeatResult, Lease};
use crate::worker::{ClientMessage, OutcomeReport, OutcomeResult, ServerMessage};

/// The `type` of a frame; every other field is skipped.
#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct LeasesBody {
    leases: Vec<Lease>,
}

#[derive(Deserialize)]
struct OutcomesAckBody {
    seq: u64,
    results: Vec<OutcomeResult>,
}

#[derive(Deserialize)]
struct HeartbeatAckBody {
    seq: u64,
    leases: Vec<HeartbeatResult>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomesBody {
    // The tag, already read; named so that every other unknown key is refused, as on serde's path.
    #[serde(rename = "type")]
    _tag: serde::de::IgnoredAny,
    seq: u64,
    outcomes: Vec<OutcomeReport>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatBody {
    // The tag, already read; named so that every other unknown key is refused, as on serde's path.
    #[serde(rename = "type")]
    _tag: serde::de::IgnoredAny,
    seq: u64,
    leases: Vec<HeartbeatItem>,
}

/// The frame's `type`, if it has exactly one string `type` and is valid JSON.
fn tag(text: &str) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Tag<'_>>(text).ok().map(|t| t.kind)
}

/// `text` decoded as `B` and turned into the frame by `make`; `None` if it does not decode.
fn direct<B: DeserializeOwned, M>(text: &str, make: impl FnOnce(B) -> M) -> Option<M> {
    serde_json::from_str::<B>(text).ok().map(make)
}

impl ServerMessage {
    /// Decodes a coordinator frame; the same result as `serde_json::from_str`, faster for the
    /// batch frames.
    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        let fast = match tag(text).as_deref() {
            Some("leases") => direct(text, |b: LeasesBody| Self::Leases { leases: b.leases }),
            Some("outcomes_ack") => direct(text, |b: OutcomesAckBody| Self::OutcomesAck {
                seq: b.seq,
                results: b.results,
            }),
            Some("heartbeat_ack") => direct(text, |b: HeartbeatAckBody| Self::HeartbeatAck {
                seq: b.seq,
                leases: b.leases,
            }),
            _ => None,
        };
        fast.map_or_else(|| serde_json::from_str(text), Ok)
    }
}

impl ClientMessage {
    /// Decodes a worker frame; the same result as `serde_json::from_str`, faster for the batch
    /// frames.
    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        let fast = match tag(text).as_deref() {
            Some("outcomes") => direct(text, |b: OutcomesBody| Self::Outcomes {
                seq: b.seq,
                outcomes: b.outcomes,
            }),
            Some("heartbeat") => direct(text, |b: HeartbeatBody| Self::Heartbeat {
                seq: b.seq,
                leases: b.leases,
            }),
            _ => None,
        };
        fast.map_or_else(|| serde_json::from_str(text), Ok)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::{TimeZone, Utc};
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::error::{ErrorBody, ErrorCode};
    use crate::job::{Job, JobState};
    use crate::lease::{FailureInfo, HeartbeatStatus, RetryHints};
    use crate::worker::{OutcomeKind, OutcomeStatus};

    fn job() -> Job {
        serde_json::from_value(json!({
            "id": Uuid::now_v7(), "tenant": "default", "queue": "q", "kind": "k",
            "payload": {"n": 1, "s": "é\"\\n"}, "state": "leased", "priority": 0, "attempt": 1,
            "max_attempts": 3, "fencing_token": 7, "run_at": "2026-11-23T06:00:00Z",
            "created_at": "2026-11-23T06:00:00Z", "updated_at": "2026-11-23T06:00:00.123456Z",
            "inputs_hash": "sha256:00", "cancel_requested": false, "artifacts": [],
            "correlation_id": "c-1"
        }))
        .expect("a job")
    }

    fn server_frames() -> Vec<ServerMessage> {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 6, 0, 0).unwrap();
        vec![
            ServerMessage::Welcome {
                session_id: Uuid::now_v7(),
            },
            ServerMessage::Leases {
                leases: vec![Lease {
                    job: job(),
                    fencing_token: 7,
                    expires_at: at,
                    lease_ttl_ms: 30_000,
                    timeout_ms: Some(60_000),
                    deadline_at: Some(at),
                    attempt: 1,
                    checkpoint: Some(json!({"page": 2})),
                    retry: RetryHints {
                        max_attempts: 3,
                        backoff: None,
                    },
                }],
            },
            ServerMessage::Leases { leases: vec![] },
            ServerMessage::OutcomesAck {
                seq: 3,
                results: vec![OutcomeResult {
                    job_id: Uuid::now_v7(),
                    status: OutcomeStatus::LeaseLost,
                    state: Some(JobState::Succeeded),
                }],
            },
            ServerMessage::HeartbeatAck {
                seq: 4,
                leases: vec![HeartbeatResult {
                    job_id: Uuid::now_v7(),
                    status: HeartbeatStatus::Ok,
                    expires_at: Some(at),
                }],
            },
            ServerMessage::Error {
                seq: Some(5),
                error: ErrorBody {
                    code: ErrorCode::ValidationFailed,
                    message: "no".into(),
                    details: json!({}),
                    request_id: String::new(),
                },
            },
        ]
    }

    fn client_frames() -> Vec<ClientMessage> {
        vec![
            ClientMessage::Credit { n: 64 },
            ClientMessage::Drain,
            ClientMessage::Outcomes {
                seq: 9,
                outcomes: vec![
                    OutcomeReport {
                        job_id: Uuid::now_v7(),
                        fencing_token: 1,
                        outcome: OutcomeKind::Complete {
                            result: json!({"ok": true}),
                            artifacts: vec![],
                            manifest_digest: None,
                        },
                    },
                    OutcomeReport {
                        job_id: Uuid::now_v7(),
                        fencing_token: 2,
                        outcome: OutcomeKind::Fail {
                            error: FailureInfo {
                                class: "E".into(),
                                message: "m".into(),
                                retryable: true,
                            },
                            retry_at: None,
                        },
                    },
                    OutcomeReport {
                        job_id: Uuid::now_v7(),
                        fencing_token: 3,
                        outcome: OutcomeKind::Release,
                    },
                ],
            },
            ClientMessage::Heartbeat {
                seq: 10,
                leases: vec![HeartbeatItem {
                    job_id: Uuid::now_v7(),
                    fencing_token: 1,
                    progress: Some(json!(0.5)),
                    checkpoint: None,
                }],
            },
        ]
    }

    #[test]
    fn every_frame_decodes_as_serde_decodes_it() {
        for frame in server_frames() {
            let text = serde_json::to_string(&frame).unwrap();
            assert_eq!(ServerMessage::from_json(&text).unwrap(), frame, "{text}");
        }
        for frame in client_frames() {
            let text = serde_json::to_string(&frame).unwrap();
            assert_eq!(ClientMessage::from_json(&text).unwrap(), frame, "{text}");
        }
    }

    #[test]
    fn the_tag_may_come_anywhere() {
        let text = r#"{"results": [], "seq": 2, "type": "outcomes_ack"}"#;
        assert_eq!(
            ServerMessage::from_json(text).unwrap(),
            ServerMessage::OutcomesAck {
                seq: 2,
                results: vec![]
            }
        );
    }

    #[test]
    fn bad_frames_fail_as_serde_fails_them() {
        let bad = [
            r#"{"type": "outcomes", "seq": 1}"#,
            r#"{"type": "outcomes", "seq": 1, "outcomes": [{"job_id": "x"}]}"#,
            r#"{"type": "heartbeat", "seq": -1, "leases": []}"#,
            r#"{"type": "teleport"}"#,
            r#"{"seq": 1, "outcomes": []}"#,
            r#"{"type": "outcomes", "seq": 1, "outcomes": []} trailing"#,
            "[]",
        ];
        for text in bad {
            let fast = ClientMessage::from_json(text).unwrap_err().to_string();
            let serde = serde_json::from_str::<ClientMessage>(text)
                .unwrap_err()
                .to_string();
            assert_eq!(fast, serde, "{text}");
        }
        let text = r#"{"type": "leases", "leases": [{"fencing_token": 1}]}"#;
        assert_eq!(
            ServerMessage::from_json(text).unwrap_err().to_string(),
            serde_json::from_str::<ServerMessage>(text)
                .unwrap_err()
                .to_string()
        );
    }
}
