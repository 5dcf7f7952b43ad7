//! The dead letters as `/admin/dlq` shows them (the runbook's breakdown by webhook and
//! reason, the list, the endpoints), the dry run of a redrive or purge, a purge, one
//! delivery's attempts, the `/health/deep` figures, and retention (`expire-dead-letters`).
//!
//! Nothing is dropped silently: there is no count cap. Dead letters are kept for
//! `retention` (30 days); `dlq_retention_near` warns three days before any go, retention
//! waits while a freeze is open, and each purge (by a person or by retention) is one
//! history entry with its filter and count.

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use time::OffsetDateTime;

use super::super::{
    Attempt, BreakdownRow, DeadLetter, DeliveryDetail, DeliveryStatus, DlqOverview, DlqReason,
    DryRun, Redrive, ALERT_EVENT_TYPE,
};
use super::endpoints::{label, list};
use super::filter::DlqFilter;
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::jobs::ssr::{Job, JobContext, JobFuture, Report};
use crate::jobs::RunStatus;
use crate::server::unix_ms as ms;
use crate::server::AppState;

crate::history::ssr::details! {
    /// Dead letters deleted for good: by a person with a filter, or by retention (which
    /// also says how many delivered rows and payloads it let go).
    struct Purge for DlqPurge {
        /// The filter as a query string, and in words.
        filter: String,
        label: String,
        deleted: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        delivered: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        payloads: Option<i64>,
    }
}

/// Rows of the dead-letter list per page.
pub const PAGE: i64 = 50;
/// How long before retention purges them `dlq_retention_near` warns.
pub const RETENTION_WARNING: time::Duration = time::Duration::days(3);

const FROM: &str = " from webhook_deliveries d join webhook_events e on e.id = d.event_id
                     join webhooks w on w.id = d.webhook_id where";

fn letter(row: &sqlx::postgres::PgRow) -> DeadLetter {
    DeadLetter {
        id: row.get("id"),
        webhook_id: row.get("webhook_id"),
        webhook: label(row.get("description"), row.get("url")),
        event_type: row.get("event_type"),
        reason: DlqReason::parse(row.get("dlq_reason")).unwrap_or(DlqReason::Exhausted),
        attempts: row.get("attempts"),
        last_status: row.get("last_status"),
        last_error: row.get("last_error"),
        dlq_at_ms: ms(row.get("dlq_at")),
        created_at_ms: ms(row.get("created_at")),
    }
}

const LETTER_COLUMNS: &str = "select d.id, d.webhook_id, w.description, w.url, e.event_type,
    d.dlq_reason, d.attempts, d.last_status, d.last_error, d.dlq_at, d.created_at";

/// Matching dead letters, newest first, after id `after` (the list's keyset).
async fn letters(
    pg: &PgPool,
    filter: &DlqFilter,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new(LETTER_COLUMNS);
    query.push(FROM);
    filter.push_conditions(&mut query);
    if let Some(after) = after {
        query.push(" and d.id < ").push_bind(after);
    }
    query.push(" order by d.id desc limit ").push_bind(limit);
    Ok(query
        .build()
        .fetch_all(pg)
        .await?
        .iter()
        .map(letter)
        .collect())
}

/// How many dead letters match.
pub async fn count(pg: &PgPool, filter: &DlqFilter) -> Result<i64, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new("select count(*)");
    query.push(FROM);
    filter.push_conditions(&mut query);
    query.build_query_scalar().fetch_one(pg).await
}

/// How many dead letters match `filter`, and the payload bytes a redrive of them sends.
/// Events stored before `payload_bytes` existed are measured here until the background
/// migration `webhook_event_payload_bytes` has filled them in.
async fn count_and_bytes(pg: &PgPool, filter: &DlqFilter) -> Result<(i64, i64), sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new(format!(
        "select count(*), coalesce(sum(coalesce(e.payload_bytes, {})), 0)::bigint",
        super::backfill::MEASURE.replace("payload", "e.payload")
    ));
    query.push(FROM);
    filter.push_conditions(&mut query);
    query.build_query_as().fetch_one(pg).await
}

