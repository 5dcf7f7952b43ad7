//! The webhooks: created (the secret shown once), enabled and disabled, deleted (their
//! pending deliveries dead-lettered as `webhook_deleted` in the same transaction), and
//! resumed with everything dead-lettered since they started failing redriven.

use sqlx::PgPool;
use time::OffsetDateTime;

use super::super::{CreatedWebhook, Endpoint, EndpointState, ALERT_EVENT_TYPE};
use super::WebhookSettings;
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::server::sealed::KeyRing;
use crate::server::unix_ms as ms;

crate::history::ssr::details! {
    /// A webhook was added (its URL masked: the query may hold a token).
    struct WebhookCreated for Webhook {
        webhook_id: i64,
        url: String,
        event_types: Vec<String>,
        max_retries: i32,
    }

    /// A webhook was switched on or off.
    struct WebhookToggled for Webhook {
        webhook_id: i64,
        enabled: bool,
    }

    /// A webhook was deleted; its pending deliveries became dead letters.
    struct WebhookDeleted for Webhook {
        webhook_id: i64,
        deleted: bool,
        dead_lettered: i64,
    }

    /// The webhooks' signing secrets were sealed again under the newest key.
    struct SecretsResealed for Webhook {
        resealed: u64,
        key_id: String,
    }
}

/// A webhook as an admin asks for it, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct NewWebhook {
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub max_retries: i32,
    pub max_in_flight: i32,
}

impl NewWebhook {
    /// Checks each field; the error names the first wrong one. `event_types` is a list
    /// separated by commas or spaces; `max_retries` may be empty (5).
    pub fn parse(
        settings: &WebhookSettings,
        url: &str,
        description: &str,
        event_types: &str,
        max_retries: &str,
    ) -> Result<Self, AppError> {
        let url = super::send::check_url(url, settings.allow_private)
            .map_err(|reason| AppError::invalid("url", format!("the URL {reason}")))?;
        let description = description.trim();
        if description.chars().count() > 200 {
            return Err(AppError::invalid(
                "description",
                "keep it under 200 characters",
            ));
        }
        let mut types: Vec<String> = event_types
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        types.sort();
        types.dedup();
        if types.is_empty() {
            return Err(AppError::invalid(
                "event_types",
                "name at least one event type",
            ));
        }
        for t in &types {
            if t != ALERT_EVENT_TYPE && !settings.event_types.contains(t) {
                return Err(AppError::invalid(
                    "event_types",
                    format!(
                        "`{t}` is not an event type; known: {}, {ALERT_EVENT_TYPE}",
                        settings.event_types.join(", ")
                    ),
                ));
            }
        }
        let max_retries = match max_retries.trim() {
            "" => 5,
            raw => raw
                .parse::<i32>()
                .ok()
                .filter(|n| (0..=20).contains(n))
                .ok_or_else(|| AppError::invalid("max_retries", "a whole number from 0 to 20"))?,
        };
        Ok(Self {
            url: url.to_string(),
            description: description.to_owned(),
            event_types: types,
            max_retries,
            max_in_flight: 4,
        })
    }
}

