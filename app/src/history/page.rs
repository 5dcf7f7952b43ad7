//! `/admin/history` (the list, filters, export, verify, notes and incidents) and
//! `/admin/history/:id` (one entry; an incident with its timeline).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::{Form, A};
use leptos_router::hooks::{use_params_map, use_query_map};

use super::api::{
    load_history_entry, search_history, AddNote, DeclareIncident, ResolveIncident,
    VerifyHistoryChain,
};
use super::{ChainReport, Entry, EntryKind, EntryView, Outcome, SEVERITIES};
use crate::auth::viewer::IfAllowed;
use crate::auth::Permission;
use crate::components::{
    action_error, Badge, Banner, Column, DataTable, ErrorBanner, PageHeader, Tone,
};
use crate::format::{format_duration, format_utc, group_digits, percent_encode};

/// The filter parameters, in the order `search_history` takes them.
const FILTERS: [&str; 6] = ["kind", "actor", "outcome", "from", "to", "q"];

fn outcome_tone(outcome: Outcome) -> Tone {
    match outcome {
        Outcome::Succeeded => Tone::Ok,
        Outcome::Failed => Tone::Error,
        Outcome::Partial => Tone::Warn,
        Outcome::Info => Tone::Neutral,
    }
}

fn severity_tone(severity: &str) -> Tone {
    match severity {
        "sev1" => Tone::Error,
        "sev2" => Tone::Warn,
        _ => Tone::Info,
    }
}

/// `/admin/history`.
#[component]
pub fn HistoryPage() -> AnyView {
    let query = use_query_map();
    let param = move |name: &str| query.with(|q| q.get(name).unwrap_or_default());
    let (reload, set_reload) = signal(0u32);
    let page = Resource::new(
        move || (FILTERS.map(param), param("before"), reload.get()),
        |([kind, actor, outcome, from, to, q], before, _)| {
            search_history(kind, actor, outcome, from, to, q, before)
        },
    );
    let filter_query = move || {
        FILTERS
            .iter()
            .filter_map(|name| {
                let value = param(name);
                (!value.is_empty()).then(|| format!("{name}={}", percent_encode(&value)))
            })
            .collect::<Vec<_>>()
            .join("&")
    };
    let filtered = move || !filter_query().is_empty() || !param("before").is_empty();

    view! {
        <Title text="History" />
        <PageHeader
            title="Runbook history"
            subtitle="Every action, drill, incident and note, newest first. Append-only and hash-chained."
        />
        <div class="toolbar">
            <AnnotateForms on_done=move || set_reload.update(|n| *n += 1) />
            <div class="toolbar-end">
                <IfAllowed permission=Permission::ExportHistory>
                    <a class="btn" rel="external" download
                        href=move || format!("/admin/history/export?format=csv&{}", filter_query())>
                        "Export CSV"
                    </a>
                    <a class="btn" rel="external" download
                        href=move || format!("/admin/history/export?format=markdown&{}", filter_query())>
                        "Export Markdown"
                    </a>
                </IfAllowed>
                <IfAllowed permission=Permission::VerifyHistory>
                    <VerifyChain />
                </IfAllowed>
            </div>
        </div>
        <Form method="GET" action="/admin/history" attr:class="filters" attr:aria-label="Filter the history">
            <label class="field">
                <span>"Kind"</span>
                <select name="kind">
                    <option value="" selected=move || param("kind").is_empty()>"Any"</option>
                    {EntryKind::ALL.into_iter().map(|kind| view! {
                        <option value=kind.as_str() selected=move || param("kind") == kind.as_str()>{kind.label()}</option>
                    }).collect_view()}
                </select>
            </label>
            <label class="field">
                <span>"Actor"</span>
                <input type="text" name="actor" list="history-actors" prop:value=move || param("actor") placeholder="email" />
            </label>
            <label class="field">
                <span>"Outcome"</span>
                <select name="outcome">
                    <option value="" selected=move || param("outcome").is_empty()>"Any"</option>
                    {Outcome::ALL.iter().map(|o| view! {
                        <option value=o.as_str() selected=move || param("outcome") == o.as_str()>{o.as_str()}</option>
                    }).collect_view()}
                </select>
            </label>
            <label class="field">
                <span>"From (UTC)"</span>
                <input type="date" name="from" prop:value=move || param("from") />
            </label>
            <label class="field">
                <span>"To (UTC)"</span>
                <input type="date" name="to" prop:value=move || param("to") />
            </label>
            <label class="field field-grow">
                <span>"Text"</span>
                <input type="search" name="q" prop:value=move || param("q") placeholder="words in title, body, reason" />
            </label>
            <div class="filter-buttons">
                <button type="submit" class="btn btn-primary">"Filter"</button>
                <Show when=filtered>
                    <A href="/admin/history" attr:class="btn">"Clear"</A>
                </Show>
            </div>
        </Form>
        <Transition fallback=|| view! { <p class="muted" role="status">"Loading the history…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(page) => {
                        let next = page.next_cursor.clone().map(|cursor| {
                            let filters = filter_query();
                            let sep = if filters.is_empty() { "" } else { "&" };
                            format!("/admin/history?{filters}{sep}before={}", percent_encode(&cursor))
                        });
                        view! {
                            <datalist id="history-actors">
                                {page.actors.iter().map(|a| view! { <option value=a.clone() /> }).collect_view()}
                            </datalist>
                            <LastVerification report=page.last_verification.clone() />
                            <EntryTable entries=page.entries empty="No entries match these filters." />
                            <nav class="pager" aria-label="Pages">
                                {(!param("before").is_empty()).then(|| view! {
                                    <A href=move || { let f = filter_query(); if f.is_empty() { "/admin/history".to_owned() } else { format!("/admin/history?{f}") } }>"Newest"</A>
                                })}
                                {next.map(|href| view! { <A href=href>"Older entries"</A> })}
                            </nav>
                        }.into_any()
                    }
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
    }
    .into_any()
}

