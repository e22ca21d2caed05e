//! What W3's job body costs (bench/README.md, "W3's job body"): `pause_cost [WAITERS] [WAITS]`
//! runs WAITERS tasks that each wait WAITS times for 10 ms with each of the four bodies the
//! README compares, and prints each one's mean wait and the process's CPU per wait.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// This process's user + system CPU so far, in seconds.
fn cpu_secs() -> Result<f64> {
    leasehold_bench::procstat::cpu_secs(std::process::id()).context("reading /proc/self/stat")
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let waiters: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    let waits: u32 = args.next().map_or(Ok(100), |a| a.parse())?;
    let d = Duration::from_millis(10);
    let timers = leasehold_bench::pause::Timers::new();
    for body in [
        "timerfd kept between waits",
        "timerfd per wait",
        "thread sleep on the blocking pool",
        "tokio::time::sleep",
    ] {
        let cpu = cpu_secs()?;
        let tasks: Vec<_> = (0..waiters)
            .map(|_| {
                let timers = timers.clone();
                tokio::spawn(async move {
                    let mut waited = Duration::ZERO;
                    for _ in 0..waits {
                        let started = Instant::now();
                        match body {
                            "timerfd kept between waits" => timers.pause(d).await?,
                            "timerfd per wait" => leasehold_bench::pause::pause(d).await?,
                            "tokio::time::sleep" => tokio::time::sleep(d).await,
                            _ => tokio::task::spawn_blocking(move || std::thread::sleep(d)).await?,
                        }
                        waited += started.elapsed();
                    }
                    anyhow::Ok(waited)
                })
            })
            .collect();
        let mut waited = Duration::ZERO;
        for task in tasks {
            waited += task.await??;
        }
        let n = (waiters * waits as usize) as f64;
        println!(
            "{body}: mean wait {:.2} ms, CPU {:.0} µs per wait",
            waited.as_secs_f64() * 1e3 / n,
            (cpu_secs()? - cpu) * 1e6 / n
        );
    }
    Ok(())
}
