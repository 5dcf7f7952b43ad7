//! Peak memory of a burst of password checks: `make bench-sign-in`.
//!
//! Runs 300 concurrent argon2id checks (each holds 19 MiB while it runs) through the
//! process's password gate and prints how far the resident set grew, for the gate's
//! default size and for a gate as wide as the burst (what Salvage did before it had
//! one). Each size runs in its own process, because the peak (`VmHWM`) only grows.

use std::time::{Duration, Instant};

use secrecy::SecretString;

const BURST: usize = 300;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn one_burst(permits: usize) -> anyhow::Result<()> {
    app::auth::ssr::configure_password_gate(permits, Duration::from_secs(600));
    let stored = app::auth::ssr::hash_password(SecretString::from("correct horse battery staple"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let before = peak_rss_kib();
    let started = Instant::now();
    let checks = (0..BURST).map(|_| {
        let stored = stored.clone();
        tokio::spawn(async move {
            app::auth::ssr::verify_password(SecretString::from("a wrong guess"), Some(stored)).await
        })
    });
    for check in futures_join(checks.collect()).await {
        check??;
    }
    let grew = peak_rss_kib().saturating_sub(before);
    let gate = app::auth::ssr::password_gate();
    println!(
        "  {BURST} concurrent checks, {:>3} permits: peak resident memory +{:>6.0} MiB, \
         {:>5.1} s, at most {} ran at once",
        permits,
        grew as f64 / 1024.0,
        started.elapsed().as_secs_f64(),
        gate.peak()
    );
    Ok(())
}

async fn futures_join<T>(
    handles: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await);
    }
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    if let Some(permits) = std::env::args().nth(1).and_then(|a| a.parse().ok()) {
        return one_burst(permits).await;
    }
    let default = app::auth::ssr::default_password_permits();
    println!(
        "Sign-in burst benchmark: {BURST} wrong passwords checked at once (argon2id, 19 MiB each)"
    );
    for permits in [default, BURST] {
        let status = std::process::Command::new(std::env::current_exe()?)
            .arg(permits.to_string())
            .status()?;
        anyhow::ensure!(status.success(), "the run with {permits} permits failed");
    }
    Ok(())
}
