//! Dropout detection: how each job has been firing over the last 24 hours.
//!
//! The window is the last 24 h, or less when this installation first knew the job more
//! recently. Each schedule tick in it whose grace period is over is *expected*; it is
//! *covered* when some run (any trigger) started between it and the next tick. So an
//! outside monitor firing on its own rhythm still covers the ticks it falls into, and
//! a run that was merely late covers its tick. A job is flagged when the latest
//! expected tick has no run (late), when the covered share falls under the threshold,
//! or when its last finished run failed.

use std::collections::HashMap;

use time::{Duration, OffsetDateTime};

use super::super::{CronRun, DurationPoint, Flag, HourSlot, JobStatus};
use crate::jobs::schedule::Schedule;
use crate::jobs::ssr::records::recent;
use crate::jobs::ssr::Job;
use crate::jobs::RunStatus;
use crate::server::{unix_ms, AppState};

/// The look-back of every figure.
pub const WINDOW: Duration = Duration::DAY;
/// Below this many expected ticks the fire rate says too little to flag on.
const MIN_EXPECTED_FOR_RATE: i64 = 3;
/// Durations drawn at most, newest kept.
const MAX_POINTS: usize = 2000;

/// One run, as the assessment needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunPoint {
    pub ran_at: OffsetDateTime,
    pub duration_ms: Option<i64>,
    pub outcome: RunStatus,
}

/// The figures of one job, computed from its runs; pure, so tests give it any day.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    pub window_start: OffsetDateTime,
    pub runs: i64,
    pub expected: i64,
    pub covered: i64,
    pub fire_rate: Option<f64>,
    pub typical_ms: Option<i64>,
    pub longest_ms: Option<i64>,
    pub flags: Vec<Flag>,
    pub hours: Vec<HourSlot>,
    pub durations: Vec<DurationPoint>,
}

/// Assesses a job on `schedule` with `grace`, known since `first_seen`, whose runs since
/// `now - WINDOW` are `runs` (oldest first), against the fire-rate threshold (in %).
pub fn assess(
    schedule: &Schedule,
    grace: Duration,
    first_seen: OffsetDateTime,
    runs: &[RunPoint],
    now: OffsetDateTime,
    min_fire_rate: f64,
) -> Assessment {
    let window_start = (now - WINDOW).max(first_seen);
    let due_until = now - grace;
    // Ticks at or after the window start (the `- 1 s`: `ticks` is exclusive of its start).
    let ticks: Vec<OffsetDateTime> = schedule
        .ticks(window_start - Duration::SECOND, due_until)
        .collect();
    let next_after_last = |tick: OffsetDateTime| schedule.next_after(tick).unwrap_or(now);
    let in_window: Vec<&RunPoint> = runs
        .iter()
        .filter(|r| r.ran_at > now - WINDOW && r.ran_at <= now)
        .collect();
    // Runs are sorted; for each tick, is there one in [tick, next tick)?
    let covered_ticks: Vec<bool> = ticks
        .iter()
        .map(|&tick| {
            let end = next_after_last(tick);
            let first = in_window.partition_point(|r| r.ran_at < tick);
            in_window.get(first).is_some_and(|r| r.ran_at < end)
        })
        .collect();
    let expected = ticks.len() as i64;
    let covered = covered_ticks.iter().filter(|c| **c).count() as i64;
    let fire_rate = (expected > 0).then(|| covered as f64 * 100.0 / expected as f64);

    let mut durations: Vec<i64> = in_window.iter().filter_map(|r| r.duration_ms).collect();
    durations.sort_unstable();
    let typical_ms = (!durations.is_empty()).then(|| durations[durations.len() / 2]);
    let longest_ms = durations.last().copied();

    let mut flags = Vec::new();
    if let (Some(&last_tick), Some(&false)) = (ticks.last(), covered_ticks.last()) {
        flags.push(Flag::Late {
            due_at: unix_ms(last_tick),
        });
    }
    if expected >= MIN_EXPECTED_FOR_RATE && fire_rate.is_some_and(|r| r < min_fire_rate) {
        flags.push(Flag::LowFireRate {
            threshold: min_fire_rate,
        });
    }
    if runs
        .iter()
        .rev()
        .find(|r| r.outcome.is_finished())
        .is_some_and(|r| r.outcome.is_failure())
    {
        flags.push(Flag::Failing);
    }

    // 24 hourly slots ending with the current hour.
    let this_hour = now.replace_time(time::Time::from_hms(now.hour(), 0, 0).expect("valid hour"));
    let hours = (0..24)
        .rev()
        .map(|back| {
            let start = this_hour - Duration::hours(back);
            let end = start + Duration::HOUR;
            let mut slot = HourSlot {
                at: unix_ms(start),
                expected: 0,
                covered: 0,
                runs: in_window
                    .iter()
                    .filter(|r| r.ran_at >= start && r.ran_at < end)
                    .count() as i64,
            };
            for (tick, covered) in ticks.iter().zip(&covered_ticks) {
                if *tick >= start && *tick < end {
                    slot.expected += 1;
                    slot.covered += i64::from(*covered);
                }
            }
            slot
        })
        .collect();
    let skip = in_window.len().saturating_sub(MAX_POINTS);
    let durations = in_window
        .iter()
        .skip(skip)
        .filter_map(|r| {
            r.duration_ms.map(|ms| DurationPoint {
                at: unix_ms(r.ran_at),
                ms,
                failed: r.outcome.is_failure(),
            })
        })
        .collect();
    Assessment {
        window_start,
        runs: in_window.len() as i64,
        expected,
        covered,
        fire_rate,
        typical_ms,
        longest_ms,
        flags,
        hours,
        durations,
    }
}

