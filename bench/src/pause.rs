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
use std::time::Duration;

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Waits `duration` on a one-shot monotonic `timerfd` registered with the Tokio runtime.
pub async fn pause(duration: Duration) -> io::Result<()> {
    if duration.is_zero() {
        // A zero `it_value` disarms the timer instead of firing it.
        return Ok(());
    }
    let fd = timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
    )?;
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
    timerfd_settime(&fd, TimerfdTimerFlags::empty(), &spec)?;
    // Deprecated because a registered value could close its descriptor behind the reactor's
    // back; an `OwnedFd` closes it only when dropped, after deregistration. (The replacement,
    // `register_with_interest`, is `unsafe`, which this workspace forbids.)
    #[allow(deprecated)]
    let fd = AsyncFd::with_interest(fd, Interest::READABLE)?;
    loop {
        let mut ready = fd.readable().await?;
        let mut expirations = [0u8; 8];
        match ready.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut expirations)?)) {
            Ok(read) => return read.map(drop),
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
    }
}
