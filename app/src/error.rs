//! The one error type of server functions and HTTP handlers.
//!
//! Every variant is something a person can act on. Failures below the boundary reach it
//! through one conversion, [`AppError::internal`] (server only): a store that does not
//! answer (a refused or reset connection, a pool timeout) becomes `Unavailable`, a 503
//! with `Retry-After` whose message names the store, because on the day PostgreSQL or
//! ClickHouse is down that is the one thing a person needs to read; any other cause (a
//! `sqlx::Error`, a ClickHouse error) is logged on the server with a reference and never
//! sent to the browser: the caller sees `Internal { reference }` and can quote the
//! reference to whoever reads the logs.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// `Retry-After` of a 503: a store outage is usually over in seconds or lasts much longer;
/// a client polling every few seconds notices either soon enough.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// An error a server function or handler returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AppError {
    /// No session, or it expired: sign in (401).
    #[error("Sign in to continue.")]
    Unauthorized,
    /// Signed in, but the role does not allow this (403).
    #[error("{message}")]
    Forbidden { message: String },
    /// The thing asked for does not exist (404).
    #[error("{what} was not found.")]
    NotFound { what: String },
    /// Input that does not pass validation; `field` names the wrong part (422).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The email and password do not match an active account (401). One message for
    /// every cause, so a failed sign-in never tells whether the email has an account.
    #[error("That email and password do not match an active account.")]
    SignInFailed,
    /// Too many attempts; try again after `retry_after_secs` seconds (429).
    #[error("Too many failed sign-ins. Try again in {} minute(s).", retry_after_secs.div_ceil(60).max(1))]
    TooManyRequests { retry_after_secs: u64 },
    /// One person or key did too much in a while: notes, queued rows (429,
    /// `Retry-After`). The message says which limit and how to go on.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    /// The fallback queue is at its total cap: nothing more is taken until replay drains
    /// it (507, `Retry-After`).
    #[error("{message}")]
    QueueFull { message: String },
    /// The request itself is malformed (not JSON, not the expected shape) (400).
    #[error("{message}")]
    BadRequest { message: String },
    /// The request is larger than Salvage accepts: body size or rows per batch (413).
    #[error("{message}")]
    TooLarge { message: String },
    /// The action conflicts with the current state (409).
    #[error("{message}")]
    Conflict { message: String },
    /// A store the action needs is not reachable right now (503, `Retry-After`):
    /// `stores` says which (both, for a batch neither would take; none when what is busy
    /// is Salvage itself), and the message says so to a person.
    #[error("{message}")]
    Unavailable {
        stores: Vec<crate::stores::StoreKind>,
        message: String,
    },
    /// Something failed on the server; the cause is in the server log under `reference`,
    /// written by the door that answers with this error ([`Unreported`]).
    #[error("Something went wrong on the server (reference {reference}).")]
    Internal {
        reference: String,
        #[serde(skip)]
        cause: Unreported,
    },
    /// The call itself failed (network, encoding) before or after reaching the server.
    #[error("The request failed: {message}")]
    Transport { message: String },
}

/// The cause of an [`AppError::Internal`], carried from where the failure became an
/// `AppError` to the door that answers with it (a server function, an HTTP handler, a CLI
/// command, a job's run), which logs it once with what it is: `AppError::report`. A
/// cause that reaches no door is logged when its last copy is dropped, so none is lost.
/// Never serialised: a browser sees the reference only.
#[derive(Clone, Default)]
pub struct Unreported(#[cfg(feature = "ssr")] Option<std::sync::Arc<ssr::Pending>>);

impl PartialEq for Unreported {
    /// Two internal errors are told apart by their reference; the cause is the log's.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Unreported {}

impl std::fmt::Debug for Unreported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Unreported")
    }
}

