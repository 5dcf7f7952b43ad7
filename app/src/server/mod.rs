//! Server-only infrastructure: the shared state, the store clients and the helpers every
//! server function uses. Compiled only with the `ssr` feature; the `server` crate builds
//! the state and hands it to the router, and server functions reach it through context.

pub mod clickhouse;
pub mod client;
mod clock;
mod faults;
pub mod metrics;
pub mod parts;
pub mod plain_form;
pub mod postgres;
pub mod sealed;
mod state;
pub mod tokens;
pub mod watch;

pub use clock::Clock;
pub use state::AppState;

use crate::error::AppError;

/// The application state of the current request, as provided by the router.
///
/// Server functions call this first thing; a missing state is a wiring bug, reported as
/// an internal error rather than a panic.
pub fn app_state() -> Result<AppState, AppError> {
    leptos::prelude::use_context::<AppState>()
        .ok_or_else(|| AppError::internal("Application state missing", "no AppState in context"))
}

/// The current request's parts, as leptos_axum provides them to server functions.
pub fn request_parts() -> Result<axum::http::request::Parts, AppError> {
    leptos::prelude::use_context::<axum::http::request::Parts>()
        .ok_or_else(|| AppError::internal("Request parts missing", "no Parts in context"))
}

/// Whether the current request is a plain HTML form's post (it asks for HTML), not a
/// call from the app's own client (which asks for JSON).
pub fn from_plain_form() -> bool {
    leptos::prelude::use_context::<axum::http::request::Parts>()
        .is_some_and(|parts| plain_form::asks_for_html(&parts.headers))
}

/// Answers the current request with `303 See Other` to `location` (a path of this
/// site): how a plain form's post ends, whatever its outcome.
pub fn see_other(location: &str) {
    if let (Some(options), Ok(value)) = (
        leptos::prelude::use_context::<leptos_axum::ResponseOptions>(),
        axum::http::HeaderValue::from_str(location),
    ) {
        options.set_status(axum::http::StatusCode::SEE_OTHER);
        options.insert_header(axum::http::header::LOCATION, value);
    }
}

/// The address of the client that sent a request (from the listener's connect info).
pub fn client_addr(parts: &axum::http::request::Parts) -> Option<std::net::SocketAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0)
}

/// A reason given at a door, required: [`Reason::parse`](crate::reason::Reason::parse).
pub fn required_reason(value: &str) -> Result<crate::reason::Reason, AppError> {
    Ok(crate::reason::Reason::parse(value)?)
}

/// A reason that may be left empty (`None`):
/// [`Reason::optional`](crate::reason::Reason::optional).
pub fn optional_reason(value: &str) -> Result<Option<crate::reason::Reason>, AppError> {
    Ok(crate::reason::Reason::optional(value)?)
}

/// Unix milliseconds (UTC) of a stored time: how every DTO carries times to the page.
pub fn unix_ms(at: time::OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Sets the HTTP status of a server function's response from its error, so that a 403
/// goes out as 403 instead of the 500 every server-function error gets by default.
/// An internal error's cause is logged here, naming the request's path.
pub fn respond<T>(result: Result<T, AppError>) -> Result<T, AppError> {
    if let Err(error) = &result {
        error.set_response_status();
        let path = leptos::prelude::use_context::<axum::http::request::Parts>()
            .map(|parts| parts.uri.path().to_owned());
        error.report(path.as_deref().unwrap_or("a server function"));
    }
    result
}