/// The names of the jobs flagged at `now` (missed, late, failing), in the console's order.
pub async fn flagged(state: &AppState, now: OffsetDateTime) -> Result<Vec<String>, sqlx::Error> {
    Ok(job_statuses(state, now)
        .await?
        .into_iter()
        .filter(|j| j.flagged())
        .map(|j| j.name)
        .collect())
}

/// Every registered job's status at `now`.
pub async fn job_statuses(
    state: &AppState,
    now: OffsetDateTime,
) -> Result<Vec<JobStatus>, sqlx::Error> {
    let pg = &state.pg;
    let first_seen: HashMap<String, OffsetDateTime> =
        sqlx::query!("select job_name, first_seen_at from cron_jobs")
            .fetch_all(pg)
            .await?
            .into_iter()
            .map(|r| (r.job_name, r.first_seen_at))
            .collect();
    let mut runs: HashMap<String, Vec<RunPoint>> = HashMap::new();
    for r in sqlx::query!(
        "select job_name, ran_at, duration_ms, outcome from cron_job_runs
          where ran_at > $1 and ran_at <= $2 order by ran_at, id",
        now - WINDOW,
        now
    )
    .fetch_all(pg)
    .await?
    {
        runs.entry(r.job_name).or_default().push(RunPoint {
            ran_at: r.ran_at,
            duration_ms: r.duration_ms,
            // The table's check constraint admits only the names of RunStatus.
            outcome: RunStatus::parse(&r.outcome).unwrap_or(RunStatus::Failed),
        });
    }
    let names: Vec<String> = state.jobs().iter().map(|j| j.name.to_owned()).collect();
    let last_success: HashMap<String, OffsetDateTime> = sqlx::query!(
        r#"select name as "name!", last.ran_at as "ran_at!"
             from unnest($1::text[]) as name
             cross join lateral (
                select ran_at from cron_job_runs
                 where job_name = name and outcome = 'succeeded'
                 order by ran_at desc limit 1) last"#,
        &names
    )
    .fetch_all(pg)
    .await?
    .into_iter()
    .map(|r| (r.name, r.ran_at))
    .collect();

    let mut statuses = Vec::with_capacity(state.jobs().len());
    for job in state.jobs() {
        let last_run: Option<CronRun> =
            recent(pg, Some(job.name), 1, now).await?.into_iter().next();
        statuses.push(status_of(
            state,
            job,
            first_seen.get(job.name).copied().unwrap_or(now),
            runs.get(job.name).map(Vec::as_slice).unwrap_or_default(),
            last_run,
            last_success.get(job.name).copied(),
            now,
        ));
    }
    Ok(statuses)
}

