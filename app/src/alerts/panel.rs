//! One alert's panel on `/admin/alerts?alert=<id>`: its facts, timeline, silences and
//! earlier alerts (refreshing), and what a person can do (not refreshing, keeping the
//! version they saw, so typing survives and a stale change answers 409).

use leptos::prelude::*;
use leptos_router::components::A;

use super::api::{load_alert, AcknowledgeAlerts, NoteAlert, ResolveAlerts, SilenceAlerts};
use super::parts::{markers, severity_tone, status_tone};
use super::{actor_name, Alert, AlertDetail, AlertStatus, FixAction, Severity};
use crate::auth::Permission;
use crate::components::ReasonField;
use crate::components::{action_error, Badge, ErrorBanner, Tone};
use crate::format::{format_ago, format_duration, format_utc, group_digits};

/// One alert: its facts, timeline and silences (refreshing), and what a person can do
/// (not refreshing, so typing is kept).
#[component]
pub(super) fn AlertPanel(
    id: i64,
    tick: ReadSignal<u64>,
    on_change: impl Fn() + Copy + Send + Sync + 'static,
) -> AnyView {
    let (acted, set_acted) = signal(0_u32);
    let detail = Resource::new(
        move || (id, tick.get(), acted.get()),
        |(id, _, _)| load_alert(id),
    );
    // The version the person saw when they opened the alert (or after their own change).
    let opened = Resource::new(move || (id, acted.get()), |(id, _)| load_alert(id));
    let viewer = crate::auth::viewer::use_viewer();
    let done = move || {
        set_acted.update(|n| *n += 1);
        on_change();
    };
    view! {
        <section class="panel alert-panel" aria-label=format!("Alert #{id}") data-testid="alert-panel">
            <div id="live-alert" data-live="">
                <Transition fallback=|| view! { <p class="muted" role="status">"Reading the alert…"</p> }>
                    {move || Suspend::new(async move {
                        match detail.await {
                            Ok(detail) => view! { <AlertFacts detail /> }.into_any(),
                            Err(error) => view! { <ErrorBanner error /> }.into_any(),
                        }
                    })}
                </Transition>
            </div>
            // One suspense for both awaits: a suspense made inside another's async block
            // would be made later on the server than in the browser.
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let allowed = match viewer {
                        Some(viewer) => viewer.await.is_ok_and(|v| v.role.can(Permission::Operate)),
                        None => false,
                    };
                    let detail = opened.await.ok().filter(|_| allowed)?;
                    Some(view! { <AlertActions alert=detail.alert done /> })
                })}
            </Suspense>
        </section>
    }
    .into_any()
}