/// A dense table of entries; each title opens the entry.
#[component]
fn EntryTable(entries: Vec<Entry>, #[prop(into)] empty: String) -> AnyView {
    if entries.is_empty() {
        return view! { <p class="empty-state">{empty}</p> }.into_any();
    }
    view! {
        <DataTable
            columns=vec![
                Column::figures("#"),
                Column::text("Started"),
                Column::text("Kind"),
                Column::text("Title"),
                Column::text("Actor"),
                Column::text("Outcome"),
                Column::figures("Duration"),
            ]
            class="history"
        >
            {entries.into_iter().map(|entry| {
                let duration = entry.duration_ms().filter(|d| *d > 0).map(format_duration);
                let is_drill = EntryKind::Drill.is(&entry.kind);
                view! {
                    <tr>
                        <td class="num muted">{entry.id}</td>
                        <td class="nowrap" title=format_utc(entry.started_at)>{entry.started_ago.clone()}</td>
                        <td class="nowrap">
                            {entry.kind.replace('_', " ")}
                            {entry.severity.clone().map(|s| view! { " " <Badge tone=severity_tone(&s) label=s /> })}
                        </td>
                        <td><A href=format!("/admin/history/{}", entry.id)>{entry.title.clone()}</A></td>
                        <td class="nowrap">{entry.actor.clone()}</td>
                        <td><Badge tone=outcome_tone(entry.outcome) label=entry.outcome.as_str() /></td>
                        <td class=if is_drill { "num strong" } else { "num" }>{duration.unwrap_or_default()}</td>
                    </tr>
                }
            }).collect_view()}
        </DataTable>
    }
    .into_any()
}

/// The "verify chain" button and its result.
#[component]
fn VerifyChain() -> impl IntoView {
    let action = ServerAction::<VerifyHistoryChain>::new();
    let value = action.value();
    view! {
        <ActionForm action attr:class="inline-form">
            <button type="submit" class="btn" disabled=move || action.pending().get()>
                {move || if action.pending().get() { "Verifying…" } else { "Verify chain" }}
            </button>
        </ActionForm>
        <div class="verify-result" aria-live="polite">
            {move || value.get().map(|result| match result {
                Ok(report) => view! { <ChainResult report /> }.into_any(),
                Err(error) => view! { <ErrorBanner error /> }.into_any(),
            })}
        </div>
    }
}

