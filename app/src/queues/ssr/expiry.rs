//! Expiry: queued rows older than the TTL are deleted. This is the one place Salvage
//! loses data for good, so every run that deletes anything writes a history entry with
//! the number of rows, the queue and the time range they covered, and raises (or adds to)
//! the `data_expired` alert, in the same transaction as the delete.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use super::super::Queue;
use super::alerts::DATA_EXPIRED;
use crate::alerts::ssr::store::raise_event;
use crate::alerts::ssr::Signal;
use crate::alerts::Severity;
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::format::{format_utc, group_digits};
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::jobs::ssr::{Job, JobContext, JobFuture, Report};
use crate::jobs::{RunStatus, Trigger};
use crate::server::unix_ms;

crate::history::ssr::details! {
    /// Queued rows older than the TTL, deleted for good (times in Unix ms).
    struct RowsExpired for Expiry {
        queue: Queue,
        rows: i64,
        trigger: Trigger,
        first_queued_at: Option<i64>,
        last_queued_at: Option<i64>,
        ttl_hours: u64,
        cutoff: i64,
    }
}

/// The expiry job: the one function behind `/cron/expire-fallback`, the scheduler,
/// `salvage cron run expire-fallback` and `salvage expire`.
pub static EXPIRE_FALLBACK: Job = Job {
    name: "expire-fallback",
    description:
        "Deletes queued rows older than the fallback TTL, recording each loss in the history.",
    schedule: "17 * * * *",
    grace: Duration::from_secs(30 * 60),
    run: run_expiry_job,
    permission: crate::auth::Permission::Operate,
    check: None,
};

fn run_expiry_job(ctx: JobContext) -> JobFuture {
    Box::pin(async move {
        let ttl = ctx.state.queues().ttl;
        // A restore may be about to replay these rows into restored tables: wait for it.
        let mut conn = ctx
            .state
            .pg
            .acquire()
            .await
            .map_err(AppError::wrap("Expiry failed"))?;
        if crate::freeze::ssr::frozen(&mut conn)
            .await
            .map_err(AppError::wrap("Expiry failed"))?
        {
            return Ok(Box::new(ExpiryReport {
                ttl_hours: ttl.as_secs() / 3600,
                expired: Vec::new(),
                frozen: true,
            }) as Box<dyn Report>);
        }
        drop(conn);
        let expired = expire(
            &ctx.state.pg,
            &ctx.actor,
            ctx.trigger,
            ctx.reason,
            ttl,
            ctx.now,
        )
        .await?;
        Ok(Box::new(ExpiryReport {
            ttl_hours: ttl.as_secs() / 3600,
            expired,
            frozen: false,
        }) as Box<dyn Report>)
    })
}

/// What an expiry run did: the job's report, kept as the run's `details`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpiryReport {
    pub ttl_hours: u64,
    /// One entry per queue, in [`Queue::ALL`] order.
    pub expired: Vec<Expired>,
    /// A restore held the write freeze: nothing was expired this time.
    #[serde(default)]
    pub frozen: bool,
}

impl Report for ExpiryReport {
    fn status(&self) -> RunStatus {
        if self.frozen {
            RunStatus::Partial
        } else {
            RunStatus::Succeeded
        }
    }
    fn rows(&self) -> i64 {
        self.expired.iter().map(|e| e.rows).sum()
    }
    fn history_id(&self) -> Option<i64> {
        self.expired.iter().find_map(|e| e.history_id)
    }
    fn details(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// What expiry deleted from one queue. Times are Unix ms (UTC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expired {
    pub queue: Queue,
    pub rows: i64,
    /// `queued_at` of the oldest and newest deleted row.
    pub first_queued_at: Option<i64>,
    pub last_queued_at: Option<i64>,
    /// The history entry recording the loss (none when nothing was deleted).
    pub history_id: Option<i64>,
}

/// Deletes rows queued before `now - ttl` from both queues.
pub async fn expire(
    pg: &PgPool,
    actor: &Actor,
    trigger: Trigger,
    reason: Option<crate::reason::Reason>,
    ttl: Duration,
    now: OffsetDateTime,
) -> Result<Vec<Expired>, AppError> {
    let internal = AppError::wrap("Expiry failed");
    let cutoff = now - ttl;
    let mut report = Vec::new();
    for queue in Queue::ALL {
        let mut tx = pg.begin().await.map_err(&internal)?;
        // One statement deletes everything past the TTL, which on a queue of millions
        // may outlast the pool's statement timeout (a bound meant for the console's
        // queries); this one gets an hour.
        sqlx::query("set local statement_timeout = '1h'")
            .execute(&mut *tx)
            .await
            .map_err(&internal)?;
        let row = sqlx::query(&format!(
            "with gone as (delete from {} where queued_at < $1 returning queued_at)
             select count(*) as rows, min(queued_at) as first, max(queued_at) as last from gone",
            queue.table()
        ))
        .bind(cutoff)
        .fetch_one(&mut *tx)
        .await
        .map_err(&internal)?;
        let rows: i64 = row.get("rows");
        let first: Option<OffsetDateTime> = row.get("first");
        let last: Option<OffsetDateTime> = row.get("last");
        let mut history_id = None;
        if rows > 0 {
            let hours = ttl.as_secs() / 3600;
            let range = format!(
                "{} to {}",
                first.map(|t| format_utc(unix_ms(t))).unwrap_or_default(),
                last.map(|t| format_utc(unix_ms(t))).unwrap_or_default()
            );
            let details = RowsExpired {
                queue,
                rows,
                trigger,
                first_queued_at: first.map(unix_ms),
                last_queued_at: last.map(unix_ms),
                ttl_hours: hours,
                cutoff: unix_ms(cutoff),
            };
            let entry = NewEntry::new(
                details,
                format!(
                    "Expired {rows} rows of the {} queue (queued {range}), older than {hours} h",
                    queue.as_str()
                ),
                actor,
                Outcome::Succeeded,
            )
            .with_body(format!(
                "These rows never reached ClickHouse and are now deleted for good. They were queued from {range} (UTC)."
            ))
            .with_reason(reason.clone());
            // The loss is an alert too, in the same transaction: it stays open until a
            // person resolves it with a note.
            let signal = Signal::new(
                queue.as_str(),
                Severity::Critical,
                format!(
                    "Expiry deleted {} queued rows of the {} queue for good",
                    group_digits(rows as u64),
                    queue.as_str()
                ),
            )
            .counted(rows as f64, "rows")
            .with_details(json!({"queued": range, "ttlHours": hours}));
            raise_event(&mut tx, &DATA_EXPIRED, &signal, now)
                .await
                .map_err(&internal)?;
            history_id = Some(append(&mut tx, &entry).await.map_err(&internal)?);
            tracing::warn!(queue = queue.as_str(), rows, %range, "expired queued rows (data lost for good)");
        }
        tx.commit().await.map_err(&internal)?;
        report.push(Expired {
            queue,
            rows,
            first_queued_at: first.map(unix_ms),
            last_queued_at: last.map(unix_ms),
            history_id,
        });
    }
    Ok(report)
}
