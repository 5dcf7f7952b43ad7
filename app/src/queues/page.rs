//! `/admin/queues` (operators' second home) and `/admin/settings/ingest-keys`.

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;

use super::api::{list_ingest_keys, load_queues, CreateIngestKey, RevokeIngestKey};
use super::{DepthSample, Queue, QueueStats, QueuesOverview, ReplayRun, EXPIRING_CAP};
use crate::auth::viewer::IfAllowed;
use crate::auth::Permission;
use crate::components::{
    action_error, Badge, Banner, ChartFrame, Column, DataTable, ErrorBanner, PageHeader, Tone,
    CHART_H, CHART_W,
};
use crate::format::{format_ago, format_duration, format_utc, group_digits};
use crate::ingest_keys::IngestKey;
use crate::jobs::api::{CancelRun, StartJob};
use crate::jobs::RunStatus;
use crate::jobs::{JobPanel, RunStatusBadge};

/// How often the page asks for fresh figures.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

fn count(n: i64) -> String {
    group_digits(n.max(0) as u64)
}

/// `/admin/queues`.
#[component]
pub fn QueuesPage() -> AnyView {
    let tick = crate::components::refresh_ticker(REFRESH_EVERY);
    let replay = ServerAction::<StartJob>::new();
    let cancel = ServerAction::<CancelRun>::new();
    let overview = Resource::new(
        move || (tick.get(), replay.version().get(), cancel.version().get()),
        |_| load_queues(),
    );
    view! {
        <Title text="Queues" />
        <PageHeader
            title="Fallback queues"
            subtitle="Rows ClickHouse could not take, parked in PostgreSQL until a replay sends them on, exactly once. Refreshes every 2 s."
        />
        <Transition fallback=|| view! { <p class="muted" role="status">"Reading the queues…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(overview) => view! { <QueuesNow overview cancel /> }.into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
        {action_error(cancel.value())}
        // Outside the refreshing parts, so a reason being typed survives each refresh.
        <ReplayPanel replay />
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                overview.await.ok().map(|overview| view! { <QueuesPast overview /> })
            })}
        </Transition>
    }
    .into_any()
}

/// The Replay button with its reason, for operators and admins.
#[component]
fn ReplayPanel(replay: ServerAction<StartJob>) -> AnyView {
    view! {
        <IfAllowed permission=Permission::Operate>
            <JobPanel
                action=replay
                job=super::REPLAY_JOB
                title="Replay both queues"
                about="Sends every queued row to ClickHouse in batches, skipping rows ClickHouse already has, then removes them from the queue. Safe to run at any time, and alongside the scheduled replay."
                placeholder="ClickHouse is back after the outage"
                button="Replay now"
                test_id="replay"
                run_of="Replay"
                follow="the runs below follow it."
                wide=true
            />
        </IfAllowed>
    }
    .into_any()
}

/// The state now: summary, running replays, the queues table.
#[component]
fn QueuesNow(overview: QueuesOverview, cancel: ServerAction<CancelRun>) -> AnyView {
    let QueuesOverview {
        now,
        ttl_hours,
        queues,
        runs,
        ..
    } = overview;
    let total: i64 = queues.iter().map(|q| q.depth).sum();
    let running: Vec<ReplayRun> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Running)
        .cloned()
        .collect();
    let (banner_class, headline) = if total == 0 {
        (
            "banner banner-ok",
            "Both queues are empty: every row reached ClickHouse.".to_owned(),
        )
    } else {
        (
            "banner banner-warn",
            format!("{} rows are waiting for ClickHouse.", count(total)),
        )
    };
    view! {
        <div class=banner_class role="status" data-testid="queues-summary">
            <strong>{headline}</strong>
            " Rows queued longer than " {ttl_hours} " h are deleted by expiry (recorded in the history)."
        </div>
        {running.into_iter().map(|run| view! { <RunProgress run now cancel /> }).collect_view()}
        <section class="panel">
            <h2>"Queues"</h2>
            <DataTable
                columns=vec![
                    Column::text("Queue"),
                    Column::figures("Rows queued"),
                    Column::text("Oldest row"),
                    Column::figures("Expire within 24 h"),
                    Column::text("Last error"),
                ]
                class="queues"
            >
                {queues.into_iter().map(|q| view! { <QueueRow q now /> }).collect_view()}
            </DataTable>
        </section>
    }
    .into_any()
}

