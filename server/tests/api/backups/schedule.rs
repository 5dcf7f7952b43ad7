//! Each store's backup schedule: at a scheduler's tick the `backup` job backs up the
//! stores whose own times came (PostgreSQL hourly, ClickHouse daily at 03:00 by
//! default); by hand it backs up both.

use app::backups::StoreKind;
use time::{Duration, OffsetDateTime, Time};

use super::app_with_data;
use crate::helpers::{run_job, TestApp};

/// Backups of `store` in the catalogue.
async fn taken(app: &TestApp, store: StoreKind) -> i64 {
    app.count(&format!("backups where store = '{}'", store.as_str()))
        .await
}

/// The scheduler's run of the `backup` job at `tick`, with the clock a second past it.
async fn tick(app: &TestApp, tick: OffsetDateTime) {
    let now = app.state.clock.now();
    app.state.clock.advance(tick + Duration::SECOND - now);
    let job = app::jobs::ssr::find(app.state.jobs(), "backup").unwrap();
    let firing = app::jobs::ssr::Firing {
        trigger: app::jobs::Trigger::Scheduler,
        actor: app::auth::ssr::Actor::system(job.name),
        reason: None,
        caller: app::jobs::ssr::Caller::this_process("salvage scheduler"),
        tick: Some(tick),
    };
    let finished = app::jobs::ssr::run(&app.state, job, firing, Default::default())
        .await
        .unwrap()
        .expect("the tick is this run's");
    assert_eq!(
        finished.status,
        app::jobs::RunStatus::Succeeded,
        "{:?}",
        finished.error
    );
}

#[tokio::test]
async fn each_store_is_backed_up_at_its_own_times_and_both_by_hand() {
    let app = app_with_data().await;
    // The next 03:00 UTC at least two hours from now (the clock only moves forward).
    let now = app.state.clock.now();
    let mut three = now.replace_time(Time::from_hms(3, 0, 0).unwrap());
    while three - now < Duration::hours(2) {
        three += Duration::days(1);
    }

    // 02:00: neither store was ever backed up, so each one's last time counts
    // (PostgreSQL's 02:00, ClickHouse's yesterday's 03:00): both.
    tick(&app, three - Duration::hours(1)).await;
    assert_eq!(
        (
            taken(&app, StoreKind::Postgres).await,
            taken(&app, StoreKind::Clickhouse).await
        ),
        (1, 1)
    );
    // 03:00: PostgreSQL's hour, and ClickHouse's day.
    tick(&app, three).await;
    assert_eq!(
        (
            taken(&app, StoreKind::Postgres).await,
            taken(&app, StoreKind::Clickhouse).await
        ),
        (2, 2)
    );
    // 04:00 and 05:00: PostgreSQL only.
    tick(&app, three + Duration::hours(1)).await;
    tick(&app, three + Duration::hours(2)).await;
    assert_eq!(
        (
            taken(&app, StoreKind::Postgres).await,
            taken(&app, StoreKind::Clickhouse).await
        ),
        (4, 2)
    );
    // The next day's 03:00: both again.
    tick(&app, three + Duration::days(1)).await;
    assert_eq!(
        (
            taken(&app, StoreKind::Postgres).await,
            taken(&app, StoreKind::Clickhouse).await
        ),
        (5, 3)
    );

    // By hand (here `/cron/backup`, an outside scheduler's door): both, whatever the time.
    let answer = run_job(&app, "backup").await;
    assert_eq!(answer["outcome"], "succeeded", "{answer}");
    assert_eq!(
        (
            taken(&app, StoreKind::Postgres).await,
            taken(&app, StoreKind::Clickhouse).await
        ),
        (6, 4)
    );
}