/// The runbook's breakdown: per webhook and reason, the count, oldest and newest, the
/// newest's last status and error, and its payload (cut to 300 characters).
async fn breakdown(pg: &PgPool, filter: &DlqFilter) -> Result<Vec<BreakdownRow>, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new(
        "select d.webhook_id, min(w.description) as description, min(w.url) as url, d.dlq_reason,
                count(*) as n, min(d.dlq_at) as oldest, max(d.dlq_at) as newest,
                (array_agg(d.last_status order by d.dlq_at desc, d.id desc))[1] as last_status,
                (array_agg(d.last_error order by d.dlq_at desc, d.id desc))[1] as last_error,
                (array_agg(d.event_id order by d.dlq_at desc, d.id desc))[1] as sample_event",
    );
    query.push(FROM);
    filter.push_conditions(&mut query);
    query.push(" group by d.webhook_id, d.dlq_reason order by n desc, d.webhook_id");
    let rows = query.build().fetch_all(pg).await?;
    let events: Vec<i64> = rows.iter().map(|r| r.get("sample_event")).collect();
    let payloads: Vec<(i64, Option<String>)> = sqlx::query!(
        "select id, left(payload::text, 300) as preview from webhook_events where id = any($1)",
        &events
    )
    .fetch_all(pg)
    .await?
    .into_iter()
    .map(|row| (row.id, row.preview))
    .collect();
    Ok(rows
        .iter()
        .map(|row| {
            let event: i64 = row.get("sample_event");
            BreakdownRow {
                webhook_id: row.get("webhook_id"),
                webhook: label(row.get("description"), row.get("url")),
                reason: DlqReason::parse(row.get("dlq_reason")).unwrap_or(DlqReason::Exhausted),
                count: row.get("n"),
                oldest_ms: ms(row.get("oldest")),
                newest_ms: ms(row.get("newest")),
                last_status: row.get("last_status"),
                last_error: row.get("last_error"),
                sample_payload: payloads
                    .iter()
                    .find(|(id, _)| *id == event)
                    .and_then(|(_, p)| p.clone()),
            }
        })
        .collect())
}

/// The newest redrives.
pub async fn redrives(
    pg: &PgPool,
    limit: i64,
    now: OffsetDateTime,
) -> Result<Vec<Redrive>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "select {REDRIVE_COLUMNS} from {REDRIVES} order by r.id desc limit $1"
    ))
    .bind(limit)
    .bind(crate::jobs::ssr::stale_before(now))
    .fetch_all(pg)
    .await?;
    Ok(rows.iter().map(redrive).collect())
}

/// A redrive's columns, its status as its run says (a `running` redrive whose run ended
/// or went quiet past the runner's abandoned rule is `abandoned`; `$2` is the time before
/// which a heartbeat is stale), and its delivered count.
pub const REDRIVE_COLUMNS: &str = concat!(
    "r.id, r.filter, r.total, r.done, r.actor, r.reason,
    r.started_at, r.finished_at, r.error, r.run_id, r.history_id,
    case when r.status = 'running' and run.id is not null and ",
    crate::jobs::ssr::run_gone!("$2"),
    " then 'abandoned' else r.status end as status,
    (select count(*) from webhook_deliveries d
      where d.last_redrive_id = r.id and d.status = 'delivered') as delivered"
);

/// The redrives and their runs.
pub const REDRIVES: &str = "webhook_redrives r left join cron_job_runs run on run.id = r.run_id";

