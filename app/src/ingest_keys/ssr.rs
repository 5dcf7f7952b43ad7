//! Ingest keys: created and revoked by admins, shown once, stored as SHA-256.
//!
//! A key looks like `sgk_0123abcd…` (68 characters). Its first [`PREFIX_LEN`]
//! characters are stored in clear to find the row and to let a person recognise a key;
//! the digest of the whole key is compared in constant time.
//!
//! Ingest must keep working while PostgreSQL is down (rows then go straight to
//! ClickHouse), so a key checked against the database is remembered in memory: for
//! [`FRESH`] it is trusted without asking again, and while PostgreSQL *refuses
//! connections* a key checked within [`STALE_OK`] is still accepted. Any other database
//! error (a busy pool, a failed query) is a 503, never a free pass. A revocation takes
//! effect at once on the replica that made it and within [`FRESH`] on every other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::IngestKey;
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::server::tokens::{digest as token_digest, digests_match, random_token};
use crate::server::unix_ms as ms;

crate::history::ssr::details! {
    /// An ingest key made (its prefix only: the secret is shown once, never stored).
    struct KeyCreated for IngestKey {
        key_id: i64,
        prefix: String,
        organization_id: String,
    }

    /// An ingest key revoked.
    struct KeyRevoked for IngestKey {
        key_id: i64,
        prefix: String,
    }
}

/// The organisations a key may send rows for: one, or every one (`*`, a gateway).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Organization(String),
}

impl Scope {
    /// The scope stored with a key (`*` or an organisation id).
    pub fn from_stored(value: &str) -> Self {
        if value == "*" {
            Self::All
        } else {
            Self::Organization(value.to_owned())
        }
    }

    /// `Ok` for a key of every organisation (`*`, the service itself); 403 for a key of
    /// one organisation, naming `what` (what only the service as a whole may send, and
    /// why).
    pub fn require_all(&self, what: &str) -> Result<(), crate::error::AppError> {
        match self {
            Self::All => Ok(()),
            Self::Organization(organisation) => {
                tracing::warn!(%organisation, what, "refused: an organisation's key");
                Err(crate::error::AppError::Forbidden {
                    message: format!(
                        "This key sends only for organisation `{organisation}`; {what}, so they \
                         need a key for every organisation (`*`)."
                    ),
                })
            }
        }
    }
}

/// Characters of a key kept in clear.
pub const PREFIX_LEN: usize = 12;
/// How long a verified key is trusted without asking PostgreSQL again (and so how long a
/// revocation takes to reach another replica).
pub const FRESH: Duration = Duration::from_secs(3);
/// How long a verified key stays usable while PostgreSQL is unreachable.
pub const STALE_OK: Duration = Duration::from_secs(15 * 60);

/// Keys verified recently, by prefix. Shared by every request of a process.
#[derive(Clone, Default)]
pub struct KeyCache {
    inner: Arc<Mutex<HashMap<String, Cached>>>,
}

#[derive(Clone)]
struct Cached {
    key: KeyIdentity,
    digest: Vec<u8>,
    verified: Instant,
}

/// Who a verified key is: its id and the organisations it may send for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyIdentity {
    pub key_id: i64,
    pub scope: Scope,
}

impl KeyCache {
    fn get(&self, prefix: &str) -> Option<Cached> {
        self.inner.lock().ok()?.get(prefix).cloned()
    }

    fn put(&self, prefix: &str, cached: Cached) {
        if let Ok(mut map) = self.inner.lock() {
            map.insert(prefix.to_owned(), cached);
        }
    }

    fn forget(&self, prefix: &str) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(prefix);
        }
    }

    /// Drops key `key_id` (just revoked here): its next use asks PostgreSQL.
    pub fn evict(&self, key_id: i64) {
        if let Ok(mut map) = self.inner.lock() {
            map.retain(|_, cached| cached.key.key_id != key_id);
        }
    }
}

/// Whether `error` means PostgreSQL is refusing connections (down, restarting, out of
/// connection slots), the one case where a recently verified key may still be used. A
/// pool that timed out while holding open connections is busy, not down.
fn postgres_refusing(pg: &PgPool, error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut => pg.size() == 0,
        other => crate::error::postgres_unreachable(other),
    }
}

