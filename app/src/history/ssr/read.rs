//! Reading the runbook history: the search filter and its keyset cursor, an entry with
//! its incident's timeline, open incidents, the actors. (Writing: the module above.)

use sqlx::{PgPool, Postgres, QueryBuilder};
use time::OffsetDateTime;

use super::super::{Entry, EntryKind, EntryView, Outcome};
use crate::error::AppError;
use crate::format::format_ago;

/// Parses a time typed in a form, read as UTC: `2026-11-22`, `2026-11-22T10:04` or
/// `2026-11-22 10:04:05`. A bare date means its start, or with `end_of_day` the next
/// day's start (so "to 2026-11-22" includes all of that day).
pub fn parse_time(
    field: &str,
    value: &str,
    end_of_day: bool,
) -> Result<Option<time::OffsetDateTime>, AppError> {
    use time::macros::format_description;
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let invalid = || AppError::invalid(field, "use a UTC time like 2026-11-22 or 2026-11-22T10:04");
    if let Ok(date) = time::Date::parse(value, format_description!("[year]-[month]-[day]")) {
        let date = if end_of_day {
            date.next_day().ok_or_else(invalid)?
        } else {
            date
        };
        return Ok(Some(date.midnight().assume_utc()));
    }
    let normalized = value.replacen(' ', "T", 1);
    let formats = [
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    ];
    formats
        .iter()
        .find_map(|format| time::PrimitiveDateTime::parse(&normalized, format).ok())
        .map(|t| Some(t.assume_utc()))
        .ok_or_else(invalid)
}

fn optional(value: String) -> Option<String> {
    let value = value.trim().to_owned();
    (!value.is_empty()).then_some(value)
}

/// Builds a search filter from the list page's query parameters.
#[allow(clippy::too_many_arguments)]
pub fn build_filter(
    kind: String,
    actor: String,
    outcome: String,
    from: String,
    to: String,
    q: String,
    before: String,
) -> Result<Filter, AppError> {
    let outcome = match optional(outcome) {
        None => None,
        Some(value) => Some(
            super::Outcome::parse(&value)
                .ok_or_else(|| AppError::invalid("outcome", "not a known outcome"))?,
        ),
    };
    let kind = optional(kind);
    if let Some(kind) = &kind {
        if kind.len() > 40 || !kind.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(AppError::invalid("kind", "not a known kind"));
        }
    }
    let from_time = parse_time("from", &from, false)?;
    let to_time = parse_time("to", &to, true)?;
    if let (Some(from), Some(to)) = (from_time, to_time) {
        if to <= from {
            return Err(AppError::invalid("to", "must be after from"));
        }
    }
    if q.chars().count() > 200 {
        return Err(AppError::invalid(
            "q",
            "keep the search under 200 characters",
        ));
    }
    let text = text_query(&q)?;
    Ok(Filter {
        kind,
        actor: optional(actor).map(|a| a.to_lowercase()),
        outcome,
        from: from_time,
        to: to_time,
        text,
        before: optional(before)
            .map(|cursor| parse_cursor(&cursor))
            .transpose()?,
    })
}

/// The details of one kind of entry: what a reader of the log needs beyond the title, as
/// a struct in the feature that writes it. Declare one with [`details!`], which
/// serializes it with camelCase keys (one convention for every kind, since a key once
/// written stays in the log for good) and names the kind it belongs to, so an entry's
/// kind and the shape of its details cannot disagree. Add fields; never rename one.
pub trait Details: serde::Serialize {
    /// The kind of entry these details belong to.
    fn kind(&self) -> EntryKind;
}

/// What to search for. Every field is optional; `before` is the keyset cursor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub kind: Option<String>,
    pub actor: Option<String>,
    pub outcome: Option<Outcome>,
    /// Entries that started at or after this instant.
    pub from: Option<OffsetDateTime>,
    /// Entries that started before this instant.
    pub to: Option<OffsetDateTime>,
    /// The prefix `tsquery` of the search words ([`text_query`]): all must appear in
    /// title, body, reason or actor.
    pub text: Option<String>,
    /// Only entries older than this `(started_at, id)` position.
    pub before: Option<(OffsetDateTime, i64)>,
}

