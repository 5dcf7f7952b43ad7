//! The live refresh of the console pages served without the app's client (the alerts
//! page): a few KB of WASM instead of the Leptos client's few hundred.
//!
//! The page is rendered whole on the server, and its forms post plainly. Every few seconds
//! (the page's `<meta name="salvage-live-every-ms">`) this loads the same address again
//! and swaps in the new content of each element marked `data-live` (by its `id`), so the
//! lists, counts and timelines stay current while the forms, and what is typed in them,
//! stay untouched:
//!
//! - a region holding the focus is left for the next round (a person is using it);
//! - ticked checkboxes stay ticked when the same box (name and value) comes back;
//! - nothing is fetched while the tab is hidden, and one load at a time;
//! - a failed load (the console does not answer, the session ended) says so in
//!   `#live-status`, with the time of the last good refresh; the page keeps what it shows.
//!
//! It also runs the theme button (`[data-theme-toggle]`), which on other pages is part of
//! the client. The loads carry `x-salvage-live: 1`, so they do not take a form's outcome
//! that is waiting for the person's own next page load.

use std::cell::Cell;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Document, Element, RequestCredentials, RequestInit, Response, Window};

/// The refresh period when the page names none.
const DEFAULT_EVERY_MS: i32 = 5_000;
/// The key of the theme choice in `localStorage` (as the shell's boot script reads it).
const THEME_KEY: &str = "salvage-theme";

thread_local! {
    static IN_FLIGHT: Cell<bool> = const { Cell::new(false) };
    /// When the page last matched the server: loaded, or refreshed.
    static LAST_GOOD: Cell<f64> = Cell::new(js_sys::Date::now());
}

#[wasm_bindgen(start)]
pub fn start() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let Some(document) = window.document() else {
        return;
    };
    theme_toggle(&window, &document);
    // Running: the page replaces the server's "not refreshing" line.
    status(&document, Ok("loaded"));
    let every = document
        .query_selector("meta[name=salvage-live-every-ms]")
        .ok()
        .flatten()
        .and_then(|meta| meta.get_attribute("content"))
        .and_then(|ms| ms.parse::<i32>().ok())
        .filter(|ms| *ms >= 1_000)
        .unwrap_or(DEFAULT_EVERY_MS);
    let tick = Closure::<dyn FnMut()>::new(|| wasm_bindgen_futures::spawn_local(refresh()));
    let _ = window.set_interval_with_callback_and_timeout_and_arguments_0(
        tick.as_ref().unchecked_ref(),
        every,
    );
    // The page lives as long as the timer: nothing to free.
    tick.forget();
}

/// One round: load the page again and swap in its live regions.
async fn refresh() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let Some(document) = window.document() else {
        return;
    };
    if document.hidden() || IN_FLIGHT.get() {
        return;
    }
    IN_FLIGHT.set(true);
    let outcome = load(&window).await;
    IN_FLIGHT.set(false);
    match outcome.and_then(|html| swap(&document, &html)) {
        Ok(()) => {
            LAST_GOOD.set(js_sys::Date::now());
            status(&document, Ok("refreshed"));
        }
        Err(why) => status(&document, Err(why)),
    }
}

/// The page's current HTML, as a person's own load would get it.
async fn load(window: &Window) -> Result<String, &'static str> {
    let headers = web_sys::Headers::new().map_err(|_| "the browser refused the request")?;
    let _ = headers.set("accept", "text/html");
    let _ = headers.set("x-salvage-live", "1");
    let init = RequestInit::new();
    init.set_method("GET");
    init.set_credentials(RequestCredentials::SameOrigin);
    init.set_headers(&headers);
    let href = window.location().href().map_err(|_| "no address")?;
    let response: Response = JsFuture::from(window.fetch_with_str_and_init(&href, &init))
        .await
        .map_err(|_| "the console did not answer")?
        .unchecked_into();
    if response.redirected() {
        return Err("the session ended: sign in again");
    }
    if !response.ok() {
        return Err(match response.status() {
            503 => "a store did not answer",
            _ => "the console answered with an error",
        });
    }
    let text = JsFuture::from(response.text().map_err(|_| "unreadable answer")?)
        .await
        .map_err(|_| "the answer was cut off")?;
    text.as_string().ok_or("unreadable answer")
}

