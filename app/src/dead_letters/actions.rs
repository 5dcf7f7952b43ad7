//! The dry run of a redrive or purge on `/admin/dlq`, then the redrive (operators and
//! admins) or the purge (admins, typed count) of exactly what it counted.

use leptos::prelude::*;

use super::api::{DlqDryRun, Purge, StartRedrive};
use super::parts::{count, reason_badge};
use super::DryRun;
use crate::components::ReasonField;
use crate::components::{action_result, Banner, ErrorBanner, Tone};

/// Dry run, then redrive or purge what it counted.
#[component]
pub fn ActionsPanel<T>(
    target: T,
    dry: ServerAction<DlqDryRun>,
    redrive: ServerAction<StartRedrive>,
    purge: ServerAction<Purge>,
    administer: bool,
) -> AnyView
where
    T: Fn() -> String + Copy + Send + Sync + 'static,
{
    view! {
        <section class="panel form-panel wide" data-testid="dlq-actions">
            <h2>"Redrive or purge"</h2>
            <p class="muted small">
                "A dry run counts what the current filter (or your selection in the list) matches and shows a sample. A redrive then sends exactly those again, in batches on the server, with the same webhook-id, paced per endpoint; a paused endpoint's part waits for its circuit to close."
            </p>
            <ActionForm action=dry attr:class="form-row" attr:aria-label="Dry run">
                <input type="hidden" name="filter" prop:value=target />
                <button type="submit" class="btn" data-testid="dry-run">"Dry run"</button>
                <span class="muted small">{move || {
                    let t = target();
                    if t.is_empty() { "Every dead letter".to_owned() } else { t.replace('&', ", ") }
                }}</span>
            </ActionForm>
            {move || match dry.value().get() {
                Some(Ok(result)) => Some(view! { <DryRunResult result redrive purge administer /> }.into_any()),
                Some(Err(error)) => Some(view! { <ErrorBanner error /> }.into_any()),
                None => None,
            }}
            {action_result(redrive.value(), |id| format!("Redrive #{id} started; its progress shows above."))}
            {action_result(purge.value(), |deleted| format!("Purged {} dead letters; the history records it.", count(*deleted)))}
        </section>
    }
    .into_any()
}

#[component]
fn DryRunResult(
    result: DryRun,
    redrive: ServerAction<StartRedrive>,
    purge: ServerAction<Purge>,
    administer: bool,
) -> AnyView {
    let DryRun {
        filter,
        filter_label,
        count: n,
        bytes,
        sample,
        paused,
    } = result;
    view! {
        <div data-testid="dry-run-result">
            <p class="metric"><span class="metric-value">{count(n)}</span>{format!(" dead letters match: {filter_label}")}</p>
            <p class="muted small" data-testid="dry-run-bytes">{format!("A redrive sends {} of payloads.", crate::format::format_bytes(bytes))}</p>
            {(!paused.is_empty()).then(|| view! {
                <Banner tone=Tone::Warn>{format!("Paused endpoints among them (their part waits): {}", paused.join(", "))}</Banner>
            })}
            {(!sample.is_empty()).then(|| view! {
                <table class="data">
                    <caption class="muted small">"A sample of what would be sent"</caption>
                    <thead><tr>
                        <th scope="col" class="num">"Delivery"</th><th scope="col">"Webhook"</th><th scope="col">"Event"</th>
                        <th scope="col">"Reason"</th><th scope="col" class="num">"Attempts"</th>
                    </tr></thead>
                    <tbody>
                        {sample.into_iter().map(|l| view! {
                            <tr>
                                <td class="num"><a href=format!("/admin/dlq/deliveries/{}", l.id)>{l.id}</a></td>
                                <td>{format!("#{} {}", l.webhook_id, l.webhook)}</td>
                                <td><code class="small">{l.event_type}</code></td>
                                <td>{reason_badge(l.reason)}</td>
                                <td class="num">{l.attempts}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            })}
            {(n > 0).then(|| {
                let purge_filter = filter.clone();
                view! {
                <div class="form-pair">
                    <ActionForm action=redrive attr:class="form-row" attr:aria-label="Redrive">
                        <input type="hidden" name="filter" value=filter.clone() />
                        <ReasonField placeholder="Endpoint fixed by the customer" />
                        <button type="submit" class="btn btn-primary" data-testid="redrive">{format!("Redrive {}", count(n))}</button>
                    </ActionForm>
                    {administer.then(|| view! {
                        <ActionForm action=purge attr:class="form-row" attr:aria-label="Purge">
                            <input type="hidden" name="filter" value=purge_filter.clone() />
                            <label class="field">
                                <span>{format!("Type {n} to purge")}</span>
                                <input type="text" name="confirm" required inputmode="numeric" class="num-input" autocomplete="off" />
                            </label>
                            <ReasonField />
                            <button type="submit" class="btn btn-danger">"Purge"</button>
                        </ActionForm>
                    })}
                </div>
            }})}
        </div>
    }
    .into_any()
}
