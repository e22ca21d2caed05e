//! The per-address rate limit (`--rate-limit-window-ms` + `--rate-limit-max`, the variables
//! `RATE_LIMIT_WINDOW_MS` + `RATE_LIMIT_MAX` of the replaced service): at most `max` requests
//! per address in each window, then 429 `rate_limited` with `Retry-After`.
//!
//! Its cost stays bounded whatever the traffic:
//! - windows are aligned for everyone (`now / window`), so the whole table is dropped when one
//!   ends instead of being scanned entry by entry;
//! - an IPv6 client is counted by its /64 (one host usually holds the whole prefix, and could
//!   otherwise use a fresh address per request);
//! - at most [`MAX_TRACKED`] addresses are counted apart in a window; past that, newcomers share
//!   one budget, so a flood of addresses cannot grow memory.
//!
//! It is the outermost layer, so everything counts — CORS preflights (`OPTIONS`), requests the
//! guard or the cross-site checks refuse — except the probes (`/health`, `/ready`, `/metrics`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use leasehold_proto::ErrorCode;

use crate::error::ApiError;

/// Addresses counted apart in one window.
pub(crate) const MAX_TRACKED: usize = 65_536;

/// Who a request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    V4([u8; 4]),
    /// The /64 prefix.
    V6([u8; 8]),
    /// Every address past [`MAX_TRACKED`].
    Overflow,
}

fn client(ip: IpAddr) -> Client {
    match ip {
        IpAddr::V4(v4) => Client::V4(v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Client::V4(v4.octets()),
            None => {
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                Client::V6(prefix)
            }
        },
    }
}

#[derive(Debug, Default)]
struct Window {
    /// Which window (`elapsed / window`).
    index: u64,
    counts: HashMap<Client, u32>,
}

/// The limiter: its settings and the current window's counts.
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    window: Duration,
    max: u32,
    started: Instant,
    current: Arc<Mutex<Window>>,
}

impl RateLimiter {
    /// At most `max` requests per address per `window`.
    pub(crate) fn new(window: Duration, max: u32) -> Self {
        Self {
            window: window.max(Duration::from_millis(1)),
            max,
            started: Instant::now(),
            current: Arc::default(),
        }
    }

    /// Counts a request from `ip` at `now`; `Some(retry_after)` when over budget.
    fn over_limit(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let elapsed = now.duration_since(self.started);
        let window_ns = self.window.as_nanos().max(1);
        let index = u64::try_from(elapsed.as_nanos() / window_ns).unwrap_or(u64::MAX);
        let mut w = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if w.index != index {
            *w = Window {
                index,
                counts: HashMap::new(),
            };
        }
        let mut who = client(ip);
        if !w.counts.contains_key(&who) && w.counts.len() >= MAX_TRACKED {
            who = Client::Overflow;
        }
        let count = w.counts.entry(who).or_insert(0);
        *count = count.saturating_add(1);
        if *count <= self.max {
            return None;
        }
        let ends = self.window.mul_f64((index + 1) as f64);
        Some(ends.saturating_sub(elapsed))
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .counts
            .len()
    }
}

/// The middleware (outermost; a no-op without a limiter).
pub(crate) async fn limit(
    State(limiter): State<Option<RateLimiter>>,
    req: Request,
    next: Next,
) -> Response {
    // Probes must never read 429: a failed liveness probe restarts the coordinator.
    let probe = super::access::is_open(req.uri().path());
    let Some(limiter) = limiter.filter(|_| !probe) else {
        return next.run(req).await;
    };
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let Some(retry) = limiter.over_limit(ip, Instant::now()) else {
        return next.run(req).await;
    };
    let secs = retry.as_secs_f64().ceil().max(1.0) as u64;
    // Outside the layers that render errors and stamp request ids: do both here.
    let request_id = req
        .headers()
        .get(leasehold_proto::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let err = ApiError::new(
        ErrorCode::RateLimited,
        format!("too many requests; retry in {secs} s"),
    )
    .with_details(serde_json::json!({"retry_after_seconds": secs}));
    let mut response = super::render_error(err, &request_id);
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        headers.insert(leasehold_proto::REQUEST_ID_HEADER, id);
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_per_address_per_window() {
        let l = RateLimiter::new(Duration::from_secs(10), 2);
        let t0 = l.started;
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(l.over_limit(a, t0).is_none());
        assert!(l.over_limit(a, t0 + Duration::from_secs(1)).is_none());
        assert_eq!(
            l.over_limit(a, t0 + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        assert!(l.over_limit(b, t0 + Duration::from_secs(4)).is_none());
        // The next window starts afresh, and the old table is gone at once.
        assert!(l.over_limit(a, t0 + Duration::from_secs(10)).is_none());
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn an_ipv6_host_cannot_dodge_it_with_fresh_addresses() {
        let l = RateLimiter::new(Duration::from_secs(10), 3);
        let t0 = l.started;
        let over = (0..4)
            .filter(|i| {
                let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
                l.over_limit(ip, t0).is_some()
            })
            .count();
        assert_eq!(over, 1);
        let mapped: IpAddr = "::ffff:10.0.0.9".parse().unwrap();
        let plain: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(client(mapped), client(plain));
    }

    #[test]
    fn a_flood_of_addresses_shares_one_budget_past_the_cap() {
        let l = RateLimiter::new(Duration::from_secs(10), 1);
        let t0 = l.started;
        for i in 0..MAX_TRACKED as u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            assert!(l.over_limit(ip, t0).is_none());
        }
        let late: IpAddr = "203.0.113.1".parse().unwrap();
        let later: IpAddr = "203.0.113.2".parse().unwrap();
        assert!(l.over_limit(late, t0).is_none());
        assert!(
            l.over_limit(later, t0).is_some(),
            "they share the overflow budget"
        );
        assert_eq!(l.tracked(), MAX_TRACKED + 1);
    }
}
