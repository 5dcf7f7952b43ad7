//! Sign-in, with throttling per email and client network.

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use time::OffsetDateTime;
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

/// How long a refused guess (a throttled attempt, a setup post once accounts exist)
/// waits before it is answered. The wait costs the server nothing, and a loop of guesses
/// from one place then sends one a second instead of thousands: on a small machine, a
/// flood answered at once takes the CPU a real sign-in needs, however cheap each answer.
pub(crate) const REFUSAL_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// The sign-in throttle's limits. Failures are counted per email *and client network*
/// (an IPv4 address, an IPv6 /64), so an attacker guessing from one place slows only
/// themselves: the account's owner, signing in from elsewhere, is not locked out.
pub struct Throttle;

impl Throttle {
    /// Failures for one email from one network before attempts are spaced out.
    pub const FREE_FAILURES: i64 = 5;
    /// The wait after the first failure past the free ones; it doubles with each more.
    pub const FIRST_DELAY_SECS: i64 = 30;
    /// Failures from one network, any emails, before that network is refused for the
    /// rest of the window (password spraying).
    pub const MAX_FAILURES_PER_NETWORK: i64 = 20;
    /// Failures for one email from all networks together above which attempts for that
    /// email are spaced [`Self::SPREAD_SPACING_SECS`] apart (guessing from many places):
    /// the owner waits seconds, never the whole window.
    pub const SPREAD_FAILURES: i64 = 50;
    /// See [`Self::SPREAD_FAILURES`].
    pub const SPREAD_SPACING_SECS: i64 = 2;
}

/// Failures in the window, as the throttle sees them; ages in seconds.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Counts {
    pair: i64,
    pair_last_age: f64,
    network: i64,
    network_first_age: f64,
    email: i64,
    email_last_age: f64,
}

/// How long the caller must wait before trying again, or `None` to go ahead.
fn wait_secs(counts: &Counts) -> Option<u64> {
    let window = THROTTLE_WINDOW_SECS as f64;
    let mut wait: f64 = 0.0;
    if counts.network >= Throttle::MAX_FAILURES_PER_NETWORK {
        wait = wait.max(window - counts.network_first_age);
    }
    if counts.pair >= Throttle::FREE_FAILURES {
        let doublings = (counts.pair - Throttle::FREE_FAILURES).min(10) as u32;
        let delay = (Throttle::FIRST_DELAY_SECS * 2_i64.pow(doublings)).min(THROTTLE_WINDOW_SECS);
        wait = wait.max(delay as f64 - counts.pair_last_age);
    }
    if counts.email >= Throttle::SPREAD_FAILURES {
        wait = wait.max(Throttle::SPREAD_SPACING_SECS as f64 - counts.email_last_age);
    }
    (wait > 0.0).then(|| wait.ceil() as u64)
}

/// A sign-in attempt reserved before its password is checked. Until
/// [`Attempt::succeeded`] or [`Attempt::not_checked`] removes it, it counts as a failure,
/// so concurrent attempts cannot all pass the throttle before any failure is written.
#[must_use]
pub(crate) struct Attempt {
    id: i64,
    email: String,
    network: String,
}