/// How it got here: depth charts and the recent runs.
#[component]
fn QueuesPast(overview: QueuesOverview) -> AnyView {
    let QueuesOverview {
        now,
        queues,
        samples,
        runs,
        ..
    } = overview;
    let depth_of = |queue: Queue| {
        queues
            .iter()
            .find(|q| q.queue == queue)
            .map_or(0, |q| q.depth)
    };
    let current = DepthSample {
        at: now,
        requests: depth_of(Queue::Requests),
        events: depth_of(Queue::Events),
    };
    view! {
        <div class="chart-pair">
            <DepthChart title="Depth, last 24 h" samples=samples.clone() current=current.clone() from=now - 86_400_000 to=now />
            <DepthChart title="Depth, last 7 days" samples current from=now - 7 * 86_400_000 to=now />
        </div>
        <section class="panel">
            <h2>"Recent replay runs"</h2>
            <RunsTable runs now />
            <p class="muted small">"Scheduled replays that found both queues empty are not listed here; every run of every job is on " <a href="/admin/crons">"Crons"</a> "."</p>
        </section>
    }
    .into_any()
}

#[component]
fn QueueRow(q: QueueStats, now: i64) -> AnyView {
    let oldest = match q.oldest_queued_at {
        Some(at) => format!("{} ({})", format_utc(at), format_ago(at, now)),
        None => "—".to_owned(),
    };
    let expiring = if q.expiring_24h > EXPIRING_CAP {
        format!("more than {}", count(EXPIRING_CAP))
    } else {
        count(q.expiring_24h)
    };
    let expiring_class = if q.expiring_24h > 0 {
        "num strong warn-text"
    } else {
        "num"
    };
    let error = match (q.last_error, q.last_error_at) {
        (Some(error), Some(at)) => view! {
            <span class="detail">{error}</span>
            <span class="muted small nowrap">" · " {format_ago(at, now)}</span>
        }
        .into_any(),
        _ => view! { <span class="muted">"none"</span> }.into_any(),
    };
    view! {
        <tr data-queue=q.queue.as_str()>
            <th scope="row">{q.queue.as_str()}</th>
            <td class="num" data-testid=format!("depth-{}", q.queue.as_str())>{count(q.depth)}</td>
            <td class="nowrap">{oldest}</td>
            <td class=expiring_class>{expiring}</td>
            <td>{error}</td>
        </tr>
    }
    .into_any()
}

#[component]
fn RunProgress(run: ReplayRun, now: i64, cancel: ServerAction<CancelRun>) -> AnyView {
    let total = run.rows_at_start.max(run.rows_done).max(1);
    let percent = (run.rows_done as f64 / total as f64 * 100.0).min(100.0);
    let rate = run.rate(now);
    let label = format!(
        "Replay #{}: {} of {} rows ({:.0} %), {} rows/s, started {} by {}",
        run.id,
        count(run.rows_done),
        count(run.rows_at_start),
        percent,
        count(rate as i64),
        format_ago(run.started_at, now),
        run.actor
    );
    let run_id = run.id;
    view! {
        <section class="panel progress-panel" data-testid="replay-progress">
            <div class="progress-head">
                <span>{label.clone()}</span>
                <IfAllowed permission=Permission::Operate>
                    <ActionForm action=cancel attr:class="inline-form">
                        <input type="hidden" name="run_id" value=run_id.to_string() />
                        <button type="submit" class="btn btn-small btn-danger">"Cancel"</button>
                    </ActionForm>
                </IfAllowed>
            </div>
            <progress max="100" value=format!("{percent:.1}") aria-label=label></progress>
            {run.cancel_requested.then(|| view! { <p class="muted small">"Cancelling after the current batch…"</p> })}
        </section>
    }
    .into_any()
}

