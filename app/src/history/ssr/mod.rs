//! Writing the runbook history (reading it: [`read`]; verifying it: [`super::chain`]),
//! and the hooks through which it reaches incident mode above it.
//!
//! [`append`] is the only writer. It runs in the caller's transaction, so an action and
//! its record commit (or roll back) together. The chain itself (ids, `prev_hash`, `hash`)
//! is computed by the table's insert trigger under an advisory lock, and UPDATE, DELETE
//! and TRUNCATE are refused by triggers: see the migration.

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use super::{EntryKind, Outcome};

use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::reason::Reason;

pub mod read;

pub use read::*;

/// Declares the typed details of a kind of history entry:
///
/// ```ignore
/// details! {
///     /// A webhook was switched on or off.
///     pub struct WebhookToggled for Webhook { pub webhook_id: i64, pub enabled: bool }
/// }
/// ```
///
/// The struct derives `Serialize` with camelCase keys and implements [`Details`] with
/// `EntryKind::Webhook`.
macro_rules! details {
    ($(
        $(#[$meta:meta])*
        $vis:vis struct $name:ident for $kind:ident {
            $( $(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty ),* $(,)?
        }
    )+) => {$(
        $(#[$meta])*
        #[derive(Clone, Debug, serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        $vis struct $name {
            $( $(#[$field_meta])* $field_vis $field: $ty, )*
        }

        impl $crate::history::ssr::Details for $name {
            fn kind(&self) -> $crate::history::EntryKind {
                $crate::history::EntryKind::$kind
            }
        }
    )+};
}

pub(crate) use details;

impl<D: Details> Details for &D {
    fn kind(&self) -> EntryKind {
        (*self).kind()
    }
}

details! {
    /// A note: its title and body say it all.
    pub struct Note for Note {}

    /// A declared incident: its title, body, severity and times say it all.
    pub struct IncidentDeclared for Incident {}

    /// An incident resolved: its time and body (and any override), and the post-recovery
    /// checklist as it stood then (incident mode's items; absent on resolutions recorded
    /// before the checklist was kept with them).
    pub struct IncidentResolved for IncidentResolved {
        #[serde(default, skip_serializing_if = "Value::is_null")]
        pub checklist: Value,
    }
}

/// An entry to append. Build it with [`NewEntry::new`] and the `with_*` setters.
#[derive(Clone, Debug)]
pub struct NewEntry {
    kind: EntryKind,
    pub title: String,
    pub body: String,
    pub actor: String,
    pub actor_user_id: Option<i64>,
    pub started_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
    pub outcome: Outcome,
    /// Why, when a person said (read through the one rule of `Reason` at every door).
    pub reason: Option<Reason>,
    details: Value,
    pub incident_id: Option<i64>,
    pub severity: Option<String>,
}

impl NewEntry {
    /// An instantaneous entry by `actor`, started and finished now, of the kind its
    /// `details` belong to.
    pub fn new(
        details: impl Details,
        title: impl Into<String>,
        actor: &Actor,
        outcome: Outcome,
    ) -> Self {
        let now = OffsetDateTime::now_utc();
        let kind = details.kind();
        // Serializing a struct of plain fields cannot fail; `{}` is the fallback anyway.
        let details =
            serde_json::to_value(&details).unwrap_or_else(|_| Value::Object(Default::default()));
        debug_assert!(
            camel_case_keys(&details),
            "history details keys are camelCase: {details}"
        );
        Self {
            kind,
            title: title.into(),
            body: String::new(),
            actor: actor.name.clone(),
            actor_user_id: actor.user_id,
            started_at: now,
            finished_at: Some(now),
            outcome,
            reason: None,
            details,
            incident_id: None,
            severity: None,
        }
    }

    pub fn kind(&self) -> EntryKind {
        self.kind
    }

    /// The details as they will be stored.
    pub fn details(&self) -> &Value {
        &self.details
    }

    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    pub fn with_reason(mut self, reason: Option<Reason>) -> Self {
        self.reason = reason;
        self
    }

    pub fn with_times(mut self, started: OffsetDateTime, finished: Option<OffsetDateTime>) -> Self {
        self.started_at = started;
        self.finished_at = finished;
        self
    }

    pub fn with_incident(mut self, incident_id: Option<i64>) -> Self {
        self.incident_id = incident_id;
        self
    }

    pub fn with_severity(mut self, severity: Option<String>) -> Self {
        self.severity = severity;
        self
    }
}

/// Whether every key of `details` (an object, or nothing) is camelCase: a lower-case
/// ASCII letter, then letters and digits.
pub fn camel_case_keys(details: &Value) -> bool {
    match details {
        Value::Object(map) => map.keys().all(|key| {
            let mut chars = key.chars();
            chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_alphanumeric())
        }),
        Value::Null => true,
        _ => false,
    }
}

/// Appends `entry` in the caller's transaction and returns its id. The caller must run
/// at READ COMMITTED (the default) and should append last: the chain lock is held until
/// the transaction ends.
pub async fn append(conn: &mut PgConnection, entry: &NewEntry) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "insert into runbook_history
            (kind, title, body, actor, actor_user_id, started_at, finished_at, outcome,
             reason, details, incident_id, severity)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         returning id",
        entry.kind.as_str(),
        entry.title,
        entry.body,
        entry.actor,
        entry.actor_user_id,
        entry.started_at,
        entry.finished_at,
        entry.outcome.as_str(),
        entry.reason.as_ref().map(Reason::as_str),
        entry.details,
        entry.incident_id,
        entry.severity,
    )
    .fetch_one(conn)
    .await
}

/// Appends `entry` in a transaction of its own, for records that accompany no other
/// write (notes, incidents). `context` names the action in the server log on failure.
pub async fn record(pg: &PgPool, entry: &NewEntry, context: &'static str) -> Result<i64, AppError> {
    let internal = |e: sqlx::Error| AppError::internal(context, e);
    let mut tx = pg.begin().await.map_err(internal)?;
    let id = append(&mut tx, entry).await.map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    Ok(id)
}

impl crate::server::AppState {
    /// Incident mode, as the history reaches it (`registry::INCIDENT_HOOKS`).
    pub fn incidents(&self) -> &IncidentHooks {
        self.part()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::unix_ms as millis;

    details! {
        /// Two words in each field name, to see the convention applied.
        struct Sample for Webhook {
            webhook_id: i64,
            key_id: Option<String>,
            #[serde(rename = "type")]
            kind_of: &'static str,
        }
    }

    #[test]
    fn declared_details_name_their_kind_and_serialize_in_camel_case() {
        let sample = Sample {
            webhook_id: 7,
            key_id: None,
            kind_of: "functional",
        };
        let entry = NewEntry::new(&sample, "t", &Actor::system("test"), Outcome::Info);
        assert_eq!(entry.kind(), EntryKind::Webhook);
        assert_eq!(
            entry.details(),
            &serde_json::json!({"webhookId": 7, "keyId": null, "type": "functional"})
        );
        // Details-less kinds store an empty object, as entries always have.
        let note = NewEntry::new(Note {}, "t", &Actor::system("test"), Outcome::Info);
        assert_eq!(note.kind(), EntryKind::Note);
        assert_eq!(note.details(), &serde_json::json!({}));
    }

    #[test]
    fn details_keys_follow_one_convention() {
        use serde_json::json;
        assert!(camel_case_keys(
            &json!({"runId": 1, "drillId": 2, "sha256": "x"})
        ));
        assert!(camel_case_keys(&json!({})));
        assert!(!camel_case_keys(&json!({"cron_run_id": 1})));
        assert!(!camel_case_keys(&json!({"RunId": 1})));
        assert!(!camel_case_keys(&json!([1, 2])));
    }

    #[test]
    fn form_times_are_read_as_utc_and_dates_cover_the_whole_day() {
        let start = parse_time("from", "2026-11-22", false).unwrap().unwrap();
        let end = parse_time("to", "2026-11-22", true).unwrap().unwrap();
        assert_eq!(end - start, time::Duration::days(1));
        let minute = parse_time("from", "2026-11-22T10:04", false)
            .unwrap()
            .unwrap();
        assert_eq!((minute.hour(), minute.minute()), (10, 4));
        assert!(parse_time("from", "  ", false).unwrap().is_none());
        assert_eq!(
            parse_time("from", "yesterday", false).unwrap_err(),
            AppError::invalid("from", "use a UTC time like 2026-11-22 or 2026-11-22T10:04")
        );
    }

    #[test]
    fn a_filter_with_to_before_from_names_the_field() {
        let error = build_filter(
            "".into(),
            "".into(),
            "".into(),
            "2026-11-22".into(),
            "2026-11-01".into(),
            "".into(),
            "".into(),
        )
        .unwrap_err();
        assert!(matches!(error, AppError::Invalid { field, .. } if field == "to"));
    }

    #[test]
    fn free_text_becomes_a_safe_prefix_query() {
        assert_eq!(
            text_query("Disk full!").unwrap().as_deref(),
            Some("disk:* & full:*")
        );
        assert_eq!(
            text_query("ab & bc | !cd:*'").unwrap().as_deref(),
            Some("ab:* & bc:* & cd:*")
        );
        assert_eq!(text_query("  ::  ").unwrap(), None);
    }

    #[test]
    fn one_letter_words_and_long_searches_are_refused_naming_q() {
        for text in [
            "a b c d e f g h",
            "disk a",
            "one two three four five six seven eight nine",
        ] {
            let error = text_query(text).unwrap_err();
            assert!(
                matches!(&error, AppError::Invalid { field, .. } if field == "q"),
                "{text}"
            );
        }
    }

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let (at, id) = parse_cursor("1795000000123_42").unwrap();
        assert_eq!(id, 42);
        assert_eq!(millis(at), 1_795_000_000_123);
        assert!(parse_cursor("nope").is_err());
        assert!(parse_cursor("1_x").is_err());
    }
}

/// A boxed future of a hook.
pub type HookFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// What the history asks of incident mode, which sits above it: the composition root
/// hands these to `AppState::incidents` (see `registry::INCIDENT_HOOKS`).
#[derive(Clone, Copy)]
pub struct IncidentHooks {
    /// After an open incident is declared: a status snapshot into its timeline. Never
    /// fails the declaration (a store that does not answer is in the snapshot).
    pub declared: fn(crate::server::AppState, i64, crate::auth::ssr::Actor) -> HookFuture<()>,
    /// Before an incident is resolved: the checklist as it stands, to record with the
    /// resolution, and an admin's override note when a check does not pass; or the
    /// refusal.
    #[allow(clippy::type_complexity)]
    pub may_resolve: fn(
        crate::server::AppState,
        i64,
        ResolveAsk,
        crate::auth::ssr::Actor,
    ) -> HookFuture<Result<Resolution, AppError>>,
}

/// What the person resolving an incident typed besides its body.
#[derive(Clone, Debug, Default)]
pub struct ResolveAsk {
    /// An admin's reason to resolve with a check not passing.
    pub override_reason: Option<Reason>,
    /// Why queues still draining are fine to resolve with (a draining queue passes only
    /// with one).
    pub draining_reason: Option<Reason>,
}

/// Incident mode's answer to a resolution it allows.
#[derive(Clone, Debug, Default)]
pub struct Resolution {
    /// An admin's override, recorded in the resolution's body.
    pub note: Option<String>,
    /// The checklist as it stood, recorded in the resolution's details.
    pub checklist: Value,
}

impl std::fmt::Debug for IncidentHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IncidentHooks")
    }
}
