//! The server side of accounts: password hashing, tokens, the session guard, sign-in
//! throttling and every change to `users` (each one recorded in the history).

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::http::request::Parts;
use axum::http::Method;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tower_sessions::{Expiry, Session};

use super::{check_new_password, normalize_email, Permission, Role, UserRow, Viewer};
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::server::AppState;

/// Who did something: a signed-in person, the command line or a scheduled job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// `users.id` for a person; `None` for the CLI and jobs.
    pub user_id: Option<i64>,
    /// What the history records as the actor: an email, `cli:<user>`, `system:<job>`.
    pub name: String,
    pub role: Role,
    /// A temporary password is still in use.
    pub must_change_password: bool,
}

impl Actor {
    /// The command line, run by someone with the server's configuration (and so with
    /// the databases' credentials): it acts with the admin role.
    pub fn cli() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        Self {
            user_id: None,
            name: format!("cli:{user}"),
            role: Role::Admin,
            must_change_password: false,
        }
    }

    /// A scheduled job or Salvage itself.
    pub fn system(job: &str) -> Self {
        Self {
            user_id: None,
            name: format!("system:{job}"),
            role: Role::Admin,
            must_change_password: false,
        }
    }

    /// The page-facing view of a signed-in person.
    pub fn viewer(&self) -> Option<Viewer> {
        Some(Viewer {
            user_id: self.user_id?,
            email: self.name.clone(),
            role: self.role,
            must_change_password: self.must_change_password,
        })
    }

    /// `Ok` when the role allows `permission`; a logged 403 otherwise.
    pub fn authorize(&self, permission: Permission) -> Result<(), AppError> {
        if self.role.can(permission) {
            Ok(())
        } else {
            tracing::warn!(actor = %self.name, role = %self.role, ?permission, "refused: role does not allow this");
            Err(AppError::Forbidden {
                message: permission.refusal(self.role),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------
// Passwords and tokens

/// An argon2id PHC string. Never serialised, and redacted in `Debug`.
#[derive(Clone)]
pub struct PasswordHash(String);

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

impl PasswordHash {
    /// Wraps a stored hash.
    pub fn from_stored(phc: String) -> Self {
        Self(phc)
    }

    /// The PHC string, for storing.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// argon2id with OWASP's parameters: 19 MiB, 2 passes, 1 lane.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str) -> Result<PasswordHash, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Ok(PasswordHash(
        hasher()
            .hash_password(password.as_bytes(), &salt)?
            .to_string(),
    ))
}

/// Hashes `password` on a blocking thread (argon2 takes tens of milliseconds of CPU).
pub async fn hash_password(password: SecretString) -> Result<PasswordHash, AppError> {
    tokio::task::spawn_blocking(move || hash_blocking(password.expose_secret()))
        .await
        .map_err(|error| AppError::internal("Password hashing task failed", error))?
        .map_err(|error| AppError::internal("Failed to hash a password", error))
}

/// A hash of a random password, verified against when an email has no account, so an
/// unknown email costs the same time as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_blocking(&random_token())
            .map(|hash| hash.0)
            .unwrap_or_default()
    })
}

/// Checks `password` against `stored` (or against a dummy hash when there is no
/// account) on a blocking thread. Always does the full argon2 work.
pub async fn verify_password(password: SecretString, stored: Option<PasswordHash>) -> bool {
    tokio::task::spawn_blocking(move || {
        let (phc, real) = match &stored {
            Some(hash) => (hash.0.as_str(), true),
            None => (dummy_hash(), false),
        };
        let Ok(parsed) = argon2::PasswordHash::new(phc) else {
            return false;
        };
        let matches = hasher()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok();
        matches && real
    })
    .await
    .unwrap_or(false)
}

/// 32 random bytes from the OS, hex-encoded: setup links, temporary passwords' source.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A temporary password a person can type: 20 characters without look-alikes.
pub fn temporary_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    // 256 is not a multiple of 55; the bias this leaves is far below what matters for a
    // 20-character one-time password (> 110 bits).
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// SHA-256 of a token: what the database keeps instead of the token.
pub fn token_digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

// ---------------------------------------------------------------------------------------
// Sessions and the guard

/// The session key holding the signed-in user.
const SESSION_USER: &str = "user";

/// What a session remembers: the user, and the generation that must still match.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SessionUser {
    user_id: i64,
    generation: i32,
}

/// A user row as the guard and sign-in need it.
struct UserRecord {
    id: i64,
    email: String,
    role: Role,
    disabled: bool,
    must_change_password: bool,
    session_generation: i32,
    password_hash: PasswordHash,
}

