//! Light / dark / system theme, remembered in `localStorage`.
//!
//! The shell applies the stored choice before the first paint (an inline script in the
//! document head); this toggle only changes it.

use leptos::prelude::*;

/// The key under which the choice is stored in the browser.
pub const STORAGE_KEY: &str = "salvage-theme";

/// Cycles system → light → dark.
#[component]
pub fn ThemeToggle() -> impl IntoView {
    let (theme, set_theme) = signal(String::from("system"));

    // In the browser, pick up what the head script applied.
    Effect::new(move |_| {
        if let Some(stored) = stored_theme() {
            set_theme.set(stored);
        }
    });

    let cycle = move |_| {
        let next = match theme.get_untracked().as_str() {
            "system" => "light",
            "light" => "dark",
            _ => "system",
        };
        apply_theme(next);
        set_theme.set(next.to_owned());
    };

    view! {
        <button type="button" class="btn btn-quiet" data-theme-toggle="" on:click=cycle title="Switch between system, light and dark colours">
            "Theme: "
            {move || theme.get()}
        </button>
    }
}

#[cfg(feature = "hydrate")]
fn stored_theme() -> Option<String> {
    window()
        .local_storage()
        .ok()
        .flatten()?
        .get_item(STORAGE_KEY)
        .ok()
        .flatten()
}

#[cfg(not(feature = "hydrate"))]
fn stored_theme() -> Option<String> {
    None
}

#[cfg(feature = "hydrate")]
fn apply_theme(theme: &str) {
    let root = document().document_element();
    if let Some(root) = root {
        let _ = if theme == "system" {
            root.remove_attribute("data-theme")
        } else {
            root.set_attribute("data-theme", theme)
        };
    }
    if let Ok(Some(storage)) = window().local_storage() {
        let _ = storage.set_item(STORAGE_KEY, theme);
    }
}

#[cfg(not(feature = "hydrate"))]
fn apply_theme(_theme: &str) {}
