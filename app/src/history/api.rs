//! Server functions of the runbook history.

use leptos::prelude::*;

use super::{ChainReport, EntryView, HistoryPage};
use crate::error::AppError;

/// Entries per page of the history list.
pub const PAGE_SIZE: i64 = 50;

/// The longest note or incident text, in characters.
pub const MAX_BODY_CHARS: usize = 10_000;

/// One page of history, newest first, matching the filters. `before` is the cursor
/// from the previous page.
#[server(endpoint = "history/search")]
pub async fn search_history(
    kind: String,
    actor: String,
    outcome: String,
    from: String,
    to: String,
    q: String,
    before: String,
) -> Result<HistoryPage, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, _| async move {
        let filter = super::ssr::build_filter(kind, actor, outcome, from, to, q, before)?;
        let (entries, more) = super::ssr::search(&state.pg, &filter, PAGE_SIZE, state.clock.now())
            .await
            .map_err(|e| AppError::internal("Failed to search the history", e))?;
        let next_cursor = if more {
            entries.last().map(super::ssr::cursor_after)
        } else {
            None
        };
        let internal = |e| AppError::internal("Failed to read the history", e);
        let actors = super::ssr::actors(&state.pg, 500).await.map_err(internal)?;
        let last_verification = super::chain::last_verification(&state.pg)
            .await
            .map_err(internal)?;
        Ok(HistoryPage {
            entries,
            next_cursor,
            actors,
            last_verification,
        })
    })
    .await
}

/// One entry with everything linked to it.
#[server(endpoint = "history/entry")]
pub async fn load_history_entry(id: i64) -> Result<EntryView, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, _| async move {
        super::ssr::load(&state.pg, id, state.clock.now())
            .await
            .map_err(|e| AppError::internal("Failed to load a history entry", e))?
            .ok_or(AppError::NotFound {
                what: format!("History entry {id}"),
            })
    })
    .await
}

