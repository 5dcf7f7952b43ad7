//! `/admin/crons`: is every job firing?

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;

use super::api::load_crons;
use super::{CronRun, CronsOverview, DurationPoint, Flag, HourSlot, JobStatus, JOB_NAMES};
use crate::auth::viewer::IfAllowed;
use crate::auth::Permission;
use crate::components::ReasonField;
use crate::components::{
    action_error, Badge, ChartFrame, Column, DataTable, ErrorBanner, PageHeader, Tone, CHART_H,
    CHART_W,
};
use crate::format::{format_ago, format_duration, format_maybe_duration, format_utc, group_digits};
use crate::jobs::api::StartJob;
use crate::jobs::RunStatusBadge;

/// How often `/admin/crons` asks for fresh figures.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// `/admin/crons`.
#[component]
pub fn CronsPage() -> AnyView {
    let tick = crate::components::refresh_ticker(REFRESH_EVERY);
    let run = ServerAction::<StartJob>::new();
    let overview = Resource::new(move || (tick.get(), run.version().get()), |_| load_crons());
    view! {
        <Title text="Crons" />
        <PageHeader
            title="Scheduled jobs"
            subtitle="Every run of every job, whoever fired it, against what its schedule expects over the last 24 hours. Schedulers drop runs silently; this page is where it shows. Refreshes every 5 s."
        />
        <Transition fallback=|| view! { <p class="muted" role="status">"Reading the runs…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(overview) => view! { <CronsNow overview /> }.into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
        // Outside the refreshing parts, so a reason being typed survives each refresh.
        <IfAllowed permission=Permission::Operate>
            <RunNowPanel run />
        </IfAllowed>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                overview.await.ok().map(|overview| view! { <CronsPast overview /> })
            })}
        </Transition>
    }
    .into_any()
}

