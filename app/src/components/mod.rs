//! Small building blocks shared by every page: the admin layout, badges, headers.

mod layout;
pub mod theme;

pub use layout::{login_url, redirect_to, use_viewer, AdminLayout, IfAllowed, ViewerResource};
pub use theme::ThemeToggle;

use leptos::prelude::*;

/// A counter that goes up every `every` while the page is shown (the timer runs in the
/// browser only and stops when the page is left); a resource keyed on it refetches on
/// that rhythm.
pub fn refresh_ticker(every: std::time::Duration) -> ReadSignal<u64> {
    let (tick, set_tick) = signal(0_u64);
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(move || set_tick.update(|t| *t += 1), every) {
            on_cleanup(move || handle.clear());
        }
    });
    tick
}

/// The meaning of a status colour. Always shown together with a word, never alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Ok,
    Warn,
    Error,
    Info,
    Neutral,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Ok => "badge badge-ok",
            Tone::Warn => "badge badge-warn",
            Tone::Error => "badge badge-error",
            Tone::Info => "badge badge-info",
            Tone::Neutral => "badge",
        }
    }
}

/// A coloured status word.
#[component]
pub fn Badge(tone: Tone, #[prop(into)] label: String) -> impl IntoView {
    view! { <span class=tone.class()>{label}</span> }
}

/// The title of a page and one sentence saying what it shows.
#[component]
pub fn PageHeader(
    #[prop(into)] title: String,
    #[prop(into, optional)] subtitle: Option<String>,
) -> impl IntoView {
    view! {
        <header class="page-header">
            <h1>{title}</h1>
            {subtitle.map(|text| view! { <p class="muted">{text}</p> })}
        </header>
    }
}

/// An error from the server, said plainly, in a banner.
#[component]
pub fn ErrorBanner(error: crate::error::AppError) -> impl IntoView {
    view! {
        <div class="banner banner-error" role="alert">{error.to_string()}</div>
    }
}

/// The result of a form's server action: nothing yet, the error, or `success`'s view.
pub fn action_error<T, S>(value: S) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    S: Get<Value = Option<Result<T, crate::error::AppError>>> + Send + Sync + 'static,
{
    move || match value.get() {
        Some(Err(error)) => Some(view! { <ErrorBanner error /> }),
        _ => None,
    }
}
