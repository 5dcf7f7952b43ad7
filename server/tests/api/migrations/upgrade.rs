//! Safe upgrades through the real binary: the pre-upgrade backup `salvage migrate`
//! takes, `--no-backup`, `--rollback-to` (and what it refuses), and `salvage check`.

use std::process::Output;

use crate::cli::{salvage_env, salvage_with};
use crate::helpers::{base_settings, closed_port, spawn_app, TestApp};
use app::auth::Role;

/// The version before the upgrades' own migration (which made `schema_upgrades`), and the
/// migrations since: what a database of that release gets applied.
const PREVIOUS: i64 = 20261128000007;
const APPLIED: [i64; 7] = [
    20261128000008,
    20261204000001,
    20261205000001,
    20261206000001,
    20261206000002,
    20261207000001,
    20261207000002,
];
const CURRENT: i64 = APPLIED[APPLIED.len() - 1];

fn out(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Takes `app`'s database back to the previous version's schema, as a database the
/// previous release made would be.
async fn at_previous_version(app: &TestApp) {
    sqlx::raw_sql(
        "alter table requests_fallback drop constraint requests_fallback_id_org_key,
             add constraint requests_fallback_pkey primary key (seq),
             add constraint requests_fallback_id_org_key unique (id, organization_id);
         alter table events_fallback drop constraint events_fallback_id_org_key,
             add constraint events_fallback_pkey primary key (seq),
             add constraint events_fallback_id_org_key unique (id, organization_id);
         drop table fallback_key_depths;
         alter table fallback_depth_deltas drop column key_id;
         create index requests_fallback_key_idx on requests_fallback (key_id) where key_id is not null;
         create index events_fallback_key_idx on events_fallback (key_id) where key_id is not null;
         alter table requests_fallback drop constraint requests_fallback_id_org_key,
             add constraint requests_fallback_org_id_key unique (organization_id, id);
         alter table events_fallback drop constraint events_fallback_id_org_key,
             add constraint events_fallback_org_id_key unique (organization_id, id);
         create or replace function fallback_depth_inserted() returns trigger language plpgsql as $$
         begin
             insert into fallback_depth_deltas (queue, delta)
             select tg_argv[0], count(*) from inserted having count(*) > 0;
             return null;
         end $$;
         create or replace function fallback_depth_deleted() returns trigger language plpgsql as $$
         begin
             insert into fallback_depth_deltas (queue, delta)
             select tg_argv[0], -count(*) from deleted having count(*) > 0;
             return null;
         end $$;
         create or replace function fold_fallback_depths() returns void language sql as $$
             with moved as (delete from fallback_depth_deltas returning queue, delta)
             update fallback_queues q set depth = q.depth + s.total
               from (select queue, sum(delta) as total from moved group by queue) s
              where q.queue = s.queue
         $$;
         drop trigger background_migration_heartbeat on cron_job_runs;
         drop function background_migration_heartbeat();
         drop table background_migrations;
         drop table schema_upgrades;
         alter table webhook_events drop column payload_bytes;
         drop index restores_run_id;
         alter table restores add column cancel_requested boolean not null default false;
         alter table webhook_redrives drop column run_id,
             add column cancel_requested boolean not null default false,
             add column heartbeat_at timestamptz not null default now();
         drop table ingest_key_sources;
         drop table ingest_key_usage;
         alter table ingest_keys drop column first_used_at;
         drop table schema_events;
         alter table recovery_objectives drop column functional_days, drop column tabletop_days;
         delete from _sqlx_migrations where version >= 20261128000008;",
    )
    .execute(&app.pg)
    .await
    .unwrap();
}

/// `salvage args…` on `app`'s databases, with its backup directory.
fn salvage_on(app: &TestApp, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let settings = base_settings();
    let app::backups::ssr::Storage::Directory(dir) = &app.state.backups().storage else {
        panic!("test apps back up to a directory");
    };
    let dir = dir.display().to_string();
    let mut env = vec![
        ("DATABASE_URL", app.database_url.as_str()),
        ("CLICKHOUSE_URL", settings.clickhouse.url.as_str()),
        ("CLICKHOUSE_DATABASE", app.clickhouse.database()),
        ("SALVAGE_BACKUP_DIR", dir.as_str()),
    ];
    env.extend_from_slice(extra);
    salvage_env(args, "", &env)
}

async fn exists(app: &TestApp, relation: &str) -> bool {
    sqlx::query_scalar("select to_regclass($1) is not null")
        .bind(relation)
        .fetch_one(&app.pg)
        .await
        .unwrap()
}

async fn emails(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("select email from users order by email")
        .fetch_all(&app.pg)
        .await
        .unwrap()
}

#[tokio::test]
async fn migrate_takes_the_pre_upgrade_backup_and_rollback_to_restores_it() {
    let app = spawn_app().await;
    at_previous_version(&app).await;
    app.add_user("before@example.com", Role::Operator).await;
    // Rows a key queued under the previous release: the per-key depths start from them.
    sqlx::query(
        "insert into requests_fallback (organization_id, id, ts, row_json, key_id)
         select 'org_1', gen_random_uuid(), now(), '{}', 7 from generate_series(1, 3)",
    )
    .execute(&app.pg)
    .await
    .unwrap();

    let migrate = salvage_on(&app, &["migrate"], &[]);
    assert!(migrate.status.success(), "{}", out(&migrate));
    let key_depth: i64 =
        sqlx::query_scalar("select depth from fallback_key_depths where key_id = 7")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(key_depth, 3, "the migration counted the key's queued rows");
    let (backup_id, trigger, status): (i64, String, String) =
        sqlx::query_as("select id, trigger, status from backups where store = 'postgres'")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(
        (trigger.as_str(), status.as_str()),
        ("pre-upgrade", "completed")
    );
    assert!(
        out(&migrate).contains(&format!("pre-upgrade backup {backup_id} taken")),
        "{}",
        out(&migrate)
    );
    assert!(
        out(&migrate).contains("ok   round trip"),
        "{}",
        out(&migrate)
    );
    let upgrade: (Option<i64>, i64, Vec<i64>, Option<i64>, Option<String>) = sqlx::query_as(
        "select from_version, to_version, applied, backup_id, backup_skipped from schema_upgrades",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(
        upgrade,
        (
            Some(PREVIOUS),
            CURRENT,
            APPLIED.to_vec(),
            Some(backup_id),
            None
        )
    );
    let title: String =
        sqlx::query_scalar("select title from runbook_history where kind = 'upgrade'")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(
        title,
        format!(
            "Schema upgraded from {PREVIOUS} to {CURRENT} after pre-upgrade backup {backup_id}"
        )
    );

    // Life goes on after the upgrade, then it turns out to be bad.
    app.add_user("after@example.com", Role::Operator).await;
    let scheduled = crate::helpers::run_job(&app, "backup").await;
    let other: i64 = sqlx::query_scalar(
        "select id from backups where store = 'postgres' and trigger <> 'pre-upgrade'",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap_or_else(|_| panic!("the backup job took a PostgreSQL backup: {scheduled}"));

    // Refused, with nothing changed: another kind of backup, a wrong confirmation.
    let id = other.to_string();
    let refused = salvage_on(
        &app,
        &["migrate", "--rollback-to", &id, "--confirm", &id],
        &[],
    );
    assert!(!refused.status.success());
    assert!(
        out(&refused).contains(&format!(
            "backup {other} is a PostgreSQL backup taken by external"
        )),
        "{}",
        out(&refused)
    );
    let id = backup_id.to_string();
    let refused = salvage_on(
        &app,
        &["migrate", "--rollback-to", &id, "--confirm", "yes"],
        &[],
    );
    assert!(!refused.status.success());
    assert!(
        out(&refused).contains("type the backup's id"),
        "{}",
        out(&refused)
    );
    assert!(exists(&app, "public.background_migrations").await);
    assert_eq!(emails(&app).await.len(), 2);

    let rolled = salvage_on(
        &app,
        &[
            "migrate",
            "--rollback-to",
            &id,
            "--confirm",
            &id,
            "--reason",
            "the upgrade broke replay",
        ],
        &[],
    );
    assert!(rolled.status.success(), "{}", out(&rolled));
    assert!(out(&rolled).contains("verified"), "{}", out(&rolled));

    // The schema and the data are the pre-upgrade backup's.
    let version: i64 = sqlx::query_scalar("select max(version) from _sqlx_migrations")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(version, PREVIOUS);
    assert!(!exists(&app, "public.background_migrations").await);
    assert!(!exists(&app, "public.schema_upgrades").await);
    assert_eq!(emails(&app).await, ["before@example.com"]);
    // What was live is kept aside, for a person to look at.
    let aside: String = sqlx::query_scalar(
        "select nspname::text from pg_namespace where nspname like 'salvage_rollback_%'",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    let kept: i64 = sqlx::query_scalar(&format!(
        "select count(*) from {aside}.users where email = 'after@example.com'"
    ))
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(kept, 1);
    // The rollback is recorded in the restored history, whose chain still verifies.
    let (title, reason): (String, Option<String>) =
        sqlx::query_as("select title, reason from runbook_history order by id desc limit 1")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert!(
        title.starts_with(&format!(
            "Upgrade rolled back to pre-upgrade backup {backup_id}"
        )),
        "{title}"
    );
    assert_eq!(reason.as_deref(), Some("the upgrade broke replay"));
    let chain = app::history::chain::verify(
        &app.pg,
        &app.clickhouse,
        time::OffsetDateTime::now_utc(),
        "test",
    )
    .await
    .unwrap();
    assert!(chain.first_broken.is_none(), "{:?}", chain.first_broken);
    let restores: i64 = sqlx::query_scalar("select count(*) from restores where backup_id = $1")
        .bind(backup_id)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(restores, 1);
}

#[tokio::test]
async fn no_backup_skips_the_backup_and_records_why() {
    let app = spawn_app().await;
    at_previous_version(&app).await;

    let migrate = salvage_on(&app, &["migrate", "--no-backup", "copied on staging"], &[]);

    assert!(migrate.status.success(), "{}", out(&migrate));
    assert!(
        out(&migrate).contains("WITHOUT a backup"),
        "{}",
        out(&migrate)
    );
    let backups: i64 = sqlx::query_scalar("select count(*) from backups")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(backups, 0);
    let skipped: (Option<i64>, Option<String>) =
        sqlx::query_as("select backup_id, backup_skipped from schema_upgrades")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(
        skipped,
        (None, Some("--no-backup: copied on staging".to_owned()))
    );
    let reason: Option<String> =
        sqlx::query_scalar("select reason from runbook_history where kind = 'upgrade'")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(reason.as_deref(), Some("--no-backup: copied on staging"));
}

#[tokio::test]
async fn check_passes_on_healthy_stores_and_fails_naming_the_store_that_is_down() {
    let app = spawn_app().await;

    let healthy = salvage_with(&app.database_url, app.clickhouse.database(), &["check"], "");
    assert!(healthy.status.success(), "{}", out(&healthy));
    for name in [
        "postgres",
        "clickhouse",
        "schema",
        "history",
        "queues",
        "round trip",
    ] {
        assert!(
            out(&healthy).contains(&format!("ok   {name}")),
            "{name}: {}",
            out(&healthy)
        );
    }
    // The scratch databases are gone and the live queues untouched.
    let text = out(&healthy);
    let at = text
        .find("salvage_check_")
        .expect("the round trip names its scratch databases");
    let scratch = &text[at..at + "salvage_check_".len() + 32];
    let left: i64 = sqlx::query_scalar("select count(*) from pg_database where datname = $1")
        .bind(scratch)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    let left_in_clickhouse: u64 = app
        .clickhouse
        .client()
        .query("SELECT count() FROM system.databases WHERE name = ?")
        .bind(scratch)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((left, left_in_clickhouse), (0, 0), "{scratch}");
    assert_eq!(app.count("requests_fallback").await, 0);

    let settings = base_settings();
    let closed = format!("http://127.0.0.1:{}", closed_port().await);
    let down = salvage_env(
        &["check"],
        "",
        &[
            ("DATABASE_URL", app.database_url.as_str()),
            ("CLICKHOUSE_URL", closed.as_str()),
            ("CLICKHOUSE_DATABASE", app.clickhouse.database()),
        ],
    );
    assert_eq!(down.status.code(), Some(1), "{}", out(&down));
    assert!(out(&down).contains("ok   postgres"), "{}", out(&down));
    assert!(out(&down).contains("FAIL clickhouse"), "{}", out(&down));
    assert!(
        out(&down).contains("smoke checks failed: clickhouse, round trip"),
        "{}",
        out(&down)
    );

    let mut pg_down = url::Url::parse(&app.database_url).unwrap();
    pg_down.set_port(Some(closed_port().await)).unwrap();
    let down = salvage_env(
        &["check"],
        "",
        &[
            ("DATABASE_URL", pg_down.as_str()),
            ("CLICKHOUSE_URL", settings.clickhouse.url.as_str()),
            ("CLICKHOUSE_DATABASE", app.clickhouse.database()),
        ],
    );
    assert_eq!(down.status.code(), Some(1), "{}", out(&down));
    assert!(out(&down).contains("FAIL postgres"), "{}", out(&down));
    assert!(out(&down).contains("ok   clickhouse"), "{}", out(&down));
    assert!(
        out(&down).contains("smoke checks failed: postgres, schema, history, queues, background migrations, round trip"),
        "{}",
        out(&down)
    );
}
