//! Restore drills against the real stores and real backup files: a drill that passes, one
//! against a damaged backup, one killed mid-way and the janitor after it, two at once,
//! and live data untouched throughout.

use std::time::Duration;

mod cadence;
mod pitr;

use app::drills::{Drill, DrillStatus, StoreKind};
use serde_json::Value;

use crate::alerts::{alerts_of, evaluate};
use crate::backups::{app_with_data, back_up, ch_rows, damage_events_file, pg_rows};
use crate::helpers::{eventually, run_job, TestApp};

/// The application tables the demo data fills, in PostgreSQL.
const PG_TABLES: [&str; 3] = ["organizations", "projects", "api_keys"];

/// Every row of every application table in both stores: what "live data untouched"
/// compares.
async fn live_data(app: &TestApp) -> (Vec<Vec<Value>>, Vec<Vec<String>>) {
    let mut pg = Vec::new();
    for table in PG_TABLES {
        pg.push(pg_rows(&app.pg, table).await);
    }
    let db = app.clickhouse.database().to_owned();
    let mut ch = Vec::new();
    for table in ["requests", "events"] {
        ch.push(ch_rows(app, &db, table).await);
    }
    (pg, ch)
}

async fn drill_of(app: &TestApp, id: i64) -> Drill {
    app::drills::ssr::records::load(&app.pg, id)
        .await
        .unwrap()
        .expect("the drill is recorded")
}

/// Databases named like a drill's in either store.
async fn drill_databases_present(app: &TestApp) -> Vec<String> {
    let pattern = "%_drill_%";
    let mut names: Vec<String> =
        sqlx::query_scalar("select datname::text from pg_database where datname like $1")
            .bind(pattern)
            .fetch_all(&app.pg)
            .await
            .unwrap();
    // Only this test's drills: the recorded names (other tests run beside this one).
    let recorded: Vec<String> = sqlx::query_scalar("select name from drill_databases")
        .fetch_all(&app.pg)
        .await
        .unwrap();
    names.retain(|n| recorded.contains(n));
    let in_clickhouse: Vec<String> = app
        .clickhouse
        .client()
        .query("SELECT name FROM system.databases")
        .fetch_all()
        .await
        .unwrap();
    names.extend(
        in_clickhouse
            .into_iter()
            .filter(|n| recorded.contains(n))
            .map(|n| format!("clickhouse:{n}")),
    );
    names
}

fn cli_firing() -> app::jobs::ssr::Firing {
    app::jobs::ssr::Firing::by_hand(
        app::jobs::Trigger::Cli,
        app::auth::ssr::Actor::cli(),
        Some(crate::helpers::reason("test drill")),
        Default::default(),
    )
}