/// Reserves an attempt for `email` from `network`, or 429 with the wait. The check and
/// the reservation happen under advisory locks on the email and the network, so of 300
/// concurrent attempts exactly as many are reserved as the throttle allows.
pub(crate) async fn reserve_attempt(
    pg: &PgPool,
    email: &str,
    network: &str,
    now: OffsetDateTime,
) -> Result<Attempt, AppError> {
    let wrap = AppError::wrap("Failed to reserve a sign-in attempt");
    let mut tx = pg.begin().await.map_err(&wrap)?;
    // Always email, then network: no two transactions wait for each other in a cycle.
    sqlx::query(
        "select pg_advisory_xact_lock($1, hashtext($2)), pg_advisory_xact_lock($3, hashtext($4))",
    )
    .bind(crate::server::postgres::lock_class::SIGN_IN_EMAIL)
    .bind(email)
    .bind(crate::server::postgres::lock_class::SIGN_IN_NETWORK)
    .bind(network)
    .execute(&mut *tx)
    .await
    .map_err(&wrap)?;
    let row = sqlx::query!(
        r#"select count(*) filter (where email = $1 and client_addr = $2) as "pair!",
                  extract(epoch from $4::timestamptz - max(created_at)
                      filter (where email = $1 and client_addr = $2))::float8 as pair_last_age,
                  count(*) filter (where client_addr = $2) as "network!",
                  extract(epoch from $4::timestamptz - min(created_at)
                      filter (where client_addr = $2))::float8 as network_first_age,
                  count(*) filter (where email = $1) as "email!",
                  extract(epoch from $4::timestamptz - max(created_at)
                      filter (where email = $1))::float8 as email_last_age
           from sign_in_failures
           where created_at > $4::timestamptz - make_interval(secs => $3)
             and (email = $1 or client_addr = $2)"#,
        email,
        network,
        THROTTLE_WINDOW_SECS as f64,
        now
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(&wrap)?;
    let counts = Counts {
        pair: row.pair,
        pair_last_age: row.pair_last_age.unwrap_or(0.0),
        network: row.network,
        network_first_age: row.network_first_age.unwrap_or(0.0),
        email: row.email,
        email_last_age: row.email_last_age.unwrap_or(0.0),
    };
    if let Some(retry_after_secs) = wait_secs(&counts) {
        // The locks go before the pause.
        drop(tx);
        tracing::warn!(client = %network, "refused: sign-in throttled");
        tokio::time::sleep(REFUSAL_PAUSE).await;
        return Err(AppError::TooManyRequests { retry_after_secs });
    }
    let id = sqlx::query_scalar!(
        "with cleared as (delete from sign_in_failures where created_at < $3::timestamptz - interval '1 day')
         insert into sign_in_failures (email, client_addr, created_at) values ($1, $2, $3)
         returning id",
        email,
        network,
        now
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(&wrap)?;
    tx.commit().await.map_err(&wrap)?;
    Ok(Attempt {
        id,
        email: email.to_owned(),
        network: network.to_owned(),
    })
}

impl Attempt {
    /// The password was right: this network's failures for the email are forgotten
    /// (failures from other networks stay: they may be an attacker's).
    pub(crate) async fn succeeded(self, pg: &PgPool) -> Result<(), AppError> {
        sqlx::query!(
            "delete from sign_in_failures where email = $1 and client_addr = $2",
            self.email,
            self.network
        )
        .execute(pg)
        .await
        .map_err(AppError::wrap("Failed to clear sign-in failures"))?;
        Ok(())
    }

    /// The password was never checked (the server was too busy): the attempt does not
    /// count.
    pub(crate) async fn not_checked(self, pg: &PgPool) {
        let deleted = sqlx::query!("delete from sign_in_failures where id = $1", self.id)
            .execute(pg)
            .await;
        if let Err(error) = deleted {
            tracing::warn!(%error, "an unchecked sign-in attempt stays counted");
        }
    }
}

/// Checks `password` against `stored` for a reserved `attempt`: a busy gate (503) gives
/// the attempt back.
pub(crate) async fn check_password(
    pg: &PgPool,
    attempt: &mut Option<Attempt>,
    password: SecretString,
    stored: Option<super::PasswordHash>,
) -> Result<bool, AppError> {
    match verify_password(password, stored).await {
        Ok(matches) => Ok(matches),
        Err(error) => {
            if let Some(attempt) = attempt.take() {
                attempt.not_checked(pg).await;
            }
            Err(error)
        }
    }
}

/// Checks the credentials and signs in on `session`. Every failure (unknown email, wrong
/// password, disabled account) is the same [`AppError::SignInFailed`] after the same
/// argon2 work; too many failures (see [`Throttle`]) give 429, a full password gate 503.
/// `network` is the client's network ([`crate::server::client::network_of`]).
pub async fn sign_in(
    state: &AppState,
    session: &Session,
    network: &str,
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
    let mut attempt = Some(reserve_attempt(&state.pg, &email, network, state.clock.now()).await?);
    let user = user_by_email(&state.pg, &email)
        .await
        .map_err(AppError::wrap("Failed to look up an account"))?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let matches = check_password(&state.pg, &mut attempt, password, stored).await?;
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
            if let Some(attempt) = attempt {
                attempt.succeeded(&state.pg).await?;
            }
            tracing::info!(user = %user.email, "signed in");
            Ok(Actor {
                user_id: Some(user.id),
                name: user.email,
                role: user.role,
                must_change_password: user.must_change_password,
            })
        }
        _ => {
            // The reserved attempt stays: it is this failure's record.
            tracing::info!(client = %network, "sign-in failed");
            Err(AppError::SignInFailed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_from_one_network_are_free_then_the_wait_doubles() {
        let mut counts = Counts {
            pair: 4,
            network: 4,
            email: 4,
            ..Counts::default()
        };
        assert_eq!(wait_secs(&counts), None);
        counts = Counts {
            pair: 5,
            network: 5,
            email: 5,
            pair_last_age: 10.0,
            ..counts
        };
        assert_eq!(wait_secs(&counts), Some(20));
        counts.pair_last_age = 31.0;
        assert_eq!(wait_secs(&counts), None, "after 30 s one more try");
        counts.pair = 6;
        assert_eq!(wait_secs(&counts), Some(29), "then 60 s");
        counts.pair = 40;
        counts.pair_last_age = 0.0;
        assert_eq!(
            wait_secs(&counts),
            Some(THROTTLE_WINDOW_SECS as u64),
            "never past the window"
        );
    }

    #[test]
    fn a_spraying_network_waits_out_the_window() {
        let counts = Counts {
            network: Throttle::MAX_FAILURES_PER_NETWORK,
            network_first_age: 100.0,
            ..Counts::default()
        };
        assert_eq!(wait_secs(&counts), Some(THROTTLE_WINDOW_SECS as u64 - 100));
    }

    #[test]
    fn guessing_from_many_networks_spaces_attempts_for_the_email() {
        let mut counts = Counts {
            email: Throttle::SPREAD_FAILURES,
            email_last_age: 0.5,
            ..Counts::default()
        };
        assert_eq!(wait_secs(&counts), Some(2));
        counts.email_last_age = 2.5;
        assert_eq!(wait_secs(&counts), None);
    }
}