fn digest_matches(cached: &Cached, digest: &[u8]) -> bool {
    digests_match(&cached.digest, digest)
}

/// The active key `token` is, or 401. Never logs the token.
pub async fn authenticate(
    pg: &PgPool,
    cache: &KeyCache,
    token: &str,
) -> Result<KeyIdentity, AppError> {
    if !token.starts_with("sgk_") || token.len() < PREFIX_LEN + 8 || !token.is_ascii() {
        return Err(AppError::Unauthorized);
    }
    let prefix = &token[..PREFIX_LEN];
    let digest = token_digest(token);
    let cached = cache.get(prefix).filter(|c| digest_matches(c, &digest));
    if let Some(cached) = &cached {
        if cached.verified.elapsed() < FRESH {
            return Ok(cached.key.clone());
        }
    }
    let row = sqlx::query!(
        "select id, secret_hash, organization_id from ingest_keys
          where prefix = $1 and revoked_at is null",
        prefix
    )
    .fetch_optional(pg)
    .await;
    match row {
        Ok(Some(row)) if digests_match(&row.secret_hash, &digest) => {
            let key = KeyIdentity {
                key_id: row.id,
                scope: Scope::from_stored(&row.organization_id),
            };
            cache.put(
                prefix,
                Cached {
                    key: key.clone(),
                    digest,
                    verified: Instant::now(),
                },
            );
            // At most one write a minute per key, not one per request.
            let _ = sqlx::query!(
                "update ingest_keys set last_used_at = now(), first_used_at = coalesce(first_used_at, now())
                  where id = $1 and (last_used_at is null or last_used_at < now() - interval '1 minute')",
                row.id
            )
            .execute(pg)
            .await;
            Ok(key)
        }
        Ok(_) => {
            cache.forget(prefix);
            Err(AppError::Unauthorized)
        }
        Err(error) => match cached {
            Some(cached)
                if cached.verified.elapsed() < STALE_OK && postgres_refusing(pg, &error) =>
            {
                tracing::warn!(%error, key_id = cached.key.key_id, "PostgreSQL unreachable; accepting a recently verified ingest key");
                Ok(cached.key)
            }
            _ => {
                tracing::warn!(%error, "an ingest key could not be checked");
                Err(AppError::Unavailable {
                    stores: vec![crate::stores::StoreKind::Postgres],
                    message: "PostgreSQL did not answer, so the ingest key cannot be checked; \
                              retry"
                        .into(),
                })
            }
        },
    }
}

/// Checks an organisation a key is made for: an id as rows carry it, or `*` for every
/// organisation. The error names the `organization` field.
pub fn check_organization(value: &str) -> Result<String, AppError> {
    let value = value.trim();
    let valid = value == "*"
        || (!value.is_empty()
            && value.len() <= 256
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c)));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(AppError::invalid(
            "organization",
            "give the organisation id its rows carry (letters, digits, _ . : -), or * for a \
             key that sends for every organisation",
        ))
    }
}

/// Creates a key named `name` for `organization` (`*`: every organisation); returns its
/// id and the secret, which is not kept.
pub async fn create(
    pg: &PgPool,
    actor: &Actor,
    name: &str,
    organization: &str,
) -> Result<(i64, String), AppError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::invalid(
            "name",
            "give the key a name of 1 to 100 characters",
        ));
    }
    let organization = check_organization(organization)?;
    let secret = format!("sgk_{}", random_token());
    let internal = |e: sqlx::Error| AppError::internal("Failed to create an ingest key", e);
    let mut tx = pg.begin().await.map_err(internal)?;
    let id = sqlx::query_scalar!(
        "insert into ingest_keys (name, prefix, secret_hash, created_by, organization_id)
         values ($1, $2, $3, $4, $5) returning id",
        name,
        &secret[..PREFIX_LEN],
        token_digest(&secret),
        actor.name,
        organization,
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(internal)?;
    let details = KeyCreated {
        key_id: id,
        prefix: secret[..PREFIX_LEN].to_owned(),
        organization_id: organization.to_owned(),
    };
    let title = format!("Created ingest key #{id} \u{201c}{name}\u{201d} for {organization}");
    let entry = NewEntry::new(details, title, actor, Outcome::Succeeded);
    append(&mut tx, &entry).await.map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    Ok((id, secret))
}