/// Creates a webhook and returns its id and signing secret (shown this once; kept only
/// sealed under `keys`, to sign; never logged). Refused while `keys` is empty.
pub async fn create(
    pg: &PgPool,
    keys: &KeyRing,
    actor: &Actor,
    new: &NewWebhook,
) -> Result<CreatedWebhook, AppError> {
    let secret = super::send::new_secret();
    let sealed = keys.seal(&secret).map_err(|error| AppError::Conflict {
        message: format!("Webhooks cannot be added yet: {error}."),
    })?;
    let mut tx = pg
        .begin()
        .await
        .map_err(AppError::wrap("Create a webhook"))?;
    let id = sqlx::query_scalar!(
        "insert into webhooks (url, description, event_types, secret, max_retries, max_in_flight, created_by)
         values ($1, $2, $3, $4, $5, $6, $7) returning id",
        new.url,
        new.description,
        &new.event_types,
        sealed,
        new.max_retries,
        new.max_in_flight,
        actor.name
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(AppError::wrap("Create a webhook"))?;
    let details = WebhookCreated {
        webhook_id: id,
        url: masked_url(&new.url),
        event_types: new.event_types.clone(),
        max_retries: new.max_retries,
    };
    let title = format!("Webhook {id} created for {}", details.url);
    let entry = NewEntry::new(details, title, actor, Outcome::Succeeded);
    append(&mut tx, &entry)
        .await
        .map_err(AppError::wrap("Record a webhook"))?;
    tx.commit()
        .await
        .map_err(AppError::wrap("Create a webhook"))?;
    Ok(CreatedWebhook {
        id,
        secret: crate::format::ShownOnce::new(secret),
    })
}

/// Turns a webhook on or off (its deliveries wait while it is off), with a reason.
pub async fn set_enabled(
    pg: &PgPool,
    actor: &Actor,
    id: i64,
    enabled: bool,
    reason: &crate::reason::Reason,
) -> Result<(), AppError> {
    let mut tx = pg
        .begin()
        .await
        .map_err(AppError::wrap("Change a webhook"))?;
    let url = sqlx::query_scalar!(
        "update webhooks set enabled = $2 where id = $1 and deleted_at is null and enabled <> $2
         returning url",
        id,
        enabled
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(AppError::wrap("Change a webhook"))?;
    let Some(url) = url else {
        return Err(AppError::Conflict {
            message: format!(
                "Webhook {id} does not exist, is deleted, or is already {}.",
                if enabled { "enabled" } else { "disabled" }
            ),
        });
    };
    let verb = if enabled { "enabled" } else { "disabled" };
    let entry = NewEntry::new(
        WebhookToggled {
            webhook_id: id,
            enabled,
        },
        format!("Webhook {id} {verb} ({})", masked_url(&url)),
        actor,
        Outcome::Info,
    )
    .with_reason(Some(reason.clone()));
    append(&mut tx, &entry)
        .await
        .map_err(AppError::wrap("Record a webhook change"))?;
    tx.commit()
        .await
        .map_err(AppError::wrap("Change a webhook"))?;
    Ok(())
}

/// Deletes a webhook: no new deliveries, and its pending ones are dead-lettered as
/// `webhook_deleted` in the same transaction (they stay on /admin/dlq). Returns how many.
pub async fn delete(
    pg: &PgPool,
    actor: &Actor,
    id: i64,
    reason: &crate::reason::Reason,
    now: OffsetDateTime,
) -> Result<i64, AppError> {
    let mut tx = pg
        .begin()
        .await
        .map_err(AppError::wrap("Delete a webhook"))?;
    let url = sqlx::query_scalar!(
        "update webhooks set deleted_at = $2, enabled = false
          where id = $1 and deleted_at is null returning url",
        id,
        now
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(AppError::wrap("Delete a webhook"))?;
    let Some(url) = url else {
        return Err(AppError::NotFound {
            what: format!("Webhook {id}"),
        });
    };
    let dead = sqlx::query!(
        "update webhook_deliveries
            set status = 'dead', dlq_at = $2, dlq_reason = 'webhook_deleted', lease_until = null
          where webhook_id = $1 and status = 'pending'",
        id,
        now
    )
    .execute(&mut *tx)
    .await
    .map_err(AppError::wrap("Dead-letter a deleted webhook's deliveries"))?
    .rows_affected() as i64;
    let entry = NewEntry::new(
        WebhookDeleted {
            webhook_id: id,
            deleted: true,
            dead_lettered: dead,
        },
        format!(
            "Webhook {id} deleted ({}); {dead} pending deliveries dead-lettered",
            masked_url(&url)
        ),
        actor,
        Outcome::Info,
    )
    .with_reason(Some(reason.clone()));
    append(&mut tx, &entry)
        .await
        .map_err(AppError::wrap("Record a webhook deletion"))?;
    tx.commit()
        .await
        .map_err(AppError::wrap("Delete a webhook"))?;
    Ok(dead)
}

/// Every webhook not deleted, and deleted ones that still have dead letters, with their
/// backlog (due now) and dead letters.
pub async fn list(pg: &PgPool, now: OffsetDateTime) -> Result<Vec<Endpoint>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select w.id, w.url, w.description, w.event_types, w.enabled, w.max_retries,
                w.max_in_flight, w.consecutive_failures, w.failing_since, w.paused_at,
                w.created_at, w.created_by, w.deleted_at,
                (select count(*) from webhook_deliveries d
                  where d.webhook_id = w.id and d.status = 'pending'
                    and d.next_attempt_at <= $1) as "backlog!",
                (select count(*) from webhook_deliveries d
                  where d.webhook_id = w.id and d.dlq_at is not null) as "dead!"
           from webhooks w
          order by w.deleted_at nulls first, w.id"#,
        now
    )
    .fetch_all(pg)
    .await?;
    let mut out = Vec::new();
    for row in rows {
        let deleted = row.deleted_at;
        let dead = row.dead;
        if deleted.is_some() && dead == 0 {
            continue;
        }
        let paused = row.paused_at;
        let failures = row.consecutive_failures;
        let state = if deleted.is_some() {
            EndpointState::Deleted
        } else if !row.enabled {
            EndpointState::Disabled
        } else if paused.is_some() {
            EndpointState::Paused
        } else if failures > 0 {
            EndpointState::Failing
        } else {
            EndpointState::Healthy
        };
        out.push(Endpoint {
            id: row.id,
            url: row.url,
            description: row.description,
            event_types: row.event_types,
            state,
            max_retries: row.max_retries,
            max_in_flight: row.max_in_flight,
            consecutive_failures: failures,
            failing_since_ms: row.failing_since.map(ms),
            paused_at_ms: paused.map(ms),
            backlog: row.backlog,
            dead,
            created_at_ms: ms(row.created_at),
            created_by: row.created_by,
        });
    }
    Ok(out)
}

/// A short name for a webhook in tables: its description, or its URL's host and path.
pub fn label(description: &str, url: &str) -> String {
    if !description.trim().is_empty() {
        return description.trim().to_owned();
    }
    let masked = masked_url(url);
    masked
        .split_once("://")
        .map_or(masked.clone(), |(_, rest)| rest.to_owned())
}

/// A webhook's URL as everyone but an admin sees it, and as the history records it: the
/// scheme, host and port, with the path and query masked (`https://hooks.example.com/…`).
/// Many receivers (Slack's among them) keep their secret in the path; a URL is an admin's
/// to see, and the append-only history keeps what it is given for good.
pub fn masked_url(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return "(a URL that does not parse)".into();
    };
    let origin = parsed.origin().ascii_serialization();
    if parsed.path() == "/" && parsed.query().is_none() && parsed.fragment().is_none() {
        format!("{origin}/")
    } else {
        format!("{origin}/…")
    }
}

