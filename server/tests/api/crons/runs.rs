//! Runs of the cron plane: each trigger recorded with its caller, retention, dropout
//! detection on a day of runs, and two schedulers on one database running each tick once.

use super::*;

#[tokio::test]
async fn every_trigger_is_recorded_with_its_kind_and_caller() {
    let app = spawn_app().await;
    let job = &app::queues::ssr::expiry::EXPIRE_FALLBACK;

    // External: the caller's address and User-Agent, and the secret it presented.
    let (status, body) = call_cron(
        &app,
        "expire-fallback",
        Some(&format!("Bearer {CRON_SECRET}")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "succeeded");
    assert_eq!(body["rowsProcessed"], 0);

    // Manual: the person and the reason.
    let operator = app.signed_in(Role::Operator).await;
    let (status, run_id) = operator
        .call(
            "jobs/start",
            json!({"job": "expire-fallback", "reason": "checking after the outage"}),
        )
        .await;
    assert_eq!(status, 200, "{run_id}");
    let (status, bad) = operator
        .call("jobs/start", json!({"job": "nope", "reason": "x"}))
        .await;
    assert_eq!((status, bad["field"].as_str()), (422, Some("job")));

    // The manual run goes on in this test's runtime; let it finish before the CLI's run
    // (which waits for the history chain lock the manual run may hold).
    let finished = all_runs_finished(&app).await;
    assert!(finished, "the manual run finished");

    // CLI: the terminal user and this host. Off the runtime, so the app keeps serving.
    let cli_app = (
        app.database_url.clone(),
        app.clickhouse.database().to_owned(),
    );
    let output = tokio::task::spawn_blocking(move || {
        crate::cli::salvage_with(
            &cli_app.0,
            &cli_app.1,
            &["cron", "run", "expire-fallback", "--reason", "by hand"],
            "",
        )
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Scheduler: a tick.
    let tick = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let firing = |tick| app::jobs::ssr::Firing {
        trigger: app::jobs::Trigger::Scheduler,
        actor: app::auth::ssr::Actor::system(job.name),
        reason: None,
        caller: app::jobs::ssr::Caller::this_process("salvage scheduler"),
        tick: Some(tick),
    };
    let ran = app::jobs::ssr::run(&app.state, job, firing(tick), Default::default())
        .await
        .unwrap();
    assert!(ran.is_some());
    let again = app::jobs::ssr::run(&app.state, job, firing(tick), Default::default())
        .await
        .unwrap();
    assert!(again.is_none(), "a claimed tick does not run twice");

    assert!(all_runs_finished(&app).await);
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
        String,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "select trigger, actor, reason, caller_addr, caller_agent, secret_id, outcome
           from cron_job_runs order by id",
    )
    .fetch_all(&app.pg)
    .await
    .unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    let (trigger, actor, _, addr, agent, secret, outcome) = &rows[0];
    assert_eq!(
        (trigger.as_str(), actor.as_str()),
        ("external", "system:expire-fallback")
    );
    assert_eq!(
        (addr.as_deref(), agent.as_deref()),
        (Some("127.0.0.1"), Some("uptime-monitor/2.1"))
    );
    assert_eq!((*secret, outcome.as_str()), (Some(1), "succeeded"));
    let (trigger, actor, reason, addr, _, secret, _) = &rows[1];
    assert_eq!(trigger, "manual");
    assert!(actor.starts_with("operator-"), "{actor}");
    assert_eq!(reason.as_deref(), Some("checking after the outage"));
    assert_eq!((addr.as_deref(), *secret), (Some("127.0.0.1"), None));
    let (trigger, actor, reason, _, agent, _, _) = &rows[2];
    assert_eq!((trigger.as_str(), actor.as_str()), ("cli", "cli:oncall"));
    assert_eq!(reason.as_deref(), Some("by hand"));
    assert!(
        agent.as_deref().unwrap().starts_with("salvage cli on "),
        "{agent:?}"
    );
    let (trigger, _, _, _, agent, _, _) = &rows[3];
    assert_eq!(trigger, "scheduler");
    assert!(agent
        .as_deref()
        .unwrap()
        .starts_with("salvage scheduler on "));

    // The person's runs, which expired nothing, still leave who and why in the history.
    let (kind, reasons): (String, Vec<String>) = sqlx::query_as(
        "select min(kind), array_agg(reason order by reason) from runbook_history where kind = 'cron'",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(kind, "cron");
    assert_eq!(reasons, vec!["by hand", "checking after the outage"]);

    // The page's figures include them.
    let (_, overview) = operator.call("crons/overview", json!({})).await;
    let expire = overview["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "expire-fallback")
        .unwrap();
    assert_eq!(expire["runs"], 4);
    assert_eq!(expire["last_run"]["trigger"], "scheduler");
    assert_eq!(overview["recent"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn retention_prunes_only_finished_runs_older_than_it() {
    let app = spawn_app().await;
    let now = OffsetDateTime::now_utc();
    for (days_ago, outcome) in [
        (120, "succeeded"),
        (91, "failed"),
        (91, "running"),
        (89, "succeeded"),
        (0, "succeeded"),
    ] {
        sqlx::query(
            "insert into cron_job_runs (job_name, ran_at, trigger, actor, outcome) values ('replay-fallback', $1, 'scheduler', 'system:replay-fallback', $2)",
        )
        .bind(now - time::Duration::days(days_ago))
        .bind(outcome)
        .execute(&app.pg)
        .await
        .unwrap();
    }
    let (status, body) = call_cron(
        &app,
        "prune-cron-runs",
        Some(&format!("Bearer {CRON_SECRET}")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rowsProcessed"], 2, "{body}");
    assert_eq!(body["retentionDays"], 90);
    let left: Vec<(i64, String)> = sqlx::query_as(
        "select (extract(epoch from $1::timestamptz - ran_at) / 86400)::bigint, outcome
           from cron_job_runs where job_name = 'replay-fallback' order by ran_at",
    )
    .bind(now)
    .fetch_all(&app.pg)
    .await
    .unwrap();
    assert_eq!(
        left,
        vec![
            (91, "running".into()),
            (89, "succeeded".into()),
            (0, "succeeded".into())
        ],
        "a run still marked running is kept (its abandonment is recorded instead)"
    );
    assert_eq!(
        runs_of(&app, "prune-cron-runs").await,
        1,
        "the prune run itself is recorded"
    );
}

/// Inserts a finished scheduler run of `job` at each of `at`.
async fn insert_runs(app: &TestApp, job: &str, at: &[OffsetDateTime]) {
    sqlx::query(
        "insert into cron_job_runs (job_name, ran_at, finished_at, duration_ms, trigger, actor, outcome, rows_processed)
         select $1, t, t + interval '1 second', 1000 + (extract(epoch from t)::bigint % 500), 'scheduler', 'system:' || $1, 'succeeded', 0
           from unnest($2::timestamptz[]) as t",
    )
    .bind(job)
    .bind(at)
    .execute(&app.pg)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_job_firing_forty_percent_of_a_day_is_flagged_with_its_counts_and_a_full_day_is_not() {
    let app = spawn_app().await;
    // Monday 12:02:30 UTC, the jobs known for two days.
    let now = time::macros::datetime!(2026-11-23 12:02:30 UTC);
    app.state.clock.set(now);
    sqlx::query("update cron_jobs set first_seen_at = $1")
        .bind(now - time::Duration::days(2))
        .execute(&app.pg)
        .await
        .unwrap();
    let day = |expr: &str| -> Vec<OffsetDateTime> {
        Schedule::parse(expr)
            .unwrap()
            .ticks(now - time::Duration::DAY, now)
            .map(|t| t + time::Duration::seconds(4))
            .collect()
    };
    // Replay: 2 of every 5 ticks. Expiry, the self-monitor, pruning and backups: every tick.
    let replay: Vec<OffsetDateTime> = day("*/5 * * * *")
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 5 >= 3)
        .map(|(_, t)| t)
        .collect();
    insert_runs(&app, "replay-fallback", &replay).await;
    insert_runs(&app, "expire-fallback", &day("17 * * * *")).await;
    insert_runs(&app, "prune-cron-runs", &day("41 3 * * *")).await;
    insert_runs(&app, "self-monitor", &day("* * * * *")).await;
    insert_runs(&app, "backup", &day("0 * * * *")).await;
    insert_runs(&app, "backup-sync", &day("47 5 * * *")).await;
    insert_runs(&app, "pitr-backup", &day("17 * * * *")).await;
    insert_runs(&app, "pitr-side-janitor", &day("41 * * * *")).await;
    insert_runs(&app, "drill-janitor", &day("*/10 * * * *")).await;
    insert_runs(&app, "deliver-webhooks", &day("* * * * *")).await;
    insert_runs(&app, "expire-dead-letters", &day("17 4 * * *")).await;
    insert_runs(&app, "run-background-migrations", &day("* * * * *")).await;
    // restore-drill's next tick is months away: nothing expected of it today.

    let manager = app.signed_in(Role::Manager).await;
    let (status, overview) = manager.call("crons/overview", json!({})).await;
    assert_eq!(status, 200, "{overview}");
    let job = |name: &str| {
        overview["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == name)
            .unwrap()
            .clone()
    };
    let replay_status = job("replay-fallback");
    // 287 ticks are past their 5-minute grace (12:05 yesterday to 11:55 today); runs
    // came for 114 of them.
    assert_eq!(replay_status["expected"], 287, "{replay_status}");
    assert_eq!(replay_status["covered"], 114);
    assert_eq!(replay_status["missed"], 173);
    assert_eq!(replay_status["runs"], 114);
    let rate = replay_status["fire_rate"].as_f64().unwrap();
    assert!((rate - 39.7).abs() < 0.1, "{rate}");
    let flags: Vec<&str> = replay_status["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(flags.contains(&"low_fire_rate"), "{flags:?}");

    for name in [
        "expire-fallback",
        "self-monitor",
        "prune-cron-runs",
        "backup",
        "backup-sync",
        "pitr-backup",
        "pitr-side-janitor",
        "drill-janitor",
        "deliver-webhooks",
        "expire-dead-letters",
        "run-background-migrations",
    ] {
        let status = job(name);
        assert_eq!(status["flags"], json!([]), "{name}: {status}");
        assert_eq!(status["expected"], status["covered"], "{name}");
        assert_eq!(status["fire_rate"], 100.0, "{name}");
    }
    assert_eq!(job("expire-fallback")["expected"], 24);
    assert_eq!(job("prune-cron-runs")["expected"], 1);
    assert_eq!(job("restore-drill")["expected"], 0);
    assert_eq!(job("restore-drill")["flags"], json!([]));

    // /health/deep says the same.
    let (_, deep) = app.get_json("/health/deep").await;
    let crons = &deep["crons"];
    assert_eq!(crons["flagged"], 1, "{crons}");
    assert_eq!(crons["jobs"]["replay-fallback"]["fireRate"], 39.7);
    assert_eq!(crons["jobs"]["replay-fallback"]["missed24h"], 173);
    assert_eq!(crons["jobs"]["expire-fallback"]["fireRate"], 100.0);
    assert!(
        crons["jobs"]["expire-fallback"]["maxDurationMs24h"]
            .as_i64()
            .unwrap()
            >= 1000
    );
    assert_eq!(
        crons["jobs"]["expire-fallback"]["lastRun"],
        "2026-11-23T11:17:04Z"
    );
    // And so does the page, for a person.
    let (status, html) = manager.get_html("/admin/crons").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("1 of 13 jobs need a look: replay-fallback (late, dropping runs)"),
        "{html}"
    );
}

#[tokio::test]
async fn two_schedulers_on_one_database_run_each_tick_once() {
    let first = spawn_app().await;
    let second = spawn_app_with(Options {
        database_url: Some(first.database_url.clone()),
        ..Options::default()
    })
    .await;
    let every_two_seconds = Schedule::parse("*/2 * * * * *").unwrap();
    let stops: Vec<_> = [&first, &second]
        .into_iter()
        .map(|app| {
            let mut state = app.state.clone();
            state
                .part_mut::<app::crons::ssr::CronSettings>()
                .overrides
                .insert("replay-fallback".into(), every_two_seconds.clone());
            // Its own shutdown token, to stop this scheduler alone.
            state.shutdown = tokio_util::sync::CancellationToken::new();
            let stop = state.shutdown.clone();
            salvage::scheduler::spawn(state);
            stop
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(9)).await;
    for stop in &stops {
        stop.cancel();
    }
    // Let the last tick's run finish.
    assert!(
        all_runs_finished(&first).await,
        "the last tick's run finished"
    );

    let ticks: Vec<(OffsetDateTime, i64, String)> = sqlx::query_as(
        "select tick_at, count(*), min(outcome) from cron_job_runs
          where job_name = 'replay-fallback' and trigger = 'scheduler'
          group by tick_at order by tick_at",
    )
    .fetch_all(&first.pg)
    .await
    .unwrap();
    assert!(ticks.len() >= 3, "{ticks:?}");
    for (i, (tick, runs, outcome)) in ticks.iter().enumerate() {
        assert_eq!(*runs, 1, "tick {tick} ran {runs} times");
        // Stopping a scheduler stops its run in flight, as shutting the process down
        // does: only the last tick's run may have been caught there.
        let last = i + 1 == ticks.len();
        assert!(
            outcome == "succeeded" || (last && outcome == "cancelled"),
            "tick {tick}: {outcome}"
        );
    }
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1].0 - pair[0].0,
            time::Duration::seconds(2),
            "no tick skipped"
        );
    }
    // Each tick ran the job itself once: one replay report per tick.
    let replays: i64 = sqlx::query_scalar(
        "select count(*) from cron_job_runs
              where job_name = 'replay-fallback' and trigger = 'scheduler'
                and details ? 'rowsDone'",
    )
    .fetch_one(&first.pg)
    .await
    .unwrap();
    assert_eq!(replays, ticks.len() as i64);
    // They found nothing to do, so /admin/queues does not list them; only the last
    // tick's run, when the stop caught it in flight, shows (as cancelled).
    let listed =
        app::queues::ssr::replay::recent_runs(&first.pg, 20, time::OffsetDateTime::now_utc())
            .await
            .unwrap();
    let caught = usize::from(ticks.last().is_some_and(|(_, _, o)| o == "cancelled"));
    assert_eq!(listed.len(), caught, "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|run| run.status == app::jobs::RunStatus::Cancelled),
        "{listed:?}"
    );
}

#[tokio::test]
async fn the_tick_that_passed_just_before_the_scheduler_started_runs_at_its_start() {
    let app = spawn_app().await;
    let mut state = app.state.clone();
    // Every minute at :00: whenever the scheduler starts, a tick passed under a minute
    // before (restarting, or `make run` starting just after a minute turned).
    state
        .part_mut::<app::crons::ssr::CronSettings>()
        .overrides
        .insert(
            "replay-fallback".into(),
            Schedule::parse("0 * * * * *").unwrap(),
        );
    state.shutdown = tokio_util::sync::CancellationToken::new();
    let stop = state.shutdown.clone();
    let started = OffsetDateTime::now_utc();
    salvage::scheduler::spawn(state);

    // The minute's tick before the start (or, should the scheduler read its clock just
    // after the next minute turned, that one: it too passed before the start).
    let before = started
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    let mut missed = before;
    let caught = crate::helpers::eventually(Duration::from_secs(10), || async {
        let ticks: Vec<OffsetDateTime> = sqlx::query_scalar(
            "select tick_at from cron_job_runs
              where job_name = 'replay-fallback' and trigger = 'scheduler'",
        )
        .fetch_all(&app.pg)
        .await
        .unwrap();
        ticks.contains(&before) || ticks.contains(&(before + time::Duration::MINUTE))
    })
    .await;
    let ran: Vec<OffsetDateTime> =
        sqlx::query_scalar("select tick_at from cron_job_runs where job_name = 'replay-fallback'")
            .fetch_all(&app.pg)
            .await
            .unwrap();
    if !ran.contains(&before) {
        missed = before + time::Duration::MINUTE;
    }
    stop.cancel();
    assert!(all_runs_finished(&app).await, "the runs finished");
    assert!(caught, "the {missed} tick ran at the start");
    // Once: a tick is claimed, never run twice.
    let runs: i64 = sqlx::query_scalar(
        "select count(*) from cron_job_runs where job_name = 'replay-fallback' and tick_at = $1",
    )
    .bind(missed)
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(runs, 1);
}