#[component]
fn RunsTable(runs: Vec<ReplayRun>, now: i64) -> AnyView {
    if runs.is_empty() {
        return view! { <p class="muted">"No replay has had rows to move yet."</p> }.into_any();
    }
    view! {
        <DataTable
            columns=vec![
                Column::figures("#"),
                Column::text("Started"),
                Column::text("Trigger"),
                Column::text("By"),
                Column::text("Outcome"),
                Column::figures("Rows"),
                Column::figures("Already in ClickHouse"),
                Column::figures("Left"),
                Column::figures("Duration"),
                Column::figures("Rows/s"),
            ]
            class="runs"
            test_id="replay-runs"
        >
            {runs.into_iter().map(|run| {
                let duration = run.finished_at.map(|f| format_duration(f - run.started_at)).unwrap_or_else(|| "running".into());
                let rate = count(run.rate(now) as i64);
                let title = run.error.clone().or(run.reason.clone()).unwrap_or_default();
                view! {
                    <tr title=title>
                        <td class="num">{run.id}</td>
                        <td class="nowrap">{format_utc(run.started_at)}</td>
                        <td>{run.trigger.as_str()}</td>
                        <td>{run.actor.clone()}</td>
                        <td><RunStatusBadge status=run.status /> {run.error.clone().map(|e| view! { <span class="detail small">" " {e}</span> })}</td>
                        <td class="num">{count(run.rows_done)}</td>
                        <td class="num">{run.rows_already_present.map(count).unwrap_or_else(|| "—".into())}</td>
                        <td class="num">{run.rows_left.map(count).unwrap_or_else(|| "—".into())}</td>
                        <td class="num nowrap">{duration}</td>
                        <td class="num">{rate}</td>
                    </tr>
                }
            }).collect_view()}
        </DataTable>
    }
    .into_any()
}