/// Revokes key `id`: it stops working here at once (`cache` forgets it) and on every
/// other replica within [`FRESH`].
pub async fn revoke(
    pg: &PgPool,
    cache: &KeyCache,
    actor: &Actor,
    id: i64,
    reason: Option<crate::reason::Reason>,
) -> Result<(), AppError> {
    let internal = |e: sqlx::Error| AppError::internal("Failed to revoke an ingest key", e);
    let mut tx = pg.begin().await.map_err(internal)?;
    let row = sqlx::query!(
        "update ingest_keys set revoked_at = now(), revoked_by = $2
          where id = $1 and revoked_at is null returning name, prefix",
        id,
        actor.name
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(internal)?
    .ok_or_else(|| AppError::NotFound {
        what: format!("An active ingest key #{id}"),
    })?;
    let entry = NewEntry::new(
        KeyRevoked {
            key_id: id,
            prefix: row.prefix.clone(),
        },
        format!("Revoked ingest key #{id} \u{201c}{}\u{201d}", row.name),
        actor,
        Outcome::Succeeded,
    )
    .with_reason(reason);
    append(&mut tx, &entry).await.map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    cache.evict(id);
    Ok(())
}

/// Every key, newest first, with what it did in the 7 days before `now`.
pub async fn list(pg: &PgPool, now: time::OffsetDateTime) -> Result<Vec<IngestKey>, AppError> {
    let rows = sqlx::query!(
        r#"select k.id, k.name, k.prefix, k.created_at, k.created_by, k.revoked_at,
                  k.last_used_at, k.first_used_at, k.organization_id,
                  coalesce(u.requests, 0)::int8 as "requests!", coalesce(u.rows, 0)::int8 as "rows!",
                  (select count(*) from ingest_key_sources s where s.key_id = k.id) as "addresses!"
             from ingest_keys k
             left join (select key_id, sum(requests) as requests, sum(rows) as rows
                          from ingest_key_usage where hour >= $1 group by key_id) u
               on u.key_id = k.id
            order by k.id desc"#,
        now - super::usage::KEPT
    )
    .fetch_all(pg)
    .await
    .map_err(|e| AppError::internal("Failed to list ingest keys", e))?;
    Ok(rows
        .into_iter()
        .map(|r| IngestKey {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            organization_id: r.organization_id,
            created_at: ms(r.created_at),
            created_by: r.created_by,
            revoked_at: r.revoked_at.map(ms),
            last_used_at: r.last_used_at.map(ms),
            first_used_at: r.first_used_at.map(ms),
            requests_7d: r.requests,
            rows_7d: r.rows,
            addresses: r.addresses,
        })
        .collect())
}

impl crate::server::AppState {
    /// Ingest keys verified recently by this process.
    pub fn ingest_keys(&self) -> &KeyCache {
        self.part()
    }
}

/// The key of a request that only the service as a whole may send (`what`: why, for
/// the 403 a key of one organisation gets); 401 without an active one.
pub async fn service_key(
    pg: &PgPool,
    cache: &KeyCache,
    headers: &axum::http::HeaderMap,
    what: &str,
) -> Result<KeyIdentity, AppError> {
    let token = crate::server::tokens::bearer(headers).ok_or(AppError::Unauthorized)?;
    let key = authenticate(pg, cache, token).await?;
    key.scope.require_all(what)?;
    Ok(key)
}

/// The 401 of an `/ingest/*` route: what to send, with `WWW-Authenticate: Bearer`.
pub fn unauthorized() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::UNAUTHORIZED,
        [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({"kind": "unauthorized",
            "error": "Send `Authorization: Bearer <ingest key>` with an active key."})),
    )
        .into_response()
}

/// An `/ingest/*` route's answer: `body` as JSON with `status`, never cached; or the
/// error's own answer (the 401 saying what to send).
pub fn answer<T: serde::Serialize>(
    result: Result<(axum::http::StatusCode, T), AppError>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match result {
        Ok((status, body)) => (
            status,
            [(axum::http::header::CACHE_CONTROL, "no-store")],
            axum::Json(body),
        )
            .into_response(),
        Err(AppError::Unauthorized) => unauthorized(),
        Err(error) => error.into_response(),
    }
}
