//! Small building blocks shared by every page: badges, headers, banners, charts, the
//! server actions whose forms work without the client, and how a page travels
//! (`transport`). Infrastructure: it knows no feature and no account (the app shell,
//! which does, is the crate root's `shell`).

pub mod theme;
pub mod transport;

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

/// A server action whose form also works without the client: on a page served as plain
/// HTML ([`crate::components::transport::WITHOUT_CLIENT`]), the outcome of this function's last plain-form post
/// (kept in the session by [`crate::server::plain_form`]) becomes the action's value, so
/// the form shows its error or its result as it does when the client posts it. With the
/// client, it is `ServerAction::new()`.
pub fn server_action<S>() -> ServerAction<S>
where
    S: leptos::server_fn::ServerFn<Error = crate::error::AppError> + Send + Sync + Clone + 'static,
    S::Output: serde::de::DeserializeOwned + Send + Sync + 'static,
{
    named_server_action::<S>(None)
}

/// [`server_action`] for one of several forms of the same function on a page: the
/// form's action carries `?form=<name>`, and only this action shows its outcome.
pub fn named_server_action<S>(form: Option<&'static str>) -> ServerAction<S>
where
    S: leptos::server_fn::ServerFn<Error = crate::error::AppError> + Send + Sync + Clone + 'static,
    S::Output: serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let action = ServerAction::<S>::new();
    #[cfg(not(feature = "ssr"))]
    let _ = form;
    #[cfg(feature = "ssr")]
    if let Some(outcome) = crate::server::plain_form::current_outcome()
        .and_then(|outcome| outcome.decode::<S::Output>(S::PATH, form))
    {
        action.value().set(Some(outcome));
    }
    action
}

/// Plot geometry in SVG user units. The SVG stretches to its box, so every label is
/// HTML beside it, never SVG text.
pub const CHART_W: f64 = 600.0;
pub const CHART_H: f64 = 100.0;

/// The frame every chart shares: a caption, the top of the y range as an HTML label
/// beside a stretched SVG plot with its base line (the plot's marks are the children),
/// and the x range below, ending at "now".
#[component]
pub fn ChartFrame(
    caption: AnyView,
    /// What the chart shows, for screen readers.
    #[prop(into)]
    summary: String,
    #[prop(into)] y_top: String,
    #[prop(into)] x_from: String,
    children: Children,
) -> impl IntoView {
    view! {
        <figure class="panel chart">
            <figcaption>{caption}</figcaption>
            <div class="chart-body">
                <div class="chart-y" aria-hidden="true">
                    <span>{y_top}</span>
                    <span>"0"</span>
                </div>
                <svg viewBox=format!("0 0 {CHART_W} {CHART_H}") role="img" aria-label=summary preserveAspectRatio="none">
                    <line x1="0" y1=CHART_H - 1.0 x2=CHART_W y2=CHART_H - 1.0 class="axis" />
                    {children()}
                </svg>
            </div>
            <div class="chart-x" aria-hidden="true">
                <span>{x_from}</span>
                <span>"now"</span>
            </div>
        </figure>
    }
}