impl AppError {
    /// A validation error naming the field that is wrong.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// `store` did not answer: 503, said plainly.
    pub fn store_down(store: crate::stores::StoreKind) -> Self {
        let name = store.label();
        Self::Unavailable {
            stores: vec![store],
            message: format!(
                "{name} is not answering right now. Salvage works again as soon as {name} \
                 does; try again in a few seconds."
            ),
        }
    }

    /// Whether this is `store` not answering.
    pub fn is_down(&self, store: crate::stores::StoreKind) -> bool {
        matches!(self, Self::Unavailable { stores, .. } if stores.contains(&store))
    }

    /// Seconds a client should wait before trying again, for the `Retry-After` header.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::TooManyRequests { retry_after_secs }
            | Self::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Self::QueueFull { .. } => Some(60),
            Self::Unavailable { .. } => Some(UNAVAILABLE_RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// The HTTP status this error is sent with.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::BadRequest { .. } => 400,
            Self::Unauthorized | Self::SignInFailed => 401,
            Self::TooLarge { .. } => 413,
            Self::TooManyRequests { .. } | Self::RateLimited { .. } => 429,
            Self::QueueFull { .. } => 507,
            Self::Forbidden { .. } => 403,
            Self::NotFound { .. } => 404,
            Self::Conflict { .. } => 409,
            Self::Invalid { .. } => 422,
            Self::Unavailable { .. } => 503,
            Self::Internal { .. } | Self::Transport { .. } => 500,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            // The caller's mistake, found before the function runs: answered 422 (as any
            // invalid input), never as the server's 500, so it is neither logged as a
            // server error nor counted as one in /metrics.
            ServerFnErrorErr::Args(message) | ServerFnErrorErr::MissingArg(message) => {
                let error = Self::invalid("arguments", message);
                #[cfg(feature = "ssr")]
                error.set_response_status();
                error
            }
            other => Self::Transport {
                message: other.to_string(),
            },
        }
    }
}

#[cfg(feature = "ssr")]
pub use ssr::{postgres_unreachable, Cause};

#[cfg(feature = "ssr")]
mod ssr {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use crate::error::{AppError, Unreported};
    use crate::stores::StoreKind;
    use axum::response::{IntoResponse, Response};

    /// An internal error's cause until a door logs it.
    pub struct Pending {
        context: String,
        cause: String,
        reference: String,
        reported: AtomicBool,
    }

    impl Pending {
        fn log(&self, door: &str) {
            tracing::error!(reference = %self.reference, error = %self.cause, door, "{}", self.context);
        }
    }

    impl Drop for Pending {
        /// The last copy of an error no door reported (a background task's, a dropped
        /// result's): logged now rather than lost.
        fn drop(&mut self) {
            if !*self.reported.get_mut() {
                self.log("none (the error was dropped before an answer)");
            }
        }
    }

