//! Server functions posted by plain HTML forms, on the pages served without the client
//! ([`crate::components::transport::WITHOUT_CLIENT`]).
//!
//! Without the client, an `ActionForm` is an ordinary `<form method="post">` to its server
//! function. The function runs as for the app's own client (same guard, same checks, same
//! outcome); this layer only changes how the answer travels: post, redirect, get.
//!
//! 1. A post that asks for HTML is answered `303 See Other` back to the page it came from
//!    (its `Referer`, a console path of this site; else `/admin`), whatever the outcome.
//! 2. The function's own answer (its JSON value or its [`AppError`](crate::error::AppError))
//!    goes into the session, never into the URL, so a link cannot put words on a page.
//! 3. The next load of a page served without the client takes it out of the session
//!    (once), and [`crate::components::server_action`] hands it to the form's action, so
//!    the form shows the error or the result exactly as it does with the client.
//!
//! A function that answers `303` itself (sign-in, sign-out) keeps its own redirect.
//!
//! Nothing is kept (the post still goes back, `303`) when:
//! - the post came from a page the client hydrates: its forms are the client's own, and
//!   one posted before the client took over has no place to show an outcome;
//! - the session holds no signed-in person: a stranger's post (refused, or for a path
//!   that is no function) must not make a session row, one per request, for them;
//! - the answer holds a secret shown once ([`crate::format::ShownOnce`]): a session row
//!   sits in PostgreSQL and in every backup, and such a secret lives in the answer only.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

/// The session key of the last plain form's outcome.
const OUTCOME_KEY: &str = "salvage.form_outcome";

/// The header the live refresh sends with its page loads: such a load leaves the outcome
/// of a form for the person's own next page load.
pub const LIVE_HEADER: &str = "x-salvage-live";

/// An answer larger than this (a long list) is not kept; the page then shows no result,
/// which only the function's own client would have shown.
const MAX_KEPT_BYTES: usize = 16 * 1024;

/// A server function's answer to a plain form, kept in the session for the next page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormOutcome {
    /// The server function's path (`/api/alerts/acknowledge`), so only its forms show it.
    pub path: String,
    /// Which of the function's forms posted it, when a page has several (`?form=bulk`
    /// on the form's action); `None` for the function's ordinary form.
    pub form: Option<String>,
    /// Whether the function succeeded: `body` is then its value, else its error.
    pub ok: bool,
    /// The function's answer, as its own client would have received it (JSON).
    pub body: String,
}

impl FormOutcome {
    /// The outcome as the server function's own result type, if it is for `path` and
    /// the form named `form`, and reads as one.
    pub fn decode<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        form: Option<&str>,
    ) -> Option<Result<T, crate::error::AppError>> {
        if self.path != path || self.form.as_deref() != form {
            return None;
        }
        if self.ok {
            serde_json::from_str(&self.body).ok().map(Ok)
        } else {
            serde_json::from_str(&self.body).ok().map(Err)
        }
    }
}

/// The outcome of the last plain form, on the page load that took it (see [`layer`]).
pub fn current_outcome() -> Option<FormOutcome> {
    leptos::prelude::use_context::<axum::http::request::Parts>()?
        .extensions
        .get::<FormOutcome>()
        .cloned()
}

/// The middleware: turns a plain form's post into post-redirect-get, and hands the kept
/// outcome to the next load of a page served without the client. Runs inside the session
/// layer.
pub async fn layer(request: Request, next: Next) -> Response {
    let Some(session) = request.extensions().get::<Session>().cloned() else {
        return next.run(request).await;
    };
    let path = request.uri().path().to_owned();
    if request.method() == Method::POST
        && path.starts_with("/api/")
        && asks_for_html(request.headers())
    {
        return post(session, path, request, next).await;
    }
    if request.method() == Method::GET
        && crate::components::transport::without_client(&path)
        && !request.headers().contains_key(LIVE_HEADER)
    {
        let mut request = request;
        match session.remove::<FormOutcome>(OUTCOME_KEY).await {
            Ok(Some(outcome)) => {
                request.extensions_mut().insert(outcome);
            }
            Ok(None) => {}
            // The page reads the same store and says so; the outcome waits for the next load.
            Err(error) => tracing::warn!(%error, "reading a form's outcome from the session"),
        }
        return next.run(request).await;
    }
    next.run(request).await
}