/// `users` as stored; [`UserRecord`] is its checked form.
struct StoredUser {
    id: i64,
    email: String,
    role: String,
    disabled: bool,
    must_change_password: bool,
    session_generation: i32,
    password_hash: String,
}

impl From<StoredUser> for UserRecord {
    fn from(user: StoredUser) -> Self {
        UserRecord {
            id: user.id,
            email: user.email,
            // The table's check constraint admits only the three role names.
            role: Role::parse(&user.role).unwrap_or(Role::Operator),
            disabled: user.disabled,
            must_change_password: user.must_change_password,
            session_generation: user.session_generation,
            password_hash: PasswordHash(user.password_hash),
        }
    }
}

async fn user_by_id(pg: &PgPool, id: i64) -> Result<Option<UserRecord>, sqlx::Error> {
    let user = sqlx::query_as!(
        StoredUser,
        "select id, email, role, disabled, must_change_password, session_generation,
                password_hash
         from users where id = $1",
        id
    )
    .fetch_optional(pg)
    .await?;
    Ok(user.map(UserRecord::from))
}

async fn user_by_email(pg: &PgPool, email: &str) -> Result<Option<UserRecord>, sqlx::Error> {
    let user = sqlx::query_as!(
        StoredUser,
        "select id, email, role, disabled, must_change_password, session_generation,
                password_hash
         from users where lower(email) = $1",
        email
    )
    .fetch_optional(pg)
    .await?;
    Ok(user.map(UserRecord::from))
}

fn db_error(context: &'static str) -> impl Fn(sqlx::Error) -> AppError {
    move |error| match &error {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => {
            tracing::warn!(%error, "{context}");
            AppError::Unavailable {
                message: "PostgreSQL is not answering; accounts cannot be checked right now."
                    .into(),
            }
        }
        _ => AppError::internal(context, error),
    }
}

fn session_error(error: tower_sessions::session::Error) -> AppError {
    AppError::internal("Session store failed", error)
}

/// The signed-in actor of `session`, or 401. A disabled account, a bumped session
/// generation or a deleted user ends the session here and now. Refreshes the idle expiry.
pub async fn authenticate(state: &AppState, session: &Session) -> Result<Actor, AppError> {
    let Some(stored) = session
        .get::<SessionUser>(SESSION_USER)
        .await
        .map_err(session_error)?
    else {
        return Err(AppError::Unauthorized);
    };
    let user = user_by_id(&state.pg, stored.user_id)
        .await
        .map_err(db_error("Failed to load the signed-in user"))?;
    let user = match user {
        Some(user) if !user.disabled && user.session_generation == stored.generation => user,
        _ => {
            tracing::info!(
                user_id = stored.user_id,
                "session ended: account disabled or changed"
            );
            session.flush().await.map_err(session_error)?;
            return Err(AppError::Unauthorized);
        }
    };
    // Push the idle expiry forward, but write the session at most once a minute.
    let idle = time::Duration::try_from(state.session_idle).unwrap_or(time::Duration::hours(8));
    if session.expiry_date() - OffsetDateTime::now_utc() < idle - time::Duration::minutes(1) {
        session.set_expiry(Some(Expiry::OnInactivity(idle)));
    }
    Ok(Actor {
        user_id: Some(user.id),
        name: user.email,
        role: user.role,
        must_change_password: user.must_change_password,
    })
}

/// Refuses a state-changing request whose `Origin` (or, without one, `Referer`) is not
/// the console's public origin. GET and HEAD pass: they change nothing.
pub fn check_origin(state: &AppState, parts: &Parts) -> Result<(), AppError> {
    if parts.method == Method::GET || parts.method == Method::HEAD {
        return Ok(());
    }
    let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let same = match (header("origin"), header("referer")) {
        (Some(origin), _) => origin == state.public_origin,
        (None, Some(referer)) => url::Url::parse(referer)
            .map(|url| url.origin().ascii_serialization() == state.public_origin)
            .unwrap_or(false),
        (None, None) => false,
    };
    if same {
        Ok(())
    } else {
        tracing::warn!(
            origin = header("origin").unwrap_or("-"),
            referer = header("referer").unwrap_or("-"),
            path = %parts.uri.path(),
            "refused: cross-origin call"
        );
        Err(AppError::Forbidden {
            message: format!(
                "This request did not come from the console at {}.",
                state.public_origin
            ),
        })
    }
}

