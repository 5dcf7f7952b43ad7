//! The one engine for long actions: a restore, a redrive and a background migration's
//! turn, each started through the runner, watched through its progress reports and
//! cancelled through the runner's one cancel, leave the same run record (job, trigger,
//! actor, heartbeat, cancel, outcome) and the same history entry of the cancel. A
//! verification runs the same way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use app::auth::ssr::Actor;
use app::jobs::ssr::{Firing, OnProgress};

use crate::helpers::TestApp;

/// A progress callback that presses Cancel on the run at its first report, as a person on
/// another replica would: on a thread of its own with its own connection, waited for
/// before the run goes on, so the Cancel lands mid-run every time. Keeps the run's id.
pub(crate) fn cancel_at_first_report(app: &TestApp) -> (OnProgress, Arc<Mutex<Option<i64>>>) {
    let cancelled = Arc::new(Mutex::new(None));
    let seen = cancelled.clone();
    let first = AtomicBool::new(true);
    let state = app.state.clone();
    let url = app.database_url.clone();
    let on_progress: OnProgress = Arc::new(move |p| {
        if !first.swap(false, Ordering::SeqCst) {
            return;
        }
        let (mut state, url, run_id) = (state.clone(), url.clone(), p.run_id);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                state.pg = sqlx::PgPool::connect(&url).await.unwrap();
                app::jobs::ssr::cancel(&state, run_id, &Actor::cli())
                    .await
                    .unwrap();
                state.pg.close().await;
            });
        })
        .join()
        .expect("the cancel is recorded");
        *seen.lock().unwrap() = Some(run_id);
    });
    (on_progress, cancelled)
}

fn cli(reason: &str) -> Firing {
    Firing::by_hand(
        app::jobs::Trigger::Cli,
        Actor::cli(),
        Some(crate::helpers::reason(reason)),
        app::jobs::ssr::Caller::default(),
    )
}

/// A run record as every page and the CLI read it.
async fn record(app: &TestApp, run_id: i64) -> (String, String, String, String, bool, bool, bool) {
    sqlx::query_as(
        "select job_name, trigger, actor, outcome, cancel_requested,
                heartbeat_at >= ran_at, finished_at is not null
           from cron_job_runs where id = $1",
    )
    .bind(run_id)
    .fetch_one(&app.pg)
    .await
    .unwrap()
}