pub fn redrive(row: &sqlx::postgres::PgRow) -> Redrive {
    let filter: Value = row.get("filter");
    Redrive {
        id: row.get("id"),
        filter: filter["label"].as_str().unwrap_or_default().to_owned(),
        status: super::super::RedriveStatus::parse(row.get("status"))
            .unwrap_or(super::super::RedriveStatus::Failed),
        total: row.get("total"),
        done: row.get("done"),
        delivered: row.get("delivered"),
        actor: row.get("actor"),
        reason: row.get("reason"),
        started_at_ms: ms(row.get("started_at")),
        finished_at_ms: row.get::<Option<OffsetDateTime>, _>("finished_at").map(ms),
        error: row.get("error"),
        run_id: row.get("run_id"),
        history_id: row.get("history_id"),
    }
}

/// Everything `/admin/dlq` shows for `filter`, the list from after id `after`.
pub async fn overview(
    state: &AppState,
    filter: &DlqFilter,
    after: Option<i64>,
) -> Result<DlqOverview, AppError> {
    let pg = &state.pg;
    let now = state.clock.now();
    let wrap = || AppError::wrap("Read the dead letters");
    let counts = sqlx::query!(
        r#"select (select count(*) from webhook_deliveries where dlq_at is not null) as "dead!",
                  (select count(*) from webhook_deliveries
                    where status = 'pending' and next_attempt_at <= $1) as "backlog!""#,
        now
    )
    .fetch_one(pg)
    .await
    .map_err(wrap())?;
    let (dead_total, backlog) = (counts.dead, counts.backlog);
    let mut page = letters(pg, filter, after, PAGE + 1).await.map_err(wrap())?;
    let next = (page.len() as i64 > PAGE).then(|| {
        page.truncate(PAGE as usize);
        page.last().map(|l| l.id).unwrap_or_default()
    });
    let retention = time::Duration::try_from(state.webhooks().retention).unwrap_or_default();
    let purged_soon = older_than(pg, now - retention + RETENTION_WARNING)
        .await
        .map_err(wrap())?;
    let mut conn = pg.acquire().await.map_err(wrap())?;
    let frozen = crate::freeze::ssr::frozen(&mut conn)
        .await
        .map_err(wrap())?;
    let mut event_types = state.webhooks().event_types.clone();
    event_types.push(ALERT_EVENT_TYPE.to_owned());
    Ok(DlqOverview {
        now_ms: ms(now),
        filter_label: filter.label(),
        dead_total,
        matching: count(pg, filter).await.map_err(wrap())?,
        backlog,
        endpoints: list(pg, now).await.map_err(wrap())?,
        event_types,
        breakdown: breakdown(pg, filter).await.map_err(wrap())?,
        letters: page,
        next,
        redrives: redrives(pg, 10, now).await.map_err(wrap())?,
        retention_days: retention.whole_days(),
        purged_soon,
        frozen,
    })
}

/// What a redrive or purge of `filter` would take: the count, five of them, and the
/// paused endpoints among them.
pub async fn dry_run(pg: &PgPool, filter: &DlqFilter) -> Result<DryRun, AppError> {
    let wrap = || AppError::wrap("Count the dead letters");
    let mut query = QueryBuilder::<Postgres>::new(
        "select distinct w.id, w.description, w.url from webhook_deliveries d
           join webhook_events e on e.id = d.event_id join webhooks w on w.id = d.webhook_id
          where w.paused_at is not null and",
    );
    filter.push_conditions(&mut query);
    let paused = query
        .build()
        .fetch_all(pg)
        .await
        .map_err(wrap())?
        .iter()
        .map(|row| label(row.get("description"), row.get("url")))
        .collect();
    let (count, bytes) = count_and_bytes(pg, filter).await.map_err(wrap())?;
    Ok(DryRun {
        filter: filter.to_query(),
        filter_label: filter.label(),
        count,
        bytes,
        sample: letters(pg, filter, None, 5).await.map_err(wrap())?,
        paused,
    })
}

/// What a purge did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purged {
    pub deleted: i64,
    pub history_id: i64,
}