/// The polyline points of one series between `from` and `to`, scaled to `max`.
pub fn chart_points(points: &[(i64, i64)], from: i64, to: i64, max: i64) -> String {
    let span = (to - from).max(1) as f64;
    let max = max.max(1) as f64;
    points
        .iter()
        .filter(|(at, _)| *at >= from && *at <= to)
        .map(|(at, value)| {
            let x = (at - from) as f64 / span * CHART_W;
            let y = CHART_H - 2.0 - (*value as f64 / max) * (CHART_H - 4.0);
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Depth over `from..to`: the recorded samples, then the current depth at `to`, so the
/// line always reaches the present.
#[component]
fn DepthChart(
    #[prop(into)] title: String,
    samples: Vec<DepthSample>,
    current: DepthSample,
    from: i64,
    to: i64,
) -> impl IntoView {
    let mut inside: Vec<DepthSample> = samples
        .into_iter()
        .filter(|s| s.at >= from && s.at < to)
        .collect();
    let recorded = inside.len();
    inside.push(current);
    let max = inside
        .iter()
        .map(|s| s.requests.max(s.events))
        .max()
        .unwrap_or(0);
    let requests: Vec<(i64, i64)> = inside.iter().map(|s| (s.at, s.requests)).collect();
    let events: Vec<(i64, i64)> = inside.iter().map(|s| (s.at, s.events)).collect();
    let requests = chart_points(&requests, from, to, max);
    let events = chart_points(&events, from, to, max);
    let summary = format!("{title}: {recorded} samples, peak {} rows", count(max));
    view! {
        <ChartFrame
            caption=view! {
                <strong>{title}</strong>
                <span class="legend"><span class="swatch swatch-requests"></span>"requests"</span>
                <span class="legend"><span class="swatch swatch-events"></span>"events"</span>
                <span class="muted small">{format!("{recorded} samples")}</span>
            }.into_any()
            summary
            y_top=count(max)
            x_from=format_utc(from)
        >
            <line x1="0" y1="2" x2=CHART_W y2="2" class="grid" />
            <polyline points=requests class="series series-requests" />
            <polyline points=events class="series series-events" />
        </ChartFrame>
    }
}

/// `/admin/settings/ingest-keys`: create (secret shown once) and revoke. Admins only.
#[component]
pub fn IngestKeysPage() -> AnyView {
    let create = ServerAction::<CreateIngestKey>::new();
    let revoke = ServerAction::<RevokeIngestKey>::new();
    let keys = Resource::new(
        move || (create.version().get(), revoke.version().get()),
        |_| list_ingest_keys(),
    );
    let created = create.value();
    view! {
        <Title text="Ingest keys" />
        <PageHeader title="Ingest keys" subtitle="Keys that callers of POST /ingest/* send in the header Authorization: Bearer <key>. Each secret is shown once; Salvage keeps only its hash. A key's address count opens what it did in the last 7 days." />
        <Transition fallback=|| view! { <p class="muted" role="status">"Loading keys…"</p> }>
            {move || Suspend::new(async move {
                match keys.await {
                    Ok(keys) => view! { <KeysTable keys revoke /> }.into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
        {action_error(revoke.value())}
        <super::key_usage::KeyUsagePanel />
        <IfAllowed permission=Permission::Administer>
            <section class="panel form-panel wide">
                <h2>"Create a key"</h2>
                <ActionForm action=create attr:class="form-row" attr:aria-label="Create an ingest key">
                    <label class="field field-grow">
                        <span>"Name (who will use it)"</span>
                        <input type="text" name="name" required maxlength="100" placeholder="api-gateway production" />
                    </label>
                    <label class="field">
                        <span>"Organisation (or * for all)"</span>
                        <input type="text" name="organization" required maxlength="256" placeholder="org_acme" />
                    </label>
                    <button type="submit" class="btn btn-primary">"Create key"</button>
                </ActionForm>
                {action_error(created)}
                {move || match created.get() {
                    Some(Ok(key)) => Some(view! {
                        <Banner tone=Tone::Ok test_id="new-key">
                            "Key #" {key.id} " created. Copy it now; it is not shown again: "
                            <code class="secret">{key.secret.reveal().to_owned()}</code>
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
fn KeysTable(keys: Vec<IngestKey>, revoke: ServerAction<RevokeIngestKey>) -> AnyView {
    if keys.is_empty() {
        return view! { <p class="muted">"No ingest key yet: create one below."</p> }.into_any();
    }
    view! {
        <DataTable
            columns=vec![
                Column::figures("#"),
                Column::text("Name"),
                Column::text("Starts with"),
                Column::text("Organisation"),
                Column::text("Created"),
                Column::text("Last used"),
                Column::figures("Requests, 7 d"),
                Column::figures("Rows, 7 d"),
                Column::figures("Addresses"),
                Column::text("Status"),
                Column::text("Revoke"),
            ]
        >
            {keys.into_iter().map(|key| {
                let active = key.revoked_at.is_none();
                view! {
                    <tr>
                        <td class="num">{key.id}</td>
                        <td class="nowrap">{key.name.clone()}</td>
                        <td><code>{key.prefix.clone()} "…"</code></td>
                        <td class="nowrap">{if key.organization_id == "*" {
                            view! { <span class="muted">"all organisations"</span> }.into_any()
                        } else {
                            view! { <code>{key.organization_id.clone()}</code> }.into_any()
                        }}</td>
                        <td class="nowrap">{format_utc(key.created_at)} <span class="muted small">" by " {key.created_by.clone()}</span></td>
                        <td class="nowrap">{key.last_used_at.map(format_utc).unwrap_or_else(|| "never".into())}</td>
                        <td class="num">{count(key.requests_7d)}</td>
                        <td class="num">{count(key.rows_7d)}</td>
                        <td class="num"><a href=format!("?key={}", key.id) title="Usage: hours and addresses">{key.addresses}</a></td>
                        <td>{if active { view! { <Badge tone=Tone::Ok label="active" /> } } else { view! { <Badge tone=Tone::Neutral label="revoked" /> } }}</td>
                        <td>
                            {active.then(|| view! {
                                <IfAllowed permission=Permission::Administer>
                                    <ActionForm action=revoke attr:class="inline-form">
                                        <input type="hidden" name="key_id" value=key.id.to_string() />
                                        <label class="visually-hidden" for=format!("revoke-{}", key.id)>"Reason"</label>
                                        <input type="text" name="reason" id=format!("revoke-{}", key.id) required placeholder="reason" maxlength="500" />
                                        <button type="submit" class="btn btn-small btn-danger">"Revoke"</button>
                                    </ActionForm>
                                </IfAllowed>
                            })}
                        </td>
                    </tr>
                }
            }).collect_view()}
        </DataTable>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::chart_points;

    #[test]
    fn chart_points_span_the_plot_and_drop_samples_outside_it() {
        let points = chart_points(&[(0, 0), (50, 10), (100, 5), (200, 99)], 0, 100, 10);
        assert_eq!(points, "0.0,98.0 300.0,2.0 600.0,50.0");
    }
}
