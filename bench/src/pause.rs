//! W3's job body: a wait as precise as a thread's sleep that costs what waiting on a socket
//! costs (bench/README.md, "W3's job body").
//!
//! Tokio's `sleep` rounds up to its timer's 1-ms tick (10 ms lasts 11.1 ms on average), and a
//! thread's sleep on the blocking pool costs two thread hand-offs per job (the pool's thread
//! woken, then the task): at 10 000 jobs/s a third of a core on this 2-core machine, counted
//! against whatever shares it. A `timerfd` is a kernel timer with the thread's precision that
//! the runtime polls with its sockets, so a job waiting on it is what an async job waiting on a
//! reply is: one readiness event, no thread of its own.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Waits `duration` on a one-shot monotonic `timerfd` registered with the Tokio runtime for this
/// wait alone (created, registered, deregistered and closed each time; [`Timers`] keeps them).
pub async fn pause(duration: Duration) -> io::Result<()> {
    if duration.is_zero() {
        // A zero `it_value` disarms the timer instead of firing it.
        return Ok(());
    }
    let fd = timer()?;
    arm(&fd, duration)?;
    wait(&fd).await
}

/// One-shot monotonic timers kept registered with the runtime between waits, as a job's
/// connection to what it waits on is kept between requests: a wait is then one `settime`,
/// one readiness event and one `read`, without the four calls that create, register,
/// deregister and close a timer (bench/README.md, "W3's job body"). Cheap to clone; the
/// clones share the idle timers. Use it within one Tokio runtime: its timers are registered
/// with that runtime's reactor.
#[derive(Debug, Clone, Default)]
pub struct Timers {
    idle: Arc<Mutex<Vec<AsyncFd<OwnedFd>>>>,
}

impl Timers {
    /// No timers yet; each wait takes an idle one or makes one.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits `duration` on an idle timer (or a new one), which is idle again afterwards. A
    /// timer whose wait failed or was cancelled is closed instead.
    pub async fn pause(&self, duration: Duration) -> io::Result<()> {
        if duration.is_zero() {
            return Ok(());
        }
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let fd = match idle {
            Some(fd) => fd,
            None => timer()?,
        };
        arm(&fd, duration)?;
        wait(&fd).await?;
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(fd);
        Ok(())
    }
}

/// A disarmed one-shot monotonic timer, registered with the current runtime.
fn timer() -> io::Result<AsyncFd<OwnedFd>> {
    let fd = timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
    )?;
    // Deprecated because a registered value could close its descriptor behind the reactor's
    // back; an `OwnedFd` closes it only when dropped, after deregistration. (The replacement,
    // `register_with_interest`, is `unsafe`, which this workspace forbids.)
    #[allow(deprecated)]
    AsyncFd::with_interest(fd, Interest::READABLE)
}

/// Arms `fd` to fire once, `duration` from now.
fn arm(fd: &AsyncFd<OwnedFd>, duration: Duration) -> io::Result<()> {
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let spec = Itimerspec {
        it_interval: zero,
        it_value: Timespec {
            tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(duration.subsec_nanos()),
        },
    };
    timerfd_settime(fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
    Ok(())
}

/// Waits until the armed `fd` fires and reads its expiration count, leaving it disarmed and
/// not readable.
async fn wait(fd: &AsyncFd<OwnedFd>) -> io::Result<()> {
    loop {
        let mut ready = fd.readable().await?;
        let mut expirations = [0u8; 8];
        match ready.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut expirations)?)) {
            Ok(read) => {
                // A one-shot timer is readable again only once armed again, after this: the
                // next wait must not take this expiry's readiness for its own.
                ready.clear_ready();
                return read.map(drop);
            }
            // Spurious readiness: the timer has not fired yet.
            Err(_would_block) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn a_pause_never_ends_early() {
        // A monotonic timer never fires early; how late it wakes is the benchmark's to measure.
        for _ in 0..5 {
            let started = Instant::now();
            pause(Duration::from_millis(10)).await.expect("pause");
            let took = started.elapsed();
            assert!(took >= Duration::from_millis(10), "woke early: {took:?}");
        }
    }

    #[tokio::test]
    async fn a_zero_pause_returns_at_once() {
        pause(Duration::ZERO).await.expect("pause");
        Timers::new().pause(Duration::ZERO).await.expect("pause");
    }

    #[tokio::test]
    async fn a_timer_kept_between_waits_never_ends_one_early() {
        // The second wait on the same timer must not end on the first one's expiry.
        let timers = Timers::new();
        for ms in [10, 30, 10] {
            let started = Instant::now();
            timers
                .pause(Duration::from_millis(ms))
                .await
                .expect("pause");
            let took = started.elapsed();
            assert!(took >= Duration::from_millis(ms), "woke early: {took:?}");
        }
        assert_eq!(
            timers.idle.lock().expect("idle").len(),
            1,
            "one timer, kept"
        );
    }
}
