//! The probes behind [`StoresHealth`](super::StoresHealth).

use std::future::Future;
use std::time::{Duration, Instant};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{StoreCheck, StoresHealth};
use crate::server::AppState;

/// Runs `probe` with a deadline and turns its outcome into a [`StoreCheck`].
pub async fn timed_probe<E, F>(timeout: Duration, probe: F) -> StoreCheck
where
    E: std::fmt::Display,
    F: Future<Output = Result<(), E>>,
{
    let started = Instant::now();
    match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(())) => StoreCheck {
            ok: true,
            latency_ms: Some(round_ms(started.elapsed())),
            error: None,
        },
        Ok(Err(error)) => StoreCheck {
            ok: false,
            latency_ms: None,
            error: Some(first_line(&error.to_string())),
        },
        Err(_) => StoreCheck {
            ok: false,
            latency_ms: None,
            error: Some(format!("no answer within {} ms", timeout.as_millis())),
        },
    }
}

/// Asks PostgreSQL `select 1`.
pub async fn check_postgres(state: &AppState) -> StoreCheck {
    timed_probe(state.probe_timeout, async {
        sqlx::query("select 1").execute(&state.pg).await.map(drop)
    })
    .await
}

/// Asks ClickHouse `SELECT 1`.
pub async fn check_clickhouse(state: &AppState) -> StoreCheck {
    timed_probe(state.probe_timeout, state.clickhouse.ping()).await
}

/// Probes both stores concurrently, so the slower one bounds the wait, not the sum.
pub async fn check_stores(state: &AppState) -> StoresHealth {
    let (postgres, clickhouse) = tokio::join!(check_postgres(state), check_clickhouse(state));
    StoresHealth {
        postgres,
        clickhouse,
        checked_at: OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default(),
        version: state.version.to_owned(),
    }
}

fn round_ms(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Error texts from drivers can span lines; a health report wants one short sentence.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(240).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_probe_that_answers_reports_its_latency() {
        let check = timed_probe(Duration::from_secs(1), async { Ok::<(), String>(()) }).await;
        assert!(check.ok);
        assert!(check.latency_ms.is_some());
        assert_eq!(check.error, None);
    }

    #[tokio::test]
    async fn a_probe_that_fails_has_no_latency_and_says_why() {
        let check = timed_probe(Duration::from_secs(1), async {
            Err::<(), _>("connection refused\nsecond line")
        })
        .await;
        assert!(!check.ok);
        assert_eq!(check.latency_ms, None);
        assert_eq!(check.error.as_deref(), Some("connection refused"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_hangs_is_cut_off_at_the_timeout() {
        let check = timed_probe(Duration::from_millis(500), async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<(), String>(())
        })
        .await;
        assert!(!check.ok);
        assert_eq!(check.error.as_deref(), Some("no answer within 500 ms"));
    }
}