/// One line under the filters: when the chain was last verified, by whom, and how.
#[component]
fn LastVerification(report: Option<ChainReport>) -> AnyView {
    let Some(report) = report else {
        return view! {
            <p class="muted small" data-testid="last-verification">
                "The chain has not been verified yet."
            </p>
        }
        .into_any();
    };
    let when = format_utc(report.verified_at);
    let result = match (&report.first_broken, &report.anchors.problem) {
        (Some(broken), _) => format!("broken at #{}", broken.id),
        (None, Some(problem)) => format!("disagrees with its anchors ({problem})"),
        (None, None) => format!(
            "intact, {} entries",
            group_digits(report.entries.max(0) as u64)
        ),
    };
    let tone = if report.intact() {
        "muted small"
    } else {
        "small text-error"
    };
    view! {
        <p class=tone data-testid="last-verification">
            "Chain last verified " {when} " by " {report.verified_by} ": " {result} "."
        </p>
    }
    .into_any()
}

#[component]
fn ChainResult(report: ChainReport) -> AnyView {
    let anchors = if report.anchors.unavailable {
        " Anchors not compared: ClickHouse did not answer.".to_owned()
    } else {
        format!(
            " Agrees with {} anchors in ClickHouse.",
            group_digits(report.anchors.checked.max(0) as u64)
        )
    };
    if let (None, Some(problem)) = (&report.first_broken, &report.anchors.problem) {
        let problem = problem.clone();
        return view! {
            <Banner tone=Tone::Error test_id="chain-result">
                "Chain disagrees with its anchors in ClickHouse: " {problem} "."
            </Banner>
        }
        .into_any();
    }
    match report.first_broken {
        None => view! {
            <Banner tone=Tone::Ok test_id="chain-result">
                "Chain intact: " {report.entries} " entries verified. Newest hash "
                <code title=report.head_hash.clone().unwrap_or_default()>
                    {report.head_hash.clone().unwrap_or_default().chars().take(16).collect::<String>()}
                </code>
                "." {anchors}
            </Banner>
        }
        .into_any(),
        Some(broken) => view! {
            <Banner tone=Tone::Error test_id="chain-result">
                "Chain broken at entry "
                <A href=format!("/admin/history/{}", broken.id)>{format!("#{}", broken.id)}</A>
                ": " {broken.problem} "."
            </Banner>
        }
        .into_any(),
    }
    .into_any()
}

/// "Add a note" and "Declare an incident", for every role.
#[component]
fn AnnotateForms(on_done: impl Fn() + Copy + Send + Sync + 'static) -> AnyView {
    let note = ServerAction::<AddNote>::new();
    let incident = ServerAction::<DeclareIncident>::new();
    let note_value = note.value();
    let incident_value = incident.value();
    Effect::new(move |_| {
        if matches!(note_value.get(), Some(Ok(_))) || matches!(incident_value.get(), Some(Ok(_))) {
            on_done();
        }
    });
    view! {
        <details class="disclosure">
            <summary class="btn">"Add a note"</summary>
            <ActionForm action=note attr:class="panel form-panel" attr:aria-label="Add a note">
                <input type="hidden" name="incident_id" value="" />
                <label class="field">
                    <span>"Title (optional)"</span>
                    <input type="text" name="title" maxlength="200" />
                </label>
                <label class="field">
                    <span>"Note"</span>
                    <textarea name="body" rows="4" required></textarea>
                </label>
                {action_error(note_value)}
                {move || match note_value.get() { Some(Ok(id)) => Some(view! {
                    <Banner tone=Tone::Ok>"Note added as "
                        <A href=format!("/admin/history/{id}")>{format!("entry #{id}")}</A> "."</Banner>
                }), _ => None }}
                <button type="submit" class="btn btn-primary">"Add note"</button>
            </ActionForm>
        </details>
        <details class="disclosure">
            <summary class="btn">"Declare an incident"</summary>
            <ActionForm action=incident attr:class="panel form-panel" attr:aria-label="Declare an incident">
                <label class="field">
                    <span>"Title"</span>
                    <input type="text" name="title" maxlength="200" required />
                </label>
                <label class="field">
                    <span>"Severity"</span>
                    <select name="severity">
                        {SEVERITIES.iter().map(|s| view! { <option value=*s selected=*s == "sev2">{*s}</option> }).collect_view()}
                    </select>
                </label>
                <label class="field">
                    <span>"Started (UTC, empty for now)"</span>
                    <input type="datetime-local" name="started_at" />
                </label>
                <label class="field">
                    <span>"Resolved (UTC, empty while open)"</span>
                    <input type="datetime-local" name="resolved_at" />
                </label>
                <label class="field">
                    <span>"What is happening"</span>
                    <textarea name="body" rows="4"></textarea>
                </label>
                {action_error(incident_value)}
                {move || match incident_value.get() { Some(Ok(id)) => Some(view! {
                    <Banner tone=Tone::Ok>"Incident declared as "
                        <A href=format!("/admin/history/{id}")>{format!("#{id}")}</A> "."</Banner>
                }), _ => None }}
                <button type="submit" class="btn btn-primary">"Declare incident"</button>
            </ActionForm>
        </details>
    }
    .into_any()
}