/// The request's parts and session, as leptos_axum provides them to server functions.
pub fn request_context() -> Result<(AppState, Parts, Session), AppError> {
    let state = crate::server::app_state()?;
    let parts = leptos::prelude::use_context::<Parts>()
        .ok_or_else(|| AppError::internal("Request parts missing", "no Parts in context"))?;
    let session =
        parts.extensions.get::<Session>().cloned().ok_or_else(|| {
            AppError::internal("Session missing", "no session layer on the router")
        })?;
    Ok((state, parts, session))
}

/// The first line of every server function: checks the origin, the session and the
/// role, and returns the state and the actor. Errors carry their HTTP status.
pub async fn guard(permission: Permission) -> Result<(AppState, Actor), AppError> {
    crate::server::respond(guard_inner(permission, false).await)
}

/// [`guard`] that lets a person with a temporary password through: only for reading
/// who is signed in, changing the password and signing out.
pub async fn guard_allowing_temporary_password() -> Result<(AppState, Actor), AppError> {
    crate::server::respond(guard_inner(Permission::Read, true).await)
}

async fn guard_inner(
    permission: Permission,
    allow_temporary: bool,
) -> Result<(AppState, Actor), AppError> {
    let (state, parts, session) = request_context()?;
    check_origin(&state, &parts)?;
    let actor = authenticate(&state, &session).await.inspect_err(|error| {
        if *error == AppError::Unauthorized {
            tracing::info!(path = %parts.uri.path(), "refused: not signed in");
        }
    })?;
    if actor.must_change_password && !allow_temporary {
        return Err(AppError::Forbidden {
            message: "Choose a new password first: your account has a temporary one.".into(),
        });
    }
    actor.authorize(permission)?;
    Ok((state, actor))
}

/// Signs `user` in on `session`: a new session id (no fixation), the user and generation.
async fn start_session(session: &Session, user: &UserRecord) -> Result<(), AppError> {
    session.cycle_id().await.map_err(session_error)?;
    session
        .insert(
            SESSION_USER,
            SessionUser {
                user_id: user.id,
                generation: user.session_generation,
            },
        )
        .await
        .map_err(session_error)
}

/// Ends `session` server-side: the row is deleted, the cookie cleared.
pub async fn end_session(session: &Session) -> Result<(), AppError> {
    session.flush().await.map_err(session_error)
}

// ---------------------------------------------------------------------------------------
// Sign-in and throttling

/// Failures counted over this window.
pub const THROTTLE_WINDOW_SECS: i64 = 15 * 60;
/// Failures per email within the window before further attempts are refused.
pub const MAX_FAILURES_PER_EMAIL: i64 = 5;
/// Failures per client address within the window before further attempts are refused.
pub const MAX_FAILURES_PER_CLIENT: i64 = 20;

/// 429 when `email` or `client` has used up its failures in the window.
async fn check_throttle(pg: &PgPool, email: &str, client: &str) -> Result<(), AppError> {
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
    .map_err(db_error("Failed to count sign-in failures"))?;
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

async fn record_failure(pg: &PgPool, email: &str, client: &str) -> Result<(), AppError> {
    sqlx::query!(
        "with cleared as (delete from sign_in_failures where created_at < now() - interval '1 day')
         insert into sign_in_failures (email, client_addr) values ($1, $2)",
        email,
        client
    )
    .execute(pg)
    .await
    .map_err(db_error("Failed to record a sign-in failure"))?;
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
    if password.expose_secret().chars().count() > super::MAX_PASSWORD_LEN {
        return Err(AppError::SignInFailed);
    }
    let email = email.trim().to_lowercase();
    check_throttle(&state.pg, &email, client).await?;
    let user = user_by_email(&state.pg, &email)
        .await
        .map_err(db_error("Failed to look up an account"))?;
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
            .map_err(db_error("Failed to record the sign-in"))?;
            sqlx::query!("delete from sign_in_failures where email = $1", email)
                .execute(&state.pg)
                .await
                .map_err(db_error("Failed to clear sign-in failures"))?;
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

// ---------------------------------------------------------------------------------------
// Users

use crate::server::unix_ms as ms;

/// Every account, by email.
pub async fn list_users(pg: &PgPool) -> Result<Vec<UserRow>, AppError> {
    let rows = sqlx::query!(
        "select id, email, role, disabled, must_change_password, created_at, last_login_at
         from users order by email"
    )
    .fetch_all(pg)
    .await
    .map_err(db_error("Failed to list users"))?;
    Ok(rows
        .into_iter()
        .map(|row| UserRow {
            id: row.id,
            email: row.email,
            role: Role::parse(&row.role).unwrap_or(Role::Operator),
            disabled: row.disabled,
            must_change_password: row.must_change_password,
            created_at: ms(row.created_at),
            last_login_at: row.last_login_at.map(ms),
        })
        .collect())
}

/// How many accounts exist.
pub async fn count_users(pg: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"select count(*) as "count!" from users"#)
        .fetch_one(pg)
        .await
}

/// The id of the account with `email`, or 404.
pub async fn user_id_by_email(pg: &PgPool, email: &str) -> Result<i64, AppError> {
    let email = normalize_email("email", email)?;
    user_by_email(pg, &email)
        .await
        .map_err(db_error("Failed to look up an account"))?
        .map(|user| user.id)
        .ok_or(AppError::NotFound {
            what: format!("An account with the email {email}"),
        })
}

async fn insert_user(
    conn: &mut PgConnection,
    email: &str,
    role: Role,
    hash: &PasswordHash,
    must_change_password: bool,
) -> Result<i64, AppError> {
    sqlx::query_scalar!(
        "insert into users (email, password_hash, role, must_change_password)
         values ($1, $2, $3, $4) returning id",
        email,
        hash.as_str(),
        role.as_str(),
        must_change_password
    )
    .fetch_one(conn)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.constraint() == Some("users_email_key") => {
            AppError::invalid("email", "an account with this email already exists")
        }
        _ => AppError::internal("Failed to add a user", error),
    })
}

