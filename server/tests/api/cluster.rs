//! Against a real ClickHouse cluster (ZooKeeper and two ClickHouse servers, one shard of
//! two replicas, started by `scripts/stores.sh start cluster`): ingest through replica
//! outages and a replay that stores every row once on every replica, and a backup and
//! in-place restore (and its rollback) that replaces partitions on both replicas.
//!
//! Ignored in `make test` (the cluster takes a second ZooKeeper-backed start); `make
//! test-cluster` starts the cluster and runs them, and CI runs both.

use std::time::Duration;

use app::backups::{RestoreStatus, StoreKind};
use app::server::clickhouse::ClickHouse;
use secrecy::SecretString;

use crate::backups::{back_up, ch_count, ch_rows, in_place, restore, side, with_data};
use crate::helpers::{eventually, run_job, spawn_app_with, Options, TestApp};
use crate::queues::{ingest_key, post_rows, request_rows};

fn cluster_script(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/cluster.sh");
    let status = std::process::Command::new(script)
        .args(args)
        .status()
        .expect("run scripts/cluster.sh");
    assert!(status.success(), "scripts/cluster.sh {args:?} failed");
}

/// Stops replica `n` (the process ends: a real outage).
fn stop_replica(n: u8) {
    cluster_script(&["stop-node", &n.to_string()]);
}

/// Starts every replica that is down when dropped, so a failing test leaves the cluster
/// whole for the next one (and for dropping its database on every replica).
struct Replicas;

impl Replicas {
    fn start(n: u8) {
        cluster_script(&["start-node", &n.to_string()]);
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        Self::start(1);
        Self::start(2);
    }
}

/// One test at a time on the cluster: each stops replicas the other would need.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn cluster_app() -> TestApp {
    spawn_app_with(Options {
        cluster: true,
        ..Options::default()
    })
    .await
}

/// A setting of the local cluster, as `scripts/cluster.sh start` wrote them.
fn cluster_setting(name: &str) -> String {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../.stores/cluster/env");
    let text = std::fs::read_to_string(file).unwrap_or_else(|_| {
        panic!("no {file}: start the local cluster first with `scripts/stores.sh start cluster`")
    });
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{file} has no {name}"))
        .to_owned()
}

/// Points `settings` at the local cluster: replica 1, `CLICKHOUSE_CLUSTER` set.
pub(crate) fn on_the_cluster(settings: &mut salvage::config::Settings) {
    settings.clickhouse.url = cluster_setting("CLICKHOUSE_URL").parse().unwrap();
    settings.clickhouse.password = SecretString::from(cluster_setting("CLICKHOUSE_PASSWORD"));
    settings.clickhouse.layout.cluster = Some(cluster_setting("CLICKHOUSE_CLUSTER"));
}

/// A client on replica `n` alone, on the test's database.
fn replica(app: &TestApp, n: usize) -> ClickHouse {
    let urls = cluster_setting("SALVAGE_CLUSTER_REPLICA_URLS");
    let url = urls.split(',').nth(n - 1).unwrap();
    ClickHouse::new(
        url,
        "default",
        &SecretString::from(cluster_setting("CLICKHOUSE_PASSWORD")),
        app.clickhouse.database(),
    )
}

/// `(rows, distinct ids)` of `table` on replica `n` alone.
async fn on_replica(app: &TestApp, n: usize, table: &str) -> (u64, u64) {
    replica(app, n)
        .client()
        .query(&format!(
            "SELECT count(), uniqExact(toString(id)) FROM `{table}`"
        ))
        .fetch_one()
        .await
        .unwrap_or((u64::MAX, 0))
}

/// Waits until both replicas hold `expected` rows of `table` (replication is
/// asynchronous); panics naming the replica that does not.
async fn both_replicas_hold(app: &TestApp, table: &str, expected: (u64, u64)) {
    for n in [1, 2] {
        let settled = eventually(Duration::from_secs(60), || async {
            on_replica(app, n, table).await == expected
        })
        .await;
        assert!(
            settled,
            "replica {n} holds {:?} of {table}, expected {expected:?}",
            on_replica(app, n, table).await
        );
    }
}

#[tokio::test]
#[ignore = "needs the local ClickHouse cluster: make test-cluster"]
async fn ingest_through_replica_outages_then_replay_stores_every_row_once_on_every_replica() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let app = cluster_app().await;
    let replicas = Replicas;
    let layout: Vec<String> = app
        .clickhouse
        .client()
        .query(
            "SELECT concat(name, ' ', engine) FROM system.tables WHERE database = ? ORDER BY name",
        )
        .bind(app.clickhouse.database())
        .fetch_all()
        .await
        .unwrap();
    assert!(
        layout.contains(&"requests Distributed".to_owned())
            && layout.contains(&"requests_local ReplicatedReplacingMergeTree".to_owned()),
        "{layout:?}"
    );
    // Every statement of Salvage's client carries insert_distributed_sync=1.
    let sync: String = app
        .state
        .clickhouse
        .client()
        .query("SELECT value FROM system.settings WHERE name = 'insert_distributed_sync'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(sync, "1");
    let key = ingest_key(&app).await;

    let (status, answer) = post_rows(&app, &key, &request_rows(0, 40)).await;
    assert_eq!(
        (status, answer["stored"].as_str()),
        (200, Some("clickhouse")),
        "{answer}"
    );

    // Replica 2 out: the synchronous insert lands on replica 1, and a 200 still means
    // stored.
    stop_replica(2);
    let (status, answer) = post_rows(&app, &key, &request_rows(40, 40)).await;
    assert_eq!(
        (status, answer["stored"].as_str()),
        (200, Some("clickhouse")),
        "{answer}"
    );
    assert_eq!(on_replica(&app, 1, "requests_local").await, (80, 80));

    // Replica 1 (the one Salvage talks to) out too: rows wait in PostgreSQL, and a
    // batch sent twice is queued once.
    stop_replica(1);
    for _ in 0..2 {
        let (status, answer) = post_rows(&app, &key, &request_rows(80, 40)).await;
        assert_eq!(
            (status, answer["stored"].as_str()),
            (202, Some("fallback")),
            "{answer}"
        );
    }
    assert_eq!(app.count("requests_fallback").await, 40);

    Replicas::start(1);
    Replicas::start(2);
    // A replica just started may still be reconnecting to ZooKeeper (its tables read
    // only): replay until the queue is empty, as the cron job would.
    let drained = eventually(Duration::from_secs(90), || async {
        let report = run_job(&app, "replay-fallback").await;
        report["outcome"] == "succeeded" && app.count("requests_fallback").await == 0
    })
    .await;
    assert!(drained, "replay did not drain the queue");
    both_replicas_hold(&app, "requests_local", (120, 120)).await;

    // A second replay finds nothing to do and doubles nothing.
    let report = run_job(&app, "replay-fallback").await;
    assert_eq!(report["outcome"], "succeeded", "{report}");
    both_replicas_hold(&app, "requests_local", (120, 120)).await;
    assert_eq!(
        ch_count(&app, app.clickhouse.database(), "requests").await,
        120,
        "the Distributed table reads the shard once"
    );
    drop(replicas);
}