/// Deletes the dead letters matching `filter` (admins), in one transaction with its
/// history entry. `confirm` must be the count the person was shown (a purge never takes
/// more than they saw); refused while a freeze is open (an incident's or a restore's).
pub async fn purge(
    state: &AppState,
    actor: &Actor,
    filter: &DlqFilter,
    confirm: &str,
    reason: &crate::reason::Reason,
) -> Result<Purged, AppError> {
    let wrap = || AppError::wrap("Purge dead letters");
    let typed: String = confirm.chars().filter(|c| c.is_ascii_digit()).collect();
    if typed.is_empty() {
        return Err(AppError::invalid(
            "confirm",
            "type the number of dead letters the dry run counted",
        ));
    }
    let mut tx = state.pg.begin().await.map_err(wrap())?;
    crate::freeze::ssr::hold_unless_frozen(&mut tx)
        .await
        .map_err(wrap())?;
    if crate::freeze::ssr::frozen(&mut tx).await.map_err(wrap())? {
        return Err(AppError::Conflict {
            message: "A freeze is open (an incident or a restore): purges wait until it is lifted."
                .into(),
        });
    }
    let mut query = QueryBuilder::<Postgres>::new(
        "delete from webhook_deliveries d using webhook_events e, webhooks w
          where e.id = d.event_id and w.id = d.webhook_id and",
    );
    filter.push_conditions(&mut query);
    let deleted = query
        .build()
        .execute(&mut *tx)
        .await
        .map_err(wrap())?
        .rows_affected() as i64;
    if typed != deleted.to_string() {
        // Rolled back: nothing deleted.
        return Err(AppError::Conflict {
            message: format!(
                "{deleted} dead letters match now, not {typed}: run the dry run again and type the new count."
            ),
        });
    }
    let details = Purge {
        filter: filter.to_query(),
        label: filter.label(),
        deleted,
        delivered: None,
        payloads: None,
    };
    let title = format!("Purged {deleted} dead letters ({})", details.label);
    let entry =
        NewEntry::new(details, title, actor, Outcome::Succeeded).with_reason(Some(reason.clone()));
    let history_id = append(&mut tx, &entry).await.map_err(wrap())?;
    tx.commit().await.map_err(wrap())?;
    Ok(Purged {
        deleted,
        history_id,
    })
}

/// One delivery and every attempt made.
pub async fn delivery(pg: &PgPool, id: i64) -> Result<DeliveryDetail, AppError> {
    let wrap = || AppError::wrap("Read a delivery");
    let row = sqlx::query!(
        "select d.message_id, d.webhook_id, d.event_id, d.status, d.dlq_reason, d.attempts,
                d.next_attempt_at, d.dlq_at, d.delivered_at, d.redrives, d.created_at,
                w.description, w.url, e.event_type, e.payload::text as payload_text
           from webhook_deliveries d join webhooks w on w.id = d.webhook_id
           join webhook_events e on e.id = d.event_id where d.id = $1",
        id
    )
    .fetch_optional(pg)
    .await
    .map_err(wrap())?
    .ok_or_else(|| AppError::NotFound {
        what: format!("Delivery {id}"),
    })?;
    let attempts = sqlx::query!(
        "select attempt, started_at, duration_ms, status_code, error, response_snippet, probe,
                redrive_id
           from webhook_attempts where delivery_id = $1 order by id",
        id
    )
    .fetch_all(pg)
    .await
    .map_err(wrap())?
    .into_iter()
    .map(|a| Attempt {
        attempt: a.attempt,
        started_at_ms: ms(a.started_at),
        duration_ms: a.duration_ms,
        status_code: a.status_code,
        error: a.error,
        response_snippet: a.response_snippet,
        probe: a.probe,
        redrive_id: a.redrive_id,
    })
    .collect();
    let status = DeliveryStatus::parse(&row.status).unwrap_or(DeliveryStatus::Pending);
    Ok(DeliveryDetail {
        id,
        message_id: row.message_id,
        webhook_id: row.webhook_id,
        webhook: label(&row.description, &row.url),
        event_id: row.event_id,
        event_type: row.event_type,
        status,
        reason: row.dlq_reason.as_deref().and_then(DlqReason::parse),
        attempts_since_redrive: row.attempts,
        next_attempt_at_ms: (status == DeliveryStatus::Pending).then(|| ms(row.next_attempt_at)),
        dlq_at_ms: row.dlq_at.map(ms),
        delivered_at_ms: row.delivered_at.map(ms),
        redrives: row.redrives,
        payload: row.payload_text,
        created_at_ms: ms(row.created_at),
        attempts,
    })
}