/// The summary banner and the table of jobs.
#[component]
fn CronsNow(overview: CronsOverview) -> AnyView {
    let flagged: Vec<&JobStatus> = overview.jobs.iter().filter(|j| j.flagged()).collect();
    let (class, headline) = if flagged.is_empty() {
        (
            "banner banner-ok",
            "Every job is firing on schedule.".to_owned(),
        )
    } else {
        (
            "banner banner-warn",
            format!(
                "{} of {} jobs need a look: {}.",
                flagged.len(),
                overview.jobs.len(),
                flagged
                    .iter()
                    .map(|j| format!(
                        "{} ({})",
                        j.name,
                        j.flags
                            .iter()
                            .map(Flag::label)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
    };
    let scheduler = if overview.scheduler_enabled {
        "This instance runs the jobs on their schedules; outside schedulers calling /cron/<job> count too."
    } else {
        "The in-process scheduler is off here (SALVAGE_SCHEDULER=off): jobs run only when something calls /cron/<job>."
    };
    let now = overview.now;
    let threshold = overview.min_fire_rate;
    view! {
        <div class=class role="status" data-testid="crons-summary">
            <strong>{headline}</strong>
            " " {scheduler}
        </div>
        <section class="panel">
            <h2>"Jobs, last 24 hours"</h2>
            <div class="table-scroll">
                <DataTable
                    columns=vec![
                        Column::text("Job and schedule"),
                        Column::text("Status"),
                        Column::figures("Runs"),
                        Column::figures("Expected"),
                        Column::figures("Missed"),
                        Column::figures("Fire rate"),
                        Column::text("Ran vs expected, by hour"),
                        Column::text("Last run, last success"),
                        Column::figures("Typical / longest"),
                    ]
                    class="crons"
                    test_id="cron-jobs"
                >
                    {overview.jobs.into_iter().map(|job| view! { <JobRow job now threshold /> }).collect_view()}
                </DataTable>
            </div>
            <p class="muted small">
                "A tick counts as run when any run (scheduler, outside caller, person) started between it and the next tick. Ticks still inside their grace period are not counted yet. Flagged: the latest tick past its grace has no run, the fire rate is under "
                {format!("{threshold:.0}%")}
                ", or the last run failed. Times are UTC."
            </p>
        </section>
    }
    .into_any()
}

#[component]
fn JobRow(job: JobStatus, now: i64, threshold: f64) -> AnyView {
    let rate_class = match job.fire_rate {
        Some(rate) if rate < threshold => "num warn-text",
        _ => "num",
    };
    let rate = job
        .fire_rate
        .map(|r| format!("{r:.0}%"))
        .unwrap_or_else(|| "—".into());
    let window_note = (job.window_start > now - 24 * 3600 * 1000).then(|| {
        format!(
            "Counted since {}, when this installation first knew the job.",
            format_utc(job.window_start)
        )
    });
    let window_title = window_note.clone().unwrap_or_default();
    let last_run = job.last_run.clone();
    let flags = job.flags.clone();
    let name = job.name.clone();
    view! {
        <tr data-job=name.clone()>
            <th scope="row" class="job-cell">
                <code>{name.clone()}</code>
                " "
                <span class="small" title=format!("{} (UTC), grace {}", job.schedule, format_duration(job.grace_secs * 1000))>
                    {job.schedule_text.clone()}
                    {job.next_tick_at.map(|at| format!(" · next {}", format_ago(at, now)))}
                </span>
                <div class="muted small">{job.description.clone()}</div>
            </th>
            <td data-testid="flags">
                {if flags.is_empty() {
                    view! { <Badge tone=Tone::Ok label="on schedule" /> }.into_any()
                } else {
                    flags.iter().map(|flag| {
                        let title = match flag {
                            Flag::Late { due_at } => format!("The tick of {} has no run and its grace is over.", format_utc(*due_at)),
                            Flag::LowFireRate { threshold } => format!("Fewer than {threshold:.0}% of the expected runs happened."),
                            Flag::Failing => "The last finished run failed.".to_owned(),
                        };
                        view! { <span title=title><Badge tone=Tone::Error label=flag.label() /></span> " " }
                    }).collect_view().into_any()
                }}
            </td>
            <td class="num" data-testid="runs">{group_digits(job.runs.max(0) as u64)}</td>
            <td class="num" data-testid="expected" title=window_title>
                {group_digits(job.expected.max(0) as u64)}
                {window_note.map(|_| view! { <span class="muted">"*"</span> })}
            </td>
            <td class="num" data-testid="missed">{group_digits(job.missed.max(0) as u64)}</td>
            <td class=rate_class data-testid="fire-rate">{rate}</td>
            <td><HourStrip hours=job.hours.clone() /></td>
            <td class="last-run">
                {match last_run {
                    Some(run) => view! {
                        <span class="nowrap" title=format_utc(run.ran_at)>{format_ago(run.ran_at, now)}</span>
                        " " <RunStatusBadge status=run.outcome />
                        <div class="muted small">{run.trigger.as_str()}</div>
                    }.into_any(),
                    None => view! { <span class="muted">"never run"</span> }.into_any(),
                }}
                <div class="muted small" data-testid="last-success">
                    {match job.last_success_at {
                        Some(at) => format!("last success {}", format_ago(at, now)),
                        None => "no success yet".to_owned(),
                    }}
                </div>
            </td>
            <td class="num nowrap">{format_maybe_duration(job.typical_ms)} <span class="muted">" / "</span> {format_maybe_duration(job.longest_ms)}</td>
        </tr>
    }
    .into_any()
}

/// What one hour of the strip shows.
pub fn hour_state(slot: &HourSlot) -> &'static str {
    match (slot.expected, slot.covered) {
        (0, _) if slot.runs > 0 => "extra",
        (0, _) => "none",
        (e, c) if c >= e => "ok",
        (_, 0) => "missed",
        _ => "partial",
    }
}

/// 24 cells, one per hour, oldest first: green when every tick due in it ran, amber
/// when some did, red when none did; grey when nothing was due.
#[component]
fn HourStrip(hours: Vec<HourSlot>) -> AnyView {
    view! {
        <div class="hour-strip" role="img" aria-label="Expected and actual runs per hour over 24 hours">
            {hours.into_iter().map(|slot| {
                let state = hour_state(&slot);
                let title = format!(
                    "{}: {} of {} due ticks ran; {} runs",
                    format_utc(slot.at),
                    slot.covered,
                    slot.expected,
                    slot.runs
                );
                view! { <span class=format!("hour hour-{state}") title=title data-state=state></span> }
            }).collect_view()}
        </div>
    }
    .into_any()
}

/// Durations and recent runs.
#[component]
fn CronsPast(overview: CronsOverview) -> AnyView {
    let now = overview.now;
    let from = now - 24 * 3600 * 1000;
    view! {
        <h2 class="section-title">"Durations, last 24 hours"</h2>
        <div class="chart-pair">
            {overview.jobs.iter().map(|job| view! {
                <DurationChart title=job.name.clone() points=job.durations.clone() from to=now />
            }).collect_view()}
        </div>
        <section class="panel">
            <h2>"Recent runs"</h2>
            <RecentRuns runs=overview.recent now />
        </section>
    }
    .into_any()
}

/// One bar per run at its start time, as tall as it took; failed runs in red.
#[component]
fn DurationChart(
    #[prop(into)] title: String,
    points: Vec<DurationPoint>,
    from: i64,
    to: i64,
) -> impl IntoView {
    let max = points.iter().map(|p| p.ms).max().unwrap_or(0).max(1);
    let span = (to - from).max(1) as f64;
    let summary = format!(
        "{title}: {} runs, longest {}",
        points.len(),
        format_duration(max)
    );
    let bars = points
        .iter()
        .filter(|p| p.at >= from && p.at <= to)
        .map(|p| {
            let x = (p.at - from) as f64 / span * CHART_W;
            let h = (p.ms as f64 / max as f64 * (CHART_H - 4.0)).max(1.0);
            let class = if p.failed { "bar bar-failed" } else { "bar" };
            view! { <rect x=format!("{x:.1}") y=format!("{:.1}", CHART_H - 1.0 - h) width="2" height=format!("{h:.1}") class=class /> }
        })
        .collect_view();
    let runs = points.len();
    view! {
        <ChartFrame
            caption=view! {
                <strong><code>{title}</code></strong>
                <span class="muted small">{format!("{runs} runs")}</span>
            }.into_any()
            summary
            y_top=if runs == 0 { "—".to_owned() } else { format_duration(max) }
            x_from="24 h ago"
        >
            {bars}
        </ChartFrame>
    }
}

#[component]
fn RecentRuns(runs: Vec<CronRun>, now: i64) -> AnyView {
    if runs.is_empty() {
        return view! { <p class="muted">"No job has run yet."</p> }.into_any();
    }
    view! {
        <div class="table-scroll">
            <DataTable
                columns=vec![
                    Column::figures("#"),
                    Column::text("Job"),
                    Column::text("Started"),
                    Column::text("Trigger"),
                    Column::text("By"),
                    Column::text("Outcome"),
                    Column::figures("Rows"),
                    Column::figures("Duration"),
                    Column::text("Caller"),
                ]
                test_id="cron-runs"
            >
                {runs.into_iter().map(|run| {
                    let caller = match (&run.caller_agent, &run.caller_addr) {
                        (None, None) => "—".to_owned(),
                        (agent, addr) => [agent.clone(), addr.clone()].into_iter().flatten().collect::<Vec<_>>().join(" · "),
                    };
                    view! {
                        <tr title=run.reason.clone().unwrap_or_default()>
                            <td class="num">{run.id}</td>
                            <td><code>{run.job_name.clone()}</code></td>
                            <td class="nowrap" title=format_utc(run.ran_at)>{format_ago(run.ran_at, now)}</td>
                            <td>{run.trigger.as_str()}</td>
                            <td>{run.actor.clone()}</td>
                            <td>
                                <RunStatusBadge status=run.outcome />
                                {run.error.clone().map(|e| view! { <span class="detail small">" " {e}</span> })}
                            </td>
                            <td class="num">{run.rows_processed.map(|r| group_digits(r.max(0) as u64)).unwrap_or_else(|| "—".into())}</td>
                            <td class="num nowrap">{format_maybe_duration(run.duration_ms)}</td>
                            <td class="small">{caller}</td>
                        </tr>
                    }
                }).collect_view()}
            </DataTable>
        </div>
    }
    .into_any()
}

/// Run now, with a reason: for operators and admins.
#[component]
fn RunNowPanel(run: ServerAction<StartJob>) -> AnyView {
    view! {
        <section class="panel form-panel wide">
            <h2>"Run a job now"</h2>
            <p class="muted small">"Runs in the background, recorded as a manual run with your name and reason. Safe beside the scheduled runs."</p>
            <ActionForm action=run attr:class="form-row" attr:aria-label="Run a job now">
                <label class="field">
                    <span>"Job"</span>
                    <select name="job" data-testid="run-job">
                        {JOB_NAMES.iter().map(|n| view! { <option value=*n>{*n}</option> }).collect_view()}
                    </select>
                </label>
                <ReasonField placeholder="the 10:05 replay did not fire" />
                <button type="submit" class="btn btn-primary" data-testid="run-now">"Run now"</button>
            </ActionForm>
            {action_error(run.value())}
            {move || run.value().get().and_then(|r| r.ok()).map(|id| view! {
                <p class="muted small" role="status">"Started run #" {id} "; it appears under Recent runs."</p>
            })}
        </section>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_cells_say_what_happened() {
        let slot = |expected, covered, runs| HourSlot {
            at: 0,
            expected,
            covered,
            runs,
        };
        assert_eq!(hour_state(&slot(12, 12, 12)), "ok");
        assert_eq!(hour_state(&slot(12, 5, 5)), "partial");
        assert_eq!(hour_state(&slot(12, 0, 0)), "missed");
        assert_eq!(hour_state(&slot(0, 0, 0)), "none");
        assert_eq!(hour_state(&slot(0, 0, 2)), "extra");
    }
}