fn status_of(
    state: &AppState,
    job: &Job,
    first_seen: OffsetDateTime,
    runs: &[RunPoint],
    last_run: Option<CronRun>,
    last_success: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> JobStatus {
    let schedule = state.crons().schedule_of(job);
    let grace = Duration::try_from(job.grace).unwrap_or(Duration::MINUTE);
    let a = assess(
        &schedule,
        grace,
        first_seen,
        runs,
        now,
        state.crons().min_fire_rate,
    );
    JobStatus {
        name: job.name.to_owned(),
        description: job.description.to_owned(),
        schedule: schedule.to_string(),
        schedule_text: schedule.describe(),
        grace_secs: grace.whole_seconds(),
        runs: a.runs,
        expected: a.expected,
        covered: a.covered,
        missed: a.expected - a.covered,
        fire_rate: a.fire_rate,
        window_start: unix_ms(a.window_start),
        last_run,
        last_success_at: last_success.map(unix_ms),
        typical_ms: a.typical_ms,
        longest_ms: a.longest_ms,
        next_tick_at: schedule.next_after(now).map(unix_ms),
        flags: a.flags,
        hours: a.hours,
        durations: a.durations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-23 12:02:30 UTC);

    fn every_5() -> Schedule {
        Schedule::parse("*/5 * * * *").unwrap()
    }

    fn run(at: OffsetDateTime, ms: i64, outcome: RunStatus) -> RunPoint {
        RunPoint {
            ran_at: at,
            duration_ms: Some(ms),
            outcome,
        }
    }

    /// `runs` assessed at NOW on every-5-minutes with `grace`, the job known for a month,
    /// flagged under 80%.
    fn assess_5min(runs: &[RunPoint], grace_minutes: i64) -> Assessment {
        let grace = Duration::minutes(grace_minutes);
        assess(&every_5(), grace, NOW - Duration::days(30), runs, NOW, 80.0)
    }

    /// A run 3 s after each tick of the last day for which `keep(i)` holds.
    fn day_of_runs(keep: impl Fn(usize) -> bool) -> Vec<RunPoint> {
        every_5()
            .ticks(NOW - WINDOW, NOW)
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(i, t)| {
                run(
                    t + Duration::seconds(3),
                    100 + i as i64,
                    RunStatus::Succeeded,
                )
            })
            .collect()
    }

    #[test]
    fn a_job_that_fired_every_tick_is_not_flagged() {
        let runs = day_of_runs(|_| true);
        let a = assess_5min(&runs, 5);
        // Ticks from 12:05 yesterday to 11:55 today are past their 5-minute grace: 287.
        assert_eq!(a.expected, 287);
        assert_eq!(a.covered, 287);
        assert_eq!(a.fire_rate, Some(100.0));
        assert_eq!(a.runs, 288);
        assert!(a.flags.is_empty(), "{:?}", a.flags);
        assert_eq!(a.hours.len(), 24);
        assert_eq!(a.hours[23].expected, 0, "12:00 is still within its grace");
        assert_eq!(a.hours[22].expected, 12);
        assert_eq!(a.hours[22].covered, 12);
        assert_eq!(a.longest_ms, Some(100 + 287));
    }

    #[test]
    fn forty_percent_is_flagged_with_the_counts() {
        // Two runs of every five ticks: 114 of the 287 due.
        let runs = day_of_runs(|i| i % 5 >= 3);
        let a = assess_5min(&runs, 5);
        assert_eq!(a.expected, 287);
        assert_eq!(a.covered, 114);
        assert_eq!(a.runs, 114);
        let rate = a.fire_rate.unwrap();
        assert!((rate - 39.72).abs() < 0.01, "{rate}");
        assert!(a.flags.contains(&Flag::LowFireRate { threshold: 80.0 }));
        // The last due tick (11:55) is one of the missed ones.
        assert!(a.flags.iter().any(|f| matches!(f, Flag::Late { .. })));
    }

    #[test]
    fn a_missed_last_tick_is_late_only_after_its_grace() {
        // Every tick ran except those after 11:50.
        let runs: Vec<RunPoint> = day_of_runs(|_| true)
            .into_iter()
            .filter(|r| r.ran_at < datetime!(2026-11-23 11:50 UTC))
            .collect();
        let a = assess_5min(&runs, 5);
        // 11:50 and 11:55 are due and missed; 12:00 is pending.
        assert_eq!(a.expected - a.covered, 2);
        assert_eq!(
            a.flags,
            vec![Flag::Late {
                due_at: unix_ms(datetime!(2026-11-23 11:55 UTC))
            }]
        );
        let lenient = assess_5min(&runs, 15);
        assert!(lenient.flags.is_empty(), "{:?}", lenient.flags);
    }

    #[test]
    fn a_run_between_ticks_covers_the_tick_before_it_and_a_new_job_is_not_missing_a_day() {
        let first_seen = NOW - Duration::minutes(32);
        // An outside monitor firing 3.5 min after each tick covers the tick before it.
        let runs: Vec<RunPoint> = (0..7)
            .map(|i| {
                run(
                    first_seen + Duration::minutes(5 * i + 3),
                    10,
                    RunStatus::Succeeded,
                )
            })
            .collect();
        let a = assess(
            &every_5(),
            Duration::minutes(5),
            first_seen,
            &runs,
            NOW,
            80.0,
        );
        assert_eq!(a.window_start, first_seen);
        assert_eq!(a.expected, 5, "11:35 to 11:55");
        assert_eq!(a.covered, 5);
        assert!(a.flags.is_empty(), "{:?}", a.flags);
    }

    #[test]
    fn a_failed_last_run_is_flagged_and_a_running_one_does_not_hide_it() {
        let mut runs = day_of_runs(|_| true);
        let n = runs.len();
        runs[n - 2].outcome = RunStatus::Failed;
        runs[n - 1].outcome = RunStatus::Running;
        runs[n - 1].duration_ms = None;
        let a = assess_5min(&runs, 5);
        assert_eq!(a.flags, vec![Flag::Failing]);
    }
}
