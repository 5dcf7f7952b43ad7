//! `/admin/alerts?view=silences`: active and recent silences, and a form to add one.

use leptos::prelude::*;

use super::api::{load_open_alerts, EndSilence, SilenceAlerts};
use super::{Silence, KIND_NAMES};
use crate::auth::viewer::IfAllowed;
use crate::auth::Permission;
use crate::components::ReasonField;
use crate::components::{action_error, Badge, Column, DataTable, ErrorBanner, Tone};
use crate::format::{format_ago, format_utc, group_digits};

/// Active and recent silences, and a form to add one.
#[component]
pub(super) fn SilencesView() -> AnyView {
    let create = crate::components::server_action::<SilenceAlerts>();
    let end = crate::components::server_action::<EndSilence>();
    let overview = Resource::new(
        move || (create.version().get(), end.version().get()),
        |_| load_open_alerts(String::new(), String::new(), String::new()),
    );
    let viewer = crate::auth::viewer::use_viewer();
    view! {
        <IfAllowed permission=Permission::Operate>
            <section class="panel form-panel wide">
                <h2>"Add a silence"</h2>
                <p class="muted small">"Silenced alerts are still raised, recorded and listed (marked muted); their notifications stay quiet. An end is required."</p>
                <ActionForm action=create attr:class="form-row" attr:aria-label="Add a silence">
                    <label class="field">
                        <span>"Kind"</span>
                        <select name="kind">
                            {KIND_NAMES.iter().map(|name| view! { <option value=*name>{name.replace('_', " ")}</option> }).collect_view()}
                        </select>
                    </label>
                    <label class="field">
                        <span>"Key (* matches anything; empty: all)"</span>
                        <input type="text" name="key" maxlength="200" placeholder="requests" />
                    </label>
                    <label class="field">
                        <span>"Ends (UTC, or 4h / 2d)"</span>
                        <input type="text" name="ends_at" required placeholder="4h" />
                    </label>
                    <ReasonField placeholder="ClickHouse upgrade, 14:00–16:00" />
                    <button type="submit" class="btn btn-primary">"Silence"</button>
                </ActionForm>
                {action_error(create.value())}
            </section>
        </IfAllowed>
        {action_error(end.value())}
        <Transition fallback=|| view! { <p class="muted" role="status">"Reading the silences…"</p> }>
            {move || Suspend::new(async move {
                let operate = match viewer {
                    Some(viewer) => viewer.await.is_ok_and(|v| v.role.can(Permission::Operate)),
                    None => false,
                };
                match overview.await {
                    Ok(overview) => view! { <SilenceTable silences=overview.silences now=overview.now end operate /> }.into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
    }
    .into_any()
}

#[component]
fn SilenceTable(
    silences: Vec<Silence>,
    now: i64,
    end: ServerAction<EndSilence>,
    /// Whether the viewer may end a silence (the server checks again).
    operate: bool,
) -> AnyView {
    if silences.is_empty() {
        return view! { <p class="empty-state">"No silences. Every alert notifies when it is raised."</p> }.into_any();
    }
    view! {
        <section class="panel">
            <h2>"Silences"</h2>
            <div class="table-scroll">
                <DataTable
                    columns=vec![
                        Column::text("State"),
                        Column::text("Kind and key"),
                        Column::figures("Ends"),
                        Column::text("By, reason"),
                        Column::figures("Alerts muted"),
                        Column::text("End it"),
                    ]
                    test_id="silences"
                >
                    {silences.into_iter().map(|s| {
                        let state = if s.idle { ("idle: matched nothing for 24 h", Tone::Warn) } else if s.active { ("active", Tone::Info) } else { ("ended", Tone::Neutral) };
                        view! {
                            <tr>
                                <td><Badge tone=state.1 label=state.0 /></td>
                                <td>{s.kind.replace('_', " ")} <span class="muted">" · " {s.key_pattern.clone().unwrap_or_else(|| "every key".into())}</span></td>
                                <td class="num nowrap" title=format_utc(s.ends_at)>{if s.active { format_ago(s.ends_at, now) } else { format_utc(s.ended_at.unwrap_or(s.ends_at)) }}</td>
                                <td class="small">{s.created_by.clone()} ": " {s.reason.clone()}</td>
                                <td class="num">{group_digits(s.matched.max(0) as u64)}</td>
                                <td>
                                    {(s.active && operate).then(|| view! {
                                        <ActionForm action=end attr:class="inline-form" attr:aria-label=format!("End silence #{}", s.id)>
                                            <input type="hidden" name="silence_id" value=s.id />
                                            <input type="text" name="reason" required maxlength="500" placeholder="reason" aria-label="Reason" />
                                            <button type="submit" class="btn btn-small">"End"</button>
                                        </ActionForm>
                                    })}
                                </td>
                            </tr>
                        }
                        .into_any()
                    }).collect_view()}
                </DataTable>
            </div>
        </section>
    }
    .into_any()
}
