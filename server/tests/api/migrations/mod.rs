//! Background migrations: the runner under faults (killed mid-chunk, two instances at
//! once, a run gone quiet), the controls, the real backfill, the schema's state on the
//! page and in `/health/deep`; and (`upgrade`) the pre-upgrade backup, the rollback to
//! it, and `salvage check`.

mod upgrade;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use app::auth::ssr::Actor;
use app::auth::Role;
use app::jobs::ssr::background::{BackgroundMigration, Chunk, StepFuture};
use app::jobs::ssr::{Caller, Firing, RunOptions};
use app::jobs::Trigger;
use app::migrations::ssr::runner::{MigrationsReport, Turn, RUN_BACKGROUND_MIGRATIONS};
use app::migrations::ssr::store;
use app::server::AppState;
use serde_json::json;
use sqlx::{PgConnection, Row};

use crate::helpers::{eventually, spawn_app, TestApp};

/// Items the fixture migration goes through, in chunks of `CHUNK`.
pub(crate) const ITEMS: i64 = 1_000;
pub(crate) const CHUNK: i64 = 100;

/// Set once the fixture has parked inside a chunk (its rows written, not committed).
static PARKED: AtomicBool = AtomicBool::new(false);

/// A migration whose effect can be counted: each chunk writes one `fixture_tally` row
/// per item after the cursor (no unique key, so a chunk done twice shows as doubles) and
/// logs its start and end (`fixture_chunks`), so two chunks at once show as overlapping
/// intervals. With `fixture_control.park_after` set, the chunk that passes it writes its
/// rows and then waits forever, for a test to kill it there.
static TALLY: BackgroundMigration = BackgroundMigration {
    name: "fixture_tally",
    description: "Test fixture: counts every item once.",
    count: tally_count,
    step: tally_step,
};

fn tally_count(conn: &mut PgConnection) -> StepFuture<'_, i64> {
    Box::pin(async move {
        sqlx::query_scalar("select count(*) from fixture_items")
            .fetch_one(conn)
            .await
    })
}