/// `/admin/history/:id`.
#[component]
pub fn HistoryEntryPage() -> AnyView {
    let params = use_params_map();
    let id = move || {
        params
            .with(|p| p.get("id").and_then(|id| id.parse::<i64>().ok()))
            .unwrap_or(0)
    };
    let (reload, set_reload) = signal(0u32);
    let view_resource = Resource::new(
        move || (id(), reload.get()),
        |(id, _)| load_history_entry(id),
    );
    view! {
        <Title text=move || format!("Entry #{}", id()) />
        <p class="breadcrumbs"><A href="/admin/history">"History"</A> " / " {move || format!("#{}", id())}</p>
        <Transition fallback=|| view! { <p class="muted" role="status">"Loading the entry…"</p> }>
            {move || Suspend::new(async move {
                match view_resource.await {
                    Ok(view) => view! { <EntryDetails view on_change=move || set_reload.update(|n| *n += 1) /> }.into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
    }
    .into_any()
}

#[component]
fn EntryDetails(view: EntryView, on_change: impl Fn() + Copy + Send + Sync + 'static) -> AnyView {
    let EntryView {
        entry,
        timeline,
        resolved_at,
    } = view;
    let is_incident = EntryKind::Incident.is(&entry.kind);
    // An incident finishes when it is resolved (its resolution entry), not with its own
    // entry's end.
    let finished_at = entry.finished_at.or(resolved_at.filter(|_| is_incident));
    let duration = entry
        .duration_ms()
        .or_else(|| finished_at.map(|end| end - entry.started_at))
        .map(format_duration);
    let open_incident = is_incident && resolved_at.is_none();
    let status = is_incident.then(|| match resolved_at {
        Some(at) => view! { <Badge tone=Tone::Ok label="resolved" /> " " <span class="muted">{format_utc(at)}</span> }.into_any(),
        None => view! { <Badge tone=Tone::Error label="open" /> }.into_any(),
    });
    let incident_id = entry.id;
    view! {
        <PageHeader title=entry.title.clone() />
        {EntryKind::Drill.is(&entry.kind).then(|| view! {
            <p class="metric" data-testid="drill-duration">
                <span class="metric-value">{duration.clone().unwrap_or_else(|| "unknown".into())}</span>
                <span class="muted">" drill duration (measured RTO)"</span>
            </p>
        })}
        <dl class="facts">
            <dt>"Kind"</dt><dd>{entry.kind.replace('_', " ")}
                {entry.severity.clone().map(|s| view! { " " <Badge tone=severity_tone(&s) label=s /> })}</dd>
            {status.map(|status| view! { <dt>"Status"</dt><dd>{status}</dd> })}
            <dt>"Outcome"</dt><dd><Badge tone=outcome_tone(entry.outcome) label=entry.outcome.as_str() /></dd>
            <dt>"Actor"</dt><dd>{entry.actor.clone()}</dd>
            <dt>"Started"</dt><dd>{format_utc(entry.started_at)} <span class="muted">" (" {entry.started_ago.clone()} ")"</span></dd>
            <dt>"Finished"</dt><dd>{match (finished_at, open_incident) {
                (Some(at), _) => format_utc(at),
                (None, true) => "not yet: the incident is open".into(),
                (None, false) => "—".into(),
            }}</dd>
            <dt>"Duration"</dt><dd class="num-left">{match (duration.clone(), open_incident) {
                (Some(d), _) => d,
                (None, true) => format!("open since {}", entry.started_ago),
                (None, false) => "—".into(),
            }}</dd>
            <dt>"Reason"</dt><dd>{entry.reason.clone().unwrap_or_else(|| "—".into())}</dd>
            {entry.incident_id.map(|id| view! {
                <dt>"Incident"</dt><dd><A href=format!("/admin/history/{id}")>{format!("#{id}")}</A></dd>
            })}
            <dt>"Recorded"</dt><dd>{format_utc(entry.created_at)}</dd>
            <dt>"Hash"</dt><dd><code class="hash">{entry.hash.clone()}</code></dd>
        </dl>
        {(!entry.body.is_empty()).then(|| view! { <section class="panel"><h2>"Notes"</h2><p class="prose">{entry.body.clone()}</p></section> })}
        {(entry.details != "{}").then(|| view! {
            <section class="panel"><h2>"Details"</h2><pre class="json">{entry.details.clone()}</pre></section>
        })}
        {is_incident.then(|| view! {
            <section class="panel">
                <h2>"Timeline"</h2>
                <EntryTable entries=timeline empty="Nothing linked to this incident yet." />
                <IncidentForms incident_id open=resolved_at.is_none() on_change />
            </section>
        })}
    }
    .into_any()
}

#[component]
fn IncidentForms(
    incident_id: i64,
    open: bool,
    on_change: impl Fn() + Copy + Send + Sync + 'static,
) -> AnyView {
    let note = ServerAction::<AddNote>::new();
    let resolve = ServerAction::<ResolveIncident>::new();
    let note_value = note.value();
    let resolve_value = resolve.value();
    Effect::new(move |_| {
        if matches!(note_value.get(), Some(Ok(_))) || matches!(resolve_value.get(), Some(Ok(_))) {
            on_change();
        }
    });
    view! {
        <div class="form-row">
            <ActionForm action=note attr:class="form-panel">
                <input type="hidden" name="incident_id" value=incident_id.to_string() />
                <input type="hidden" name="title" value="" />
                <label class="field">
                    <span>"Add a note to this incident"</span>
                    <textarea name="body" rows="3" required></textarea>
                </label>
                {action_error(note_value)}
                <button type="submit" class="btn btn-primary">"Add note"</button>
            </ActionForm>
            {open.then(|| view! {
                <ActionForm action=resolve attr:class="form-panel">
                    <input type="hidden" name="incident_id" value=incident_id.to_string() />
                    <label class="field">
                        <span>"Resolved at (UTC, empty for now)"</span>
                        <input type="datetime-local" name="resolved_at" />
                    </label>
                    <label class="field">
                        <span>"Resolution"</span>
                        <textarea name="body" rows="2"></textarea>
                    </label>
                    <label class="field">
                        <span>"If rows are still queued and draining: why that is fine to resolve with"</span>
                        <input type="text" name="draining_reason" maxlength="500" placeholder="Leave empty when the queues are empty" />
                    </label>
                    <label class="field">
                        <span>"Admins: resolve with the checklist incomplete because…"</span>
                        <input type="text" name="override_reason" maxlength="500" placeholder="Leave empty unless every check cannot pass" />
                    </label>
                    {action_error(resolve_value)}
                    <button type="submit" class="btn">"Mark resolved"</button>
                </ActionForm>
            })}
        </div>
    }
    .into_any()
}
