//! Server functions of `/admin/alerts` and of the nav's alert count.
//!
//! A selection is `id@version` items separated by commas (`12@3,15@1`): the alerts a
//! person acts on and the version of each they saw.

use leptos::prelude::*;

use super::{AlertCounts, AlertDetail, AlertsOverview, Changed, ResolvedOverview};
use crate::error::AppError;

/// The open critical and warning alerts, for the navigation on every page.
#[server(endpoint = "alerts/counts")]
pub async fn count_open_alerts() -> Result<AlertCounts, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, _| async move {
        super::ssr::query::counts(&state.pg, state.clock.now())
            .await
            .map_err(|e| AppError::internal("Failed to count the alerts", e))
    })
    .await
}

/// Open alerts (by severity, then age) that pass the filters, with the counts, the
/// kinds and the silences.
#[server(endpoint = "alerts/open")]
pub async fn load_open_alerts(
    kind: String,
    severity: String,
    status: String,
) -> Result<AlertsOverview, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, _| async move {
        let filters = super::ssr::query::Filters::parse(&kind, &severity, &status)?;
        super::ssr::query::open_view(&state, &filters, state.clock.now())
            .await
            .map_err(|e| AppError::internal("Failed to read the alerts", e))
    })
    .await
}

/// Resolved alerts with the 30-day handling times and the noisiest kinds.
#[server(endpoint = "alerts/resolved")]
pub async fn load_resolved_alerts(
    kind: String,
    severity: String,
) -> Result<ResolvedOverview, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, _| async move {
        let filters = super::ssr::query::Filters::parse(&kind, &severity, "")?;
        super::ssr::query::resolved_view(&state, &filters, state.clock.now())
            .await
            .map_err(|e| AppError::internal("Failed to read the resolved alerts", e))
    })
    .await
}

/// One alert with its timeline and the silences that matched it.
#[server(endpoint = "alerts/detail")]
pub async fn load_alert(alert_id: i64) -> Result<AlertDetail, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, _| async move {
        super::ssr::query::detail(&state, alert_id, state.clock.now()).await
    })
    .await
}

/// Acknowledges the selected alerts with a note, optionally `until` a time (`4h`, or a
/// UTC time); past it they fire again.
#[server(endpoint = "alerts/acknowledge")]
pub async fn acknowledge_alerts(
    // Absent (a form with nothing ticked) reads as empty: "select at least one alert".
    #[server(default)] selection: super::Selection,
    note: String,
    until: String,
) -> Result<Vec<Changed>, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Operate,
        |state, actor| async move {
            use super::ssr::input;
            let now = state.clock.now();
            let seen = input::selection(&selection.0)?;
            let note = input::required_note(&note)?;
            let until = input::until(&until, now)?;
            super::ssr::changes::change(
                &state.pg,
                state.alert_kinds(),
                &actor,
                &seen,
                super::ssr::changes::Op::Acknowledge { until },
                Some(note),
                now,
            )
            .await
        },
    )
    .await
}

/// Resolves the selected alerts (a critical one needs a note).
#[server(endpoint = "alerts/resolve")]
pub async fn resolve_alerts(
    // Absent (a form with nothing ticked) reads as empty: "select at least one alert".
    #[server(default)] selection: super::Selection,
    note: String,
) -> Result<Vec<Changed>, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Operate,
        |state, actor| async move {
            use super::ssr::input;
            let seen = input::selection(&selection.0)?;
            let note = input::optional_note(&note)?;
            super::ssr::changes::change(
                &state.pg,
                state.alert_kinds(),
                &actor,
                &seen,
                super::ssr::changes::Op::Resolve,
                note,
                state.clock.now(),
            )
            .await
        },
    )
    .await
}

/// Adds a note to an alert's timeline.
#[server(endpoint = "alerts/note")]
pub async fn note_alert(alert_id: i64, note: String) -> Result<Changed, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Operate,
        |state, actor| async move {
            let note = super::ssr::input::required_note(&note)?;
            super::ssr::changes::add_note(&state.pg, &actor, alert_id, &note, state.clock.now())
                .await
        },
    )
    .await
}

/// Silences a kind (and optionally keys matching `key`, `*` as a wildcard) until
/// `ends_at` (a UTC time, or `2h`); returns the silence's id.
#[server(endpoint = "alerts/silence")]
pub async fn silence_alerts(
    kind: String,
    key: String,
    ends_at: String,
    reason: String,
) -> Result<i64, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Operate,
        |state, actor| async move {
            let now = state.clock.now();
            let reason = crate::server::required_reason(&reason)?;
            let ends_at = super::ssr::input::ends_at(&ends_at, now)?;
            let silence = super::ssr::silences::NewSilence {
                kind: kind.trim().to_owned(),
                key_pattern: Some(key),
                ends_at,
                reason,
            };
            super::ssr::silences::create(&state.pg, state.alert_kinds(), &actor, silence, now).await
        },
    )
    .await
}

/// Ends a silence now.
#[server(endpoint = "alerts/unsilence")]
pub async fn end_silence(silence_id: i64, reason: String) -> Result<(), AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Operate,
        |state, actor| async move {
            let reason = crate::server::required_reason(&reason)?;
            super::ssr::silences::end(&state.pg, &actor, silence_id, &reason, state.clock.now())
                .await
        },
    )
    .await
}
