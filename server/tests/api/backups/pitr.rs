//! Point-in-time recovery through pgBackRest, against the local stores' cluster, which
//! archives its WAL from its first minute (scripts/stores.sh). Real PostgreSQL, real
//! pgBackRest, real files: side clusters are restored from the repository and counted.
//!
//! One test walks the whole path in order, because the side directory and the janitor
//! that sweeps it are shared: a base backup; rows, a moment, a destructive delete;
//! a restore to the moment (every deleted row back); more rows left to the archive's own
//! timeout; a restore to latest (those rows there, the delete too); one side cluster
//! stopped by hand, the other by the janitor a day later.

use std::time::Duration;

use app::backups::ssr::pitr::job::{PitrBackupInput, PitrBackupReport, PitrKind, PITR_BACKUP};
use app::backups::ssr::pitr::restore::{restore, PitrRestoreReport, PitrRestoreRequest};
use app::backups::ssr::pitr::sides::{self, JanitorReport, PITR_SIDE_JANITOR};
use app::backups::ssr::pitr::PitrSettings;
use app::jobs::RunStatus;
use time::OffsetDateTime;

use crate::helpers::{reason, spawn_app_with, spawn_app_with_pitr, Options, TestApp};

const DELETED: i64 = 500;
const LATER: i64 = 300;

pub(crate) async fn base_backup(app: &TestApp) {
    let options = app::jobs::ssr::RunOptions {
        input: serde_json::to_value(PitrBackupInput {
            kind: Some(PitrKind::Incr),
        })
        .unwrap(),
        ..Default::default()
    };
    let finished = app::jobs::ssr::run(&app.state, &PITR_BACKUP, super::cli(), options)
        .await
        .unwrap()
        .expect("no other pitr-backup run is working");
    let report = finished.report::<PitrBackupReport>().unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert!(report.backup.is_some(), "{report:?}");
}

async fn restore_to(app: &TestApp, to: String) -> PitrRestoreReport {
    let request = PitrRestoreRequest {
        to,
        port: None,
        reason: Some(reason("pitr test")),
    };
    let report = restore(&app.state, &request, super::cli(), None)
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(report.chain_broken_at, None, "{report:?}");
    assert_eq!(report.schema_problem, None, "{report:?}");
    report
}

fn rows_of(report: &PitrRestoreReport, table: &str) -> Option<i64> {
    report
        .tables
        .iter()
        .find(|t| t.name == table)
        .map(|t| t.rows)
}

async fn now(app: &TestApp) -> OffsetDateTime {
    sqlx::query_scalar("select clock_timestamp()")
        .fetch_one(&app.pg)
        .await
        .unwrap()
}