#[component]
fn AlertFacts(detail: AlertDetail) -> AnyView {
    let alert = detail.alert;
    let now = alert.last_seen_at.max(alert.resolved_at.unwrap_or(0));
    let acknowledged = match (&alert.acknowledged_by, alert.acknowledged_at) {
        (Some(by), Some(at)) => format!(
            "by {by} at {}{}",
            format_utc(at),
            alert
                .acknowledged_until
                .map(|u| format!(", until {}", format_utc(u)))
                .unwrap_or_default()
        ),
        _ => "—".into(),
    };
    let resolved = match (&alert.resolved_by, alert.resolved_at) {
        (Some(by), Some(at)) => format!(
            "by {} at {} (after {})",
            actor_name(by),
            format_utc(at),
            format_duration(at - alert.first_seen_at)
        ),
        _ => "—".into(),
    };
    view! {
        <h2>
            <Badge tone=severity_tone(alert.severity) label=alert.severity.as_str() />
            " " {alert.title.clone()}
        </h2>
        <dl class="facts">
            <dt>"Alert"</dt>
            <dd>"#" {alert.id} " · " {alert.kind.replace('_', " ")} " · " {alert.key.clone()} " " {markers(&alert)}</dd>
            <dt>"Status"</dt>
            <dd data-testid="alert-status"><Badge tone=status_tone(alert.status) label=alert.status.as_str() /></dd>
            <dt>"Figure"</dt>
            <dd>{alert.figure_text().unwrap_or_else(|| "—".into())}</dd>
            <dt>"First seen"</dt>
            <dd>{format_utc(alert.first_seen_at)}</dd>
            <dt>"Last seen"</dt>
            <dd>{format_utc(alert.last_seen_at)} " (" {format_ago(alert.last_seen_at, now)} ")"</dd>
            <dt>"Occurrences"</dt>
            <dd>{group_digits(alert.occurrences.max(0) as u64)}</dd>
            <dt>"Acknowledged"</dt>
            <dd>{acknowledged}</dd>
            <dt>"Resolved"</dt>
            <dd>{resolved}</dd>
            {alert.resolution_note.clone().map(|note| view! { <dt>"Resolution"</dt><dd class="prose">{note}</dd> })}
            <dt>"Fix"</dt>
            <dd><A href=alert.fix_href.clone()>{alert.fix_label.clone()}</A></dd>
        </dl>
        <h3>"Timeline"</h3>
        <ol class="timeline" data-testid="alert-timeline">
            {detail.timeline.into_iter().map(|event| view! {
                <li>
                    <span class="num nowrap muted">{format_utc(event.at)}</span>
                    " "
                    <span class="strong">{event.label()}</span>
                    " by " {actor_name(&event.actor)}
                    {event.note.map(|note| view! { <span class="prose">": " {note}</span> })}
                    {event.history_id.map(|h| view! { " " <A href=format!("/admin/history/{h}")>{format!("history #{h}")}</A> })}
                </li>
            }.into_any()).collect_view()}
        </ol>
        {(!detail.silences.is_empty()).then(|| view! {
            <h3>"Silences that matched it"</h3>
            <ul class="plain-list" data-testid="alert-silences">
                {detail.silences.into_iter().map(|s| view! {
                    <li>
                        <Badge tone=if s.active { Tone::Info } else { Tone::Neutral } label=if s.active { "active" } else { "ended" } />
                        " silence #" {s.id} " of " {s.kind.replace('_', " ")}
                        {s.key_pattern.map(|p| format!(" ({p})"))}
                        " until " {format_utc(s.ended_at.unwrap_or(s.ends_at))} " by " {s.created_by} ": " {s.reason}
                    </li>
                }.into_any()).collect_view()}
            </ul>
        }.into_any())}
        {(!detail.earlier.is_empty()).then(|| view! {
            <h3>"Earlier alerts for the same thing"</h3>
            <ul class="plain-list">
                {detail.earlier.into_iter().map(|a| view! {
                    <li>
                        <a href=format!("/admin/alerts?alert={}", a.id)>{format!("#{}", a.id)}</a>
                        " " {format_utc(a.first_seen_at)} " · " {a.status.as_str()}
                        {a.resolved_by.map(|by| format!(" by {}", actor_name(&by)))}
                        {a.resolution_note.map(|n| format!(": {n}"))}
                    </li>
                }.into_any()).collect_view()}
            </ul>
        }.into_any())}
    }
    .into_any()
}

/// Whether a form's action has an outcome to show (on a page served without the client,
/// the outcome of the post that brought the person back): its disclosure opens on it.
fn shown<S>(action: ServerAction<S>) -> bool
where
    S: leptos::server_fn::ServerFn + Send + Sync + Clone + 'static,
    S::Output: Send + Sync + 'static,
    S::Error: Send + Sync + 'static,
{
    action.value().with_untracked(Option::is_some)
}

/// Whether a form's action was refused: its disclosure opens on the refusal. (A change
/// that went through shows in the alert's facts above, as with the client.)
fn refused<S>(action: ServerAction<S>) -> bool
where
    S: leptos::server_fn::ServerFn + Send + Sync + Clone + 'static,
    S::Output: Send + Sync + 'static,
    S::Error: Send + Sync + 'static,
{
    action.value().with_untracked(|v| matches!(v, Some(Err(_))))
}

