//! `POST /ingest/schema-events`: the guarded service tells Salvage its schema changed, so
//! a passing restore drill becomes due within a week (a backup taken before the change
//! restores into a schema the service no longer has; the drill proves the new one).
//!
//! Body: `{"name": "billing", "version": "2026_12_01_add_refunds", "changed_at":
//! "2026-12-07T10:00:00Z"}` with an ingest key of every organisation (`changed_at` may be
//! left out: now). A `(name, version)` is one change: sent again with the same time (or
//! none) it answers the first record (200, `duplicate: true`); with another time, 409.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::cadence::AFTER_CHANGE;
use crate::error::AppError;
use crate::server::{unix_ms, AppState};

/// The largest body the route reads.
pub const MAX_BODY_BYTES: usize = 4 * 1024;
/// The longest name or version.
const MAX_TEXT: usize = 200;
/// How far ahead of Salvage's clock a change may say it happened (clocks drift).
const FUTURE_SKEW: time::Duration = time::Duration::minutes(5);

/// What recording a schema change did (the answer of `/ingest/schema-events`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaEventAnswer {
    pub id: i64,
    /// This `(name, version)` was recorded before with the same time: nothing new written.
    pub duplicate: bool,
    /// When a passing restore drill is due because of it (Unix ms).
    pub drill_due_ms: i64,
}

/// A schema change as the service sends it, checked: each error names its field.
#[derive(Debug, PartialEq)]
pub struct SchemaEvent {
    pub name: String,
    pub version: String,
    /// To the microsecond, as PostgreSQL keeps it (so a retry compares equal).
    pub changed_at: OffsetDateTime,
    /// The caller said when (else now, and a retry of a recorded change is that change).
    pub changed_at_given: bool,
}

/// Parses and checks a request body at `now`.
pub fn parse(body: &[u8], now: OffsetDateTime) -> Result<SchemaEvent, AppError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| AppError::BadRequest {
        message: format!("the body is not JSON ({e})"),
    })?;
    let Value::Object(object) = value else {
        return Err(AppError::BadRequest {
            message: "the body must be a JSON object with name, version and changed_at".into(),
        });
    };
    let text = |field: &str| -> Result<String, AppError> {
        match object.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                let s = s.trim();
                if s.chars().count() > MAX_TEXT {
                    return Err(AppError::invalid(
                        field,
                        format!("at most {MAX_TEXT} characters"),
                    ));
                }
                if s.chars().any(char::is_control) {
                    return Err(AppError::invalid(field, "no control characters"));
                }
                Ok(s.to_owned())
            }
            _ => Err(AppError::invalid(field, "required, a non-empty string")),
        }
    };
    let name = text("name")?;
    let version = text("version")?;
    let given = !matches!(object.get("changed_at"), None | Some(Value::Null));
    let changed_at = match object.get("changed_at") {
        None | Some(Value::Null) => now,
        Some(Value::String(s)) => OffsetDateTime::parse(s.trim(), &Rfc3339).map_err(|_| {
            AppError::invalid("changed_at", "an RFC 3339 time, e.g. 2026-12-07T10:00:00Z")
        })?,
        Some(_) => {
            return Err(AppError::invalid(
                "changed_at",
                "an RFC 3339 time as a string",
            ))
        }
    };
    if changed_at > now + FUTURE_SKEW {
        return Err(AppError::invalid(
            "changed_at",
            "in the future: send a change once it is applied",
        ));
    }
    let changed_at = changed_at
        .replace_nanosecond(changed_at.nanosecond() / 1000 * 1000)
        .unwrap_or(changed_at);
    Ok(SchemaEvent {
        name,
        version,
        changed_at,
        changed_at_given: given,
    })
}

