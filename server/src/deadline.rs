//! The console's deadline: every `/admin` page and `/api` server function answers within
//! `SALVAGE_STORE_DEADLINE_SECS`, whatever its store calls were doing.
//!
//! Each store call has its own bound (5 s to get a PostgreSQL connection, connecting
//! included; PostgreSQL's `statement_timeout`; the ClickHouse client's timeouts), but a
//! page makes several calls in turn, and on the day a store dies the console is busy too.
//! So the whole request gets one deadline on top. When it passes, the work is dropped
//! (its connections go back closed), both stores are probed for at most a second, and
//! the answer is `503` with `Retry-After`, naming the store that is not answering: the
//! sentence every page shows during an outage. So is a session that could not be saved
//! after its page was made (PostgreSQL went away in between), which the session layer
//! would otherwise answer as a bare 500.

use app::stores::StoreKind;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use app::error::AppError;
use app::server::AppState;

/// How long the stores are probed for once the deadline is near.
const PROBE: Duration = Duration::from_secs(1);

/// The middleware (state: the app's state and the deadline). Sits outside the session
/// layer, so loading and saving the session are inside the deadline too.
pub async fn store_deadline(
    State((state, deadline)): State<(AppState, Duration)>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let console = path == "/admin" || path.starts_with("/admin/") || path.starts_with("/api/");
    // A download streams for as long as it needs once it has started.
    if !console || path == "/admin/history/export" {
        return next.run(request).await;
    }
    let html =
        !path.starts_with("/api/") || app::server::plain_form::asks_for_html(request.headers());
    let work = deadline.saturating_sub(PROBE);
    match tokio::time::timeout(work, next.run(request)).await {
        // The session layer answers a bare 500 when it cannot save the session after the
        // page was made: PostgreSQL went away in between. That is the outage, said so.
        Ok(response) if session_not_saved(&response) => {
            let (stores, message) = which_store(&state, deadline).await;
            tracing::warn!(%message, "the session could not be saved");
            unavailable(stores, message, html)
        }
        Ok(response) => response,
        Err(_) => {
            let (stores, message) = which_store(&state, deadline).await;
            tracing::warn!(deadline_secs = deadline.as_secs(), %message, "answered at the store deadline");
            unavailable(stores, message, html)
        }
    }
}

/// The store that does not answer a probe now (none: the request was only slow), and the
/// sentence for a request that ran out of time.
async fn which_store(state: &AppState, deadline: Duration) -> (Vec<StoreKind>, String) {
    let probing = AppState {
        probe_timeout: PROBE,
        ..state.clone()
    };
    let stores = app::health::ssr::check_stores(&probing).await;
    let now = state.clock.now();
    if !stores.postgres.ok {
        state.postgres_watch.failed(now);
    }
    match (stores.postgres.ok, state.postgres_watch.down_since()) {
        (false, Some(since)) => (
            vec![StoreKind::Postgres],
            app::server::watch::PostgresWatch::sentence(since),
        ),
        _ if !stores.clickhouse.ok => (
            vec![StoreKind::Clickhouse],
            format!(
                "ClickHouse is not answering: this page waited {} s for it. Ingest parks \
                 rows in the fallback queue meanwhile; try again shortly.",
                deadline.as_secs()
            ),
        ),
        _ => (
            Vec::new(),
            format!(
                "This took longer than {} s, though both stores answer now: try again.",
                deadline.as_secs()
            ),
        ),
    }
}

/// Whether `response` is the session layer's own failure: a 500 with no body, where every
/// error of Salvage's says what it is (JSON, or a page).
fn session_not_saved(response: &Response) -> bool {
    response.status() == StatusCode::INTERNAL_SERVER_ERROR
        && !response.headers().contains_key(header::CONTENT_TYPE)
}

fn unavailable(stores: Vec<StoreKind>, message: String, html: bool) -> Response {
    let mut response = if html {
        let escaped = message
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
                 <title>Salvage: a store is not answering</title></head><body>\
                 <h1>A store is not answering</h1><p role=\"alert\">{escaped}</p>\
                 <p><a href=\"\">Try again</a></p></body></html>"
            ),
        )
            .into_response()
    } else {
        AppError::Unavailable { stores, message }.into_response()
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(5));
    response
}
