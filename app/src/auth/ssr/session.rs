//! Sessions and the guard: who is signed in, the same-origin check, and the first line
//! of every server function.

use axum::http::request::Parts;
use axum::http::Method;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::Session;

use super::super::Permission;
use super::records::{user_by_id, UserRecord};
use super::Actor;
use crate::error::AppError;
use crate::server::AppState;

/// The session key holding the signed-in user.
pub(crate) const SESSION_USER: &str = "user";

/// The session key holding when the idle expiry was last pushed forward (unix seconds).
const SESSION_REFRESHED: &str = "refreshed_at";

/// What a session remembers: the user, the generation that must still match, and when
/// the person signed in (unix seconds; absent in sessions from before the absolute cap,
/// which then count from their next request).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SessionUser {
    pub(crate) user_id: i64,
    pub(crate) generation: i32,
    #[serde(default)]
    pub(crate) signed_in_at: Option<i64>,
}

/// How often an active session is written to push its idle expiry forward: once a
/// minute, or a quarter of the idle time when that is shorter.
fn refresh_every(idle: std::time::Duration) -> i64 {
    (idle.as_secs() as i64 / 4).clamp(1, 60)
}

pub(crate) fn session_error(error: tower_sessions::session::Error) -> AppError {
    AppError::internal("Session store failed", error)
}

/// The signed-in actor of `session`, or 401. A disabled account, a bumped session
/// generation, a deleted user or a session older than `session_max` ends the session
/// here and now. Pushes the idle expiry forward (sessions keep real time, as the
/// session store does).
pub async fn authenticate(state: &AppState, session: &Session) -> Result<Actor, AppError> {
    let Some(mut stored) = session
        .get::<SessionUser>(SESSION_USER)
        .await
        .map_err(session_error)?
    else {
        return Err(AppError::Unauthorized);
    };
    let user = user_by_id(&state.pg, stored.user_id)
        .await
        .map_err(AppError::wrap("Failed to load the signed-in user"))?;
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
    // The real time, as the session store's idle expiry is: a session's two ages share
    // one clock (tests that move `state.clock` keep their sessions).
    let now = OffsetDateTime::now_utc().unix_timestamp();
    match stored.signed_in_at {
        Some(at) if now - at >= state.session_max.as_secs() as i64 => {
            tracing::info!(
                user_id = stored.user_id,
                "session ended: at its maximum age"
            );
            session.flush().await.map_err(session_error)?;
            return Err(AppError::Unauthorized);
        }
        Some(_) => {}
        None => {
            stored.signed_in_at = Some(now);
            session
                .insert(SESSION_USER, stored)
                .await
                .map_err(session_error)?;
        }
    }
    // A session is saved, with a fresh `now + idle` expiry, only when its data changes:
    // writing the refresh time is what keeps an active person signed in.
    let refreshed = session
        .get::<i64>(SESSION_REFRESHED)
        .await
        .map_err(session_error)?;
    if refreshed.is_none_or(|at| now - at >= refresh_every(state.session_idle)) {
        session
            .insert(SESSION_REFRESHED, now)
            .await
            .map_err(session_error)?;
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
    let parts = crate::server::request_parts()?;
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

/// A server function's whole shape, the one way doors behind a sign-in are written:
/// [`guard`] (origin, session, role), then `work` with the state and the actor, then the
/// answer with its HTTP status and, for an internal error, its cause logged under the
/// request's path ([`respond`](crate::server::respond)).
pub async fn serve<T, Work>(
    permission: Permission,
    work: impl FnOnce(AppState, Actor) -> Work,
) -> Result<T, AppError>
where
    Work: std::future::Future<Output = Result<T, AppError>>,
{
    let (state, actor) = guard(permission).await?;
    crate::server::respond(work(state, actor).await)
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
    let actor = authenticate(&state, &session)
        .await
        .inspect_err(|error| {
            if *error == AppError::Unauthorized {
                tracing::info!(path = %parts.uri.path(), "refused: not signed in");
            }
        })
        .map_err(|error| postgres_outage(&state, error))?;
    if actor.must_change_password && !allow_temporary {
        return Err(AppError::Forbidden {
            message: "Choose a new password first: your account has a temporary one.".into(),
        });
    }
    actor.authorize(permission)?;
    Ok((state, actor))
}

/// PostgreSQL not answering is noted in the process's watch and said with since when
/// (the sentence every page shows); any other error passes unchanged.
fn postgres_outage(state: &AppState, error: AppError) -> AppError {
    match &error {
        _ if error.is_down(crate::stores::StoreKind::Postgres) => {
            state.postgres_watch.failed(state.clock.now());
            match state.postgres_watch.down_since() {
                Some(since) => AppError::Unavailable {
                    stores: vec![crate::stores::StoreKind::Postgres],
                    message: crate::server::watch::PostgresWatch::sentence(since),
                },
                None => error,
            }
        }
        _ => error,
    }
}

/// Signs `user` in on `session`: a new session id (no fixation), the user and generation.
pub(crate) async fn start_session(session: &Session, user: &UserRecord) -> Result<(), AppError> {
    session.cycle_id().await.map_err(session_error)?;
    session
        .insert(
            SESSION_USER,
            SessionUser {
                user_id: user.id,
                generation: user.session_generation,
                signed_in_at: Some(OffsetDateTime::now_utc().unix_timestamp()),
            },
        )
        .await
        .map_err(session_error)
}

/// Ends `session` server-side: the row is deleted, the cookie cleared.
pub async fn end_session(session: &Session) -> Result<(), AppError> {
    session.flush().await.map_err(session_error)
}
