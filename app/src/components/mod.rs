//! Small building blocks shared by every page: the admin layout, badges, headers.

mod layout;
pub mod theme;

pub use layout::AdminLayout;
pub use theme::ThemeToggle;

use leptos::prelude::*;

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