/// Bars on a time axis ending at `now_ms` and `window_ms` long, inside a [`ChartFrame`]:
/// each `(at_ms, value)` at its time, as tall as its share of `top`, `slots` bars wide.
pub fn time_bars(
    points: &[(i64, i64)],
    now_ms: i64,
    window_ms: i64,
    slots: f64,
    top: i64,
) -> impl IntoView {
    let width = CHART_W / slots;
    let top = top.max(1) as f64;
    points
        .iter()
        .map(|(at, value)| {
            let x = ((1.0 - (now_ms - at) as f64 / window_ms as f64) * CHART_W)
                .clamp(0.0, CHART_W - width);
            let h = (*value as f64 / top) * (CHART_H - 2.0);
            view! { <rect class="bar" x=x y=CHART_H - 1.0 - h width=width height=h /> }
        })
        .collect_view()
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

/// The reason an action asks for, the same on every page: at most
/// [`Reason::MAX_CHARS`](crate::reason::Reason::MAX_CHARS) characters (the rule the
/// server applies), and said to be recorded in the history.
#[component]
pub fn ReasonField(
    /// An example reason, shown while the field is empty.
    #[prop(optional)]
    placeholder: Option<&'static str>,
    /// The field may be left empty.
    #[prop(optional)]
    optional: bool,
    /// Sized to its label instead of taking the row's free space.
    #[prop(optional)]
    compact: bool,
) -> impl IntoView {
    let label = if optional {
        "Reason (optional, recorded in the history)"
    } else {
        "Reason (recorded in the history)"
    };
    view! {
        <label class=if compact { "field" } else { "field field-grow" }>
            <span>{label}</span>
            <input
                type="text"
                name="reason"
                required=!optional
                maxlength=crate::reason::Reason::MAX_CHARS.to_string()
                placeholder=placeholder
            />
        </label>
    }
}

/// A column of a [`DataTable`]: its heading, and whether it holds figures (set right,
/// in tabular digits, so that they line up).
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub label: &'static str,
    pub figures: bool,
}

impl Column {
    /// A column of words.
    pub fn text(label: &'static str) -> Column {
        Column {
            label,
            figures: false,
        }
    }

    /// A column of figures.
    pub fn figures(label: &'static str) -> Column {
        Column {
            label,
            figures: true,
        }
    }
}

/// The table every page lists things in: its column headings, then the rows (the
/// children, one `<tr>` each, whose figure cells carry `class="num"`).
#[component]
pub fn DataTable(
    columns: Vec<Column>,
    /// More classes (`crons`: the table's own column widths).
    #[prop(optional)]
    class: &'static str,
    /// The `data-testid` a test finds it by.
    #[prop(optional)]
    test_id: Option<&'static str>,
    children: Children,
) -> impl IntoView {
    let class = if class.is_empty() {
        "data".to_owned()
    } else {
        format!("data {class}")
    };
    view! {
        <table class=class data-testid=test_id>
            <thead>
                <tr>
                    {columns
                        .into_iter()
                        .map(|c| view! { <th scope="col" class=c.figures.then_some("num")>{c.label}</th> })
                        .collect_view()}
                </tr>
            </thead>
            <tbody>{children()}</tbody>
        </table>
    }
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

/// A sentence across the page in its tone, the one banner every page uses: an error is
/// an alert (read out at once), anything else a status.
#[component]
pub fn Banner(
    tone: Tone,
    /// The `data-testid` a test finds it by.
    #[prop(optional)]
    test_id: Option<&'static str>,
    children: Children,
) -> impl IntoView {
    let class = match tone {
        Tone::Ok => "banner banner-ok",
        Tone::Warn => "banner banner-warn",
        Tone::Error => "banner banner-error",
        Tone::Info => "banner banner-info",
        Tone::Neutral => "banner",
    };
    let role = if tone == Tone::Error {
        "alert"
    } else {
        "status"
    };
    view! { <div class=class role=role data-testid=test_id>{children()}</div> }
}

/// An error from the server, said plainly, in a banner.
#[component]
pub fn ErrorBanner(error: crate::error::AppError) -> impl IntoView {
    view! { <Banner tone=Tone::Error>{error.to_string()}</Banner> }
}

/// The outcome of a form's server action, the same on every page: nothing until it
/// answers, then its error, or `done`'s sentence (what happened and where to look).
pub fn action_result<T, S>(
    value: S,
    done: impl Fn(&T) -> String + Send + Sync + 'static,
) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    S: Get<Value = Option<Result<T, crate::error::AppError>>> + Send + Sync + 'static,
{
    move || match value.get() {
        Some(Ok(result)) => {
            let said = done(&result);
            Some(view! { <Banner tone=Tone::Ok>{said}</Banner> }.into_any())
        }
        Some(Err(error)) => Some(view! { <ErrorBanner error /> }.into_any()),
        None => None,
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