/// A post from a plain form: run the function, keep its answer, send the browser back.
async fn post(session: Session, path: String, request: Request, next: Next) -> Response {
    let back = back_to(request.headers());
    let form = form_name(request.uri().query());
    let response = next.run(request).await;
    if response.status() == StatusCode::SEE_OTHER {
        return response;
    }
    let back_path = back.split('?').next().unwrap_or_default();
    // A stranger's session is empty (only signing in writes to one), and so is one the
    // guard just ended (401): the page it goes back to sends them to the sign-in page.
    if !crate::components::transport::without_client(back_path) || session.is_empty().await {
        return see_other(&back);
    }
    let ok = !response
        .headers()
        .contains_key(leptos::server_fn::error::SERVER_FN_ERROR_HEADER)
        && (response.status().is_success() || response.status().is_redirection());
    let body = axum::body::to_bytes(response.into_body(), MAX_KEPT_BYTES)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    if body.contains(crate::format::SHOWN_ONCE_KEY) {
        return see_other(&back);
    }
    let outcome = FormOutcome {
        path,
        form,
        ok,
        body,
    };
    if let Err(error) = session.insert(OUTCOME_KEY, &outcome).await {
        // The change itself is done (or refused) already; only its message is lost.
        tracing::warn!(%error, "keeping a form's outcome in the session");
    }
    see_other(&back)
}

/// Whether a request asks for HTML (a browser's form post or page load) rather than JSON
/// (the app's own client).
pub fn asks_for_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// The `form` named in a post's query (`?form=bulk`): lower-case letters and dashes,
/// at most 32 of them; anything else names no form.
fn form_name(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("form="))
        .filter(|name| {
            !name.is_empty()
                && name.len() <= 32
                && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        })
        .map(str::to_owned)
}

/// The page a form was posted from: the `Referer`'s path and query when it is a console
/// page of this same host, else `/admin`. Never another site.
pub fn back_to(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let referer = headers
        .get(header::REFERER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<axum::http::Uri>().ok());
    match (host, referer) {
        (Some(host), Some(referer))
            if referer.authority().is_some_and(|a| a.as_str() == host)
                && (referer.path() == "/admin" || referer.path().starts_with("/admin/")) =>
        {
            referer
                .path_and_query()
                .map_or("/admin".to_owned(), |pq| pq.as_str().to_owned())
        }
        _ => "/admin".to_owned(),
    }
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str, referer: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        headers.insert(header::REFERER, HeaderValue::from_str(referer).unwrap());
        headers
    }

    #[test]
    fn goes_back_to_the_console_page_the_form_was_on() {
        let h = headers(
            "console.example:3000",
            "http://console.example:3000/admin/alerts?alert=12",
        );
        assert_eq!(back_to(&h), "/admin/alerts?alert=12");
    }

    #[test]
    fn never_goes_back_to_another_host_or_outside_the_console() {
        let other = headers("console.example", "https://evil.example/admin/alerts");
        assert_eq!(back_to(&other), "/admin");
        let outside = headers("console.example", "https://console.example/health/live");
        assert_eq!(back_to(&outside), "/admin");
        let prefix = headers("console.example", "https://console.example/administrator");
        assert_eq!(back_to(&prefix), "/admin");
        assert_eq!(back_to(&HeaderMap::new()), "/admin");
    }

    #[test]
    fn an_outcome_reads_back_only_for_its_own_function() {
        let error = crate::error::AppError::invalid("note", "say what you are doing");
        let outcome = FormOutcome {
            path: "/api/alerts/acknowledge".into(),
            form: None,
            ok: false,
            body: serde_json::to_string(&error).unwrap(),
        };
        let ack = "/api/alerts/acknowledge";
        assert_eq!(outcome.decode::<()>(ack, None), Some(Err(error)));
        assert_eq!(outcome.decode::<()>("/api/alerts/resolve", None), None);
        assert_eq!(
            outcome.decode::<()>(ack, Some("bulk")),
            None,
            "another form of it"
        );
        let value = FormOutcome {
            path: "/api/queues/replay".into(),
            form: Some("bulk".into()),
            ok: true,
            body: "41".into(),
        };
        assert_eq!(
            value.decode::<i64>("/api/queues/replay", Some("bulk")),
            Some(Ok(41))
        );
        assert_eq!(value.decode::<i64>("/api/queues/replay", None), None);
        assert_eq!(
            value.decode::<String>("/api/queues/replay", Some("bulk")),
            None
        );
    }

    #[test]
    fn a_form_is_named_in_the_query_with_letters_and_dashes_only() {
        assert_eq!(form_name(Some("form=bulk")), Some("bulk".into()));
        assert_eq!(
            form_name(Some("x=1&form=bulk-bar")),
            Some("bulk-bar".into())
        );
        assert_eq!(form_name(Some("form=<b>")), None);
        assert_eq!(form_name(Some("form=")), None);
        assert_eq!(form_name(None), None);
    }
}
