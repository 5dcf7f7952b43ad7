//! Silences: a kind and optionally a key pattern, muted until a required end. A muted
//! alert is still raised, recorded and listed (marked muted), never hidden; its
//! notifications stay quiet.

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use super::super::Silence;
use super::kind::{find, AlertKind};
use super::store::match_silences;
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::format::format_utc;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::server::unix_ms;

crate::history::ssr::details! {
    /// Alerts of a kind (and key pattern) silenced until a time (Unix ms).
    struct Silenced for Silence {
        silence_id: i64,
        kind: String,
        key_pattern: Option<String>,
        ends_at: i64,
    }

    /// A silence ended before its time.
    struct SilenceEnded for Silence {
        silence_id: i64,
        kind: String,
        ended: bool,
    }
}

/// `*` matches anything; everything else literally (as a LIKE pattern).
pub fn like_pattern(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 2);
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A silence as a person asks for it.
#[derive(Clone, Debug)]
pub struct NewSilence {
    pub kind: String,
    pub key_pattern: Option<String>,
    pub ends_at: Option<OffsetDateTime>,
    pub reason: crate::reason::Reason,
}

/// Creates a silence; it mutes matching open alerts at once. Refused (422, naming the
/// field) without a known kind, or without an end in the future.
pub async fn create(
    pg: &PgPool,
    kinds: &[&'static AlertKind],
    actor: &Actor,
    silence: NewSilence,
    now: OffsetDateTime,
) -> Result<i64, AppError> {
    if find(kinds, &silence.kind).is_none() {
        let names: Vec<&str> = kinds.iter().map(|k| k.name).collect();
        return Err(AppError::invalid(
            "kind",
            format!(
                "no alert kind is named `{}`; the kinds are {}",
                silence.kind,
                names.join(", ")
            ),
        ));
    }
    let pattern = silence
        .key_pattern
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty() && p != "*");
    if pattern.as_ref().is_some_and(|p| p.chars().count() > 200) {
        return Err(AppError::invalid(
            "key",
            "keep the key pattern under 200 characters",
        ));
    }
    let ends_at = silence
        .ends_at
        .ok_or_else(|| AppError::invalid("ends_at", "a silence needs an end time"))?;
    if ends_at <= now {
        return Err(AppError::invalid(
            "ends_at",
            format!(
                "must be in the future (it is {} now)",
                format_utc(unix_ms(now))
            ),
        ));
    }
    if ends_at > now + time::Duration::days(30) {
        return Err(AppError::invalid(
            "ends_at",
            "a silence lasts at most 30 days",
        ));
    }
    let internal = AppError::wrap("Failed to create the silence");
    let mut tx = pg.begin().await.map_err(&internal)?;
    let like = pattern
        .as_deref()
        .map_or_else(|| "%".to_owned(), like_pattern);
    let id = sqlx::query_scalar!(
        "insert into alert_silences (kind, key_pattern, key_like, starts_at, ends_at, created_by, reason)
         values ($1, $2, $3, $4, $5, $6, $7) returning id",
        silence.kind,
        pattern,
        like,
        now,
        ends_at,
        actor.name,
        silence.reason.as_str()
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(&internal)?;
    match_silences(&mut tx, now).await.map_err(&internal)?;
    let details = Silenced {
        silence_id: id,
        kind: silence.kind.clone(),
        key_pattern: pattern.clone(),
        ends_at: unix_ms(ends_at),
    };
    let entry = NewEntry::new(
        details,
        format!(
            "Silenced {}{} until {}",
            silence.kind,
            pattern
                .as_deref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default(),
            format_utc(unix_ms(ends_at))
        ),
        actor,
        Outcome::Info,
    )
    .with_times(now, Some(now))
    .with_reason(Some(silence.reason.clone()));
    append(&mut tx, &entry).await.map_err(&internal)?;
    tx.commit().await.map_err(&internal)?;
    Ok(id)
}

/// Ends silence `id` now.
pub async fn end(
    pg: &PgPool,
    actor: &Actor,
    id: i64,
    reason: &crate::reason::Reason,
    now: OffsetDateTime,
) -> Result<(), AppError> {
    let internal = AppError::wrap("Failed to end the silence");
    let mut tx = pg.begin().await.map_err(&internal)?;
    let row = sqlx::query!(
        "select kind, key_pattern, ends_at, ended_at from alert_silences where id = $1 for update",
        id
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(&internal)?
    .map(|row| (row.kind, row.key_pattern, row.ends_at, row.ended_at));
    let Some((kind, pattern, ends_at, ended_at)) = row else {
        return Err(AppError::NotFound {
            what: format!("Silence #{id}"),
        });
    };
    if ended_at.is_some() || ends_at <= now {
        return Err(AppError::Conflict {
            message: format!("Silence #{id} has already ended."),
        });
    }
    sqlx::query!(
        "update alert_silences set ended_at = $2, ended_by = $3, end_reason = $4 where id = $1",
        id,
        now,
        actor.name,
        reason.as_str()
    )
    .execute(&mut *tx)
    .await
    .map_err(&internal)?;
    let details = SilenceEnded {
        silence_id: id,
        kind: kind.clone(),
        ended: true,
    };
    let entry = NewEntry::new(
        details,
        format!(
            "Ended silence #{id} of {kind}{}",
            pattern
                .as_deref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        ),
        actor,
        Outcome::Info,
    )
    .with_times(now, Some(now))
    .with_reason(Some(reason.clone()));
    append(&mut tx, &entry).await.map_err(&internal)?;
    tx.commit().await.map_err(&internal)?;
    Ok(())
}

const SILENCE_COLUMNS: &str = "s.id, s.kind, s.key_pattern, s.starts_at, s.ends_at, s.created_by,
    s.reason, s.ended_at, s.ended_by, s.last_matched_at,
    (select count(*) from alert_silence_matches m where m.silence_id = s.id) as matched";

fn silence_from_row(row: &PgRow, now: OffsetDateTime, idle_after: std::time::Duration) -> Silence {
    let ended_at: Option<OffsetDateTime> = row.get("ended_at");
    let ends_at: OffsetDateTime = row.get("ends_at");
    let starts_at: OffsetDateTime = row.get("starts_at");
    let last_matched_at: Option<OffsetDateTime> = row.get("last_matched_at");
    let active = ended_at.is_none() && ends_at > now;
    let idle_since = now - idle_after;
    Silence {
        id: row.get("id"),
        kind: row.get("kind"),
        key_pattern: row.get("key_pattern"),
        starts_at: unix_ms(starts_at),
        ends_at: unix_ms(ends_at),
        created_by: row.get("created_by"),
        reason: row.get("reason"),
        ended_at: ended_at.map(unix_ms),
        ended_by: row.get("ended_by"),
        matched: row.get("matched"),
        last_matched_at: last_matched_at.map(unix_ms),
        idle: active && starts_at < idle_since && last_matched_at.is_none_or(|t| t < idle_since),
        active,
    }
}

/// Active silences and the 20 that ended last.
pub async fn list(
    pg: &PgPool,
    now: OffsetDateTime,
    idle_after: std::time::Duration,
) -> Result<Vec<Silence>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "(select {SILENCE_COLUMNS} from alert_silences s
           where s.ended_at is null and s.ends_at > $1 order by s.ends_at)
         union all
         (select {SILENCE_COLUMNS} from alert_silences s
           where s.ended_at is not null or s.ends_at <= $1
           order by coalesce(s.ended_at, s.ends_at) desc limit 20)"
    ))
    .bind(now)
    .fetch_all(pg)
    .await?;
    Ok(rows
        .iter()
        .map(|r| silence_from_row(r, now, idle_after))
        .collect())
}

/// The silences that matched alert `id`, active or expired.
pub async fn of_alert(
    pg: &PgPool,
    id: i64,
    now: OffsetDateTime,
    idle_after: std::time::Duration,
) -> Result<Vec<Silence>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "select {SILENCE_COLUMNS} from alert_silences s
          where s.id in (select silence_id from alert_silence_matches where alert_id = $2)
          order by s.starts_at desc"
    ))
    .bind(now)
    .bind(id)
    .fetch_all(pg)
    .await?;
    Ok(rows
        .iter()
        .map(|r| silence_from_row(r, now, idle_after))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn a_key_pattern_matches_stars_and_nothing_else_as_a_wildcard() {
        assert_eq!(like_pattern("requests"), "requests");
        assert_eq!(like_pattern("org_*"), "org\\_%");
        assert_eq!(like_pattern("100%"), "100\\%");
    }
}
