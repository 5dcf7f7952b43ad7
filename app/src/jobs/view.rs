//! How a run's status looks on every page: the one mapping from [`RunStatus`] to a badge.

use leptos::prelude::*;

use super::RunStatus;
use crate::components::{action_result, Badge, ReasonField, Tone};

/// The badge of a run's status, the one mapping every page uses.
#[component]
pub fn RunStatusBadge(status: RunStatus) -> impl IntoView {
    let tone = match status {
        RunStatus::Succeeded => Tone::Ok,
        RunStatus::Running => Tone::Info,
        RunStatus::Partial | RunStatus::Cancelled => Tone::Warn,
        RunStatus::Failed | RunStatus::Abandoned => Tone::Error,
    };
    view! { <Badge tone label=status.as_str() /> }
}

/// The panel that runs a job by hand, the same on every page: what the job does, the
/// reason it asks for, its button, and what came of it ("Backup run #12 started; the
/// catalogue shows it below." or the refusal). The button posts the job's name to the
/// runner's one start ([`super::api::StartJob`]).
#[component]
pub fn JobPanel(
    action: ServerAction<super::api::StartJob>,
    /// The job's name, as the registry knows it.
    job: &'static str,
    title: &'static str,
    /// What running it does, in a sentence or two.
    about: &'static str,
    /// An example reason.
    placeholder: &'static str,
    button: &'static str,
    /// The button's `data-testid`.
    test_id: &'static str,
    /// What a run is called in the outcome ("Backup" → "Backup run #12 started").
    run_of: &'static str,
    /// Where the run shows once started ("the catalogue shows it below.").
    follow: &'static str,
    /// Spans the page's width.
    #[prop(optional)]
    wide: bool,
) -> AnyView {
    let class = if wide {
        "panel form-panel wide"
    } else {
        "panel form-panel"
    };
    view! {
        <section class=class>
            <h2>{title}</h2>
            <p class="muted small">{about}</p>
            <ActionForm action attr:class="form-row" attr:aria-label=title>
                <input type="hidden" name="job" value=job />
                <ReasonField placeholder />
                <button type="submit" class="btn btn-primary" data-testid=test_id>{button}</button>
            </ActionForm>
            {action_result(action.value(), move |run| format!("{run_of} run #{run} started; {follow}"))}
        </section>
    }
    .into_any()
}