/// `endpoints` as `actor` may see them: the URLs masked unless the actor is an admin.
pub fn for_viewer(actor: &Actor, mut endpoints: Vec<Endpoint>) -> Vec<Endpoint> {
    if !actor.role.can(crate::auth::Permission::Administer) {
        for endpoint in &mut endpoints {
            endpoint.url = masked_url(&endpoint.url);
        }
    }
    endpoints
}

/// Seals every signing secret that `keys`' current key did not seal (stored before
/// sealing, or under a key being rotated out), in one transaction, recorded once in the
/// history; returns how many. Nothing to do without keys. Run after every start's
/// migrations and by `salvage webhook reseal`.
pub async fn reseal(pg: &PgPool, keys: &KeyRing, actor: &Actor) -> Result<u64, AppError> {
    let Some(current) = keys.current() else {
        return Ok(0);
    };
    let wrap = || AppError::wrap("Reseal the webhooks' signing secrets");
    let mut tx = pg.begin().await.map_err(wrap())?;
    let rows = sqlx::query!("select id, secret from webhooks order by id for update")
        .fetch_all(&mut *tx)
        .await
        .map_err(wrap())?;
    let mut resealed = 0;
    for (id, stored) in rows.into_iter().map(|row| (row.id, row.secret)) {
        if !keys.needs_reseal(&stored) {
            continue;
        }
        let sealed = keys
            .open(&stored)
            .and_then(|secret| keys.seal(&secret))
            .map_err(|error| AppError::Conflict {
                message: format!("Webhook {id}'s signing secret: {error}."),
            })?;
        sqlx::query!("update webhooks set secret = $2 where id = $1", id, sealed)
            .execute(&mut *tx)
            .await
            .map_err(wrap())?;
        resealed += 1;
    }
    if resealed > 0 {
        let title = format!("{resealed} webhook signing secrets sealed under key `{current}`");
        let details = SecretsResealed {
            resealed,
            key_id: current.to_owned(),
        };
        let entry = NewEntry::new(details, title, actor, Outcome::Succeeded);
        append(&mut tx, &entry).await.map_err(wrap())?;
    }
    tx.commit().await.map_err(wrap())?;
    Ok(resealed)
}
