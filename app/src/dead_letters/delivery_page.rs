//! `/admin/dlq/deliveries/:id`: one delivery, its payload and every attempt made.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use super::api::load_delivery;
use super::parts::reason_badge;
use crate::components::{Badge, Column, DataTable, ErrorBanner, PageHeader, Tone};
use crate::format::format_utc;

/// `/admin/dlq/deliveries/:id`: one delivery and every attempt.
#[component]
pub fn DeliveryPage() -> AnyView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").and_then(|v| v.parse::<i64>().ok()).unwrap_or(0));
    let delivery = Resource::new(id, load_delivery);
    view! {
        <Title text="Delivery" />
        <p class="breadcrumbs"><a href="/admin/dlq">"Dead letters"</a> " › delivery"</p>
        <Transition fallback=|| view! { <p class="muted" role="status">"Reading the delivery…"</p> }>
            {move || Suspend::new(async move {
                match delivery.await {
                    Ok(d) => {
                        let status = match (d.status, d.reason) {
                            (super::DeliveryStatus::Dead, Some(reason)) => reason_badge(reason),
                            (super::DeliveryStatus::Delivered, _) => view! { <Badge tone=Tone::Ok label="delivered" /> }.into_any(),
                            _ => view! { <Badge tone=Tone::Info label="pending" /> }.into_any(),
                        };
                        view! {
                            <PageHeader title=format!("Delivery {}", d.id) subtitle=format!("{} to #{} {}", d.event_type, d.webhook_id, d.webhook) />
                            <dl class="facts">
                                <dt>"Status"</dt><dd>{status}</dd>
                                <dt>"webhook-id"</dt><dd><code>{d.message_id.clone()}</code></dd>
                                <dt>"Event"</dt><dd>{format!("#{} {}", d.event_id, d.event_type)}</dd>
                                <dt>"Created"</dt><dd>{format_utc(d.created_at_ms)}</dd>
                                <dt>"Attempts since created or redriven"</dt><dd>{d.attempts_since_redrive}</dd>
                                <dt>"Redriven"</dt><dd>{format!("{} times", d.redrives)}</dd>
                                {d.next_attempt_at_ms.map(|at| view! { <dt>"Next attempt"</dt><dd>{format_utc(at)}</dd> })}
                                {d.dlq_at_ms.map(|at| view! { <dt>"Dead-lettered"</dt><dd>{format_utc(at)}</dd> })}
                                {d.delivered_at_ms.map(|at| view! { <dt>"Delivered"</dt><dd>{format_utc(at)}</dd> })}
                            </dl>
                            <h2 class="section-title">"Attempts"</h2>
                            {if d.attempts.is_empty() {
                                view! { <p class="empty-state">"Not attempted yet."</p> }.into_any()
                            } else {
                                view! {
                                    <DataTable
                                        columns=vec![
                                            Column::figures("#"),
                                            Column::text("At"),
                                            Column::figures("Took"),
                                            Column::figures("Status"),
                                            Column::text("Error or answer"),
                                            Column::text("Note"),
                                        ]
                                        test_id="attempts"
                                    >
                                        {d.attempts.into_iter().map(|a| view! {
                                            <tr>
                                                <td class="num">{a.attempt}</td>
                                                <td class="nowrap small">{format_utc(a.started_at_ms)}</td>
                                                <td class="num">{format!("{} ms", a.duration_ms)}</td>
                                                <td class="num">{a.status_code.map(|s| s.to_string()).unwrap_or_else(|| "—".into())}</td>
                                                <td class="small"><code class="payload">{a.error.or(a.response_snippet).unwrap_or_default()}</code></td>
                                                <td class="small">
                                                    {a.probe.then_some("probe ")}
                                                    {a.redrive_id.map(|r| format!("redrive #{r}"))}
                                                </td>
                                            </tr>
                                        }).collect_view()}
                                    </DataTable>
                                }.into_any()
                            }}
                            <h2 class="section-title">"Payload"</h2>
                            <pre class="json">{d.payload.unwrap_or_else(|| "(removed by retention)".into())}</pre>
                        }.into_any()
                    }
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
    }
    .into_any()
}