/// A new account. Without `password`, a temporary one is generated, returned (to be
/// shown once) and must be changed at first sign-in. Recorded in the history.
pub async fn add_user(
    pg: &PgPool,
    actor: &Actor,
    email: &str,
    role: Role,
    password: Option<SecretString>,
    reason: Option<String>,
) -> Result<(i64, Option<String>), AppError> {
    let email = normalize_email("email", email)?;
    let (password, temporary) = match password {
        Some(password) => {
            check_new_password("password", password.expose_secret())?;
            (password, None)
        }
        None => {
            let temporary = temporary_password();
            (SecretString::from(temporary.clone()), Some(temporary))
        }
    };
    let hash = hash_password(password).await?;
    let mut tx = pg.begin().await.map_err(db_error("Failed to begin"))?;
    let id = insert_user(&mut tx, &email, role, &hash, temporary.is_some()).await?;
    append(
        &mut tx,
        &NewEntry::new(
            "user_change",
            format!("Added {email} as {role}"),
            actor,
            Outcome::Succeeded,
        )
        .with_reason(reason)
        .with_details(
            json!({"change": "add", "user_id": id, "email": email, "role": role,
                              "temporary_password": temporary.is_some()}),
        ),
    )
    .await
    .map_err(db_error("Failed to record the new user"))?;
    tx.commit().await.map_err(db_error("Failed to commit"))?;
    tracing::info!(actor = %actor.name, user = %email, %role, "user added");
    Ok((id, temporary))
}

/// Locks the account row for a change and returns (email, role, disabled).
async fn lock_user(conn: &mut PgConnection, id: i64) -> Result<(String, Role, bool), AppError> {
    let row = sqlx::query!(
        "select email, role, disabled from users where id = $1 for update",
        id
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error("Failed to load a user"))?
    .ok_or(AppError::NotFound {
        what: format!("User {id}"),
    })?;
    Ok((
        row.email,
        Role::parse(&row.role).unwrap_or(Role::Operator),
        row.disabled,
    ))
}

/// Refuses a change that would leave no active admin. Run with the admins' rows locked.
async fn keep_an_admin(conn: &mut PgConnection, changing: i64) -> Result<(), AppError> {
    let others = sqlx::query_scalar!(
        r#"select count(*) as "count!" from (select id from users
            where role = 'admin' and not disabled and id <> $1 for update) admins"#,
        changing
    )
    .fetch_one(conn)
    .await
    .map_err(db_error("Failed to count admins"))?;
    if others == 0 {
        return Err(AppError::Conflict {
            message: "This is the last active admin; make someone else admin first.".into(),
        });
    }
    Ok(())
}