#[tokio::test]
async fn a_drill_restores_both_stores_verifies_them_records_every_step_and_tears_down() {
    let app = app_with_data().await;
    let (pg_backup, ch_backup) = back_up(&app).await;

    let answer = run_job(&app, "restore-drill").await;
    assert_eq!(answer["outcome"], "succeeded", "{answer}");
    let drill = drill_of(&app, answer["drillId"].as_i64().unwrap()).await;
    assert_eq!(drill.status, DrillStatus::Passed, "{drill:?}");

    // The latest verified backups, their age at drill time, each table counted.
    let stores: Vec<(StoreKind, Option<i64>)> = drill
        .stores
        .iter()
        .map(|s| (s.store, s.backup_id))
        .collect();
    assert_eq!(
        stores,
        vec![
            (StoreKind::Postgres, Some(pg_backup)),
            (StoreKind::Clickhouse, Some(ch_backup))
        ]
    );
    for store in &drill.stores {
        assert!(store.ok, "{store:?}");
        assert!(store.backup_age_ms.unwrap() >= 0);
        assert!(store.tables.iter().all(|t| t.ok()), "{store:?}");
        assert!(store.recovery_ms > 0);
        assert_eq!(store.rto_target_ms, 3_600_000, "the default objective");
    }
    let ch = &drill.stores[1];
    let requests = ch.tables.iter().find(|t| t.name == "requests").unwrap();
    assert_eq!(requests.rows, crate::backups::REQUESTS as i64);
    let pg = &drill.stores[0];
    let organizations = pg
        .tables
        .iter()
        .find(|t| t.name == "organizations")
        .unwrap();
    assert_eq!(organizations.rows, 12, "the demo's organisations");
    // The console's own queries ran on what was restored.
    let queries: Vec<&str> = pg.queries.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(queries, vec!["queues page", "history chain"]);
    assert!(pg.queries.iter().all(|q| q.ok), "{:?}", pg.queries);
    assert!(
        ch.queries
            .iter()
            .any(|q| q.detail.contains("100 of 100 sampled ids found")),
        "{:?}",
        ch.queries
    );

    // Every step, timed, in order; the teardown of both databases last.
    let steps: Vec<String> = drill
        .steps
        .iter()
        .map(|s| format!("{}:{}", s.store.map_or("drill", StoreKind::as_str), s.name))
        .collect();
    assert_eq!(
        steps,
        vec![
            "postgres:fetch",
            "postgres:restore",
            "postgres:verify",
            "postgres:queries",
            "clickhouse:restore",
            "clickhouse:verify",
            "clickhouse:queries",
            "postgres:teardown",
            "clickhouse:teardown",
        ]
    );
    assert!(drill.steps.iter().all(|s| s.ok), "{:?}", drill.steps);
    assert_eq!(drill.recovery_ms(), pg.recovery_ms + ch.recovery_ms);
    assert!(drill_databases_present(&app).await.is_empty());
    let undropped: i64 =
        sqlx::query_scalar("select count(*) from drill_databases where dropped_at is null")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(undropped, 0);

    // The history entry, in the chain, with the figures.
    let (kind, outcome, details): (String, String, Value) =
        sqlx::query_as("select kind, outcome, details from runbook_history where id = $1")
            .bind(drill.history_id.unwrap())
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!((kind.as_str(), outcome.as_str()), ("drill", "succeeded"));
    assert_eq!(details["recoveryMs"], drill.recovery_ms());
    assert_eq!(details["stores"][1]["backupId"], ch_backup);
}

#[tokio::test]
async fn a_drill_never_changes_live_data() {
    let app = app_with_data().await;
    back_up(&app).await;
    let before = live_data(&app).await;
    let answer = run_job(&app, "restore-drill").await;
    assert_eq!(answer["outcome"], "succeeded", "{answer}");
    assert_eq!(live_data(&app).await, before);
}

#[tokio::test]
async fn a_drill_against_a_damaged_backup_fails_naming_the_file_and_still_tears_down() {
    let app = app_with_data().await;
    let (_, ch_backup) = back_up(&app).await;
    let path = damage_events_file(&app, ch_backup).await;

    // A failed run answers 503, with its report.
    let response = app
        .http
        .post(format!("{}/cron/restore-drill", app.address))
        .bearer_auth(crate::helpers::CRON_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["outcome"], "failed", "{answer}");
    let drill = drill_of(&app, answer["drillId"].as_i64().unwrap()).await;
    assert_eq!(drill.status, DrillStatus::Failed);
    let error = drill.error.clone().unwrap();
    assert!(error.contains(&path), "names the file {path}: {error}");
    assert!(
        error.starts_with("ClickHouse") || error.contains("ClickHouse:"),
        "{error}"
    );
    let failed: Vec<&str> = drill
        .steps
        .iter()
        .filter(|s| !s.ok)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(failed, vec!["restore"], "{:?}", drill.steps);
    assert!(drill.stores[0].ok, "PostgreSQL's backup was fine");
    assert!(drill_databases_present(&app).await.is_empty(), "torn down");
    let outcome: String = sqlx::query_scalar("select outcome from runbook_history where id = $1")
        .bind(drill.history_id.unwrap())
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(outcome, "failed");
}

