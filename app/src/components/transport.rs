//! Which pages are served as plain HTML, without the app's client, and what a component
//! asks to know how its page travels. Infrastructure: the list is data (paths), and the
//! plain-form layer (`server::plain_form`) and the pages read it from here.

#[cfg(feature = "ssr")]
use leptos::prelude::use_context;

/// Pages served as plain HTML, without the app's WASM and script, when loaded directly:
/// the first pages of an incident, opened cold, often over a VPN.
///
/// - The sign-in page is one small response and a form that works before (and without)
///   any script (see `auth::form`).
/// - The overview (the recovery posture, the first page opened) and the alerts page
///   (the operators' home) are mostly reading, rendered whole on the server. The alerts
///   page's forms post plainly (post, redirect, get; `server::plain_form` carries the
///   outcome), and the live refresh (`LIVE_REFRESH` in the crate root) keeps both current.
///
/// Reached by a link from a page that has the client, the same page renders in the
/// browser as any other: the components are the same, only the transport differs.
pub const WITHOUT_CLIENT: &[&str] = &["/admin/login", "/admin", "/admin/alerts"];

/// The path of the current request, on the server (`None` in the browser).
pub fn request_path() -> Option<String> {
    #[cfg(feature = "ssr")]
    if let Some(parts) = use_context::<axum::http::request::Parts>() {
        return Some(parts.uri.path().to_owned());
    }
    None
}

/// Whether the page at `path` is served without the client ([`WITHOUT_CLIENT`]).
pub fn without_client(path: &str) -> bool {
    WITHOUT_CLIENT.contains(&path)
}

/// Whether the page of the current request loads the app's client (its WASM) and
/// hydrates; `false` for the [`WITHOUT_CLIENT`] pages.
pub fn loads_client() -> bool {
    request_path().is_none_or(|path| !without_client(&path))
}

/// Whether this page is being rendered as plain HTML, for a browser without the client
/// ([`WITHOUT_CLIENT`]): its controls must then work as plain forms and links. Always
/// `false` in the browser (the client renders only pages that have it).
pub fn served_without_client() -> bool {
    !loads_client()
}

/// Sends the browser elsewhere: a `303 See Other` while rendering on the server, a
/// client-side navigation in the browser.
pub fn redirect_to(path: &str) {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(axum::http::StatusCode::SEE_OTHER);
        if let Ok(value) = axum::http::HeaderValue::from_str(path) {
            response.insert_header(axum::http::header::LOCATION, value);
        }
    }
    #[cfg(not(feature = "ssr"))]
    {
        let navigate = leptos_router::hooks::use_navigate();
        navigate(path, Default::default());
    }
}
