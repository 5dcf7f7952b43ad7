//! The drill's point-in-time steps, with real pgBackRest and a real side cluster: a
//! drill restores PostgreSQL to latest and to a random moment since the newest base
//! backup, verifies each, tears each down, and takes PostgreSQL's recovery time from the
//! restore to latest.

use app::backups::ssr::pitr::sides;
use app::drills::{DrillStatus, StoreKind};

use crate::backups::{back_up, with_data};
use crate::helpers::{spawn_app_with, Options};

#[tokio::test]
async fn a_drill_restores_postgresql_to_latest_and_to_a_moment_through_pgbackrest_and_tears_both_down(
) {
    let app = with_data(
        spawn_app_with(Options {
            pitr: true,
            drill_pitr: true,
            ..Options::default()
        })
        .await,
    )
    .await;
    back_up(&app).await;
    // The newest base backup ends after this test's database exists: every moment the
    // drill may pick has it.
    crate::backups::pitr::base_backup(&app).await;
    let pitr = app.state.backups().pitr.clone().unwrap();

    // Through the runner, as the scheduler runs it (minutes: longer than a request may
    // stay open).
    let finished = app::jobs::ssr::run(
        &app.state,
        &app::drills::ssr::RESTORE_DRILL,
        super::cli_firing(),
        Default::default(),
    )
    .await
    .unwrap()
    .expect("no other drill is running");
    let report = finished
        .report::<app::drills::ssr::run::DrillReport>()
        .unwrap();
    let drill = super::drill_of(&app, report.drill_id).await;
    assert_eq!(drill.status, DrillStatus::Passed, "{drill:?}");

    let postgres: Vec<_> = drill
        .steps
        .iter()
        .filter(|s| s.store == Some(StoreKind::Postgres))
        .collect();
    let names: Vec<&str> = postgres.iter().map(|s| s.name.as_str()).collect();
    // The WAL was switched and archived first, so latest holds the drill's start.
    let archive = names.iter().position(|n| *n == "pitr archive");
    let latest_at = names.iter().position(|n| *n == "pitr latest");
    assert!(archive.is_some() && archive < latest_at, "{names:?}");
    assert!(
        postgres[archive.unwrap()].ok,
        "{:?}",
        postgres[archive.unwrap()]
    );
    for (restore, to) in [("pitr latest", "to latest"), ("pitr point", "to 20")] {
        let at = names
            .iter()
            .position(|n| *n == restore)
            .unwrap_or_else(|| panic!("no {restore} step: {names:?}"));
        let step = postgres[at];
        assert!(step.ok, "{step:?}");
        let detail = step.detail.clone().unwrap_or_default();
        assert!(detail.starts_with(to), "{detail}");
        assert!(detail.contains("history chain of"), "{detail}");
        // Its teardown follows it.
        let teardown = postgres[at + 1];
        assert_eq!(teardown.name, "teardown", "{names:?}");
        assert!(teardown.ok, "{teardown:?}");
        assert!(
            teardown
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("stopped and deleted")),
            "{teardown:?}"
        );
    }
    // PostgreSQL's measured recovery is the restore to latest.
    let latest = postgres.iter().find(|s| s.name == "pitr latest").unwrap();
    let pg = drill
        .stores
        .iter()
        .find(|s| s.store == StoreKind::Postgres)
        .unwrap();
    assert_eq!(pg.recovery_ms, latest.ms);
    // Nothing of the drill keeps running.
    let run_id: i64 = sqlx::query_scalar("select run_id from drills where id = $1")
        .bind(drill.id)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert!(
        sides::list(&pitr)
            .iter()
            .all(|s| s.record.as_ref().is_none_or(|r| r.run_id != run_id)),
        "{:?}",
        sides::list(&pitr)
    );
}

#[tokio::test]
async fn postgresql_s_recovery_point_now_is_the_archive_s_lag_once_a_base_backup_exists() {
    let app = crate::helpers::spawn_app_with_pitr().await;
    // No dump of this test's database exists: without the archive there is no
    // recovery point to show at all.
    crate::backups::pitr::base_backup(&app).await;
    let overview = app::drills::ssr::overview::overview(&app.state)
        .await
        .unwrap();
    let pg = overview
        .objectives
        .iter()
        .find(|o| o.store == StoreKind::Postgres)
        .unwrap();
    assert!(pg.rpo_from_archive, "{pg:?}");
    let lag = pg.rpo_measured_ms.expect("measured from the archive");
    let timeout = app.state.backups().pitr.as_ref().unwrap().archive_timeout;
    assert!(
        lag <= (timeout * 3).as_millis() as i64,
        "the archive keeps up within three archive timeouts: {pg:?}"
    );
    let ch = overview
        .objectives
        .iter()
        .find(|o| o.store == StoreKind::Clickhouse)
        .unwrap();
    assert!(
        !ch.rpo_from_archive && ch.rpo_measured_ms.is_none(),
        "{ch:?}"
    );
}