/// Waits (at most three archive timeouts) until PostgreSQL has archived a segment that
/// ends after `after`: the archive's own timeout at work, nothing forced.
async fn archived_after(app: &TestApp, pitr: &PitrSettings, after: OffsetDateTime) {
    let deadline = tokio::time::Instant::now() + pitr.archive_timeout * 3;
    loop {
        let last: Option<OffsetDateTime> =
            sqlx::query_scalar("select last_archived_time from pg_stat_archiver")
                .fetch_one(&app.pg)
                .await
                .unwrap();
        if last.is_some_and(|at| at > after) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing archived within 3 × archive_timeout after {after}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Makes a test's own side directory, owned by the user pgBackRest runs as.
pub(crate) fn side_dir_made(pitr: &PitrSettings) {
    std::fs::create_dir_all(&pitr.side_dir).unwrap();
    if let Some(user) = &pitr.run_as {
        let owned = std::process::Command::new("chown")
            .arg(format!("{user}:"))
            .arg(&pitr.side_dir)
            .status()
            .unwrap();
        assert!(owned.success());
    }
}

/// Side clusters of their own: the janitor this test runs a day ahead sweeps only them.
fn own_side_dir(settings: &mut salvage::config::Settings) {
    if let Some(pitr) = settings.backups.pitr.as_mut() {
        pitr.side_dir = pitr.side_dir.join("sequence");
    }
}

#[tokio::test]
async fn restores_to_a_moment_and_to_latest_bring_back_exactly_what_was_committed_then() {
    let app = spawn_app_with(Options {
        pitr: true,
        tweak: Some(own_side_dir),
        ..Options::default()
    })
    .await;
    let pitr = app
        .state
        .backups()
        .pitr
        .clone()
        .expect("the local stores archive through pgBackRest (scripts/stores.sh start)");
    side_dir_made(&pitr);
    base_backup(&app).await;

    // Rows committed, the moment, then a destructive delete.
    sqlx::query("create table pitr_probe (id bigint primary key)")
        .execute(&app.pg)
        .await
        .unwrap();
    sqlx::query("insert into pitr_probe select generate_series(1, $1)")
        .bind(DELETED)
        .execute(&app.pg)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let point = now(&app).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let deleted = sqlx::query("delete from pitr_probe")
        .execute(&app.pg)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted as i64, DELETED);
    archived_after(&app, &pitr, now(&app).await).await;

    let to_point = point
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let before = restore_to(&app, to_point).await;
    assert_eq!(
        rows_of(&before, "pitr_probe"),
        Some(DELETED),
        "every row deleted after the moment is back: {before:?}"
    );
    let reached = before
        .reached_ms
        .expect("the side cluster says what it replayed");
    assert!(reached <= app::server::unix_ms(point), "{before:?}");
    assert!(before.chain_entries > 0, "{before:?}");

    // Rows committed later and left to archive_timeout: all of them are in a restore to
    // latest. The point it reports reached is the last commit it replayed: no earlier
    // than theirs, and no later than its end (recovery keeps fetching what the archive
    // receives while it runs).
    sqlx::query("insert into pitr_probe select generate_series(1, $1)")
        .bind(LATER)
        .execute(&app.pg)
        .await
        .unwrap();
    let last_commit = now(&app).await;
    archived_after(&app, &pitr, last_commit).await;
    let latest = restore_to(&app, "latest".into()).await;
    let ended = now(&app).await;
    assert_eq!(rows_of(&latest, "pitr_probe"), Some(LATER), "{latest:?}");
    let reached = latest.reached_ms.expect("a restore to latest replays");
    assert!(
        app::server::unix_ms(last_commit) <= reached && reached <= app::server::unix_ms(ended),
        "reached {reached}, last commit {last_commit}, ended {ended}: {latest:?}"
    );

    // A restore cancelled mid-way leaves nothing: no directory, no record, a cancelled
    // run and its history entry.
    let (on_progress, cancelled) = crate::long_actions::cancel_at_first_report(&app);
    let request = PitrRestoreRequest {
        to: "latest".into(),
        port: None,
        reason: Some(reason("cancelled")),
    };
    let stopped = restore(&app.state, &request, super::cli(), Some(on_progress))
        .await
        .unwrap();
    assert!(cancelled.lock().unwrap().is_some(), "it reported");
    assert_eq!(stopped.status, RunStatus::Cancelled, "{stopped:?}");
    assert!(!stopped.data_dir.exists(), "{stopped:?}");
    assert!(sides::list(&pitr).iter().all(|s| s.port != stopped.port));
    // pgBackRest itself was stopped (not only the `runuser` in front of it): nothing
    // goes on writing into the deleted directory.
    let dir = stopped.data_dir.display().to_string();
    let writers: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&dir))
        .collect();
    assert!(writers.is_empty(), "{writers:?}");
    assert!(
        !stopped.data_dir.exists(),
        "nothing recreated it: {stopped:?}"
    );

    // Both are listed, running; one is stopped by hand, the other by the janitor a day
    // later, and each stop is in the history.
    let listed: Vec<u16> = sides::list(&pitr)
        .iter()
        .filter(|s| s.running)
        .map(|s| s.port)
        .collect();
    assert!(
        listed.contains(&before.port) && listed.contains(&latest.port),
        "{listed:?}"
    );
    sides::stop(
        &app.state,
        before.port,
        &app::auth::ssr::Actor::cli(),
        Some(reason("done")),
    )
    .await
    .unwrap();
    assert!(!before.data_dir.exists());
    let young = run_janitor(&app).await;
    assert!(young.kept.contains(&latest.port), "{young:?}");
    assert!(
        latest.data_dir.exists(),
        "a side cluster younger than a day stays"
    );
    app.state.clock.advance(time::Duration::hours(25));
    let old = run_janitor(&app).await;
    assert!(old.stopped.contains(&latest.port), "{old:?}");
    assert!(!latest.data_dir.exists());
    assert!(sides::list(&pitr)
        .iter()
        .all(|s| s.port != before.port && s.port != latest.port));
    let stops: i64 = sqlx::query_scalar(
        "select count(*) from runbook_history where details->>'port' in ($1, $2)
            and title like 'Side cluster on port % stopped%'",
    )
    .bind(before.port.to_string())
    .bind(latest.port.to_string())
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(stops, 2);
}