#[tokio::test]
async fn a_drill_killed_mid_way_leaves_nothing_the_janitor_does_not_remove() {
    let app = app_with_data().await;
    back_up(&app).await;
    let mut dying = app.state.clone();
    dying.faults.drill_hang_after = Some("clickhouse:restore".into());
    let run = app::jobs::ssr::run(
        &dying,
        &app::drills::ssr::RESTORE_DRILL,
        cli_firing(),
        Default::default(),
    );
    // The process dies with both throwaway databases restored.
    assert!(tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .is_err());
    let present = drill_databases_present(&app).await;
    assert_eq!(present.len(), 2, "{present:?}");
    let drill_id: i64 = sqlx::query_scalar("select id from drills")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(drill_of(&app, drill_id).await.status, DrillStatus::Running);

    // Within the hour, the janitor closes the dead drill but leaves its databases.
    app.state.clock.advance(time::Duration::minutes(5));
    let answer = run_job(&app, "drill-janitor").await;
    assert_eq!(
        answer["abandoned"],
        serde_json::json!([drill_id]),
        "{answer}"
    );
    assert_eq!(answer["dropped"], serde_json::json!([]), "{answer}");
    let closed = drill_of(&app, drill_id).await;
    assert_eq!(closed.status, DrillStatus::Failed);
    assert!(closed.error.unwrap().contains("abandoned"));
    assert_eq!(drill_databases_present(&app).await.len(), 2);

    // Past the hour they go, and only they.
    app.state.clock.advance(time::Duration::minutes(56));
    let answer = run_job(&app, "drill-janitor").await;
    assert_eq!(answer["dropped"].as_array().unwrap().len(), 2, "{answer}");
    assert!(drill_databases_present(&app).await.is_empty());
    let answer = run_job(&app, "drill-janitor").await;
    assert_eq!(
        answer["dropped"],
        serde_json::json!([]),
        "nothing twice: {answer}"
    );
    let running_restores: i64 =
        sqlx::query_scalar("select count(*) from restores where status = 'running'")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(
        running_restores, 0,
        "the dead drill's restores are closed too"
    );
}

#[tokio::test]
async fn the_janitor_leaves_a_running_drills_databases_alone() {
    let app = app_with_data().await;
    back_up(&app).await;
    let mut slow = app.state.clone();
    slow.faults.drill_hang_after = Some("postgres:verify".into());
    let state = slow.clone();
    let drill = tokio::spawn(async move {
        app::jobs::ssr::run(
            &state,
            &app::drills::ssr::RESTORE_DRILL,
            cli_firing(),
            Default::default(),
        )
        .await
    });
    assert!(
        crate::helpers::eventually(Duration::from_secs(30), || async {
            drill_databases_present(&app).await.len() == 1
        })
        .await,
        "the drill restores PostgreSQL"
    );
    // Old enough, but its drill's heartbeat is fresh: it stays.
    app.state.clock.advance(time::Duration::minutes(61));
    let beat: i64 = sqlx::query_scalar(
        "update cron_job_runs set heartbeat_at = $1 where outcome = 'running' and job_name = 'restore-drill' returning id",
    )
    .bind(app.state.clock.now())
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert!(beat > 0);
    let answer = run_job(&app, "drill-janitor").await;
    assert_eq!(answer["abandoned"], serde_json::json!([]), "{answer}");
    assert_eq!(answer["dropped"], serde_json::json!([]), "{answer}");
    assert_eq!(drill_databases_present(&app).await.len(), 1);
    drill.abort();
}