/// How many dead letters were dead-lettered before `before` (retention purges them).
pub(super) async fn older_than(pg: &PgPool, before: OffsetDateTime) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select count(*) as "count!" from webhook_deliveries
            where dlq_at is not null and dlq_at < $1"#,
        before
    )
    .fetch_one(pg)
    .await
}

/// `webhooks` of `/health/deep`: `{backlog_count, dlq_count, paused}` (the runbook's
/// `webhooks.dlq_count`). Three index reads.
pub async fn health(pg: &PgPool, now: OffsetDateTime) -> Result<Value, sqlx::Error> {
    let row = sqlx::query!(
        r#"select (select count(*) from webhook_deliveries
                    where status = 'pending' and next_attempt_at <= $1) as "backlog!",
                  (select count(*) from webhook_deliveries where dlq_at is not null) as "dead!",
                  (select count(*) from webhooks
                    where deleted_at is null and paused_at is not null) as "paused!""#,
        now
    )
    .fetch_one(pg)
    .await?;
    Ok(json!({"backlog_count": row.backlog, "dlq_count": row.dead, "paused": row.paused}))
}

/// Deliveries dead-lettered at or after `since` (an index range on `dlq_at`): what an
/// outage that began then left for a redrive or a purge.
pub async fn dead_lettered_since(pg: &PgPool, since: OffsetDateTime) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from webhook_deliveries where dlq_at >= $1")
        .bind(since)
        .fetch_one(pg)
        .await
}

/// One webhook's figures for `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookFigures {
    pub webhook_id: i64,
    /// Deliveries due now and not yet delivered.
    pub backlog: i64,
    pub dead_letters: i64,
    /// Its circuit is open.
    pub paused: bool,
}

/// [`WebhookFigures`] of every webhook not deleted, and of a deleted one while it still
/// has dead letters; by id. Index-only counts per webhook.
pub async fn figures(pg: &PgPool, now: OffsetDateTime) -> Result<Vec<WebhookFigures>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select w.id,
                  (select count(*) from webhook_deliveries d
                    where d.webhook_id = w.id and d.status = 'pending'
                      and d.next_attempt_at <= $1) as "backlog!",
                  (select count(*) from webhook_deliveries d
                    where d.webhook_id = w.id and d.dlq_at is not null) as "dead_letters!",
                  w.deleted_at is null and w.paused_at is not null as "paused!"
             from webhooks w
            where w.deleted_at is null
               or exists (select 1 from webhook_deliveries d
                           where d.webhook_id = w.id and d.dlq_at is not null)
            order by w.id"#,
        now
    )
    .fetch_all(pg)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| WebhookFigures {
            webhook_id: row.id,
            backlog: row.backlog,
            dead_letters: row.dead_letters,
            paused: row.paused,
        })
        .collect())
}

/// Retention of the delivery log: dead letters dead-lettered, and deliveries delivered,
/// more than `retention` ago; event payloads older than that (a delivery still pending
/// then dead-letters as `payload_missing`); events left without deliveries. Waits while
/// a freeze is open. Daily.
pub static EXPIRE_DEAD_LETTERS: Job = Job {
    name: "expire-dead-letters",
    description: "Deletes dead letters and delivered deliveries past their retention (30 days); waits during a freeze.",
    schedule: "17 4 * * *",
    grace: Duration::from_secs(3600),
    run: run_expiry,
    permission: crate::auth::Permission::Operate,
    check: None,
};