async fn cancel_entries(app: &TestApp, run_id: i64) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "select kind, title, actor from runbook_history
          where (details ->> 'runId')::bigint = $1 and (details ->> 'cancel')::boolean",
    )
    .bind(run_id)
    .fetch_all(&app.pg)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_restore_a_redrive_and_a_background_migration_start_report_and_cancel_through_the_one_engine(
) {
    // A restore of a PostgreSQL backup into a side database.
    let restoring = crate::backups::app_with_data().await;
    let (pg_backup, _) = crate::backups::back_up(&restoring).await;
    let target = crate::backups::side_name();
    let (on_progress, cancelled) = cancel_at_first_report(&restoring);
    let request = crate::backups::side(pg_backup, &target);
    let report = app::backups::ssr::restore::restore(
        &restoring.state,
        &request,
        cli("look"),
        Some(on_progress),
    )
    .await
    .unwrap();
    let restore_run = cancelled.lock().unwrap().expect("it reported");

    // A redrive of 20 dead letters, 5 a batch.
    let redriving = crate::helpers::spawn_app_tweaked(|settings| {
        crate::dead_letters::redrive::no_breaker(settings);
        settings.webhooks.redrive_batch = 5;
    })
    .await;
    let receiver = crate::dead_letters::receiver::Receiver::start().await;
    let (a, _) =
        crate::dead_letters::redrive::two_kinds_of_dead_letters(&redriving, &receiver, 20).await;
    let filter = app::dead_letters::ssr::filter::DlqFilter::parse(&format!("webhook={a}")).unwrap();
    let (on_progress, cancelled) = cancel_at_first_report(&redriving);
    let redriven = app::dead_letters::ssr::redrive::run(
        &redriving.state,
        &filter,
        cli("endpoint fixed"),
        Some(on_progress),
    )
    .await
    .unwrap();
    let redrive_run = cancelled.lock().unwrap().expect("it reported");

    // A background migration of 1,000 items, 100 a chunk.
    let migrating = crate::helpers::spawn_app().await;
    let state = crate::migrations::fixture_state(&migrating).await;
    let (on_progress, cancelled) = cancel_at_first_report(&migrating);
    let turn = app::jobs::ssr::run(
        &state,
        &app::migrations::ssr::RUN_BACKGROUND_MIGRATIONS,
        cli("upgrade"),
        app::jobs::ssr::RunOptions {
            on_progress: Some(on_progress),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .expect("a run by hand is never a duplicate tick");
    let migration_run = cancelled.lock().unwrap().expect("it reported");

    // What each did: stopped, and left no half of itself.
    assert_eq!(
        report.status,
        app::backups::RestoreStatus::Cancelled,
        "{report:?}"
    );
    assert!(!crate::backups::side_exists(&restoring, &target).await);
    assert_eq!(
        redriven.status,
        app::dead_letters::RedriveStatus::Cancelled,
        "{redriven:?}"
    );
    assert_eq!(
        redriven.done, 5,
        "one batch, then the cancel between batches"
    );
    assert_eq!(
        crate::dead_letters::statuses(&redriving, a).await,
        vec![("dead".into(), 15), ("pending".into(), 5)]
    );
    assert_eq!(turn.status, app::jobs::RunStatus::Cancelled, "{turn:?}");
    let (status, done, _, cursor, _) = crate::migrations::row(&migrating, "fixture_tally").await;
    assert_eq!(status, "pending", "back in line, not stuck");
    assert!(
        done > 0 && done < crate::migrations::ITEMS && done % crate::migrations::CHUNK == 0,
        "whole chunks, then the cancel: {done}"
    );
    assert_eq!(cursor, Some(done));
    assert_eq!(
        crate::migrations::tally(&migrating).await,
        (done, done),
        "each item done once, none after the cancel"
    );

    // The same record, heartbeat and cancel for both: only the job's name differs.
    let actor = Actor::cli().name;
    for (app, run_id, job) in [
        (&restoring, restore_run, "restore"),
        (&redriving, redrive_run, "redrive"),
        (&migrating, migration_run, "run-background-migrations"),
    ] {
        assert_eq!(
            record(app, run_id).await,
            (
                job.to_owned(),
                "cli".to_owned(),
                actor.clone(),
                "cancelled".to_owned(),
                true,
                true,
                true
            ),
            "{job}"
        );
        assert_eq!(
            cancel_entries(app, run_id).await,
            vec![(
                "cron".to_owned(),
                format!("Cancel requested for {job} run #{run_id}"),
                actor.clone()
            )],
            "{job}"
        );
    }
    let restore_row: Option<i64> = sqlx::query_scalar("select run_id from restores where id = $1")
        .bind(report.restore_id)
        .fetch_one(&restoring.pg)
        .await
        .unwrap();
    assert_eq!(
        restore_row,
        Some(restore_run),
        "the restore points at its run"
    );
    assert_eq!(
        redriven.run_id,
        Some(redrive_run),
        "the redrive points at its run"
    );
    let migration_row: Option<i64> =
        sqlx::query_scalar("select run_id from background_migrations where name = 'fixture_tally'")
            .fetch_one(&migrating.pg)
            .await
            .unwrap();
    assert_eq!(
        migration_row,
        Some(migration_run),
        "the migration points at the run that worked it"
    );
}

#[tokio::test]
async fn a_verification_is_a_run_with_its_report_and_a_bad_input_is_refused_before_any_record() {
    let app = crate::backups::app_with_data().await;
    let (pg_backup, _) = crate::backups::back_up(&app).await;
    let runs = app.count("cron_job_runs").await;
    use app::backups::ssr::verify::{Verification, VERIFY_BACKUP};

    // A backup that does not exist: refused by the job's check (404); no run recorded.
    let options = |input: serde_json::Value| app::jobs::ssr::RunOptions {
        input,
        ..Default::default()
    };
    let refused = app::jobs::ssr::run(
        &app.state,
        &VERIFY_BACKUP,
        cli("check"),
        options(serde_json::json!({"backupId": 999_999})),
    )
    .await;
    assert!(
        matches!(refused, Err(app::error::AppError::NotFound { .. })),
        "{refused:?}"
    );
    let malformed = app::jobs::ssr::run(
        &app.state,
        &VERIFY_BACKUP,
        cli("check"),
        options(serde_json::json!({"id": "x"})),
    )
    .await;
    assert!(
        matches!(malformed, Err(app::error::AppError::Invalid { ref field, .. }) if field == "input"),
        "{malformed:?}"
    );
    assert_eq!(app.count("cron_job_runs").await, runs, "nothing recorded");

    let finished = app::jobs::ssr::run(
        &app.state,
        &VERIFY_BACKUP,
        cli("check"),
        options(serde_json::json!({"backupId": pg_backup})),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(finished.status, app::jobs::RunStatus::Succeeded);
    let verification = finished.report::<Verification>().expect("its report");
    assert_eq!(verification.error, None);
    assert_eq!(finished.history_id, Some(verification.history_id));
    assert_eq!(
        record(&app, finished.run_id).await,
        (
            "verify-backup".to_owned(),
            "cli".to_owned(),
            Actor::cli().name,
            "succeeded".to_owned(),
            false,
            true,
            true
        )
    );
}