#[cfg(feature = "ssr")]
fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<String, AppError> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(AppError::invalid(field, "cannot be empty"));
    }
    if value.chars().count() > max {
        return Err(AppError::invalid(
            field,
            format!("keep it under {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

#[cfg(feature = "ssr")]
fn parse_incident_id(value: &str) -> Result<Option<i64>, AppError> {
    let value = value.trim().trim_start_matches('#');
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|_| AppError::invalid("incident_id", "enter an incident number"))
}

/// Adds a note, on its own or on an incident's timeline. Every role may.
#[server(endpoint = "history/note")]
pub async fn add_note(title: String, body: String, incident_id: String) -> Result<i64, AppError> {
    use super::ssr::{is_incident, NewEntry};
    crate::auth::ssr::serve(
        crate::auth::Permission::Annotate,
        |state, actor| async move {
            let body = check_text("body", &body, MAX_BODY_CHARS, true)?;
            let incident_id = parse_incident_id(&incident_id)?;
            let title = check_text("title", &title, 200, false)?;
            let title = if title.is_empty() {
                let first_line = body.lines().next().unwrap_or_default();
                let mut title: String = first_line.chars().take(80).collect();
                if first_line.chars().count() > 80 {
                    title.push('…');
                }
                title
            } else {
                title
            };
            if let Some(id) = incident_id {
                if !is_incident(&state.pg, id)
                    .await
                    .map_err(|e| AppError::internal("Failed to look up the incident", e))?
                {
                    return Err(AppError::invalid(
                        "incident_id",
                        format!("#{id} is not an incident"),
                    ));
                }
            }
            super::annotate::record_rated(
                &state.pg,
                &actor,
                &NewEntry::new(super::ssr::Note {}, title, &actor, super::Outcome::Info)
                    .with_body(body)
                    .with_incident(incident_id),
            )
            .await
        },
    )
    .await
}

/// Declares an incident. Every role may: the person on call is often an operator.
#[server(endpoint = "history/incident")]
pub async fn declare_incident(
    title: String,
    severity: String,
    started_at: String,
    resolved_at: String,
    body: String,
) -> Result<i64, AppError> {
    use super::ssr::NewEntry;
    crate::auth::ssr::serve(
        crate::auth::Permission::Annotate,
        |state, actor| async move {
            let title = check_text("title", &title, 200, true)?;
            let body = check_text("body", &body, MAX_BODY_CHARS, false)?;
            if !super::SEVERITIES.contains(&severity.as_str()) {
                return Err(AppError::invalid(
                    "severity",
                    "choose sev1, sev2, sev3 or sev4",
                ));
            }
            let now = state.clock.now();
            let started = super::ssr::parse_time("started_at", &started_at, false)?.unwrap_or(now);
            let resolved = super::ssr::parse_time("resolved_at", &resolved_at, false)?;
            super::annotate::check_incident_times(started, resolved, now)?;
            let id = super::annotate::record_rated(
                &state.pg,
                &actor,
                &NewEntry::new(
                    super::ssr::IncidentDeclared {},
                    title,
                    &actor,
                    super::Outcome::Info,
                )
                .with_body(body)
                .with_times(started, resolved)
                .with_severity(Some(severity)),
            )
            .await?;
            if resolved.is_none() {
                (state.incidents().declared)(state.clone(), id, actor.clone()).await;
            }
            Ok(id)
        },
    )
    .await
}

/// Marks an open incident resolved, as an entry on its timeline.
#[server(endpoint = "history/resolve")]
pub async fn resolve_incident(
    incident_id: i64,
    resolved_at: String,
    body: String,
    /// An admin's reason to resolve with the post-recovery checklist incomplete.
    #[server(default)]
    override_reason: Option<String>,
    /// Why the fallback queues may still be draining at the resolution.
    #[server(default)]
    draining_reason: Option<String>,
) -> Result<i64, AppError> {
    use super::ssr::{load, NewEntry};
    crate::auth::ssr::serve(
        crate::auth::Permission::Annotate,
        |state, actor| async move {
            let body = check_text("body", &body, MAX_BODY_CHARS, false)?;
            let override_reason =
                crate::reason::Reason::optional(override_reason.as_deref().unwrap_or_default())
                    .map_err(|e| AppError::invalid("override_reason", e.to_string()))?;
            let draining_reason =
                crate::reason::Reason::optional(draining_reason.as_deref().unwrap_or_default())
                    .map_err(|e| AppError::invalid("draining_reason", e.to_string()))?;
            let view = load(&state.pg, incident_id, state.clock.now())
                .await
                .map_err(|e| AppError::internal("Failed to load the incident", e))?
                .filter(|view| super::EntryKind::Incident.is(&view.entry.kind))
                .ok_or(AppError::NotFound {
                    what: format!("Incident {incident_id}"),
                })?;
            if view.resolved_at.is_some() {
                return Err(AppError::Conflict {
                    message: format!("Incident #{incident_id} is already resolved."),
                });
            }
            let now = state.clock.now();
            let resolved =
                super::ssr::parse_time("resolved_at", &resolved_at, false)?.unwrap_or(now);
            let started = time::OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(view.entry.started_at) * 1_000_000,
            )
            .map_err(|e| {
                AppError::internal("Failed to read the incident's start", e.to_string())
            })?;
            super::annotate::check_incident_times(started, Some(resolved), now)?;
            // The post-recovery checklist (incident mode, above the history) must pass, or
            // an admin overrides it with a reason that is kept with the resolution.
            let resolution = (state.incidents().may_resolve)(
                state.clone(),
                incident_id,
                super::ssr::ResolveAsk {
                    override_reason,
                    draining_reason,
                },
                actor.clone(),
            )
            .await?;
            let body = match resolution.note {
                Some(note) if body.is_empty() => note,
                Some(note) => format!("{body}\n\n{note}"),
                None => body,
            };
            super::annotate::record_rated(
                &state.pg,
                &actor,
                &NewEntry::new(
                    super::ssr::IncidentResolved {
                        checklist: resolution.checklist,
                    },
                    format!("Resolved: {}", view.entry.title),
                    &actor,
                    super::Outcome::Succeeded,
                )
                .with_body(body)
                .with_times(resolved, Some(resolved))
                .with_incident(Some(incident_id)),
            )
            .await
        },
    )
    .await
}

/// Walks the whole chain and reports the first entry that does not match; recorded in
/// the history. Managers and admins: it reads every entry.
#[server(endpoint = "history/verify")]
pub async fn verify_history_chain() -> Result<ChainReport, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::VerifyHistory,
        |state, actor| async move { super::chain::verify_and_record(&state, &actor).await },
    )
    .await
}