/// Changes a user's role (takes effect on their next request). Recorded in the history.
pub async fn set_role(
    pg: &PgPool,
    actor: &Actor,
    user_id: i64,
    role: Role,
    reason: Option<String>,
) -> Result<(), AppError> {
    let mut tx = pg.begin().await.map_err(db_error("Failed to begin"))?;
    let (email, old_role, _) = lock_user(&mut tx, user_id).await?;
    if old_role == role {
        return Err(AppError::Conflict {
            message: format!("{email} already has the {role} role."),
        });
    }
    if old_role == Role::Admin {
        keep_an_admin(&mut tx, user_id).await?;
    }
    sqlx::query!(
        "update users set role = $2, updated_at = now() where id = $1",
        user_id,
        role.as_str()
    )
    .execute(&mut *tx)
    .await
    .map_err(db_error("Failed to change a role"))?;
    append(
        &mut tx,
        &NewEntry::new(
            "user_change",
            format!("Changed {email} from {old_role} to {role}"),
            actor,
            Outcome::Succeeded,
        )
        .with_reason(reason)
        .with_details(json!({"change": "role", "user_id": user_id, "email": email,
                              "from": old_role, "to": role})),
    )
    .await
    .map_err(db_error("Failed to record the role change"))?;
    tx.commit().await.map_err(db_error("Failed to commit"))?;
    tracing::info!(actor = %actor.name, user = %email, %role, "role changed");
    Ok(())
}

/// Disables (or re-enables) an account. Disabling ends all its sessions at once: the
/// session generation moves on, and the guard refuses every older session.
pub async fn set_disabled(
    pg: &PgPool,
    actor: &Actor,
    user_id: i64,
    disabled: bool,
    reason: Option<String>,
) -> Result<(), AppError> {
    let mut tx = pg.begin().await.map_err(db_error("Failed to begin"))?;
    let (email, role, was_disabled) = lock_user(&mut tx, user_id).await?;
    if was_disabled == disabled {
        return Err(AppError::Conflict {
            message: format!(
                "{email} is already {}.",
                if disabled { "disabled" } else { "enabled" }
            ),
        });
    }
    if disabled && role == Role::Admin {
        keep_an_admin(&mut tx, user_id).await?;
    }
    sqlx::query!(
        "update users set disabled = $2, session_generation = session_generation + 1,
                updated_at = now() where id = $1",
        user_id,
        disabled
    )
    .execute(&mut *tx)
    .await
    .map_err(db_error("Failed to change an account"))?;
    let verb = if disabled { "Disabled" } else { "Enabled" };
    append(
        &mut tx,
        &NewEntry::new(
            "user_change",
            format!("{verb} {email}"),
            actor,
            Outcome::Succeeded,
        )
        .with_reason(reason)
        .with_details(
            json!({"change": if disabled { "disable" } else { "enable" },
                                  "user_id": user_id, "email": email}),
        ),
    )
    .await
    .map_err(db_error("Failed to record the account change"))?;
    tx.commit().await.map_err(db_error("Failed to commit"))?;
    tracing::info!(actor = %actor.name, user = %email, disabled, "account changed");
    Ok(())
}

/// Changes the actor's own password after checking the current one. Other sessions of
/// the account end; `session` (the one making the change) stays signed in.
pub async fn change_password(
    state: &AppState,
    session: &Session,
    actor: &Actor,
    current: SecretString,
    new: SecretString,
) -> Result<(), AppError> {
    let user_id = actor.user_id.ok_or(AppError::Unauthorized)?;
    check_new_password("new_password", new.expose_secret())?;
    if current.expose_secret() == new.expose_secret() {
        return Err(AppError::invalid(
            "new_password",
            "choose a password different from the current one",
        ));
    }
    let user = user_by_id(&state.pg, user_id)
        .await
        .map_err(db_error("Failed to load the user"))?
        .ok_or(AppError::Unauthorized)?;
    if !verify_password(current, Some(user.password_hash.clone())).await {
        return Err(AppError::invalid(
            "current_password",
            "this is not your current password",
        ));
    }
    let hash = hash_password(new).await?;
    let mut tx = state
        .pg
        .begin()
        .await
        .map_err(db_error("Failed to begin"))?;
    let generation = sqlx::query_scalar!(
        "update users set password_hash = $2, must_change_password = false,
                session_generation = session_generation + 1, updated_at = now()
         where id = $1 returning session_generation",
        user_id,
        hash.as_str()
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error("Failed to change the password"))?;
    append(
        &mut tx,
        &NewEntry::new(
            "user_change",
            format!("{} changed their password", actor.name),
            actor,
            Outcome::Succeeded,
        )
        .with_details(json!({"change": "password", "user_id": user_id})),
    )
    .await
    .map_err(db_error("Failed to record the password change"))?;
    tx.commit().await.map_err(db_error("Failed to commit"))?;
    session
        .insert(
            SESSION_USER,
            SessionUser {
                user_id,
                generation,
            },
        )
        .await
        .map_err(session_error)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The first admin

/// How long a setup link works.
pub const SETUP_LINK_HOURS: i64 = 24;

/// When no account exists, creates a one-time setup token and returns it (to print
/// once); `None` when accounts exist.
pub async fn issue_setup_token(pg: &PgPool) -> Result<Option<String>, sqlx::Error> {
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
         values ($1, now() + make_interval(hours => $2))",
        token_digest(&token),
        SETUP_LINK_HOURS as i32
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(token))
}