/// Records `event`: a new row, or the first record of the same change.
pub async fn record(
    state: &AppState,
    event: &SchemaEvent,
    key_id: Option<i64>,
) -> Result<SchemaEventAnswer, AppError> {
    let pg_err = AppError::wrap("Record a schema change");
    let inserted = sqlx::query_scalar!(
        "insert into schema_events (name, version, changed_at, received_at, key_id)
         values ($1, $2, $3, $4, $5)
         on conflict (name, version) do nothing returning id",
        event.name,
        event.version,
        event.changed_at,
        state.clock.now(),
        key_id
    )
    .fetch_optional(&state.pg)
    .await
    .map_err(&pg_err)?;
    let (id, changed_at, duplicate) = match inserted {
        Some(id) => (id, event.changed_at, false),
        None => {
            let seen = sqlx::query!(
                "select id, changed_at from schema_events where name = $1 and version = $2",
                event.name,
                event.version
            )
            .fetch_one(&state.pg)
            .await
            .map_err(&pg_err)?;
            if event.changed_at_given && seen.changed_at != event.changed_at {
                return Err(AppError::Conflict {
                    message: format!(
                        "{}'s schema version {} was recorded as changed at {}; nothing was \
                         stored. Send a new version for a new change.",
                        event.name,
                        event.version,
                        seen.changed_at.format(&Rfc3339).unwrap_or_default()
                    ),
                });
            }
            (seen.id, seen.changed_at, true)
        }
    };
    if !duplicate {
        tracing::info!(name = %event.name, version = %event.version, "schema change recorded");
    }
    Ok(SchemaEventAnswer {
        id,
        duplicate,
        drill_due_ms: unix_ms(changed_at + AFTER_CHANGE),
    })
}

/// `POST /ingest/schema-events`.
pub async fn handler(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let result = async {
        let key = crate::ingest_keys::ssr::service_key(
            &state.pg,
            state.ingest_keys(),
            &parts.headers,
            "a schema change makes a restore drill due for every organisation",
        )
        .await?;
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| AppError::TooLarge {
                message: format!("the body is larger than {} KiB", MAX_BODY_BYTES / 1024),
            })?;
        let event = parse(&body, state.clock.now())?;
        let answer = record(&state, &event, Some(key.key_id)).await?;
        let address = crate::server::client::client_ip(&state.trusted_proxies, &parts);
        let rows = i64::from(!answer.duplicate);
        state
            .key_usage()
            .record(key.key_id, address, rows, state.clock.now());
        Ok(answer)
    }
    .await;
    let created = |answer: SchemaEventAnswer| match answer.duplicate {
        true => (StatusCode::OK, answer),
        false => (StatusCode::CREATED, answer),
    };
    crate::ingest_keys::ssr::answer(result.map(created))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-12-07T12:00:00Z", &Rfc3339).unwrap()
    }

    #[test]
    fn a_change_parses_with_or_without_its_time_and_each_bad_field_is_named() {
        let full = parse(
            br#"{"name":"billing","version":"42","changed_at":"2026-12-07T10:00:00Z"}"#,
            now(),
        )
        .unwrap();
        assert_eq!(full.name, "billing");
        assert_eq!(full.changed_at, now() - time::Duration::hours(2));
        let bare = parse(br#"{"name":"billing","version":"42"}"#, now()).unwrap();
        assert_eq!(bare.changed_at, now());
        assert!(full.changed_at_given && !bare.changed_at_given);
        let precise = parse(
            br#"{"name":"b","version":"1","changed_at":"2026-12-07T10:00:00.123456789Z"}"#,
            now(),
        )
        .unwrap();
        assert_eq!(
            precise.changed_at.nanosecond(),
            123_456_000,
            "PostgreSQL's microseconds"
        );
        // Five minutes ahead is clock drift; six is the future.
        assert!(parse(
            br#"{"name":"b","version":"1","changed_at":"2026-12-07T12:05:00Z"}"#,
            now()
        )
        .is_ok());
        let long = "x".repeat(MAX_TEXT + 1);
        for (body, field) in [
            (r#"{"version":"1"}"#.to_owned(), "name"),
            (r#"{"name":" ","version":"1"}"#.to_owned(), "name"),
            (r#"{"name":"b"}"#.to_owned(), "version"),
            (format!(r#"{{"name":"b","version":"{long}"}}"#), "version"),
            (r#"{"name":"b\u0007","version":"1"}"#.to_owned(), "name"),
            (
                r#"{"name":"b","version":"1","changed_at":"yesterday"}"#.to_owned(),
                "changed_at",
            ),
            (
                r#"{"name":"b","version":"1","changed_at":1733500000}"#.to_owned(),
                "changed_at",
            ),
            (
                r#"{"name":"b","version":"1","changed_at":"2026-12-07T12:06:00Z"}"#.to_owned(),
                "changed_at",
            ),
        ] {
            match parse(body.as_bytes(), now()) {
                Err(AppError::Invalid { field: f, .. }) => assert_eq!(f, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        assert!(matches!(
            parse(b"[1]", now()),
            Err(AppError::BadRequest { .. })
        ));
    }
}
