//! The page's queries: counts, open alerts, resolved alerts with their handling times,
//! one alert's detail. Each is bounded (open alerts are few; resolved ones are read
//! newest first from an index, and the 30-day figures from that index's range).

use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use super::super::{
    AlertCounts, AlertDetail, AlertStatus, AlertsOverview, NoisyKind, ResolvedOverview, Severity,
};
use super::store::{alert_from_row, load, timeline, ALERT_COLUMNS};
use crate::error::AppError;
use crate::server::{unix_ms, AppState};

/// Most alerts a list shows.
pub const LIST_LIMIT: i64 = 500;

/// What the lists filter on; empty strings are "any".
#[derive(Clone, Debug, Default)]
pub struct Filters {
    pub kind: Option<String>,
    pub severity: Option<Severity>,
    pub status: Option<AlertStatus>,
}

impl Filters {
    /// From the page's query parameters; an unknown value is a 422 naming it.
    pub fn parse(kind: &str, severity: &str, status: &str) -> Result<Self, AppError> {
        let kind = kind.trim();
        let severity =
            match severity.trim() {
                "" => None,
                s => Some(Severity::parse(s).ok_or_else(|| {
                    AppError::invalid("severity", "use critical, warning or info")
                })?),
            };
        let status = match status.trim() {
            "" => None,
            s => Some(AlertStatus::parse(s).ok_or_else(|| {
                AppError::invalid("status", "use firing, acknowledged or resolved")
            })?),
        };
        Ok(Self {
            kind: (!kind.is_empty()).then(|| kind.to_owned()),
            severity,
            status,
        })
    }
}

/// The counts of open alerts (the strip and the nav): by severity those still firing
/// and not muted (what nobody has taken yet), then acknowledged, silenced, flapping.
/// The counts of open alerts, and the open write freezes (the layout shows both).
pub async fn counts(pg: &PgPool, now: OffsetDateTime) -> Result<AlertCounts, sqlx::Error> {
    let row = sqlx::query(&format!(
        "select count(*) filter (where severity = 'critical' and status = 'firing' and not silenced) as critical,
                count(*) filter (where severity = 'warning' and status = 'firing' and not silenced) as warning,
                count(*) filter (where severity = 'info' and status = 'firing' and not silenced) as info,
                count(*) filter (where status = 'acknowledged') as acknowledged,
                count(*) filter (where silenced) as silenced,
                count(*) filter (where flapping) as flapping
           from (select {ALERT_COLUMNS} from internal_alerts a where a.status <> 'resolved') a"
    ))
    .bind(now)
    .fetch_one(pg)
    .await?;
    Ok(AlertCounts {
        critical: row.get("critical"),
        warning: row.get("warning"),
        info: row.get("info"),
        acknowledged: row.get("acknowledged"),
        silenced: row.get("silenced"),
        flapping: row.get("flapping"),
        freezes: crate::freeze::ssr::open_freezes(pg).await?,
    })
}

/// Open alerts that pass `filters`: by severity, then oldest first.
pub async fn open_view(
    state: &AppState,
    filters: &Filters,
    now: OffsetDateTime,
) -> Result<AlertsOverview, sqlx::Error> {
    let pg = &state.pg;
    let rows = sqlx::query(&format!(
        "select {ALERT_COLUMNS} from internal_alerts a
          where a.status <> 'resolved'
            and ($2::text is null or a.kind = $2)
            and ($3::text is null or a.severity = $3)
            and ($4::text is null or a.status = $4)
          order by case a.severity when 'critical' then 0 when 'warning' then 1 else 2 end,
                   a.first_seen_at, a.id
          limit $5"
    ))
    .bind(now)
    .bind(&filters.kind)
    .bind(filters.severity.map(Severity::as_str))
    .bind(filters.status.map(AlertStatus::as_str))
    .bind(LIST_LIMIT)
    .fetch_all(pg)
    .await?;
    let last_evaluation_at: Option<OffsetDateTime> = sqlx::query_scalar!(
        "select max(ran_at) from cron_job_runs where job_name = 'self-monitor' and outcome in ('succeeded', 'partial')"
    )
    .fetch_one(pg)
    .await?;
    Ok(AlertsOverview {
        now: unix_ms(now),
        counts: counts(pg, now).await?,
        alerts: rows
            .iter()
            .map(|r| alert_from_row(r, state.alert_kinds()))
            .collect(),
        last_evaluation_at: last_evaluation_at.map(unix_ms),
        silences: super::silences::list(pg, now, state.alerts().silence_idle_after).await?,
    })
}

