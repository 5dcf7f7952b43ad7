//! How a run's status looks on every page: the one mapping from [`RunStatus`] to a badge.

use leptos::prelude::*;

use super::RunStatus;
use crate::components::{Badge, Tone};

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
