//! What the dead-letter pages share: counts and the reason's badge.

use leptos::prelude::*;

use super::DlqReason;
use crate::components::{Badge, Tone};
use crate::format::group_digits;

/// A count with its digits grouped.
pub fn count(n: i64) -> String {
    group_digits(n.max(0) as u64)
}

/// The badge of a dead letter's reason.
pub fn reason_badge(reason: DlqReason) -> AnyView {
    let tone = match reason {
        DlqReason::Exhausted => Tone::Error,
        DlqReason::Rejected => Tone::Warn,
        DlqReason::WebhookDeleted | DlqReason::PayloadMissing => Tone::Neutral,
    };
    view! { <Badge tone label=reason.as_str().replace('_', " ") /> }.into_any()
}