/// Resolved alerts, newest first, with the 30-day medians and the noisiest kinds.
pub async fn resolved_view(
    state: &AppState,
    filters: &Filters,
    now: OffsetDateTime,
) -> Result<ResolvedOverview, sqlx::Error> {
    let pg = &state.pg;
    let since = now - time::Duration::days(30);
    let rows = sqlx::query(&format!(
        "select {ALERT_COLUMNS} from internal_alerts a
          where a.status = 'resolved'
            and ($2::text is null or a.kind = $2)
            and ($3::text is null or a.severity = $3)
          order by a.resolved_at desc, a.id desc
          limit 100"
    ))
    .bind(now)
    .bind(&filters.kind)
    .bind(filters.severity.map(Severity::as_str))
    .fetch_all(pg)
    .await?;
    let medians = sqlx::query!(
        r#"select count(*) as "resolved!",
                percentile_cont(0.5) within group (order by extract(epoch from acknowledged_at - first_seen_at)::float8)
                    filter (where acknowledged_at is not null) as tta,
                percentile_cont(0.5) within group (order by extract(epoch from resolved_at - first_seen_at)::float8) as ttr
           from internal_alerts where status = 'resolved' and resolved_at > $1"#,
        since
    )
    .fetch_one(pg)
    .await?;
    let seconds_to_ms = |v: Option<f64>| v.map(|s| (s * 1000.0).round() as i64);
    let noisiest = sqlx::query!(
        r#"select kind, count(*) as "alerts!",
                percentile_cont(0.5) within group
                    (order by extract(epoch from coalesce(resolved_at, $2::timestamptz) - first_seen_at)::float8) as ttr
           from internal_alerts where first_seen_at > $1
          group by kind order by count(*) desc, kind limit 5"#,
        since,
        now
    )
    .fetch_all(pg)
    .await?;
    Ok(ResolvedOverview {
        now: unix_ms(now),
        alerts: rows
            .iter()
            .map(|r| alert_from_row(r, state.alert_kinds()))
            .collect(),
        median_acknowledge_ms: seconds_to_ms(medians.tta),
        median_resolve_ms: seconds_to_ms(medians.ttr),
        resolved_30d: medians.resolved,
        noisiest: noisiest
            .into_iter()
            .map(|r| NoisyKind {
                kind: r.kind,
                alerts: r.alerts,
                median_resolve_ms: seconds_to_ms(r.ttr),
            })
            .collect(),
    })
}

/// One alert with its timeline, the silences that matched it and its earlier alerts.
pub async fn detail(
    state: &AppState,
    id: i64,
    now: OffsetDateTime,
) -> Result<AlertDetail, AppError> {
    let internal = AppError::wrap("Failed to read the alert");
    let alert = load(&state.pg, state.alert_kinds(), id, now).await?;
    let earlier = sqlx::query(&format!(
        "select {ALERT_COLUMNS} from internal_alerts a
          where a.kind = $2 and a.dedup_key = $3 and a.id < $4
          order by a.first_seen_at desc, a.id desc limit 10"
    ))
    .bind(now)
    .bind(&alert.kind)
    .bind(&alert.key)
    .bind(id)
    .fetch_all(&state.pg)
    .await
    .map_err(&internal)?;
    Ok(AlertDetail {
        timeline: timeline(&state.pg, id).await.map_err(&internal)?,
        silences: super::silences::of_alert(&state.pg, id, now, state.alerts().silence_idle_after)
            .await
            .map_err(&internal)?,
        earlier: earlier
            .iter()
            .map(|r| alert_from_row(r, state.alert_kinds()))
            .collect(),
        alert,
    })
}

/// Open alerts by kind and severity (`/metrics`): (kind, severity, count).
pub async fn open_by_kind(pg: &PgPool) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    Ok(sqlx::query!(
        r#"select kind, severity, count(*) as "count!" from internal_alerts
            where status <> 'resolved' group by kind, severity order by kind, severity"#
    )
    .fetch_all(pg)
    .await?
    .into_iter()
    .map(|row| (row.kind, row.severity, row.count))
    .collect())
}

/// `alerts` of `/health/deep`: open alerts, open critical ones, open ones by kind.
pub async fn health(pg: &PgPool) -> Result<serde_json::Value, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select kind, count(*) as "open!",
                  count(*) filter (where severity = 'critical') as "critical!"
             from internal_alerts where status <> 'resolved' group by kind order by kind"#
    )
    .fetch_all(pg)
    .await?;
    let mut by_kind = serde_json::Map::new();
    let (mut open, mut critical) = (0_i64, 0_i64);
    for row in rows {
        open += row.open;
        critical += row.critical;
        by_kind.insert(row.kind, row.open.into());
    }
    Ok(serde_json::json!({"open": open, "critical": critical, "byKind": by_kind}))
}
