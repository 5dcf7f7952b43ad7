//! Cron secrets: the bearer tokens of `/cron/*`, stored as SHA-256 digests.
//!
//! One secret is current. Rotating makes a new current secret (shown once) and retires
//! the old one with a grace window, during which both work, so each scheduler can be
//! switched in turn; the page shows when and by whom each was last presented. A secret
//! retired before the previous one ends that one's grace at once: at most two work.
//! `CRON_SECRET` from the environment becomes the first secret when there is none.

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};

use super::super::{CronSecretInfo, CronSecrets, RotatedSecret, SecretCaller, MAX_GRACE_HOURS};
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::format::format_utc;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::jobs::ssr::Caller;
use crate::server::tokens::{digest as token_digest, digests_match, random_token};
use crate::server::unix_ms;

crate::history::ssr::details! {
    /// A new cron secret; the one before it works until `previousExpiresAt` (Unix ms).
    struct SecretRotated for SecretRotation {
        secret: &'static str,
        new_id: i64,
        previous_id: Option<i64>,
        grace_hours: i64,
        previous_expires_at: Option<i64>,
        /// Older secrets whose grace this rotation ended.
        grace_ended_for: Vec<i64>,
        source: String,
    }

    /// A retired secret's grace window ended early: it no longer works.
    struct GraceEnded for SecretRotation {
        secret: &'static str,
        ended_id: i64,
    }
}

/// What every new secret starts with, so a leaked one is recognisable in a scan.
pub const PREFIX: &str = "sgc_";
/// The shortest `CRON_SECRET` accepted from the environment.
pub const MIN_ENV_LEN: usize = 16;

/// Why a cron call was refused (the 401's message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Wrong,
    Expired { id: i64, expired_at: OffsetDateTime },
    NoSecret,
}

impl Refusal {
    pub fn message(&self) -> String {
        match self {
            Refusal::Missing => {
                "Send `Authorization: Bearer <cron secret>` with the current cron secret.".into()
            }
            Refusal::Wrong => "That is not a current cron secret.".into(),
            Refusal::Expired { id, expired_at } => format!(
                "Cron secret #{id} stopped working at {} (its grace window ended); use the current one.",
                format_utc(unix_ms(*expired_at))
            ),
            Refusal::NoSecret => {
                "No cron secret exists yet: an admin creates one at /admin/settings/cron-secret."
                    .into()
            }
        }
    }
}

/// The id of the working secret `token` at `now`, recording who used it; or why not.
/// Every stored digest is compared, in constant time; the token is never logged.
pub async fn verify(
    pg: &PgPool,
    token: Option<&str>,
    now: OffsetDateTime,
    caller: &Caller,
) -> Result<Result<i64, Refusal>, sqlx::Error> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(Err(Refusal::Missing));
    };
    let digest = token_digest(token);
    // Every secret retired in the last 30 days, to say "expired" rather than "wrong".
    let rows = sqlx::query!(
        "select id, secret_hash, expires_at from cron_secrets
          where retired_at is null or expires_at > $1::timestamptz - interval '30 days'",
        now
    )
    .fetch_all(pg)
    .await?;
    if rows.is_empty() {
        return Ok(Err(Refusal::NoSecret));
    }
    let mut matched = None;
    for row in &rows {
        if digests_match(&row.secret_hash, &digest) {
            matched = Some((row.id, row.expires_at));
        }
    }
    match matched {
        None => Ok(Err(Refusal::Wrong)),
        Some((id, Some(expired_at))) if expired_at <= now => {
            Ok(Err(Refusal::Expired { id, expired_at }))
        }
        Some((id, _)) => {
            sqlx::query!(
                "update cron_secrets set last_used_at = $2, last_used_addr = $3, last_used_agent = $4
                  where id = $1",
                id,
                now,
                caller.addr,
                caller.agent
            )
            .execute(pg)
            .await?;
            Ok(Ok(id))
        }
    }
}

/// Takes the chain of secrets for this transaction (rotations and the import of
/// `CRON_SECRET` from several replicas queue behind each other).
async fn lock(tx: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query!("select pg_advisory_xact_lock(hashtext('salvage.cron_secrets'))")
        .execute(tx)
        .await?;
    Ok(())
}

