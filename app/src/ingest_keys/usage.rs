//! What each ingest key did: requests and rows per hour over 7 days, and its source
//! addresses with their counts, so the blast radius of a leaked key can be read (who
//! used it, from where, how much, since when).
//!
//! The ingest routes count in memory ([`Usage::record`]: a lock and two map updates,
//! nothing on the request's way to the stores); each process adds its counts to
//! PostgreSQL every few seconds ([`Usage::flush`]), so replicas add up and a process
//! that dies loses at most those seconds of counts (never rows). Both tables are
//! pruned after [`KEPT`] ([`prune`]), and each key keeps its newest [`ADDRESSES`]
//! addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use time::OffsetDateTime;

use super::{KeySource, KeyUsage};
use crate::server::unix_ms;

/// How long usage is kept.
pub const KEPT: time::Duration = time::Duration::days(7);
/// Source addresses kept per key (the most recently seen).
pub const ADDRESSES: i64 = 100;
/// How often each process adds its counts to PostgreSQL.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Default)]
struct Counts {
    /// (key, hour) → (requests, rows).
    hours: HashMap<(i64, OffsetDateTime), (i64, i64)>,
    /// (key, address) → (requests, rows, first seen, last seen).
    sources: HashMap<(i64, String), (i64, i64, OffsetDateTime, OffsetDateTime)>,
}

/// This process's counts not yet in PostgreSQL.
#[derive(Clone, Default)]
pub struct Usage {
    counts: Arc<Mutex<Counts>>,
}

fn hour_of(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_time(time::Time::from_hms(at.hour(), 0, 0).unwrap_or(time::Time::MIDNIGHT))
}

impl Usage {
    /// Counts a request of key `key_id` from `address` that stored `rows` rows, at `at`.
    pub fn record(&self, key_id: i64, address: Option<IpAddr>, rows: i64, at: OffsetDateTime) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        let hour = counts.hours.entry((key_id, hour_of(at))).or_default();
        hour.0 += 1;
        hour.1 += rows;
        let address = address.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let source = counts
            .sources
            .entry((key_id, address))
            .or_insert((0, 0, at, at));
        source.0 += 1;
        source.1 += rows;
        source.3 = source.3.max(at);
    }

    fn take(&self) -> Counts {
        self.counts
            .lock()
            .map(|mut counts| std::mem::take(&mut *counts))
            .unwrap_or_default()
    }

    /// Puts counts a failed flush took back, added to what came since.
    fn restore(&self, taken: Counts) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        for (key, (requests, rows)) in taken.hours {
            let hour = counts.hours.entry(key).or_default();
            hour.0 += requests;
            hour.1 += rows;
        }
        for (key, (requests, rows, first, last)) in taken.sources {
            let source = counts.sources.entry(key).or_insert((0, 0, first, last));
            source.0 += requests;
            source.1 += rows;
            source.2 = source.2.min(first);
            source.3 = source.3.max(last);
        }
    }

    /// Adds this process's counts to PostgreSQL in one transaction; on failure they stay
    /// here for the next flush.
    pub async fn flush(&self, pg: &PgPool) -> Result<(), sqlx::Error> {
        let taken = self.take();
        if taken.hours.is_empty() {
            return Ok(());
        }
        match write(pg, &taken).await {
            Ok(()) => Ok(()),
            Err(error) => {
                self.restore(taken);
                Err(error)
            }
        }
    }
}