/// Replaces the content of each `data-live` region that changed.
fn swap(document: &Document, html: &str) -> Result<(), &'static str> {
    let fresh = web_sys::DomParser::new()
        .and_then(|parser| parser.parse_from_string(html, web_sys::SupportedType::TextHtml))
        .map_err(|_| "unreadable answer")?;
    let regions = document
        .query_selector_all("[data-live]")
        .map_err(|_| "no live regions")?;
    let active = document.active_element().filter(|a| a.tag_name() != "BODY");
    for i in 0..regions.length() {
        let Some(region) = regions.item(i).and_then(|n| n.dyn_into::<Element>().ok()) else {
            continue;
        };
        let Some(new) = fresh.get_element_by_id(&region.id()) else {
            continue;
        };
        // Someone is on a link or a box in it: leave it for the next round.
        if active.as_ref().is_some_and(|a| region.contains(Some(a))) {
            continue;
        }
        let content = new.inner_html();
        if region.inner_html() == content {
            continue;
        }
        let ticked = ticked_boxes(&region);
        region.set_inner_html(&content);
        tick_again(&region, &ticked);
    }
    Ok(())
}

/// The checkboxes in a region.
fn checkboxes(region: &Element) -> Vec<web_sys::HtmlInputElement> {
    let Ok(boxes) = region.query_selector_all("input[type=checkbox]") else {
        return Vec::new();
    };
    (0..boxes.length())
        .filter_map(|i| boxes.item(i)?.dyn_into::<web_sys::HtmlInputElement>().ok())
        .collect()
}

/// The (name, value) of each ticked checkbox in a region.
fn ticked_boxes(region: &Element) -> Vec<(String, String)> {
    checkboxes(region)
        .into_iter()
        .filter(|input| input.checked())
        .map(|input| (input.name(), input.value()))
        .collect()
}

/// Ticks again the boxes that were ticked before a swap, when they came back.
fn tick_again(region: &Element, ticked: &[(String, String)]) {
    if ticked.is_empty() {
        return;
    }
    for input in checkboxes(region) {
        if ticked.contains(&(input.name(), input.value())) {
            input.set_checked(true);
        }
    }
}

/// Says in `#live-status` whether the page is current: `Ok(what)` just happened
/// ("loaded", "refreshed"), or `Err(why)` the last refresh failed.
fn status(document: &Document, outcome: Result<&str, &str>) {
    let Some(element) = document.get_element_by_id("live-status") else {
        return;
    };
    let text = match outcome {
        Ok(what) => format!("Live: {what} at {}.", clock(js_sys::Date::now())),
        Err(why) => format!(
            "Not refreshed since {}: {why}. What you see may be out of date; it retries every few seconds.",
            clock(LAST_GOOD.get())
        ),
    };
    element.set_text_content(Some(&text));
    let _ = element.set_attribute("data-state", if outcome.is_ok() { "live" } else { "stale" });
}

/// `HH:MM:SS` in UTC, as every time on the console.
fn clock(ms: f64) -> String {
    let date = js_sys::Date::new(&JsValue::from_f64(ms));
    format!(
        "{:02}:{:02}:{:02} UTC",
        date.get_utc_hours(),
        date.get_utc_minutes(),
        date.get_utc_seconds()
    )
}

/// The theme button: system → light → dark, kept in `localStorage`.
fn theme_toggle(window: &Window, document: &Document) {
    let Ok(Some(button)) = document.query_selector("[data-theme-toggle]") else {
        return;
    };
    let storage = window.local_storage().ok().flatten();
    let stored = storage
        .as_ref()
        .and_then(|s| s.get_item(THEME_KEY).ok().flatten())
        .filter(|t| t == "light" || t == "dark")
        .unwrap_or_else(|| "system".to_owned());
    button.set_text_content(Some(&format!("Theme: {stored}")));
    let current = std::rc::Rc::new(std::cell::RefCell::new(stored));
    let target = button.clone();
    let root = document.document_element();
    let click = Closure::<dyn FnMut()>::new(move || {
        let next = match current.borrow().as_str() {
            "system" => "light",
            "light" => "dark",
            _ => "system",
        };
        if let Some(root) = &root {
            let _ = if next == "system" {
                root.remove_attribute("data-theme")
            } else {
                root.set_attribute("data-theme", next)
            };
        }
        if let Some(storage) = &storage {
            let _ = storage.set_item(THEME_KEY, next);
        }
        target.set_text_content(Some(&format!("Theme: {next}")));
        *current.borrow_mut() = next.to_owned();
    });
    let _ = button.add_event_listener_with_callback("click", click.as_ref().unchecked_ref());
    click.forget();
}