/// The columns every read selects, in [`EntryRecord`]'s order. The dynamic search uses
/// it; fixed queries spell the same list out, so the macros can check them.
const COLUMNS: &str = "id, kind, title, body, actor, started_at, finished_at, outcome, reason, \
    jsonb_pretty(details) as details, incident_id, severity, created_at, \
    encode(hash, 'hex') as hash";

use crate::server::unix_ms as millis;

/// An entry as stored.
#[derive(Debug, sqlx::FromRow)]
struct EntryRecord {
    id: i64,
    kind: String,
    title: String,
    body: String,
    actor: String,
    started_at: OffsetDateTime,
    finished_at: Option<OffsetDateTime>,
    outcome: String,
    reason: Option<String>,
    details: Option<String>,
    incident_id: Option<i64>,
    severity: Option<String>,
    created_at: OffsetDateTime,
    hash: Option<String>,
}

impl EntryRecord {
    fn into_entry(self, now: OffsetDateTime) -> Entry {
        Entry {
            id: self.id,
            kind: self.kind,
            title: self.title,
            body: self.body,
            actor: self.actor,
            started_at: millis(self.started_at),
            finished_at: self.finished_at.map(millis),
            outcome: Outcome::parse(&self.outcome).unwrap_or(Outcome::Info),
            reason: self.reason,
            details: self.details.unwrap_or_else(|| "{}".into()),
            incident_id: self.incident_id,
            severity: self.severity,
            created_at: millis(self.created_at),
            hash: self.hash.unwrap_or_default(),
            started_ago: format_ago(millis(self.started_at), millis(now)),
        }
    }
}

/// Words a text search may hold.
pub const MAX_SEARCH_WORDS: usize = 8;

/// Turns free text into a prefix-matching `tsquery` (`disk:* & full:*`): only letters
/// and digits survive, so nothing a person types can break the query syntax. Each word
/// needs two characters or more (a one-letter prefix matches most of the index), and
/// at most [`MAX_SEARCH_WORDS`] are allowed; the error names the `q` field.
pub fn text_query(text: &str) -> Result<Option<String>, AppError> {
    let words: Vec<&str> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .collect();
    if let Some(short) = words.iter().find(|word| word.chars().count() < 2) {
        return Err(AppError::invalid(
            "q",
            format!("search words need two characters or more (\"{short}\" has one)"),
        ));
    }
    if words.len() > MAX_SEARCH_WORDS {
        return Err(AppError::invalid(
            "q",
            format!("search for {MAX_SEARCH_WORDS} words at most"),
        ));
    }
    let words: Vec<String> = words
        .iter()
        .map(|word| format!("{}:*", word.to_lowercase()))
        .collect();
    Ok((!words.is_empty()).then(|| words.join(" & ")))
}