async fn write(pg: &PgPool, counts: &Counts) -> Result<(), sqlx::Error> {
    let mut tx = pg.begin().await?;
    // In key order, so two replicas flushing at once lock the same rows in one order.
    let mut hours: Vec<_> = counts.hours.iter().collect();
    hours.sort_by_key(|((key, hour), _)| (*key, *hour));
    for ((key_id, hour), (requests, rows)) in hours {
        sqlx::query!(
            "insert into ingest_key_usage (key_id, hour, requests, rows)
             select $1, $2, $3, $4 where exists (select 1 from ingest_keys where id = $1)
             on conflict (key_id, hour) do update
                set requests = ingest_key_usage.requests + excluded.requests,
                    rows = ingest_key_usage.rows + excluded.rows",
            key_id,
            hour,
            requests,
            rows
        )
        .execute(&mut *tx)
        .await?;
    }
    let mut sources: Vec<_> = counts.sources.iter().collect();
    sources.sort_by(|a, b| a.0.cmp(b.0));
    for ((key_id, address), (requests, rows, first, last)) in sources {
        sqlx::query!(
            "insert into ingest_key_sources (key_id, address, requests, rows, first_seen, last_seen)
             select $1, $2, $3, $4, $5, $6 where exists (select 1 from ingest_keys where id = $1)
             on conflict (key_id, address) do update
                set requests = ingest_key_sources.requests + excluded.requests,
                    rows = ingest_key_sources.rows + excluded.rows,
                    first_seen = least(ingest_key_sources.first_seen, excluded.first_seen),
                    last_seen = greatest(ingest_key_sources.last_seen, excluded.last_seen)",
            key_id,
            address,
            requests,
            rows,
            first,
            last
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Deletes usage older than [`KEPT`] at `now`, and each key's addresses beyond its
/// newest [`ADDRESSES`]. Returns the rows deleted.
pub async fn prune(pg: &PgPool, now: OffsetDateTime) -> Result<u64, sqlx::Error> {
    let cutoff = now - KEPT;
    let hours = sqlx::query!("delete from ingest_key_usage where hour < $1", cutoff)
        .execute(pg)
        .await?
        .rows_affected();
    let old = sqlx::query!(
        "delete from ingest_key_sources where last_seen < $1",
        cutoff
    )
    .execute(pg)
    .await?
    .rows_affected();
    let beyond = sqlx::query!(
        "delete from ingest_key_sources s using (
             select key_id, address, row_number() over (
                 partition by key_id order by last_seen desc, address) as n
               from ingest_key_sources) ranked
          where s.key_id = ranked.key_id and s.address = ranked.address and ranked.n > $1",
        ADDRESSES
    )
    .execute(pg)
    .await?
    .rows_affected();
    Ok(hours + old + beyond)
}

/// What key `key_id` did in the 7 days before `now` (as far as flushed).
pub async fn usage(
    pg: &PgPool,
    key_id: i64,
    now: OffsetDateTime,
) -> Result<Option<KeyUsage>, sqlx::Error> {
    let Some(key) = sqlx::query!(
        "select name, first_used_at, last_used_at from ingest_keys where id = $1",
        key_id
    )
    .fetch_optional(pg)
    .await?
    else {
        return Ok(None);
    };
    let hours = sqlx::query!(
        "select hour, requests, rows from ingest_key_usage
          where key_id = $1 and hour >= $2 order by hour",
        key_id,
        hour_of(now) - KEPT
    )
    .fetch_all(pg)
    .await?;
    let sources = sqlx::query!(
        "select address, requests, rows, first_seen, last_seen from ingest_key_sources
          where key_id = $1 order by last_seen desc, address limit $2",
        key_id,
        ADDRESSES
    )
    .fetch_all(pg)
    .await?;
    Ok(Some(KeyUsage {
        now_ms: unix_ms(now),
        key_id,
        name: key.name,
        first_used_ms: key.first_used_at.map(unix_ms),
        last_used_ms: key.last_used_at.map(unix_ms),
        requests: hours.iter().map(|h| h.requests).sum(),
        rows: hours.iter().map(|h| h.rows).sum(),
        hours: hours
            .iter()
            .map(|h| (unix_ms(h.hour), h.requests, h.rows))
            .collect(),
        sources: sources
            .into_iter()
            .map(|s| KeySource {
                address: s.address,
                requests: s.requests,
                rows: s.rows,
                first_seen_ms: unix_ms(s.first_seen),
                last_seen_ms: unix_ms(s.last_seen),
            })
            .collect(),
    }))
}

impl crate::server::AppState {
    /// This process's ingest key usage not yet flushed.
    pub fn key_usage(&self) -> &Usage {
        self.part()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn requests_add_up_per_hour_and_per_address() {
        let usage = Usage::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        usage.record(1, Some(a), 10, datetime!(2026-12-07 10:05 UTC));
        usage.record(1, Some(a), 5, datetime!(2026-12-07 10:59 UTC));
        usage.record(1, Some(b), 1, datetime!(2026-12-07 11:00 UTC));
        let counts = usage.take();
        assert_eq!(counts.hours[&(1, datetime!(2026-12-07 10:00 UTC))], (2, 15));
        assert_eq!(counts.hours[&(1, datetime!(2026-12-07 11:00 UTC))], (1, 1));
        let from_a = counts.sources[&(1, "10.0.0.1".to_owned())];
        assert_eq!((from_a.0, from_a.1), (2, 15));
        assert_eq!(from_a.2, datetime!(2026-12-07 10:05 UTC));
        assert_eq!(from_a.3, datetime!(2026-12-07 10:59 UTC));
        // A failed flush puts them back, added to what came since.
        usage.record(1, Some(a), 1, datetime!(2026-12-07 10:30 UTC));
        usage.restore(counts);
        let again = usage.take();
        assert_eq!(again.hours[&(1, datetime!(2026-12-07 10:00 UTC))], (3, 16));
        assert_eq!(again.sources[&(1, "10.0.0.1".to_owned())].0, 3);
    }
}