/// What retention did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpiryReport {
    pub dead_letters: i64,
    pub delivered: i64,
    pub payloads: i64,
    pub events: i64,
    /// Held by an open freeze: nothing was deleted.
    pub held: bool,
    pub history_id: Option<i64>,
}

impl Report for ExpiryReport {
    fn status(&self) -> RunStatus {
        if self.held {
            RunStatus::Partial
        } else {
            RunStatus::Succeeded
        }
    }
    fn rows(&self) -> i64 {
        self.dead_letters + self.delivered
    }
    fn error(&self) -> Option<String> {
        self.held
            .then(|| "held: a freeze is open; nothing was deleted".to_owned())
    }
    fn history_id(&self) -> Option<i64> {
        self.history_id
    }
    fn details(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

fn run_expiry(ctx: JobContext) -> JobFuture {
    Box::pin(async move {
        Ok(Box::new(expire(&ctx.state, &ctx.actor, ctx.now).await?) as Box<dyn Report>)
    })
}

/// Applies retention as of `now`.
pub async fn expire(
    state: &AppState,
    actor: &Actor,
    now: OffsetDateTime,
) -> Result<ExpiryReport, AppError> {
    let wrap = || AppError::wrap("Apply the dead letters' retention");
    let cutoff = now - time::Duration::try_from(state.webhooks().retention).unwrap_or_default();
    let mut tx = state.pg.begin().await.map_err(wrap())?;
    crate::freeze::ssr::hold_unless_frozen(&mut tx)
        .await
        .map_err(wrap())?;
    if crate::freeze::ssr::frozen(&mut tx).await.map_err(wrap())? {
        return Ok(ExpiryReport {
            held: true,
            ..Default::default()
        });
    }
    let dead_letters = sqlx::query!(
        "delete from webhook_deliveries where dlq_at is not null and dlq_at < $1",
        cutoff
    )
    .execute(&mut *tx)
    .await
    .map_err(wrap())?
    .rows_affected() as i64;
    let delivered = sqlx::query!(
        "delete from webhook_deliveries where status = 'delivered' and delivered_at < $1",
        cutoff
    )
    .execute(&mut *tx)
    .await
    .map_err(wrap())?
    .rows_affected() as i64;
    let payloads = sqlx::query!(
        "update webhook_events set payload = null where created_at < $1 and payload is not null",
        cutoff
    )
    .execute(&mut *tx)
    .await
    .map_err(wrap())?
    .rows_affected() as i64;
    let events = sqlx::query!(
        "delete from webhook_events e where e.created_at < $1
            and not exists (select 1 from webhook_deliveries d where d.event_id = e.id)",
        cutoff
    )
    .execute(&mut *tx)
    .await
    .map_err(wrap())?
    .rows_affected() as i64;
    let mut report = ExpiryReport {
        dead_letters,
        delivered,
        payloads,
        events,
        held: false,
        history_id: None,
    };
    if dead_letters > 0 {
        let details = Purge {
            filter: format!("until={}", crate::format::iso(ms(cutoff))),
            label: format!("dead-lettered before {}", crate::format::iso(ms(cutoff))),
            deleted: dead_letters,
            delivered: Some(delivered),
            payloads: Some(payloads),
        };
        let title = format!(
            "Retention purged {dead_letters} dead letters older than {} days",
            (now - cutoff).whole_days()
        );
        let entry = NewEntry::new(details, title, actor, Outcome::Succeeded);
        report.history_id = Some(append(&mut tx, &entry).await.map_err(wrap())?);
    }
    tx.commit().await.map_err(wrap())?;
    Ok(report)
}
