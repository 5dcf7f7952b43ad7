//! The first admin: a one-time setup link while no account exists.

use secrecy::{ExposeSecret, SecretString};
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use super::super::{check_new_password, normalize_email, Role};
use super::passwords::hash_password;
use super::sign_in::reserve_attempt;
use super::users::{count_users, insert_user};
use super::Actor;
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::server::tokens::{digest as token_digest, digests_match, random_token};

/// How long a setup link works.
pub const SETUP_LINK_HOURS: i64 = 24;

/// When no account exists, creates a one-time setup token and returns it (to print
/// once); `None` when accounts exist.
pub async fn issue_setup_token(
    pg: &PgPool,
    now: OffsetDateTime,
) -> Result<Option<String>, sqlx::Error> {
    let mut tx = pg.begin().await?;
    sqlx::query!("lock table users in share mode")
        .execute(&mut *tx)
        .await?;
    let users = sqlx::query_scalar!(r#"select count(*) as "count!" from users"#)
        .fetch_one(&mut *tx)
        .await?;
    if users > 0 {
        return Ok(None);
    }
    let token = random_token();
    sqlx::query!(
        "insert into setup_tokens (token_hash, expires_at)
         values ($1, $3::timestamptz + make_interval(hours => $2))",
        token_digest(&token),
        SETUP_LINK_HOURS as i32,
        now
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(token))
}

/// Whether `token` is a live setup token (compared in constant time).
async fn setup_token_is_live(
    conn: &mut PgConnection,
    token: &str,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let digests: Vec<Vec<u8>> = sqlx::query_scalar!(
        "select token_hash from setup_tokens where expires_at > $1",
        now
    )
    .fetch_all(conn)
    .await?;
    let presented = token_digest(token);
    Ok(digests.iter().fold(false, |found, digest| {
        found | digests_match(digest, &presented)
    }))
}

/// Whether the setup page should offer the form for `token`.
pub async fn setup_link_is_valid(
    pg: &PgPool,
    token: &str,
    now: OffsetDateTime,
) -> Result<bool, AppError> {
    let mut conn = pg
        .acquire()
        .await
        .map_err(AppError::wrap("Failed to connect"))?;
    let users = count_users(pg)
        .await
        .map_err(AppError::wrap("Failed to count users"))?;
    Ok(users == 0
        && setup_token_is_live(&mut conn, token, now)
            .await
            .map_err(AppError::wrap("Failed to check the setup link"))?)
}

/// What the sign-in throttle counts setup attempts under, in place of an email (it has
/// no `@`, so no account's email is ever it): wrong setup links from one network are
/// spaced out and count towards that network's limit, as wrong passwords do.
const SETUP_THROTTLE_KEY: &str = "first-admin setup link";

/// Creates the first admin with a live setup `token`, then kills every setup token.
/// Refused (404, revealing nothing) once any account exists or the token is wrong.
///
/// The cheap checks come first and the password is hashed last: once an account exists
/// a post costs one count and writes nothing; a wrong link is a throttled failure
/// (`network` as in [`super::sign_in`]); only a live link reaches argon2, through the
/// same gate as sign-in.
pub async fn create_first_admin(
    pg: &PgPool,
    now: OffsetDateTime,
    network: &str,
    token: &str,
    email: &str,
    password: SecretString,
) -> Result<i64, AppError> {
    let email = normalize_email("email", email)?;
    check_new_password("password", password.expose_secret())?;
    let refused = || {
        tracing::warn!(client = %network, "refused: setup link used, expired or wrong");
        AppError::NotFound {
            what: "This setup link (it works once, and only before any account exists)".into(),
        }
    };
    if count_users(pg)
        .await
        .map_err(AppError::wrap("Failed to count users"))?
        > 0
    {
        tokio::time::sleep(super::sign_in::REFUSAL_PAUSE).await;
        return Err(refused());
    }
    let attempt = reserve_attempt(pg, SETUP_THROTTLE_KEY, network, now).await?;
    let live = {
        let mut conn = pg
            .acquire()
            .await
            .map_err(AppError::wrap("Failed to connect"))?;
        setup_token_is_live(&mut conn, token, now)
            .await
            .map_err(AppError::wrap("Failed to check the setup link"))?
    };
    if !live {
        // The reserved attempt stays: it is this failure's record.
        return Err(refused());
    }
    let hash = match hash_password(password).await {
        Ok(hash) => hash,
        Err(error) => {
            attempt.not_checked(pg).await;
            return Err(error);
        }
    };
    let mut tx = pg
        .begin()
        .await
        .map_err(AppError::wrap("Failed to begin"))?;
    sqlx::query!("lock table users in share row exclusive mode")
        .execute(&mut *tx)
        .await
        .map_err(AppError::wrap("Failed to lock users"))?;
    let users = sqlx::query_scalar!(r#"select count(*) as "count!" from users"#)
        .fetch_one(&mut *tx)
        .await
        .map_err(AppError::wrap("Failed to count users"))?;
    let live = setup_token_is_live(&mut tx, token, now)
        .await
        .map_err(AppError::wrap("Failed to check the setup link"))?;
    if users > 0 || !live {
        // Another post with the same link won the race.
        return Err(refused());
    }
    let id = insert_user(&mut tx, &email, Role::Admin, &hash, false).await?;
    sqlx::query!("delete from setup_tokens")
        .execute(&mut *tx)
        .await
        .map_err(AppError::wrap("Failed to retire the setup link"))?;
    let actor = Actor {
        user_id: Some(id),
        name: email.clone(),
        role: Role::Admin,
        must_change_password: false,
    };
    append(
        &mut tx,
        &NewEntry::new(
            super::UserChanged::FirstAdmin {
                user_id: id,
                email: email.clone(),
            },
            format!("Created the first admin, {email}, from the setup link"),
            &actor,
            Outcome::Succeeded,
        ),
    )
    .await
    .map_err(AppError::wrap("Failed to record the first admin"))?;
    tx.commit()
        .await
        .map_err(AppError::wrap("Failed to commit"))?;
    attempt.succeeded(pg).await?;
    tracing::info!(user = %email, "first admin created");
    Ok(id)
}