/// Acknowledge, resolve, note, silence and the inline fix, for operators and admins.
#[component]
fn AlertActions(alert: Alert, done: impl Fn() + Copy + Send + Sync + 'static) -> AnyView {
    let acknowledge = crate::components::server_action::<AcknowledgeAlerts>();
    let resolve = crate::components::server_action::<ResolveAlerts>();
    let note = crate::components::server_action::<NoteAlert>();
    let silence = crate::components::server_action::<SilenceAlerts>();
    Effect::new(move |_| {
        let ok = matches!(acknowledge.value().get(), Some(Ok(_)))
            || matches!(resolve.value().get(), Some(Ok(_)))
            || matches!(note.value().get(), Some(Ok(_)))
            || matches!(silence.value().get(), Some(Ok(_)));
        if ok {
            done();
        }
    });
    let selection = format!("{}@{}", alert.id, alert.version);
    let resolve_selection = selection.clone();
    let open = alert.status.is_open();
    let critical = alert.severity == Severity::Critical;
    view! {
        <div class="row-actions alert-actions">
            {open.then(|| view! {
                <details class="disclosure" open=alert.status == AlertStatus::Firing || refused(acknowledge)>
                    <summary class="btn">"Acknowledge"</summary>
                    <ActionForm action=acknowledge attr:class="panel form-panel" attr:aria-label="Acknowledge this alert">
                        <input type="hidden" name="selection" value=selection.clone() />
                        <label class="field">
                            <span>"Note (what you are doing about it)"</span>
                            <textarea name="note" rows="2" required maxlength="2000"></textarea>
                        </label>
                        <label class="field">
                            <span>"For"</span>
                            <select name="until">
                                <option value="">"until resolved"</option>
                                <option value="1h">"1 hour, then it fires again"</option>
                                <option value="4h">"4 hours"</option>
                                <option value="24h">"24 hours"</option>
                            </select>
                        </label>
                        {action_error(acknowledge.value())}
                        <button type="submit" class="btn btn-primary">"Acknowledge with this note"</button>
                    </ActionForm>
                </details>
                <details class="disclosure" open=refused(resolve)>
                    <summary class="btn">"Resolve"</summary>
                    <ActionForm action=resolve attr:class="panel form-panel" attr:aria-label="Resolve this alert">
                        <input type="hidden" name="selection" value=resolve_selection.clone() />
                        <label class="field">
                            <span>{if critical { "Note (required: it is critical)" } else { "Note (optional)" }}</span>
                            <textarea name="note" rows="2" required=critical maxlength="2000"></textarea>
                        </label>
                        {action_error(resolve.value())}
                        <button type="submit" class="btn">"Resolve with this note"</button>
                    </ActionForm>
                </details>
            }.into_any())}
            <details class="disclosure" open=refused(note)>
                <summary class="btn">"Add a note"</summary>
                <ActionForm action=note attr:class="panel form-panel" attr:aria-label="Add a note to this alert">
                    <input type="hidden" name="alert_id" value=alert.id />
                    <label class="field">
                        <span>"Note"</span>
                        <textarea name="note" rows="2" required maxlength="2000"></textarea>
                    </label>
                    {action_error(note.value())}
                    <button type="submit" class="btn">"Add note"</button>
                </ActionForm>
            </details>
            {open.then(|| view! {
                <details class="disclosure" open=refused(silence)>
                    <summary class="btn">"Silence"</summary>
                    <ActionForm action=silence attr:class="panel form-panel" attr:aria-label="Silence alerts like this one">
                        <input type="hidden" name="kind" value=alert.kind.clone() />
                        <label class="field">
                            <span>"Key (* matches anything)"</span>
                            <input type="text" name="key" value=alert.key.clone() maxlength="200" />
                        </label>
                        <label class="field">
                            <span>"Until"</span>
                            <select name="ends_at">
                                <option value="1h">"1 hour"</option>
                                <option value="4h" selected>"4 hours"</option>
                                <option value="24h">"24 hours"</option>
                                <option value="7d">"7 days"</option>
                            </select>
                        </label>
                        <ReasonField compact=true />
                        {action_error(silence.value())}
                        <button type="submit" class="btn">"Silence"</button>
                    </ActionForm>
                </details>
            }.into_any())}
            {alert.fix_action.clone().filter(|_| open).map(|action| view! { <FixForm action /> })}
        </div>
    }
    .into_any()
}

/// The inline fix: a run of the job the alert's kind names (replay the queues, back up,
/// run a drill, run a flagged cron), with a reason, through the runner's one start.
#[component]
fn FixForm(action: FixAction) -> AnyView {
    use crate::jobs::api::StartJob;
    let run = crate::components::server_action::<StartJob>();
    let FixAction { job, label } = action;
    let summary = label.clone();
    let aria = label.clone();
    view! {
        <details class="disclosure" open=shown(run)>
            <summary class="btn">{summary}</summary>
            <ActionForm action=run attr:class="panel form-panel" attr:aria-label=aria>
                <input type="hidden" name="job" value=job.clone() />
                <ReasonField compact=true />
                {action_error(run.value())}
                {move || run.value().get().and_then(|r| r.ok()).map(|id| view! {
                    <p class="muted small" role="status">"Started run #" {id} " of " {job.clone()} "; it shows on " <A href="/admin/crons">"the crons page"</A> "."</p>
                })}
                <button type="submit" class="btn btn-primary">{label}</button>
            </ActionForm>
        </details>
    }
    .into_any()
}