#[tokio::test]
#[ignore = "needs the local ClickHouse cluster: make test-cluster"]
async fn backup_and_in_place_restore_replace_partitions_on_every_replica_and_roll_back() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let app = with_data(cluster_app().await).await;
    let _replicas = Replicas;
    let db = app.clickhouse.database().to_owned();
    both_replicas_hold(&app, "requests_local", (600, 600)).await;
    let backed_up = ch_rows(&app, &db, "requests").await;
    let (_, ch_backup) = back_up(&app).await;

    // After the backup: rows in a month the backup never saw (a partition the restore
    // must drop) and in one it has.
    app.clickhouse
        .client()
        .query(
            "INSERT INTO requests (id, ts, ts_ms, organization_id, project, provider, model, status,
                 latency_ms, prompt_tokens, completion_tokens, cost_usd, error)
             SELECT generateUUIDv4(), toDateTime('2026-10-25 00:00:00', 'UTC') + number * 86400 * 3,
                 0, 'org_9', 'chat', 'openai', 'gpt-4o', 200, 1, 1, 1, 0.0, NULL
             FROM numbers(50)",
        )
        .execute()
        .await
        .unwrap();
    both_replicas_hold(&app, "requests_local", (650, 650)).await;
    let changed = ch_rows(&app, &db, "requests").await;

    // A side restore (what a drill does) reads every shard into plain tables here.
    let side_db = crate::backups::side_name();
    let report = restore(&app, side(ch_backup, &side_db)).await.unwrap();
    assert_eq!(report.status, RestoreStatus::Verified, "{report:?}");
    assert_eq!(ch_rows(&app, &side_db, "requests").await, backed_up);
    crate::backups::drop_side(&app, &side_db).await;

    // Replica 2 down during the restore: it catches up when it returns.
    stop_replica(2);
    let report = restore(&app, in_place(&app, ch_backup, StoreKind::Clickhouse))
        .await
        .unwrap();
    assert_eq!(report.status, RestoreStatus::Verified, "{report:?}");
    Replicas::start(2);
    both_replicas_hold(&app, "requests_local", (600, 600)).await;
    both_replicas_hold(&app, "events_local", (240, 240)).await;
    assert_eq!(ch_rows(&app, &db, "requests").await, backed_up);
    let engines: Vec<String> = app
        .clickhouse
        .client()
        .query("SELECT engine FROM system.tables WHERE database = ? AND name = 'requests_local'")
        .bind(&db)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        engines,
        ["ReplicatedReplacingMergeTree"],
        "the live table stays replicated"
    );

    let done = app::backups::ssr::restore::roll_back(
        &app.state,
        report.restore_id,
        &app::auth::ssr::Actor::cli(),
        Some(crate::helpers::reason("test")),
    )
    .await
    .unwrap();
    assert_eq!(done.status, RestoreStatus::RolledBack);
    both_replicas_hold(&app, "requests_local", (650, 650)).await;
    assert_eq!(ch_rows(&app, &db, "requests").await, changed);
}

#[tokio::test]
#[ignore = "needs the local ClickHouse cluster: make test-cluster"]
async fn salvage_check_runs_its_round_trip_on_the_cluster_with_renamed_tables() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let app = spawn_app_with(Options {
        cluster: true,
        tweak: Some(|settings| settings.clickhouse.layout.requests = "llm_requests".into()),
        ..Options::default()
    })
    .await;
    let report = app::migrations::ssr::check::run(&app.state).await;
    assert!(report.ok(), "{:?}", report.failed());
    let key = ingest_key(&app).await;
    let (status, answer) = post_rows(&app, &key, &request_rows(0, 25)).await;
    assert_eq!(
        (status, answer["stored"].as_str()),
        (200, Some("clickhouse")),
        "{answer}"
    );
    both_replicas_hold(&app, "llm_requests_local", (25, 25)).await;
    // The check's scratch databases are gone from every replica.
    for n in [1, 2] {
        let scratch: u64 = replica(&app, n)
            .client()
            .query("SELECT count() FROM system.databases WHERE name LIKE 'salvage_check_%'")
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(scratch, 0, "replica {n} kept a scratch database");
    }
}
