//! The incident panel, shown under an incident's history page: the freeze, status
//! snapshots, the post-recovery checklist that gates resolving it, the RCA owner.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use super::api::{
    load_incident_mode, SetIncidentFreeze, SetRcaOwner, TakeKeySnapshot, TakeSnapshot, TickItem,
};
use super::IncidentMode;
use crate::auth::viewer::use_viewer;
use crate::auth::Permission;
use crate::components::ReasonField;
use crate::components::{action_error, Badge, Banner, ErrorBanner, Tone};

/// Under `/admin/history/:id`: the panel when the entry is an incident, else nothing.
#[component]
pub fn IncidentPanel() -> AnyView {
    let params = use_params_map();
    let id = move || {
        params
            .with(|p| p.get("id").and_then(|id| id.parse::<i64>().ok()))
            .unwrap_or(0)
    };
    let freeze = ServerAction::<SetIncidentFreeze>::new();
    let snapshot = ServerAction::<TakeSnapshot>::new();
    let tick = ServerAction::<TickItem>::new();
    let owner = ServerAction::<SetRcaOwner>::new();
    let key_snapshot = ServerAction::<TakeKeySnapshot>::new();
    let mode = Resource::new(
        move || {
            (
                id(),
                freeze.version().get(),
                snapshot.version().get(),
                tick.version().get(),
                owner.version().get(),
                key_snapshot.version().get(),
            )
        },
        |(id, ..)| load_incident_mode(id),
    );
    let viewer = use_viewer();
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let operate = match viewer {
                    Some(viewer) => viewer.await.is_ok_and(|v| v.role.can(Permission::Operate)),
                    None => false,
                };
                match mode.await {
                    Ok(Some(mode)) => view! { <Panel mode operate freeze snapshot tick owner key_snapshot /> }.into_any(),
                    Ok(None) => ().into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
        {action_error(freeze.value())}
        {action_error(snapshot.value())}
        {action_error(tick.value())}
        {action_error(owner.value())}
        {action_error(key_snapshot.value())}
    }
    .into_any()
}

#[component]
fn Panel(
    mode: IncidentMode,
    operate: bool,
    freeze: ServerAction<SetIncidentFreeze>,
    snapshot: ServerAction<TakeSnapshot>,
    tick: ServerAction<TickItem>,
    owner: ServerAction<SetRcaOwner>,
    key_snapshot: ServerAction<TakeKeySnapshot>,
) -> AnyView {
    let id = mode.incident_id;
    let ready = mode.ready();
    let open = mode.open;
    view! {
        <section class="panel" data-testid="incident-mode">
            <h2>"Incident mode"</h2>
            <div class="form-pair">
                <div>
                    <p>
                        {if mode.frozen {
                            view! { <Badge tone=Tone::Warn label="frozen" /> }.into_any()
                        } else {
                            view! { <Badge tone=Tone::Neutral label="not frozen" /> }.into_any()
                        }}
                        " "
                        <span class="muted small">"While frozen, expiry and backup retention wait and in-place restores need an admin's confirmation; ingest and replay go on."</span>
                    </p>
                    {mode.other_freeze.map(|other| view! {
                        <Banner tone=Tone::Info>{format!("Incident #{other} holds the freeze; only one is on at a time.")}</Banner>
                    })}
                    {(operate && open && mode.other_freeze.is_none()).then(|| view! {
                        <ActionForm action=freeze attr:class="form-row" attr:aria-label="Incident freeze">
                            <input type="hidden" name="id" value=id />
                            <input type="hidden" name="on" value=if mode.frozen { "false" } else { "true" } />
                            <ReasonField />
                            <button type="submit" class="btn" data-testid="freeze-toggle">{if mode.frozen { "Lift the freeze" } else { "Freeze" }}</button>
                        </ActionForm>
                    })}
                    <p class="small">
                        {format!("{} status snapshots in the timeline. ", mode.snapshots)}
                        {open.then(|| view! {
                            <button type="button" class="btn" on:click=move |_| { snapshot.dispatch(TakeSnapshot { id }); }>"Take a snapshot"</button>
                        })}
                    </p>
                    {open.then(|| view! {
                        <ActionForm action=key_snapshot attr:class="form-row" attr:aria-label="Record an ingest key's usage">
                            <input type="hidden" name="id" value=id />
                            <label class="field">
                                <span>"Ingest key #"</span>
                                <input type="number" name="key_id" min="1" required class="narrow" />
                            </label>
                            <button type="submit" class="btn">"Record its usage"</button>
                        </ActionForm>
                    })}
                    <ActionForm action=owner attr:class="form-row" attr:aria-label="RCA owner">
                        <input type="hidden" name="id" value=id />
                        <label class="field field-grow">
                            <span>"RCA owner"</span>
                            <input type="text" name="rca_owner" maxlength="200" required value=mode.rca_owner.clone().unwrap_or_default() />
                        </label>
                        <button type="submit" class="btn">"Save owner"</button>
                    </ActionForm>
                </div>
                <div>
                    <h3 class="section-title">
                        "Post-recovery checklist "
                        {match (open, ready) {
                            (false, _) => view! { <Badge tone=Tone::Neutral label="as it stood at the resolution" /> }.into_any(),
                            (true, true) => view! { <Badge tone=Tone::Ok label="all pass" /> }.into_any(),
                            (true, false) => view! { <Badge tone=Tone::Warn label="resolving needs every check" /> }.into_any(),
                        }}
                    </h3>
                    {(!mode.checks_recorded).then(|| view! {
                        <p class="muted small" data-testid="checklist-not-recorded">
                            "Resolved before Salvage recorded the checklist with each resolution: how it stood then is not known, and it is not re-measured today."
                        </p>
                    })}
                    <table class="data" data-testid="checklist">
                        <tbody>
                            {mode.checks.into_iter().map(|c| {
                                let key = c.key.clone();
                                let done = c.ok;
                                view! {
                                    <tr>
                                        <td>{if c.ok { view! { <Badge tone=Tone::Ok label="ok" /> } } else { view! { <Badge tone=Tone::Error label="open" /> } }}</td>
                                        <th scope="row">{c.label}</th>
                                        <td class="small muted">{c.detail}</td>
                                        <td>{(!c.live && open).then(|| view! {
                                            <button type="button" class="btn"
                                                on:click=move |_| { tick.dispatch(TickItem { id, item: key.clone(), done: !done }); }>
                                                {if done { "Clear" } else { "Tick" }}
                                            </button>
                                        })}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
            </div>
        </section>
    }
    .into_any()
}