    impl AppError {
        /// Sets the status (and `Retry-After`) of the current server function's response
        /// from this error; does nothing outside a server function's request.
        pub fn set_response_status(&self) {
            if let Some(options) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
                options.set_status(
                    axum::http::StatusCode::from_u16(self.status_code())
                        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
                );
                if let Some(secs) = self.retry_after_secs() {
                    options.insert_header(
                        axum::http::header::RETRY_AFTER,
                        axum::http::HeaderValue::from(secs),
                    );
                }
            }
        }
    }

    /// A failure below the boundary, as [`AppError::internal`] takes it: the store errors
    /// keep their type so they can be told apart, anything else is its text.
    #[derive(Debug)]
    pub enum Cause {
        Postgres(sqlx::Error),
        ClickHouse(clickhouse::error::Error),
        /// The session store (tower-sessions on PostgreSQL) failed.
        Session(tower_sessions::session::Error),
        Other(String),
    }

    impl std::fmt::Display for Cause {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Self::Postgres(e) => write!(f, "PostgreSQL: {e}"),
                Self::ClickHouse(e) => write!(f, "ClickHouse: {e}"),
                Self::Session(e) => write!(f, "session store: {e}"),
                Self::Other(e) => f.write_str(e),
            }
        }
    }

    impl From<sqlx::Error> for Cause {
        fn from(e: sqlx::Error) -> Self {
            Self::Postgres(e)
        }
    }
    impl From<clickhouse::error::Error> for Cause {
        fn from(e: clickhouse::error::Error) -> Self {
            Self::ClickHouse(e)
        }
    }
    impl From<tower_sessions::session::Error> for Cause {
        fn from(e: tower_sessions::session::Error) -> Self {
            Self::Session(e)
        }
    }
    impl From<tokio::task::JoinError> for Cause {
        fn from(e: tokio::task::JoinError) -> Self {
            Self::Other(format!("a blocking task failed: {e}"))
        }
    }
    impl From<argon2::password_hash::Error> for Cause {
        fn from(e: argon2::password_hash::Error) -> Self {
            Self::Other(format!("password hashing: {e}"))
        }
    }
    impl From<String> for Cause {
        fn from(e: String) -> Self {
            Self::Other(e)
        }
    }
    impl From<&str> for Cause {
        fn from(e: &str) -> Self {
            Self::Other(e.to_owned())
        }
    }

    /// Whether `error` means PostgreSQL did not answer (as opposed to refusing the query):
    /// no connection within the pool's timeout, a refused, reset or closed connection, or
    /// the server saying it is shutting down, starting up or out of connections.
    pub fn postgres_unreachable(error: &sqlx::Error) -> bool {
        match error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            // Class 08 is "connection exception"; 57P01-03 admin/crash shutdown and
            // "cannot connect now"; 53300 too many connections.
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
            }),
            _ => false,
        }
    }

    impl Cause {
        /// The store that did not answer, when that is what happened.
        fn unanswered_store(&self) -> Option<StoreKind> {
            use tower_sessions::session::Error as SessionError;
            use tower_sessions::session_store::Error as StoreError;
            match self {
                Self::Postgres(e) => postgres_unreachable(e).then_some(StoreKind::Postgres),
                Self::ClickHouse(clickhouse::error::Error::Network(_))
                | Self::ClickHouse(clickhouse::error::Error::TimedOut) => {
                    Some(StoreKind::Clickhouse)
                }
                // The session store's backend is PostgreSQL; it reports its errors as text.
                Self::Session(SessionError::Store(StoreError::Backend(_))) => {
                    Some(StoreKind::Postgres)
                }
                _ => None,
            }
        }

        /// The unique constraint `self` violated, if that is what it is.
        pub fn violated_constraint(&self) -> Option<&str> {
            match self {
                Self::Postgres(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    db.constraint()
                }
                _ => None,
            }
        }
    }

    impl AppError {
        /// The one conversion of a failure below the boundary into the error a caller
        /// sees: a store that did not answer is `Unavailable` naming it (logged as a
        /// warning); anything else is logged with a fresh reference and returned as the
        /// opaque `Internal`.
        pub fn internal(context: &str, cause: impl Into<Cause>) -> Self {
            let cause = cause.into();
            if let Some(store) = cause.unanswered_store() {
                tracing::warn!(store = store.label(), error = %cause, "{context}: the store did not answer");
                return Self::store_down(store);
            }
            let reference = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
            let pending = Pending {
                context: context.to_owned(),
                cause: cause.to_string(),
                reference: reference.clone(),
                reported: AtomicBool::new(false),
            };
            Self::Internal {
                reference,
                cause: Unreported(Some(Arc::new(pending))),
            }
        }

        /// Logs an internal error's cause, once however often it is reported or copied,
        /// naming `door`: what answered with it (the request's path, a command). Every
        /// door calls this; other errors are the caller's and log nothing here.
        pub fn report(&self, door: &str) {
            if let Self::Internal {
                cause: Unreported(Some(pending)),
                ..
            } = self
            {
                if !pending.reported.swap(true, Ordering::SeqCst) {
                    pending.log(door);
                }
            }
        }

        /// [`AppError::internal`] with its context, for `map_err`.
        pub fn wrap<E: Into<Cause>>(context: &'static str) -> impl Fn(E) -> Self {
            move |cause| Self::internal(context, cause)
        }

        /// A unique-constraint violation named in `fields` becomes an `Invalid` error on
        /// its field (a duplicate email is the caller's to fix); anything else goes
        /// through [`AppError::internal`].
        pub fn unique_or_internal<'a>(
            context: &'static str,
            fields: &'a [(&'a str, &'a str, &'a str)],
        ) -> impl Fn(sqlx::Error) -> Self + 'a {
            move |error| {
                let cause = Cause::from(error);
                let violated = cause.violated_constraint().map(str::to_owned);
                match fields
                    .iter()
                    .find(|(constraint, _, _)| violated.as_deref() == Some(*constraint))
                {
                    Some((_, field, message)) => Self::invalid(*field, *message),
                    None => Self::internal(context, cause),
                }
            }
        }
    }

    impl IntoResponse for AppError {
        fn into_response(self) -> Response {
            self.report("an HTTP handler");
            let status = axum::http::StatusCode::from_u16(self.status_code())
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            let mut body = serde_json::to_value(&self).unwrap_or_default();
            if let Some(object) = body.as_object_mut() {
                object.insert("error".into(), self.to_string().into());
            }
            let retry_after = self.retry_after_secs();
            let mut response = (status, axum::Json(body)).into_response();
            if let Some(secs) = retry_after {
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(secs),
                );
            }
            response
        }
    }

    #[cfg(test)]
    mod reported {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        use crate::error::AppError;

        /// Counts the events logged while it is the default subscriber.
        struct Events(Arc<AtomicUsize>);

        impl tracing::Subscriber for Events {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, _: &tracing::Event<'_>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }

        fn logged(work: impl FnOnce()) -> usize {
            let count = Arc::new(AtomicUsize::new(0));
            tracing::subscriber::with_default(Events(count.clone()), work);
            count.load(Ordering::SeqCst)
        }

        #[test]
        fn an_internal_error_is_logged_once_by_the_doors_that_answer_with_it() {
            let mut made = None;
            let making = logged(|| made = Some(AppError::internal("Failed to read", "no disk")));
            assert_eq!(making, 0, "making the error logs nothing yet");
            let answered = logged(|| {
                let error = made.take().expect("made above");
                let copy = error.clone();
                error.report("/api/one");
                copy.report("/api/two");
                drop((error, copy));
            });
            assert_eq!(answered, 1);
        }

        #[test]
        fn an_internal_error_no_door_reports_is_logged_when_it_is_dropped() {
            let dropped = logged(|| drop(AppError::internal("Failed to read", "gone")));
            assert_eq!(dropped, 1);
            let not_internal = logged(|| AppError::invalid("field", "wrong").report("/api"));
            assert_eq!(not_internal, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_maps_to_the_status_a_client_can_act_on() {
        assert_eq!(AppError::Unauthorized.status_code(), 401);
        assert_eq!(
            AppError::invalid("rows[3].ts", "not a timestamp").status_code(),
            422
        );
        let down = AppError::store_down(crate::stores::StoreKind::Clickhouse);
        assert_eq!(down.status_code(), 503);
        assert!(down.is_down(crate::stores::StoreKind::Clickhouse));
        assert!(!down.is_down(crate::stores::StoreKind::Postgres));
        assert!(down.to_string().starts_with("ClickHouse is not answering"));
    }

    #[test]
    fn an_invalid_error_names_its_field_in_the_message() {
        let error = AppError::invalid("email", "must contain @");
        assert_eq!(error.to_string(), "email: must contain @");
    }

    #[test]
    fn errors_survive_the_round_trip_through_the_wire_encoding() {
        let error = AppError::Forbidden {
            message: "Only admins can rotate the cron secret.".into(),
        };
        let bytes = error.ser();
        assert_eq!(AppError::de(bytes), error);
    }
}
