//! PostgreSQL down cannot be stored in PostgreSQL. Each process watches it instead: a
//! probe every few seconds (and every request the guard sees fail) notes when it stopped
//! answering; the pages, the session layer and the store deadline say so from here
//! ("not answering since 10:41"); when it answers again, the outage waits here until the
//! alerts' self-monitor records it as a resolved `postgres_down` alert with its measured
//! duration. Infrastructure: it knows PostgreSQL and the clock, no feature.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

/// Ended outages kept for the self-monitor at most (a flapping link must not grow this).
const KEEP_ENDED: usize = 32;

#[derive(Default)]
struct Inner {
    since: Option<OffsetDateTime>,
    ended: Vec<(OffsetDateTime, OffsetDateTime)>,
}

/// This process's view of PostgreSQL's availability. Cheap to clone.
#[derive(Clone, Default)]
pub struct PostgresWatch(Arc<Mutex<Inner>>);

impl PostgresWatch {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// PostgreSQL did not answer at `at`.
    pub fn failed(&self, at: OffsetDateTime) {
        let mut inner = self.inner();
        if inner.since.is_none() {
            tracing::warn!("PostgreSQL stopped answering");
            inner.since = Some(at);
        }
    }

    /// PostgreSQL answered at `at`: an outage in progress ends.
    pub fn answered(&self, at: OffsetDateTime) {
        let mut inner = self.inner();
        if let Some(since) = inner.since.take() {
            tracing::warn!(
                seconds = (at - since).whole_seconds(),
                "PostgreSQL answers again"
            );
            if inner.ended.len() >= KEEP_ENDED {
                inner.ended.remove(0);
            }
            inner.ended.push((since, at));
        }
    }

    /// Since when PostgreSQL has not answered, if it is down now.
    pub fn down_since(&self) -> Option<OffsetDateTime> {
        self.inner().since
    }

    /// The outages that ended and are not recorded yet (the self-monitor takes them).
    pub fn take_ended(&self) -> Vec<(OffsetDateTime, OffsetDateTime)> {
        std::mem::take(&mut self.inner().ended)
    }

    /// Gives back outages the self-monitor could not record (its transaction failed).
    pub fn put_back(&self, outages: Vec<(OffsetDateTime, OffsetDateTime)>) {
        let mut inner = self.inner();
        let mut outages = outages;
        outages.append(&mut inner.ended);
        outages.truncate(KEEP_ENDED);
        inner.ended = outages;
    }

    /// The sentence every page shows while PostgreSQL is down.
    pub fn sentence(since: OffsetDateTime) -> String {
        format!(
            "PostgreSQL is not answering since {}: alerts cannot be recorded; ingest parks \
             nothing (rows go to ClickHouse or are refused). Salvage works again as soon as \
             PostgreSQL does.",
            crate::format::format_utc(crate::server::unix_ms(since))
        )
    }
}

/// Probes PostgreSQL every `every`, for as long as the caller polls it (`salvage serve`
/// runs it until shutdown).
pub async fn watch(state: crate::server::AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let probe = sqlx::query("select 1").execute(&state.pg);
        let answered = matches!(
            tokio::time::timeout(state.probe_timeout, probe).await,
            Ok(Ok(_))
        );
        let now = state.clock.now();
        if answered {
            state.postgres_watch.answered(now);
        } else {
            state.postgres_watch.failed(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_kept_from_its_first_failure_until_the_monitor_takes_it() {
        let watch = PostgresWatch::default();
        let t0 = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        watch.answered(t0);
        assert!(watch.take_ended().is_empty(), "no outage without a failure");
        watch.failed(t0);
        watch.failed(t0 + time::Duration::seconds(5));
        assert_eq!(
            watch.down_since(),
            Some(t0),
            "the first failure is the start"
        );
        watch.answered(t0 + time::Duration::seconds(42));
        assert_eq!(watch.down_since(), None);
        assert_eq!(
            watch.take_ended(),
            vec![(t0, t0 + time::Duration::seconds(42))]
        );
        assert!(watch.take_ended().is_empty(), "taken once");
    }
}
