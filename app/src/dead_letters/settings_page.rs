//! `/admin/settings/webhooks`: the endpoints deliveries go to. Everyone reads; admins add
//! (the signing secret is shown once), turn off and on, and delete.

use leptos::prelude::*;
use leptos_meta::Title;

use super::api::{list_webhooks, CreateWebhook, DeleteWebhook, SetWebhookEnabled};
use super::{Endpoint, EndpointState, ALERT_EVENT_TYPE};
use crate::auth::viewer::{use_viewer, IfAllowed};
use crate::auth::Permission;
use crate::components::{
    action_error, Badge, Banner, Column, DataTable, ErrorBanner, PageHeader, Tone,
};
use crate::format::{format_utc, group_digits};

/// The badge of an endpoint's state.
pub fn state_badge(state: EndpointState) -> AnyView {
    let tone = match state {
        EndpointState::Healthy => Tone::Ok,
        EndpointState::Failing => Tone::Warn,
        EndpointState::Paused | EndpointState::Deleted => Tone::Error,
        EndpointState::Disabled => Tone::Neutral,
    };
    view! { <Badge tone label=state.label() /> }.into_any()
}

/// `/admin/settings/webhooks`.
#[component]
pub fn WebhooksPage() -> AnyView {
    let create = ServerAction::<CreateWebhook>::new();
    let enable = ServerAction::<SetWebhookEnabled>::new();
    let delete = ServerAction::<DeleteWebhook>::new();
    let webhooks = Resource::new(
        move || {
            (
                create.version().get(),
                enable.version().get(),
                delete.version().get(),
            )
        },
        |_| list_webhooks(),
    );
    let created = create.value();
    let viewer = use_viewer();
    view! {
        <Title text="Webhooks" />
        <PageHeader
            title="Webhooks"
            subtitle="Where deliveries go. Each is signed (Standard Webhooks, HMAC-SHA256), retried with backoff, then dead-lettered on /admin/dlq. Every change is recorded in the history."
        />
        <Transition fallback=|| view! { <p class="muted" role="status">"Loading webhooks…"</p> }>
            {move || Suspend::new(async move {
                let administer = match viewer {
                    Some(viewer) => viewer.await.ok().is_some_and(|v| v.role.can(Permission::Administer)),
                    None => false,
                };
                match webhooks.await {
                    Ok(rows) if rows.is_empty() => view! {
                        <p class="empty">"No webhooks yet. Add one below; the service's events then go to it."</p>
                    }.into_any(),
                    Ok(rows) => view! { <WebhookTable rows administer enable delete /> }.into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
        {action_error(enable.value())}
        {action_error(delete.value())}
        <IfAllowed permission=Permission::Administer>
            <section class="panel form-panel wide">
                <h2>"Add a webhook"</h2>
                <ActionForm action=create attr:class="form-row" attr:aria-label="Add a webhook">
                    <label class="field field-grow">
                        <span>"URL"</span>
                        <input type="url" name="url" required placeholder="https://hooks.example.com/salvage" />
                    </label>
                    <label class="field">
                        <span>"Description"</span>
                        <input type="text" name="description" maxlength="200" placeholder="Acme billing" />
                    </label>
                    <label class="field field-grow">
                        <span>"Event types (comma-separated)"</span>
                        <input type="text" name="event_types" required placeholder=format!("order.paid, {ALERT_EVENT_TYPE}") />
                    </label>
                    <label class="field">
                        <span>"Retries"</span>
                        <input type="number" name="max_retries" min="0" max="20" placeholder="5" />
                    </label>
                    <button type="submit" class="btn btn-primary">"Add webhook"</button>
                </ActionForm>
                <p class="muted small">
                    "Subscribe a webhook to " <code>{ALERT_EVENT_TYPE}</code>
                    " to receive the console's alert notifications (raised, severity rise, acknowledgement ended, resolved) in a Slack-compatible message."
                </p>
                {action_error(created)}
                {move || match created.get() {
                    Some(Ok(webhook)) => Some(view! {
                        <Banner tone=Tone::Ok test_id="webhook-secret">
                            {format!("Webhook {} added. Its signing secret, shown only now: ", webhook.id)}
                            <code class="secret">{webhook.secret.reveal().to_owned()}</code>
                            ". Give it to the receiver to verify the webhook-signature header."
                        </Banner>
                    }),
                    _ => None,
                }}
            </section>
        </IfAllowed>
    }
    .into_any()
}

#[component]
fn WebhookTable(
    rows: Vec<Endpoint>,
    administer: bool,
    enable: ServerAction<SetWebhookEnabled>,
    delete: ServerAction<DeleteWebhook>,
) -> AnyView {
    view! {
        <DataTable
            columns=vec![
                Column::figures("#"),
                Column::text("Endpoint"),
                Column::text("Events"),
                Column::text("State"),
                Column::figures("Retries"),
                Column::figures("Due"),
                Column::figures("Dead letters"),
                Column::text("Added"),
                Column::text("Change"),
            ]
        >
            {rows.into_iter().map(|row| {
                let deleted = row.state == EndpointState::Deleted;
                let enabled = row.state != EndpointState::Disabled;
                view! {
                    <tr>
                        <td class="num">{row.id}</td>
                        <td>
                            <strong>{if row.description.is_empty() { "—".to_owned() } else { row.description.clone() }}</strong>
                            <br /><code class="small" title=super::url_title(&row.url)>{row.url.clone()}</code>
                        </td>
                        <td class="small">{row.event_types.join(", ")}</td>
                        <td>{state_badge(row.state)}</td>
                        <td class="num">{row.max_retries}</td>
                        <td class="num">{group_digits(row.backlog.max(0) as u64)}</td>
                        <td class="num">
                            <a href=format!("/admin/dlq?webhook={}", row.id)>{group_digits(row.dead.max(0) as u64)}</a>
                        </td>
                        <td class="nowrap small">{format_utc(row.created_at_ms)}<br />{row.created_by.clone()}</td>
                        <td>
                            {(administer && !deleted).then(|| view! {
                                    <div class="row-actions">
                                        <ActionForm action=enable attr:class="inline-form">
                                            <input type="hidden" name="id" value=row.id.to_string() />
                                            <input type="hidden" name="enabled" value=(!enabled).to_string() />
                                            <label class="visually-hidden" for=format!("why-{}", row.id)>"Reason"</label>
                                            <input type="text" name="reason" id=format!("why-{}", row.id) required maxlength="500" placeholder="Reason" class="input-small" />
                                            <button type="submit" class="btn btn-small">
                                                {if enabled { "Disable" } else { "Enable" }}
                                                <span class="visually-hidden">{format!(" webhook {}", row.id)}</span>
                                            </button>
                                        </ActionForm>
                                        <ActionForm action=delete attr:class="inline-form">
                                            <input type="hidden" name="id" value=row.id.to_string() />
                                            <input type="hidden" name="reason" value="deleted from the webhooks page" />
                                            <button type="submit" class="btn btn-small btn-danger">
                                                "Delete"<span class="visually-hidden">{format!(" webhook {}", row.id)}</span>
                                            </button>
                                        </ActionForm>
                                    </div>
                            })}
                        </td>
                    </tr>
                }
            }).collect_view()}
        </DataTable>
    }
    .into_any()
}
