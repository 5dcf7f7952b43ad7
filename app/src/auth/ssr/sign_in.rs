//! Sign-in, with throttling per email and per client address.

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use tower_sessions::Session;

use super::super::MAX_PASSWORD_LEN;
use super::passwords::verify_password;
use super::records::user_by_email;
use super::session::start_session;
use super::Actor;
use crate::error::AppError;
use crate::server::AppState;

/// Failures counted over this window.
pub const THROTTLE_WINDOW_SECS: i64 = 15 * 60;
/// Failures per email within the window before further attempts are refused.
pub const MAX_FAILURES_PER_EMAIL: i64 = 5;
/// Failures per client address within the window before further attempts are refused.
pub const MAX_FAILURES_PER_CLIENT: i64 = 20;

/// 429 when `email` or `client` has used up its failures in the window.
pub(crate) async fn check_throttle(pg: &PgPool, email: &str, client: &str) -> Result<(), AppError> {
    let counts = sqlx::query!(
        r#"select count(*) filter (where email = $1) as "by_email!",
                  count(*) filter (where client_addr = $2) as "by_client!",
                  extract(epoch from min(created_at) filter (where email = $1)
                      + make_interval(secs => $3) - now())::bigint as email_wait,
                  extract(epoch from min(created_at) filter (where client_addr = $2)
                      + make_interval(secs => $3) - now())::bigint as client_wait
           from sign_in_failures
           where created_at > now() - make_interval(secs => $3)
             and (email = $1 or client_addr = $2)"#,
        email,
        client,
        THROTTLE_WINDOW_SECS as f64
    )
    .fetch_one(pg)
    .await
    .map_err(AppError::wrap("Failed to count sign-in failures"))?;
    let mut throttled = false;
    let mut wait = 1i64;
    if counts.by_email >= MAX_FAILURES_PER_EMAIL {
        throttled = true;
        wait = wait.max(counts.email_wait.unwrap_or(1));
    }
    if counts.by_client >= MAX_FAILURES_PER_CLIENT {
        throttled = true;
        wait = wait.max(counts.client_wait.unwrap_or(1));
    }
    if throttled {
        tracing::warn!(%client, "refused: sign-in throttled");
        return Err(AppError::TooManyRequests {
            retry_after_secs: wait as u64,
        });
    }
    Ok(())
}

pub(crate) async fn record_failure(pg: &PgPool, email: &str, client: &str) -> Result<(), AppError> {
    sqlx::query!(
        "with cleared as (delete from sign_in_failures where created_at < now() - interval '1 day')
         insert into sign_in_failures (email, client_addr) values ($1, $2)",
        email,
        client
    )
    .execute(pg)
    .await
    .map_err(AppError::wrap("Failed to record a sign-in failure"))?;
    Ok(())
}

/// Checks the credentials and signs in on `session`. Every failure (unknown email, wrong
/// password, disabled account) is the same [`AppError::SignInFailed`] after the same
/// argon2 work; too many failures per email or per client give 429.
pub async fn sign_in(
    state: &AppState,
    session: &Session,
    client: &str,
    email: &str,
    password: SecretString,
) -> Result<Actor, AppError> {
    if email.trim().is_empty() {
        return Err(AppError::invalid("email", "enter your email"));
    }
    if password.expose_secret().is_empty() {
        return Err(AppError::invalid("password", "enter your password"));
    }
    if password.expose_secret().chars().count() > MAX_PASSWORD_LEN {
        return Err(AppError::SignInFailed);
    }
    let email = email.trim().to_lowercase();
    check_throttle(&state.pg, &email, client).await?;
    let user = user_by_email(&state.pg, &email)
        .await
        .map_err(AppError::wrap("Failed to look up an account"))?;
    let matches = verify_password(password, user.as_ref().map(|u| u.password_hash.clone())).await;
    match user {
        Some(user) if matches && !user.disabled => {
            start_session(session, &user).await?;
            sqlx::query!(
                "update users set last_login_at = now() where id = $1",
                user.id
            )
            .execute(&state.pg)
            .await
            .map_err(AppError::wrap("Failed to record the sign-in"))?;
            sqlx::query!("delete from sign_in_failures where email = $1", email)
                .execute(&state.pg)
                .await
                .map_err(AppError::wrap("Failed to clear sign-in failures"))?;
            tracing::info!(user = %user.email, "signed in");
            Ok(Actor {
                user_id: Some(user.id),
                name: user.email,
                role: user.role,
                must_change_password: user.must_change_password,
            })
        }
        _ => {
            record_failure(&state.pg, &email, client).await?;
            tracing::info!(%client, "sign-in failed");
            Err(AppError::SignInFailed)
        }
    }
}
