//! The figures of `/admin/queues` and `/health/deep`, each cheap at any queue depth.
//!
//! - depth: the `fallback_depths` view, kept exact by statement triggers (the folded
//!   base plus the few deltas since the last fold, never a `count(*)`);
//! - oldest row: `min(queued_at)` from the `queued_at` index (one index probe);
//! - rows expiring within 24 h: an index range count stopped at [`EXPIRING_CAP`];
//! - last error: stored on the counter row by ingest and replay.

use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;

use super::super::{DepthSample, Queue, QueueStats, EXPIRING_CAP};
use crate::server::unix_ms;

/// `(queue, depth)` of both queues, from the counters.
pub async fn queue_depths(pg: &PgPool) -> Result<Vec<(Queue, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select queue as "queue!", depth as "depth!" from fallback_depths order by queue desc"#
    )
    .fetch_all(pg)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Queue::parse(&r.queue).map(|q| (q, r.depth)))
        .collect())
}

/// When the oldest row of `queue` arrived, if any.
pub async fn oldest_queued_at(
    pg: &PgPool,
    queue: Queue,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    sqlx::query_scalar(&format!("select min(queued_at) from {}", queue.table()))
        .fetch_one(pg)
        .await
}

/// Rows of both queues that arrived after `since` (an index range on `queued_at`): what
/// a backup taken at `since` does not hold and ClickHouse does not have yet.
pub async fn queued_since(pg: &PgPool, since: OffsetDateTime) -> Result<i64, sqlx::Error> {
    let mut total = 0;
    for queue in Queue::ALL {
        let rows: i64 = sqlx::query_scalar(&format!(
            "select count(*) from {} where queued_at > $1",
            queue.table()
        ))
        .bind(since)
        .fetch_one(pg)
        .await?;
        total += rows;
    }
    Ok(total)
}

/// Every figure of one queue, for a TTL of `ttl` at `now`.
pub async fn queue_stats(
    pg: &PgPool,
    ttl: Duration,
    now: OffsetDateTime,
) -> Result<Vec<QueueStats>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select queue as "queue!", depth as "depth!", last_error, last_error_at
             from fallback_depths order by queue desc"#
    )
    .fetch_all(pg)
    .await?;
    let expiring_before = now - ttl + time::Duration::hours(24);
    let mut stats = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(queue) = Queue::parse(&row.queue) else {
            continue;
        };
        let oldest = oldest_queued_at(pg, queue).await?;
        let expiring: i64 = if row.depth == 0 {
            0
        } else {
            sqlx::query_scalar(&format!(
                // ORDER BY makes the plan an index range scan even before the table
                // has statistics (without it: a 150 ms sequential scan at 1M rows).
                "select count(*) from (select 1 from {} where queued_at < $1 order by queued_at limit $2) s",
                queue.table()
            ))
            .bind(expiring_before)
            .bind(EXPIRING_CAP + 1)
            .fetch_one(pg)
            .await?
        };
        stats.push(QueueStats {
            queue,
            depth: row.depth,
            oldest_queued_at: oldest.map(unix_ms),
            expiring_24h: expiring,
            last_error: row.last_error,
            last_error_at: row.last_error_at.map(unix_ms),
        });
    }
    Ok(stats)
}

/// Folds the depth deltas, records the current depth of both queues, and drops samples
/// older than 8 days.
pub async fn sample_depths(pg: &PgPool, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    sqlx::query!("select fold_fallback_depths()")
        .execute(pg)
        .await?;
    sqlx::query!(
        "insert into fallback_depth_samples (queue, depth, sampled_at)
         select queue, depth, $1 from fallback_depths",
        now
    )
    .execute(pg)
    .await?;
    sqlx::query!(
        "delete from fallback_depth_samples where sampled_at < $1::timestamptz - interval '8 days'",
        now
    )
    .execute(pg)
    .await?;
    Ok(())
}

/// Samples of the last 7 days, one point per sampling moment with both queues.
pub async fn depth_samples(
    pg: &PgPool,
    now: OffsetDateTime,
) -> Result<Vec<DepthSample>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select sampled_at as "at!",
                  coalesce(sum(depth) filter (where queue = 'requests'), 0)::bigint as "requests!",
                  coalesce(sum(depth) filter (where queue = 'events'), 0)::bigint as "events!"
             from fallback_depth_samples
            where sampled_at > $1::timestamptz - interval '7 days'
            group by sampled_at order by sampled_at"#,
        now
    )
    .fetch_all(pg)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| DepthSample {
            at: unix_ms(r.at),
            requests: r.requests,
            events: r.events,
        })
        .collect())
}