async fn run_janitor(app: &TestApp) -> JanitorReport {
    let finished = app::jobs::ssr::run(
        &app.state,
        &PITR_SIDE_JANITOR,
        super::cli(),
        Default::default(),
    )
    .await
    .unwrap()
    .expect("no other janitor run");
    finished.report::<JanitorReport>().unwrap().clone()
}

#[tokio::test]
async fn a_restore_request_naming_a_bad_moment_or_port_is_refused_with_the_field_and_nothing_made()
{
    let app = spawn_app_with_pitr().await;
    let runs_before = restore_runs(&app).await;
    let live_port = url::Url::parse(&app.database_url).unwrap().port().unwrap();
    for (to, port, field) in [
        ("yesterday", None, "to"),
        ("2999-01-01T00:00:00Z", None, "to"),
        ("1999-01-01T00:00:00Z", None, "to"),
        ("latest", Some(80), "port"),
        ("latest", Some(live_port), "port"),
    ] {
        let request = PitrRestoreRequest {
            to: to.into(),
            port,
            reason: Some(reason("bad")),
        };
        let error = restore(&app.state, &request, super::cli(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, app::error::AppError::Invalid { field: f, .. } if f == field),
            "{to} {port:?}: {error:?}"
        );
    }
    assert_eq!(restore_runs(&app).await, runs_before, "no run was recorded");
}

async fn restore_runs(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from cron_job_runs where job_name = 'pitr-restore'")
        .fetch_one(&app.pg)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_point_in_time_restore_is_for_admins_and_an_admin_call_reaches_its_check() {
    let app = spawn_app_with_pitr().await;
    let operator = app.signed_in(app::auth::Role::Operator).await;
    let manager = app.signed_in(app::auth::Role::Manager).await;
    let admin = app.signed_in(app::auth::Role::Admin).await;
    let runs_before = restore_runs(&app).await;
    let history_before = app.count("runbook_history").await;
    let args = serde_json::json!({"to": "yesterday", "port": "", "reason": "roles"});
    let anonymous = app
        .client()
        .call_server_fn("backups/pitr-restore", args.clone())
        .await;
    assert_eq!(anonymous.status().as_u16(), 401);
    for (role, client) in [("operator", &operator), ("manager", &manager)] {
        let refused = client
            .call_server_fn("backups/pitr-restore", args.clone())
            .await;
        assert_eq!(refused.status().as_u16(), 403, "{role}");
    }
    let admin = admin.call_server_fn("backups/pitr-restore", args).await;
    assert_eq!(admin.status().as_u16(), 422);
    let body = admin.text().await.unwrap();
    assert!(body.contains(r#""field":"to""#), "{body}");
    assert_eq!(restore_runs(&app).await, runs_before, "no run was recorded");
    assert_eq!(app.count("runbook_history").await, history_before);
}