/// The newest `limit` entries matching `filter`, newest first, plus whether there are
/// more; "ago" figures are as of `now`.
pub async fn search(
    pg: &PgPool,
    filter: &Filter,
    limit: i64,
    now: OffsetDateTime,
) -> Result<(Vec<Entry>, bool), sqlx::Error> {
    let mut query =
        QueryBuilder::<Postgres>::new(format!("select {COLUMNS} from runbook_history where true"));
    if let Some(kind) = &filter.kind {
        query.push(" and kind = ").push_bind(kind.clone());
    }
    if let Some(actor) = &filter.actor {
        query.push(" and actor = ").push_bind(actor.clone());
    }
    if let Some(outcome) = filter.outcome {
        query.push(" and outcome = ").push_bind(outcome.as_str());
    }
    if let Some(from) = filter.from {
        query.push(" and started_at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        query.push(" and started_at < ").push_bind(to);
    }
    if let Some(tsquery) = filter.text.clone() {
        query
            .push(" and search @@ to_tsquery('simple', ")
            .push_bind(tsquery)
            .push(")");
    }
    if let Some((started_at, id)) = filter.before {
        query
            .push(" and (started_at, id) < (")
            .push_bind(started_at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    query
        .push(" order by started_at desc, id desc limit ")
        .push_bind(limit + 1);
    let rows = query.build_query_as::<EntryRecord>().fetch_all(pg).await?;
    let more = rows.len() as i64 > limit;
    let entries = rows
        .into_iter()
        .take(limit as usize)
        .map(|row| row.into_entry(now))
        .collect();
    Ok((entries, more))
}

/// Encodes the keyset position after `entry`.
pub fn cursor_after(entry: &Entry) -> String {
    format!("{}_{}", entry.started_at, entry.id)
}

/// Decodes a cursor written by [`cursor_after`].
pub fn parse_cursor(cursor: &str) -> Result<(OffsetDateTime, i64), AppError> {
    let invalid = || AppError::invalid("before", "not a position this console wrote");
    let (ms, id) = cursor.split_once('_').ok_or_else(invalid)?;
    let ms: i64 = ms.parse().map_err(|_| invalid())?;
    let id: i64 = id.parse().map_err(|_| invalid())?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|_| invalid())?;
    // Exact: the insert trigger truncates `started_at` to milliseconds.
    Ok((at, id))
}

/// One entry, with an incident's timeline.
pub async fn load(
    pg: &PgPool,
    id: i64,
    now: OffsetDateTime,
) -> Result<Option<EntryView>, sqlx::Error> {
    let Some(record) = sqlx::query_as!(
        EntryRecord,
        r#"select id, kind, title, body, actor, started_at, finished_at, outcome, reason,
                  jsonb_pretty(details) as details, incident_id, severity, created_at,
                  encode(hash, 'hex') as hash
           from runbook_history where id = $1"#,
        id
    )
    .fetch_optional(pg)
    .await?
    else {
        return Ok(None);
    };
    let entry = record.into_entry(now);
    let mut timeline = Vec::new();
    let mut resolved_at = None;
    if EntryKind::Incident.is(&entry.kind) {
        timeline = sqlx::query_as!(
            EntryRecord,
            r#"select id, kind, title, body, actor, started_at, finished_at, outcome, reason,
                      jsonb_pretty(details) as details, incident_id, severity, created_at,
                      encode(hash, 'hex') as hash
               from runbook_history where incident_id = $1
               order by started_at, id limit 500"#,
            id
        )
        .fetch_all(pg)
        .await?
        .into_iter()
        .map(|record| record.into_entry(now))
        .collect::<Vec<_>>();
        resolved_at = entry.finished_at.or_else(|| {
            timeline
                .iter()
                .filter(|e| EntryKind::IncidentResolved.is(&e.kind))
                .map(|e| e.finished_at.unwrap_or(e.started_at))
                .max()
        });
    }
    Ok(Some(EntryView {
        entry,
        timeline,
        resolved_at,
    }))
}

/// Whether `id` is an incident.
pub async fn is_incident(pg: &PgPool, id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select exists (select 1 from runbook_history where id = $1 and kind = $2)
               as "exists!""#,
        id,
        EntryKind::Incident.as_str()
    )
    .fetch_one(pg)
    .await
}

/// The incidents not resolved yet, newest first (at most `limit`): id, title and when
/// each began (unix ms). Reads the kind index and probes the incident index per incident.
pub async fn open_incidents(
    pg: &PgPool,
    limit: i64,
) -> Result<Vec<(i64, String, i64)>, sqlx::Error> {
    let rows: Vec<(i64, String, OffsetDateTime)> = sqlx::query_as(
        "select i.id, i.title, i.started_at from runbook_history i
          where i.kind = $1
            and not exists (select 1 from runbook_history r
                             where r.incident_id = i.id and r.kind = $2)
          order by i.started_at desc, i.id desc limit $3",
    )
    .bind(EntryKind::Incident.as_str())
    .bind(EntryKind::IncidentResolved.as_str())
    .bind(limit)
    .fetch_all(pg)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, title, at)| (id, title, crate::server::unix_ms(at)))
        .collect())
}

/// Everyone who appears as an actor, in order, read by skipping through the actor index
/// (one index probe per actor, however many entries each has). At most `limit`.
pub async fn actors(pg: &PgPool, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"with recursive found(actor) as (
               (select actor from runbook_history order by actor limit 1)
               union all
               select (select h.actor from runbook_history h where h.actor > found.actor
                       order by h.actor limit 1)
               from found where found.actor is not null
           )
           select actor as "actor!" from found where actor is not null limit $1"#,
        limit
    )
    .fetch_all(pg)
    .await
}