#[tokio::test]
async fn two_drills_at_once_each_restore_and_tear_down_their_own_databases() {
    let app = app_with_data().await;
    back_up(&app).await;
    let run = || {
        app::jobs::ssr::run(
            &app.state,
            &app::drills::ssr::RESTORE_DRILL,
            cli_firing(),
            Default::default(),
        )
    };
    let (first, second) = tokio::join!(run(), run());
    let mut ids = Vec::new();
    for finished in [first, second] {
        let finished = finished.unwrap().unwrap();
        let report = finished
            .report::<app::drills::ssr::run::DrillReport>()
            .expect("a drill report");
        assert_eq!(report.status, DrillStatus::Passed, "{report:?}");
        ids.push(report.drill_id);
    }
    assert_ne!(ids[0], ids[1]);
    let names: Vec<String> = sqlx::query_scalar("select name from drill_databases order by name")
        .fetch_all(&app.pg)
        .await
        .unwrap();
    assert_eq!(names.len(), 4, "two stores each: {names:?}");
    assert!(drill_databases_present(&app).await.is_empty());
}

#[tokio::test]
async fn a_cancelled_drill_stops_after_its_step_and_still_tears_down() {
    let app = app_with_data().await;
    back_up(&app).await;
    let mut paused = app.state.clone();
    paused.faults.drill_hang_after = Some("postgres:verify".into());
    let drill = tokio::spawn(async move {
        app::jobs::ssr::run(
            &paused,
            &app::drills::ssr::RESTORE_DRILL,
            cli_firing(),
            Default::default(),
        )
        .await
    });
    assert!(
        eventually(Duration::from_secs(30), || async {
            drill_databases_present(&app).await.len() == 1
        })
        .await,
        "the drill restores PostgreSQL"
    );
    let run: i64 = sqlx::query_scalar(
        "select id from cron_job_runs where job_name = 'restore-drill' and outcome = 'running'",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    // Cancel, as the button does (any replica): through the run's row.
    app::jobs::ssr::cancel(&app.state, run, &app::auth::ssr::Actor::cli())
        .await
        .unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(60), drill)
        .await
        .expect("the drill stops")
        .unwrap()
        .unwrap()
        .unwrap();
    let report = finished
        .report::<app::drills::ssr::run::DrillReport>()
        .expect("a drill report");
    assert_eq!(report.status, DrillStatus::Cancelled, "{report:?}");
    let stores: Vec<StoreKind> = report.stores.iter().map(|s| s.store).collect();
    assert_eq!(
        stores,
        vec![StoreKind::Postgres],
        "ClickHouse was never restored"
    );
    let last = report.steps.last().unwrap();
    assert_eq!(
        (last.name.as_str(), last.ok),
        ("teardown", true),
        "{:?}",
        report.steps
    );
    assert!(drill_databases_present(&app).await.is_empty(), "torn down");
    let outcome: String = sqlx::query_scalar("select outcome from runbook_history where id = $1")
        .bind(report.history_id)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(outcome, "partial");
}

#[tokio::test]
async fn drill_overdue_is_raised_past_the_cadence_and_cleared_by_a_passing_drill() {
    let app = app_with_data().await;
    back_up(&app).await;
    // A fresh install counts from installation: 90 days is the cadence, not yet overdue.
    app.state
        .clock
        .advance(time::Duration::days(90) - time::Duration::hours(1));
    evaluate(&app).await;
    assert!(alerts_of(&app, "drill_overdue").await.is_empty());
    app.state.clock.advance(time::Duration::hours(25));
    evaluate(&app).await;
    let raised = alerts_of(&app, "drill_overdue").await;
    assert_eq!(raised.len(), 2, "one per store: {raised:?}");
    for ((_, key, severity, status, _), store) in raised.iter().zip(["postgres", "clickhouse"]) {
        assert_eq!(
            (key.as_str(), severity.as_str(), status.as_str()),
            (store, "warning", "firing")
        );
    }

    // A passing drill now: clear, and resolved once the kind's recovering evaluations
    // have passed.
    let answer = run_job(&app, "restore-drill").await;
    assert_eq!(answer["outcome"], "succeeded", "{answer}");
    evaluate(&app).await;
    evaluate(&app).await;
    let after = alerts_of(&app, "drill_overdue").await;
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|a| a.3 == "resolved"), "{after:?}");
}
