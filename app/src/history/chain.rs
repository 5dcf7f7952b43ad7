//! Verifying the runbook history: every hash recomputed here (never trusting the
//! database's copy of the digest function), the chain walked beside its anchors in
//! ClickHouse, one verification at a time, each recorded in the history.

use sqlx::PgPool;
use time::OffsetDateTime;

use super::ssr::{record, NewEntry};
use super::{BrokenLink, ChainReport, Outcome};
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::history::EntryKind;
use crate::server::unix_ms as millis;

/// An entry as the chain digest sees it: every column the digest covers, `details` as
/// jsonb's normalised text (PostgreSQL's own output function, not Salvage's SQL).
struct ChainRow {
    id: i64,
    kind: String,
    title: String,
    body: String,
    actor: String,
    actor_user_id: Option<i64>,
    started_at: OffsetDateTime,
    finished_at: Option<OffsetDateTime>,
    outcome: String,
    reason: Option<String>,
    details: String,
    incident_id: Option<i64>,
    severity: Option<String>,
    created_at: OffsetDateTime,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

/// A string as jsonb prints it: `"`, `\` and control characters escaped, the rest as is.
fn json_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_opt_text(value: Option<&str>) -> String {
    value.map_or_else(|| "null".to_owned(), json_text)
}

fn json_opt_int(value: Option<i64>) -> String {
    value.map_or_else(|| "null".to_owned(), |n| n.to_string())
}

/// Microseconds since the epoch, as the digest takes times (independent of time zones).
fn micros(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000) as i64
}

/// The entry's digest, computed here the way the migration's `runbook_history_digest`
/// defines it: `sha256(prev_hash || jsonb_build_array(…)::text)`. Verification never
/// trusts the database's copy of that function, which its owner could replace.
fn digest(row: &ChainRow) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let canonical = [
        row.id.to_string(),
        json_text(&row.kind),
        json_text(&row.title),
        json_text(&row.body),
        json_text(&row.actor),
        json_opt_int(row.actor_user_id),
        micros(row.started_at).to_string(),
        json_opt_int(row.finished_at.map(micros)),
        json_text(&row.outcome),
        json_opt_text(row.reason.as_deref()),
        row.details.clone(),
        json_opt_int(row.incident_id),
        json_opt_text(row.severity.as_deref()),
        micros(row.created_at).to_string(),
    ]
    .join(", ");
    let mut hasher = Sha256::new();
    hasher.update(&row.prev_hash);
    hasher.update(b"[");
    hasher.update(canonical.as_bytes());
    hasher.update(b"]");
    hasher.finalize().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What is wrong with `row`, given the id and hash the entry before it should have.
fn chain_problem(row: &ChainRow, expected_id: i64, expected_prev: &[u8]) -> Option<&'static str> {
    if digest(row) != row.hash {
        Some("its contents no longer match its hash: it was changed after it was written")
    } else if row.prev_hash != expected_prev {
        Some("it does not link to the entry before it: an entry before it was changed or removed")
    } else if row.id != expected_id {
        Some("an entry before it is missing")
    } else {
        None
    }
}

