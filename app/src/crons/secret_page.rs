//! `/admin/settings/cron-secret`: which cron secrets work, who used them last, and (for
//! admins) rotation with a grace window.

use leptos::prelude::*;
use leptos_meta::Title;

use super::api::{load_cron_secrets, EndCronSecretGrace, RotateCronSecret};
use super::{CronSecretInfo, DEFAULT_GRACE_HOURS, MAX_GRACE_HOURS};
use crate::auth::viewer::IfAllowed;
use crate::auth::Permission;
use crate::components::ReasonField;
use crate::components::{action_error, Badge, Banner, ErrorBanner, PageHeader, Tone};
use crate::format::{format_ago, format_utc};

/// `/admin/settings/cron-secret`: everyone sees which secrets work and who used them
/// last; admins rotate and end grace windows.
#[component]
pub fn CronSecretPage() -> AnyView {
    let rotate = ServerAction::<RotateCronSecret>::new();
    let end = ServerAction::<EndCronSecretGrace>::new();
    let secrets = Resource::new(
        move || (rotate.version().get(), end.version().get()),
        |_| load_cron_secrets(),
    );
    view! {
        <Title text="Cron secret" />
        <PageHeader
            title="Cron secret"
            subtitle="The bearer token every scheduler sends to /cron/<job>. Salvage keeps only its hash. After a rotation the previous secret keeps working for the grace window you pick, so each scheduler can be switched in turn: the last caller of each secret shows which have."
        />
        <IfAllowed permission=Permission::Administer>
            <RotatePanel rotate />
        </IfAllowed>
        <Transition fallback=|| view! { <p class="muted" role="status">"Loading secrets…"</p> }>
            {move || Suspend::new(async move {
                match secrets.await {
                    Ok(list) => view! { <SecretsTable secrets=list.secrets now=list.now end /> }.into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
        {action_error(end.value())}
    }
    .into_any()
}

#[component]
fn RotatePanel(rotate: ServerAction<RotateCronSecret>) -> AnyView {
    let rotated = rotate.value();
    let (copied, set_copied) = signal(false);
    view! {
        <section class="panel form-panel wide">
            <h2>"Rotate"</h2>
            <p class="muted small">"Makes a new secret and shows it once. The current secret keeps working for the grace window; a secret still in an earlier grace window stops at once."</p>
            <ActionForm action=rotate attr:class="form-row" attr:aria-label="Rotate the cron secret">
                <label class="field">
                    <span>"Grace window (hours)"</span>
                    <input type="number" name="grace_hours" min="0" max=MAX_GRACE_HOURS.to_string() value=DEFAULT_GRACE_HOURS.to_string() required class="num-input" />
                </label>
                <ReasonField placeholder="quarterly rotation" />
                <button type="submit" class="btn btn-primary" data-testid="rotate" on:click=move |_| set_copied.set(false)>"Rotate"</button>
            </ActionForm>
            {action_error(rotated)}
            {move || match rotated.get() {
                Some(Ok(new)) => {
                    let secret = new.secret.reveal().to_owned();
                    let header = format!("Authorization: Bearer {secret}");
                    let to_copy = secret.clone();
                    Some(view! {
                        <div class="banner banner-ok new-secret" role="status" data-testid="new-cron-secret">
                            <p><strong>"Cron secret #" {new.id} " is current."</strong> " Copy it now; it is not shown again."</p>
                            <div class="form-row">
                                <input type="text" readonly class="secret-field" value=secret.clone() data-testid="secret-value" aria-label="The new cron secret" />
                                <button type="button" class="btn" data-testid="copy-secret" on:click=move |_| {
                                    copy_to_clipboard(&to_copy);
                                    set_copied.set(true);
                                }>{move || if copied.get() { "Copied" } else { "Copy" }}</button>
                            </div>
                            <p class="small">"Each scheduler sends this header line:"</p>
                            <pre class="header-line" data-testid="header-line">{header}</pre>
                            {new.previous.map(|(id, until)| view! {
                                <p class="small">"Secret #" {id} " keeps working until " {format_utc(until)} "."</p>
                            })}
                        </div>
                    })
                }
                _ => None,
            }}
        </section>
    }
    .into_any()
}

#[cfg(feature = "hydrate")]
fn copy_to_clipboard(text: &str) {
    // The promise is not awaited: a refusal (no permission) leaves the field to copy by hand.
    let _ = window().navigator().clipboard().write_text(text);
}

#[cfg(not(feature = "hydrate"))]
fn copy_to_clipboard(_text: &str) {}

fn secret_state(secret: &CronSecretInfo, now: i64) -> (Tone, String) {
    match secret.expires_at {
        None => (Tone::Ok, "current".into()),
        Some(at) if at > now => (Tone::Warn, "in grace".into()),
        Some(_) => (Tone::Neutral, "expired".into()),
    }
}

#[component]
fn SecretsTable(
    secrets: Vec<CronSecretInfo>,
    now: i64,
    end: ServerAction<EndCronSecretGrace>,
) -> AnyView {
    if secrets.is_empty() {
        return view! {
            <Banner tone=Tone::Warn>
                "No cron secret exists yet, so every call to /cron/<job> is refused. An admin creates one with Rotate, or sets CRON_SECRET before the first start."
            </Banner>
        }
        .into_any();
    }
    view! {
        <section class="panel">
            <h2>"Secrets"</h2>
            <div class="table-scroll">
                <table class="data" data-testid="cron-secrets">
                    <thead>
                        <tr>
                            <th scope="col" class="num">"#"</th>
                            <th scope="col">"State"</th>
                            <th scope="col">"Created"</th>
                            <th scope="col">"Stops working"</th>
                            <th scope="col">"Last used"</th>
                            <th scope="col">"Callers in the last 7 days"</th>
                            <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                        </tr>
                    </thead>
                    <tbody>
                        {secrets.into_iter().map(|s| {
                            let (tone, state) = secret_state(&s, now);
                            let in_grace = s.expires_at.is_some_and(|at| at > now);
                            let id = s.id;
                            view! {
                                <tr data-secret=id.to_string()>
                                    <td class="num">{id}</td>
                                    <td data-testid="secret-state"><Badge tone label=state /></td>
                                    <td class="nowrap">{format_utc(s.created_at)} <div class="muted small">{s.created_by.clone()} " · " {s.source.clone()}</div></td>
                                    <td class="nowrap">
                                        {match s.expires_at {
                                            Some(at) => view! {
                                                {format_utc(at)}
                                                <div class="muted small">{format_ago(at, now)}</div>
                                            }.into_any(),
                                            None => view! { <span class="muted">"when rotated"</span> }.into_any(),
                                        }}
                                    </td>
                                    <td class="nowrap">
                                        {match s.last_used_at {
                                            Some(at) => view! { <span title=format_utc(at)>{format_ago(at, now)}</span> }.into_any(),
                                            None => view! { <span class="muted">"never"</span> }.into_any(),
                                        }}
                                    </td>
                                    <td class="small callers">
                                        {if s.callers.is_empty() {
                                            view! { <span class="muted">"none"</span> }.into_any()
                                        } else {
                                            view! {
                                                <ul class="plain-list">
                                                    {s.callers.iter().map(|c| view! {
                                                        <li>
                                                            {c.agent.clone().unwrap_or_else(|| "no User-Agent".into())}
                                                            {c.addr.clone().map(|a| format!(" · {a}"))}
                                                            <span class="muted">{format!(" · {} call{}, last {}", c.calls, if c.calls == 1 { "" } else { "s" }, format_ago(c.last_at, now))}</span>
                                                        </li>
                                                    }).collect_view()}
                                                </ul>
                                            }.into_any()
                                        }}
                                    </td>
                                    <td class="actions">
                                        {in_grace.then(|| view! {
                                            <IfAllowed permission=Permission::Administer>
                                                <ActionForm action=end attr:class="inline-form">
                                                    <input type="hidden" name="secret_id" value=id.to_string() />
                                                    <label class="visually-hidden" for=format!("end-{id}")>"Reason"</label>
                                                    <input type="text" name="reason" id=format!("end-{id}") required placeholder="reason" maxlength="500" />
                                                    <button type="submit" class="btn btn-small btn-danger" data-testid="end-grace">"End grace now"</button>
                                                </ActionForm>
                                            </IfAllowed>
                                        })}
                                    </td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        </section>
    }
    .into_any()
}