fn tally_step(conn: &mut PgConnection, cursor: Option<i64>, limit: i64) -> StepFuture<'_, Chunk> {
    Box::pin(async move {
        let started: time::OffsetDateTime = sqlx::query_scalar("select clock_timestamp()")
            .fetch_one(&mut *conn)
            .await?;
        let row = sqlx::query(
            "with chunk as (select id from fixture_items where id > $1 order by id limit $2),
                  added as (insert into fixture_tally (item) select id from chunk returning item)
             select count(*) as rows, max(item) as last from added",
        )
        .bind(cursor.unwrap_or(0))
        .bind(limit)
        .fetch_one(&mut *conn)
        .await?;
        let rows: i64 = row.get("rows");
        let last: Option<i64> = row.get("last");
        // Slow enough that two workers would overlap if both ran.
        tokio::time::sleep(Duration::from_millis(40)).await;
        let park_after: Option<i64> = sqlx::query_scalar("select park_after from fixture_control")
            .fetch_one(&mut *conn)
            .await?;
        if let (Some(park), Some(last)) = (park_after, last) {
            if last > park {
                PARKED.store(true, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
        }
        sqlx::query(
            "insert into fixture_chunks (started_at, ended_at) values ($1, clock_timestamp())",
        )
        .bind(started)
        .execute(&mut *conn)
        .await?;
        Ok(Chunk {
            cursor: last.or(cursor).unwrap_or(0),
            rows,
            done: rows < limit,
        })
    })
}

static FIXTURES: &[&BackgroundMigration] = &[&TALLY];

/// `app`'s state running the fixture instead of the product's migrations, with small
/// chunks.
pub(crate) async fn fixture_state(app: &TestApp) -> AppState {
    for statement in [
        "create table fixture_items (id bigint primary key)",
        "create table fixture_tally (item bigint not null)",
        "create table fixture_chunks (started_at timestamptz not null, ended_at timestamptz not null)",
        "create table fixture_control (park_after bigint)",
        "insert into fixture_control values (null)",
    ] {
        sqlx::query(statement).execute(&app.pg).await.unwrap();
    }
    sqlx::query("insert into fixture_items select generate_series(1, $1)")
        .bind(ITEMS)
        .execute(&app.pg)
        .await
        .unwrap();
    let mut state = app.state.clone();
    state
        .parts
        .set(app::jobs::ssr::background::BackgroundMigrations(FIXTURES));
    state
        .part_mut::<app::migrations::ssr::MigrationSettings>()
        .chunk_rows = CHUNK;
    state
}

async fn run_once(state: &AppState) -> MigrationsReport {
    let firing = Firing::by_hand(Trigger::Cli, Actor::cli(), None, Caller::default());
    let finished = app::jobs::ssr::run(
        state,
        &RUN_BACKGROUND_MIGRATIONS,
        firing,
        RunOptions::default(),
    )
    .await
    .unwrap()
    .unwrap();
    finished.report::<MigrationsReport>().unwrap().clone()
}

pub(crate) async fn row(app: &TestApp, name: &str) -> (String, i64, Option<i64>, Option<i64>, i32) {
    sqlx::query_as(
        "select status, progress_current, progress_total, cursor, attempts
           from background_migrations where name = $1",
    )
    .bind(name)
    .fetch_one(&app.pg)
    .await
    .unwrap()
}

pub(crate) async fn tally(app: &TestApp) -> (i64, i64) {
    sqlx::query_as("select count(*), count(distinct item) from fixture_tally")
        .fetch_one(&app.pg)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_migration_killed_mid_chunk_resumes_from_its_cursor_and_applies_no_chunk_twice() {
    let app = spawn_app().await;
    let state = fixture_state(&app).await;
    sqlx::query("update fixture_control set park_after = 300")
        .execute(&app.pg)
        .await
        .unwrap();

    // Killed while the fourth chunk has written its rows but not committed them.
    let worker_state = state.clone();
    let worker = tokio::spawn(async move { run_once(&worker_state).await });
    assert!(
        eventually(Duration::from_secs(20), || async {
            PARKED.load(Ordering::SeqCst)
        })
        .await,
        "the fixture never reached its fourth chunk"
    );
    worker.abort();
    let _ = worker.await;

    let (status, done, total, cursor, attempts) = row(&app, "fixture_tally").await;
    assert_eq!(
        (status.as_str(), done, total, cursor, attempts),
        ("running", 300, Some(ITEMS), Some(300), 1)
    );
    assert_eq!(
        tally(&app).await,
        (300, 300),
        "the killed chunk's rows were rolled back with its cursor"
    );

    // The next tick takes it over from the saved cursor (the dead worker's lock went
    // with its connection) and finishes it, each item counted once.
    sqlx::query("update fixture_control set park_after = null")
        .execute(&app.pg)
        .await
        .unwrap();
    let mut finished = None;
    for _ in 0..20 {
        let report = run_once(&state).await;
        if report.worked.iter().any(|w| w.turn == Turn::Finished) {
            finished = Some(report);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let report = finished.expect("a later run finishes the migration");
    let worked = &report.worked[0];
    assert!(worked.took_over, "{report:?}");
    assert_eq!(worked.rows, ITEMS - 300);
    assert_eq!(tally(&app).await, (ITEMS, ITEMS));
    let (status, done, total, _, attempts) = row(&app, "fixture_tally").await;
    assert_eq!(
        (status.as_str(), done, total, attempts),
        ("succeeded", ITEMS, Some(ITEMS), 2)
    );
    let entries: Vec<String> = sqlx::query_scalar(
        "select title from runbook_history where kind = 'background_migration' order by id",
    )
    .fetch_all(&app.pg)
    .await
    .unwrap();
    assert_eq!(
        entries,
        [
            "Background migration fixture_tally started",
            "Background migration fixture_tally taken over",
            "Background migration fixture_tally finished: 1,000 rows",
        ]
    );
}

#[tokio::test]
async fn two_instances_never_run_one_migration_at_once() {
    let app = spawn_app().await;
    let state = fixture_state(&app).await;
    // A second instance: its own pools on the same databases.
    let mut other_state = crate::helpers::second_instance(&app);
    other_state
        .parts
        .set(app::jobs::ssr::background::BackgroundMigrations(FIXTURES));
    other_state
        .part_mut::<app::migrations::ssr::MigrationSettings>()
        .chunk_rows = CHUNK;

    let (first, second) = tokio::join!(run_once(&state), run_once(&other_state));

    let turns: Vec<Turn> = first
        .worked
        .iter()
        .chain(&second.worked)
        .map(|w| w.turn)
        .collect();
    assert!(turns.contains(&Turn::Finished), "{turns:?}");
    assert_eq!(
        first
            .worked
            .iter()
            .chain(&second.worked)
            .map(|w| w.rows)
            .sum::<i64>(),
        ITEMS,
        "{first:?} {second:?}"
    );
    assert_eq!(tally(&app).await, (ITEMS, ITEMS));
    let overlapping: i64 = sqlx::query_scalar(
        "select count(*) from fixture_chunks a join fixture_chunks b
           on a.ctid < b.ctid and a.started_at < b.ended_at and b.started_at < a.ended_at",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(overlapping, 0, "two chunks ran at the same time");
}

#[tokio::test]
async fn a_run_gone_quiet_raises_migration_stuck_and_the_next_tick_resumes_and_clears_it() {
    let app = spawn_app().await;
    let state = fixture_state(&app).await;
    // A worker that died half-way three minutes ago: 400 items done, its lock gone, its
    // run still `running` with the heartbeat it last wrote.
    store::register(&state).await.unwrap();
    sqlx::raw_sql(
        "insert into fixture_tally (item) select generate_series(1, 400);
         with dead as (
             insert into cron_job_runs (job_name, ran_at, heartbeat_at, trigger, actor)
             values ('run-background-migrations', now() - interval '10 minutes',
                     now() - interval '3 minutes', 'scheduler', 'scheduler')
             returning id)
         update background_migrations set status = 'running', progress_current = 400,
                progress_total = 1000, cursor = 400, attempts = 1,
                started_at = now() - interval '10 minutes', run_id = (select id from dead)
          where name = 'fixture_tally'",
    )
    .execute(&app.pg)
    .await
    .unwrap();
    let mut monitor_state = app.state.clone();
    monitor_state
        .parts
        .set(app::jobs::ssr::background::BackgroundMigrations(FIXTURES));

    let open = || async {
        sqlx::query_scalar::<_, String>(
            "select title from internal_alerts where kind = 'migration_stuck' and status <> 'resolved'",
        )
        .fetch_optional(&app.pg)
        .await
        .unwrap()
    };
    crate::helpers::run_job(&app, "self-monitor").await;
    let title = open().await.expect("migration_stuck is raised");
    assert!(
        title.contains("fixture_tally") && title.contains("3 min"),
        "{title}"
    );
    let (_, body) = app
        .signed_in(Role::Operator)
        .await
        .get_json("/health/deep")
        .await;
    assert_eq!(
        body["backgroundMigrations"],
        json!({"running": 1, "stuck": 1})
    );

    let report = run_once(&state).await;
    assert!(
        report.worked[0].took_over && report.worked[0].turn == Turn::Finished,
        "{report:?}"
    );
    assert_eq!(
        tally(&app).await,
        (ITEMS, ITEMS),
        "resumed at 400, not from the start"
    );

    // Resolved once the condition has been clear for the recovering evaluations.
    assert!(
        eventually(Duration::from_secs(30), || async {
            crate::helpers::run_job(&app, "self-monitor").await;
            open().await.is_none()
        })
        .await,
        "migration_stuck resolves once the migration runs again"
    );
}

#[tokio::test]
async fn last_heartbeat_at_copies_the_working_runs_heartbeat_and_never_waits_on_a_chunk() {
    let app = spawn_app().await;
    let state = fixture_state(&app).await;
    store::register(&state).await.unwrap();
    let run_id: i64 = sqlx::query_scalar(
        "insert into cron_job_runs (job_name, ran_at, heartbeat_at, trigger, actor)
         values ('run-background-migrations', now(), now(), 'scheduler', 'scheduler')
         returning id",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    sqlx::query(
        "update background_migrations set status = 'running', run_id = $1,
                last_heartbeat_at = null where name = 'fixture_tally'",
    )
    .bind(run_id)
    .execute(&app.pg)
    .await
    .unwrap();
    let copied = || async {
        sqlx::query_scalar::<_, Option<time::OffsetDateTime>>(
            "select last_heartbeat_at from background_migrations where name = 'fixture_tally'",
        )
        .fetch_one(&app.pg)
        .await
        .unwrap()
    };
    // A beat as the runner writes it, on a session that fails rather than wait for a lock.
    let pg = app.pg.clone();
    let beat = |at: &'static str| {
        let pg = pg.clone();
        async move {
            let mut tx = pg.begin().await.unwrap();
            sqlx::query("set local lock_timeout = '2s'")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("update cron_job_runs set heartbeat_at = $2::timestamptz where id = $1")
                .bind(run_id)
                .bind(at)
                .execute(&mut *tx)
                .await
                .expect("a beat never waits on the migration's row");
            tx.commit().await.unwrap();
        }
    };
    let at = |text: &str| {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    };

    beat("2026-12-06T10:00:00Z").await;
    assert_eq!(copied().await, Some(at("2026-12-06T10:00:00Z")));

    // A chunk's transaction holds the row: the beat goes through and the copy waits for
    // the next one.
    let mut chunk = app.pg.begin().await.unwrap();
    sqlx::query("select 1 from background_migrations where name = 'fixture_tally' for update")
        .execute(&mut *chunk)
        .await
        .unwrap();
    beat("2026-12-06T10:00:15Z").await;
    chunk.rollback().await.unwrap();
    assert_eq!(copied().await, Some(at("2026-12-06T10:00:00Z")));
    beat("2026-12-06T10:00:30Z").await;
    assert_eq!(copied().await, Some(at("2026-12-06T10:00:30Z")));

    // Once the migration is no longer running, its run's beats are not its own.
    sqlx::query("update background_migrations set status = 'pending' where name = 'fixture_tally'")
        .execute(&app.pg)
        .await
        .unwrap();
    beat("2026-12-06T10:00:45Z").await;
    assert_eq!(copied().await, Some(at("2026-12-06T10:00:30Z")));
}

#[tokio::test]
async fn pause_resume_retry_and_cancel_follow_their_rules_and_are_recorded() {
    let app = spawn_app().await;
    let state = fixture_state(&app).await;
    store::register(&state).await.unwrap();
    let operator = app.signed_in(Role::Operator).await;
    let change = |action: &'static str, reason: &'static str| {
        let operator = operator.clone();
        async move {
            operator
                .call(
                    "migrations/change",
                    json!({"name": "fixture_tally", "action": action, "reason": reason}),
                )
                .await
        }
    };

    let (status, body) = change("pause", "peak hour").await;
    assert_eq!((status, body.clone()), (200, json!("paused")), "{body}");
    // A paused migration is not run.
    let report = run_once(&state).await;
    assert!(report.worked.is_empty(), "{report:?}");
    assert_eq!(tally(&app).await, (0, 0));

    let (status, body) = change("pause", "again").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.to_string().contains("is paused: it cannot be paused"),
        "{body}"
    );
    let (status, body) = change("retry", "not failed").await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = change("resume", "").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("reason"), "{body}");
    let (status, _) = operator
        .call(
            "migrations/change",
            json!({"name": "nope", "action": "pause", "reason": "x"}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = operator
        .call(
            "migrations/change",
            json!({"name": "fixture_tally", "action": "explode", "reason": "x"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("action"), "{body}");

    let (status, body) = change("resume", "after the peak").await;
    assert_eq!((status, body), (200, json!("pending")));
    let (status, body) = change("cancel", "not needed").await;
    assert_eq!((status, body), (200, json!("cancelled")));
    assert!(run_once(&state).await.worked.is_empty());
    let (status, body) = change("retry", "needed after all").await;
    assert_eq!((status, body), (200, json!("pending")));
    let report = run_once(&state).await;
    assert_eq!(report.worked[0].turn, Turn::Finished, "{report:?}");
    assert_eq!(tally(&app).await, (ITEMS, ITEMS));
    // The retry and the first start are attempts; the resume is not.
    assert_eq!(row(&app, "fixture_tally").await.4, 2);

    let entries: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "select title, reason, actor from runbook_history
          where kind = 'background_migration' and details ? 'action' order by id",
    )
    .fetch_all(&app.pg)
    .await
    .unwrap();
    let titles: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        titles,
        [
            "Background migration fixture_tally: pause (pending → paused)",
            "Background migration fixture_tally: resume (paused → pending)",
            "Background migration fixture_tally: cancel (pending → cancelled)",
            "Background migration fixture_tally: retry (cancelled → pending)",
        ]
    );
    assert_eq!(entries[0].1.as_deref(), Some("peak hour"));
    assert!(
        entries.iter().all(|e| e.2.starts_with("operator")),
        "{entries:?}"
    );
}

#[tokio::test]
async fn the_payload_bytes_backfill_fills_every_older_event_once_and_the_dry_run_counts_them() {
    let app = spawn_app().await;
    let (webhook, _) = crate::dead_letters::dead_lettered(&app, 25).await;
    // As an older version stored them: without the figure.
    sqlx::query("update webhook_events set payload_bytes = null")
        .execute(&app.pg)
        .await
        .unwrap();
    sqlx::query("update background_migrations set status = 'pending', progress_total = null, progress_current = 0, cursor = null")
        .execute(&app.pg)
        .await
        .unwrap();
    let mut state = app.state.clone();
    state
        .part_mut::<app::migrations::ssr::MigrationSettings>()
        .chunk_rows = 10;

    let dry_run = |state: &AppState| {
        let state = state.clone();
        async move {
            let filter =
                app::dead_letters::ssr::filter::DlqFilter::parse(&format!("webhook={webhook}"))
                    .unwrap();
            app::dead_letters::ssr::dlq::dry_run(&state.pg, &filter)
                .await
                .unwrap()
        }
    };
    let before = dry_run(&state).await;
    let report = run_once(&state).await;

    assert_eq!(report.worked[0].name, "webhook_event_payload_bytes");
    assert_eq!(report.worked[0].turn, Turn::Finished);
    assert_eq!(report.worked[0].rows, 25);
    assert_eq!(report.worked[0].chunks, 3);
    let (missing, wrong): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where payload_bytes is null),
                count(*) filter (where payload_bytes <> octet_length(payload::text))
           from webhook_events",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!((missing, wrong), (0, 0));
    let (status, done, total, _, _) = row(&app, "webhook_event_payload_bytes").await;
    assert_eq!((status.as_str(), done, total), ("succeeded", 25, Some(25)));
    let after = dry_run(&state).await;
    assert!(after.bytes > 0);
    assert_eq!(
        before.bytes, after.bytes,
        "measured the same before and after the backfill"
    );
    let expected: i64 =
        sqlx::query_scalar("select sum(octet_length(payload::text))::bigint from webhook_events")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(after.bytes, expected);
    // New events get the figure on ingest.
    crate::dead_letters::dead_lettered(&app, 1).await;
    let missing: i64 =
        sqlx::query_scalar("select count(*) from webhook_events where payload_bytes is null")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(missing, 0);
}

#[tokio::test]
async fn a_schema_mismatch_shows_on_the_page_and_in_health_deep() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    let (_, health) = operator.get_json("/health/deep").await;
    assert_eq!(health["schema"]["ok"], json!(true), "{health}");
    assert_eq!(health["schema"]["applied"], health["schema"]["expected"]);
    assert_eq!(
        health["backgroundMigrations"],
        json!({"running": 0, "stuck": 0})
    );

    // A newer version's migration, as after restoring a database a newer binary used.
    sqlx::query(
        "insert into _sqlx_migrations (version, description, success, checksum, execution_time)
         values (29991231000001, 'from the future', true, '\\x00', 1)",
    )
    .execute(&app.pg)
    .await
    .unwrap();
    // Past the health answer's cache.
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let (_, health) = operator.get_json("/health/deep").await;
    assert_eq!(health["schema"]["ok"], json!(false), "{health}");
    assert_eq!(health["schema"]["applied"], json!(29991231000001_i64));
    assert_eq!(health["status"], json!("degraded"));
    let (status, overview) = operator.call("migrations/overview", json!({})).await;
    assert_eq!(status, 200);
    assert!(
        overview["schema"]["problem"]
            .as_str()
            .unwrap()
            .contains("applied but unknown to this binary: 29991231000001"),
        "{overview}"
    );
    let (_, html) = operator.get_html("/admin/migrations").await;
    assert!(
        html.contains("unknown to this binary"),
        "the page shows the mismatch"
    );
}

#[tokio::test]
async fn a_turn_that_ends_on_its_budget_goes_back_in_line_and_is_not_taken_over() {
    let app = spawn_app().await;
    let state = fixture_state(&app).await;
    let firing = || Firing::by_hand(Trigger::Cli, Actor::cli(), None, Caller::default());
    let short = RunOptions {
        budget: Some(Duration::from_millis(150)),
        ..RunOptions::default()
    };

    let finished = app::jobs::ssr::run(&state, &RUN_BACKGROUND_MIGRATIONS, firing(), short)
        .await
        .unwrap()
        .unwrap();
    let first = finished.report::<MigrationsReport>().unwrap().clone();
    assert_eq!(first.worked[0].turn, Turn::Continues, "{first:?}");
    let (status, done, _, _, attempts) = row(&app, "fixture_tally").await;
    assert_eq!((status.as_str(), attempts), ("pending", 1));
    assert!(done > 0 && done < ITEMS, "{done}");

    let second = run_once(&state).await;
    assert!(!second.worked[0].took_over, "{second:?}");
    assert_eq!(second.worked[0].turn, Turn::Finished);
    assert_eq!(tally(&app).await, (ITEMS, ITEMS));
    assert_eq!(
        row(&app, "fixture_tally").await.4,
        1,
        "a continued turn is not a new attempt"
    );
}