/// Walks the whole chain in id order, recomputing every hash here, and reports the
/// first entry whose contents or link to its predecessor do not match. Rows stream
/// through: memory stays flat however long the history is.
pub async fn verify(
    pg: &PgPool,
    clickhouse: &crate::server::clickhouse::ClickHouse,
    now: OffsetDateTime,
    by: &str,
) -> Result<ChainReport, sqlx::Error> {
    use futures::TryStreamExt;
    let mut anchors = super::anchor::AnchorWalk::start(clickhouse).await;
    let mut rows = sqlx::query_as!(
        ChainRow,
        r#"select id, kind, title, body, actor, actor_user_id, started_at, finished_at,
                  outcome, reason, details::text as "details!", incident_id, severity,
                  created_at, prev_hash, hash
           from runbook_history order by id"#
    )
    .fetch(pg);
    let mut entries = 0_i64;
    let mut expected_id = 1_i64;
    let mut expected_prev: Vec<u8> = Vec::new();
    let mut first_broken = None;
    while let Some(row) = rows.try_next().await? {
        entries += 1;
        if first_broken.is_none() {
            if let Some(problem) = chain_problem(&row, expected_id, &expected_prev) {
                first_broken = Some(BrokenLink {
                    id: row.id,
                    problem: problem.to_owned(),
                });
            }
        }
        anchors.entry(row.id, &hex(&row.hash)).await;
        expected_id = row.id + 1;
        expected_prev = row.hash;
    }
    Ok(ChainReport {
        entries,
        first_broken,
        head_hash: (entries > 0).then(|| hex(&expected_prev)),
        verified_at: millis(now),
        verified_by: by.to_owned(),
        anchors: anchors.finish(expected_id - 1).await,
    })
}

/// Verifies the chain on behalf of `actor` and records the result in the history (its
/// report is the entry's details): the one function behind the button and
/// `salvage history verify`. One verification runs at a time across every replica;
/// another caller gets 409.
pub async fn verify_and_record(
    state: &crate::server::AppState,
    actor: &Actor,
) -> Result<ChainReport, AppError> {
    use crate::server::postgres::{lock_class, try_exclusive};
    let _exclusive = try_exclusive(&state.pg, lock_class::CHAIN_VERIFY, 0)
        .await
        .map_err(AppError::wrap("Failed to start a chain verification"))?
        .ok_or_else(|| AppError::Conflict {
            message: "A chain verification is already running; its result shows here when \
                      it ends."
                .into(),
        })?;
    let started = state.clock.now();
    let report = verify(&state.pg, &state.clickhouse, started, &actor.name)
        .await
        .map_err(AppError::wrap("Failed to verify the history chain"))?;
    let (title, outcome) = match (&report.first_broken, &report.anchors.problem) {
        (Some(broken), _) => (
            format!("History chain broken at entry #{}", broken.id),
            Outcome::Failed,
        ),
        (None, Some(_)) => (
            "History chain disagrees with its anchors".to_owned(),
            Outcome::Failed,
        ),
        (None, None) if report.anchors.unavailable => (
            format!(
                "History chain verified: {} entries intact (anchors not compared: ClickHouse did not answer)",
                report.entries
            ),
            Outcome::Partial,
        ),
        (None, None) => (
            format!("History chain verified: {} entries intact", report.entries),
            Outcome::Succeeded,
        ),
    };
    record(
        &state.pg,
        &NewEntry::new(&report, title, actor, outcome).with_times(started, Some(state.clock.now())),
        "Failed to record a chain verification",
    )
    .await?;
    tracing::info!(actor = %actor.name, entries = report.entries,
        broken = ?report.first_broken.as_ref().map(|b| b.id), "history chain verified");
    Ok(report)
}

/// A verification's entry carries its whole report.
impl crate::history::ssr::Details for ChainReport {
    fn kind(&self) -> EntryKind {
        EntryKind::ChainVerify
    }
}

/// The newest recorded chain verification (its report is the entry's details).
pub async fn last_verification(pg: &PgPool) -> Result<Option<ChainReport>, sqlx::Error> {
    let details = sqlx::query_scalar!(
        "select details from runbook_history where kind = $1
         order by started_at desc, id desc limit 1",
        EntryKind::ChainVerify.as_str()
    )
    .fetch_optional(pg)
    .await?;
    Ok(details.and_then(|value| serde_json::from_value(value).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_jsonb_prints_them() {
        assert_eq!(json_text("plain é ✓"), "\"plain é ✓\"");
        assert_eq!(json_text("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(
            json_text("\n\t\r\u{8}\u{c}\u{1}"),
            "\"\\n\\t\\r\\b\\f\\u0001\""
        );
        assert_eq!(json_opt_text(None), "null");
    }
}