/// Makes a new current secret; the current one keeps working for `grace_hours` (0 to
/// [`MAX_GRACE_HOURS`]). Returns the secret, which is not kept.
pub async fn rotate(
    pg: &PgPool,
    actor: &Actor,
    source: &str,
    grace_hours: i64,
    reason: Option<crate::reason::Reason>,
    now: OffsetDateTime,
) -> Result<RotatedSecret, AppError> {
    if !(0..=MAX_GRACE_HOURS).contains(&grace_hours) {
        return Err(AppError::invalid(
            "grace_hours",
            format!("between 0 and {MAX_GRACE_HOURS} hours"),
        ));
    }
    let internal = |e: sqlx::Error| AppError::internal("Failed to rotate the cron secret", e);
    let secret = format!("{PREFIX}{}", random_token());
    let expires = now + Duration::hours(grace_hours);
    let mut tx = pg.begin().await.map_err(internal)?;
    lock(&mut tx).await.map_err(internal)?;
    let cut_short: Vec<i64> = sqlx::query_scalar!(
        "update cron_secrets set expires_at = $1
          where retired_at is not null and expires_at > $1 returning id",
        now
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(internal)?;
    let previous = sqlx::query_scalar!(
        "update cron_secrets set retired_at = $1, expires_at = $2
          where retired_at is null returning id",
        now,
        expires
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(internal)?;
    let id = sqlx::query_scalar!(
        "insert into cron_secrets (secret_hash, source, created_at, created_by)
         values ($1, $2, $3, $4) returning id",
        token_digest(&secret),
        source,
        now,
        actor.name
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(internal)?;
    let (title, body) = match previous {
        Some(previous) => (
            format!("Rotated the cron secret: #{id} is current, #{previous} works for {grace_hours} h more"),
            format!(
                "Secret #{previous} stops working at {}. Update every scheduler calling /cron/* before then.",
                format_utc(unix_ms(expires))
            ),
        ),
        None => (
            format!("Created the first cron secret, #{id}"),
            "Give it to every scheduler calling /cron/*.".to_owned(),
        ),
    };
    let details = SecretRotated {
        secret: "cron",
        new_id: id,
        previous_id: previous,
        grace_hours,
        previous_expires_at: previous.map(|_| unix_ms(expires)),
        grace_ended_for: cut_short,
        source: source.to_owned(),
    };
    let entry = NewEntry::new(details, title, actor, Outcome::Succeeded)
        .with_body(body)
        .with_reason(reason);
    append(&mut tx, &entry).await.map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    Ok(RotatedSecret {
        id,
        secret: crate::format::ShownOnce::new(secret),
        previous: previous.map(|p| (p, unix_ms(expires))),
    })
}

/// Ends the grace window of retired secret `id` now.
pub async fn end_grace(
    pg: &PgPool,
    actor: &Actor,
    id: i64,
    reason: Option<crate::reason::Reason>,
    now: OffsetDateTime,
) -> Result<(), AppError> {
    let internal = |e: sqlx::Error| AppError::internal("Failed to end a grace window", e);
    let mut tx = pg.begin().await.map_err(internal)?;
    lock(&mut tx).await.map_err(internal)?;
    let ended = sqlx::query_scalar!(
        "update cron_secrets set expires_at = $2
          where id = $1 and retired_at is not null and expires_at > $2 returning id",
        id,
        now
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(internal)?;
    if ended.is_none() {
        return Err(AppError::Conflict {
            message: format!("Cron secret #{id} is not in a grace window."),
        });
    }
    let entry = NewEntry::new(
        GraceEnded {
            secret: "cron",
            ended_id: id,
        },
        format!("Ended the grace window of cron secret #{id}: it no longer works"),
        actor,
        Outcome::Succeeded,
    )
    .with_reason(reason);
    append(&mut tx, &entry).await.map_err(internal)?;
    tx.commit().await.map_err(internal)
}

/// Makes `secret` (from `CRON_SECRET`) the first cron secret when none exists; returns
/// its id then. The row says where it came from (`source = environment`); it is not a
/// rotation, so it writes no history entry. When secrets exist and `secret` is not a working one, says so in the
/// log: the variable is read on first start only.
pub async fn import_from_environment(
    pg: &PgPool,
    secret: &SecretString,
    now: OffsetDateTime,
) -> Result<Option<i64>, sqlx::Error> {
    let digest = token_digest(secret.expose_secret());
    let mut tx = pg.begin().await?;
    lock(&mut tx).await?;
    let existing: Vec<(i64, Vec<u8>, Option<OffsetDateTime>)> =
        sqlx::query!("select id, secret_hash, expires_at from cron_secrets")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|r| (r.id, r.secret_hash, r.expires_at))
            .collect();
    if !existing.is_empty() {
        let works = existing.iter().any(|(_, hash, expires)| {
            digests_match(hash, &digest) && expires.is_none_or(|e| e > now)
        });
        if !works {
            tracing::warn!(
                "CRON_SECRET in the environment is not a working cron secret; it is read on first start only. Rotate at /admin/settings/cron-secret or with `salvage cron-secret rotate`."
            );
        }
        return Ok(None);
    }
    let id = sqlx::query_scalar!(
        "insert into cron_secrets (secret_hash, source, created_at, created_by)
         values ($1, 'environment', $2, 'environment:CRON_SECRET') returning id",
        digest,
        now
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(id))
}

/// The current secret and the five newest retired ones, with the callers that presented
/// each in the last 7 days (from the runs they fired).
pub async fn list(pg: &PgPool, now: OffsetDateTime) -> Result<CronSecrets, sqlx::Error> {
    let rows = sqlx::query!(
        "select id, source, created_at, created_by, retired_at, expires_at, last_used_at,
                last_used_addr, last_used_agent
           from cron_secrets
          order by retired_at is not null, id desc
          limit 6"
    )
    .fetch_all(pg)
    .await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let callers = sqlx::query!(
        r#"select secret_id as "secret_id!", caller_agent, caller_addr, count(*) as "calls!",
                  max(ran_at) as "last_at!"
             from cron_job_runs
            where secret_id = any($1) and ran_at > $2
            group by secret_id, caller_agent, caller_addr
            order by max(ran_at) desc"#,
        &ids,
        now - Duration::days(7)
    )
    .fetch_all(pg)
    .await?;
    let secrets = rows
        .into_iter()
        .map(|r| CronSecretInfo {
            id: r.id,
            source: r.source,
            created_at: unix_ms(r.created_at),
            created_by: r.created_by,
            retired_at: r.retired_at.map(unix_ms),
            expires_at: r.expires_at.map(unix_ms),
            last_used_at: r.last_used_at.map(unix_ms),
            last_used_addr: r.last_used_addr,
            last_used_agent: r.last_used_agent,
            callers: callers
                .iter()
                .filter(|c| c.secret_id == r.id)
                .take(10)
                .map(|c| SecretCaller {
                    agent: c.caller_agent.clone(),
                    addr: c.caller_addr.clone(),
                    calls: c.calls,
                    last_at: unix_ms(c.last_at),
                })
                .collect(),
        })
        .collect();
    Ok(CronSecrets {
        now: unix_ms(now),
        secrets,
    })
}