/// Whether `token` is a live setup token (compared in constant time).
async fn setup_token_is_live(conn: &mut PgConnection, token: &str) -> Result<bool, sqlx::Error> {
    let digests: Vec<Vec<u8>> =
        sqlx::query_scalar!("select token_hash from setup_tokens where expires_at > now()")
            .fetch_all(conn)
            .await?;
    let presented = token_digest(token);
    Ok(digests.iter().fold(false, |found, digest| {
        found | bool::from(digest.ct_eq(&presented))
    }))
}

/// Whether the setup page should offer the form for `token`.
pub async fn setup_link_is_valid(pg: &PgPool, token: &str) -> Result<bool, AppError> {
    let mut conn = pg.acquire().await.map_err(db_error("Failed to connect"))?;
    let users = count_users(pg)
        .await
        .map_err(db_error("Failed to count users"))?;
    Ok(users == 0
        && setup_token_is_live(&mut conn, token)
            .await
            .map_err(db_error("Failed to check the setup link"))?)
}

/// Creates the first admin with a live setup `token`, then kills every setup token.
/// Refused (404, revealing nothing) once any account exists or the token is wrong.
pub async fn create_first_admin(
    pg: &PgPool,
    token: &str,
    email: &str,
    password: SecretString,
) -> Result<i64, AppError> {
    let email = normalize_email("email", email)?;
    check_new_password("password", password.expose_secret())?;
    let hash = hash_password(password).await?;
    let mut tx = pg.begin().await.map_err(db_error("Failed to begin"))?;
    sqlx::query!("lock table users in share row exclusive mode")
        .execute(&mut *tx)
        .await
        .map_err(db_error("Failed to lock users"))?;
    let users = sqlx::query_scalar!(r#"select count(*) as "count!" from users"#)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error("Failed to count users"))?;
    let live = setup_token_is_live(&mut tx, token)
        .await
        .map_err(db_error("Failed to check the setup link"))?;
    if users > 0 || !live {
        tracing::warn!("refused: setup link used, expired or wrong");
        return Err(AppError::NotFound {
            what: "This setup link (it works once, and only before any account exists)".into(),
        });
    }
    let id = insert_user(&mut tx, &email, Role::Admin, &hash, false).await?;
    sqlx::query!("delete from setup_tokens")
        .execute(&mut *tx)
        .await
        .map_err(db_error("Failed to retire the setup link"))?;
    let actor = Actor {
        user_id: Some(id),
        name: email.clone(),
        role: Role::Admin,
        must_change_password: false,
    };
    append(
        &mut tx,
        &NewEntry::new(
            "user_change",
            format!("Created the first admin, {email}, from the setup link"),
            &actor,
            Outcome::Succeeded,
        )
        .with_details(json!({"change": "first_admin", "user_id": id, "email": email})),
    )
    .await
    .map_err(db_error("Failed to record the first admin"))?;
    tx.commit().await.map_err(db_error("Failed to commit"))?;
    tracing::info!(user = %email, "first admin created");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_own_hash_only() {
        let hash = hash_password(SecretString::from("correct horse battery"))
            .await
            .unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            verify_password(
                SecretString::from("correct horse battery"),
                Some(hash.clone())
            )
            .await
        );
        assert!(!verify_password(SecretString::from("wrong horse battery"), Some(hash)).await);
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        assert!(!verify_password(SecretString::from(""), None).await);
    }

    #[test]
    fn hashes_and_tokens_never_print() {
        let hash = PasswordHash::from_stored("$argon2id$secret".into());
        assert_eq!(format!("{hash:?}"), "PasswordHash(<redacted>)");
        assert_eq!(random_token().len(), 64);
        assert_ne!(random_token(), random_token());
        let temporary = temporary_password();
        assert_eq!(temporary.chars().count(), 20);
        assert!(temporary.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
