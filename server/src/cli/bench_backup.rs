//! `salvage bench backup`: Salvage's backup and restore of N ClickHouse rows and the demo
//! PostgreSQL data, beside the raw tools on the same data in the same run (`pg_dump` /
//! `pg_restore`; `clickhouse-client` exporting and importing `Native`), and the peak
//! memory of the process (run it with two N to see it stay flat).

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use secrecy::ExposeSecret;

use super::bench::Scratch;
use crate::config::Settings;
use app::backups::ssr::restore::{self, RestoreRequest};
use app::backups::StoreKind;

/// The process's peak resident memory, MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    super::bench::memory_mib("self", "VmHWM")
}

fn seconds(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

/// Runs `program` with `args` (and `PG*`/config from `env`), failing with its stderr.
fn run_tool(
    program: &str,
    args: &[&str],
    env: &[(&str, String)],
    stdin: Option<&Path>,
    stdout: Option<&Path>,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut command = std::process::Command::new(program);
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    if let Some(path) = stdin {
        command.stdin(std::fs::File::open(path)?);
    }
    if let Some(path) = stdout {
        command.stdout(std::fs::File::create(path)?);
    }
    let output = command
        .output()
        .with_context(|| format!("{program} could not be started"))?;
    anyhow::ensure!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .next()
            .unwrap_or_default()
    );
    Ok(seconds(started))
}

/// `salvage bench backup --rows N`.
pub async fn backup(settings: &Settings, rows: u64) -> anyhow::Result<()> {
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let ch_db = format!("salvage_bench_{suffix}");
    let ch_raw = format!("salvage_bench_raw_{suffix}");
    let ch_side = format!("salvage_bench_side_{suffix}");
    let pg_raw = format!("salvage_bench_raw_{suffix}");
    let pg_side = format!("salvage_bench_side_{suffix}");
    let (mut settings, scratch) = Scratch::create(
        settings,
        &format!("salvage_bench_{suffix}"),
        vec![ch_db.clone(), ch_raw.clone(), ch_side.clone()],
    )
    .await?;
    settings.clickhouse.database = ch_db.clone();
    let dir = std::env::temp_dir().join(format!("salvage-bench-{suffix}"));
    settings.backups.storage = app::backups::ssr::Storage::Directory(dir.join("salvage"));
    let result = measure(&settings, rows, &dir, &ch_raw, &ch_side, &pg_raw, &pg_side).await;
    scratch.drop_all().await;
    let admin = scratch_admin(&settings);
    for db in [&pg_raw, &pg_side] {
        let _ = run_tool(
            "psql",
            &[
                "-X",
                "-q",
                "-c",
                &format!("drop database if exists {db} with (force)"),
            ],
            &admin,
            None,
            None,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// `PG*` variables of the scratch database's owner, on the `postgres` database.
fn scratch_admin(settings: &Settings) -> Vec<(&'static str, String)> {
    let url = url::Url::parse(settings.database_url.expose_secret()).expect("a valid URL");
    vec![
        ("PGHOST", url.host_str().unwrap_or("localhost").to_owned()),
        ("PGPORT", url.port().unwrap_or(5432).to_string()),
        ("PGUSER", url.username().to_owned()),
        ("PGPASSWORD", url.password().unwrap_or_default().to_owned()),
        ("PGDATABASE", "postgres".to_owned()),
    ]
}

async fn measure(
    settings: &Settings,
    rows: u64,
    dir: &Path,
    ch_raw: &str,
    ch_side: &str,
    pg_raw: &str,
    pg_side: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let state = super::common::current_state(settings).await?;
    state
        .clickhouse
        .migrate()
        .await
        .context("ClickHouse must be running")?;
    let organizations = super::demo_backups::application_data(&state, 2_000).await?;
    let ch = state.clickhouse.client();
    let filled = Instant::now();
    ch.query(&format!(
        "INSERT INTO requests (id, ts, ts_ms, organization_id, project, provider, model, status,
             latency_ms, prompt_tokens, completion_tokens, cost_usd, error)
         SELECT generateUUIDv4(), toDateTime('2026-09-01 00:00:00', 'UTC') + intDiv(number * 7776000, {rows}),
             number % 1000, concat('org_', toString(number % 500)), 'chat', 'openai', 'gpt-4o-mini',
             200, number % 2000, number % 4000, number % 800, number / 100000.0,
             if(number % 50 = 0, 'upstream timeout', NULL)
         FROM numbers({rows})"
    ))
    .execute()
    .await?;
    println!(
        "Data: {} ClickHouse rows in `requests` (3 months, 3 partitions; {:.1} s to fill), {} PostgreSQL application rows plus Salvage's own.",
        app::format::group_digits(rows),
        seconds(filled),
        app::format::group_digits(organizations as u64)
    );

    // Salvage: the backup job's two backups (each verified after; timed apart).
    let started = Instant::now();
    let firing = super::common::cli_firing(Some(app::reason::Reason::own("bench")));
    let finished = app::jobs::ssr::run(
        &state,
        &app::backups::ssr::BACKUP,
        firing,
        Default::default(),
    )
    .await
    .map_err(super::common::app_error)?
    .context("a run without a tick always starts")?;
    let report = finished
        .report::<app::backups::ssr::create::BackupReport>()
        .context("the backup job reports")?
        .clone();
    anyhow::ensure!(
        report.error.is_none(),
        "the backup failed: {:?}",
        report.error
    );
    let whole_job = seconds(started);
    let taken = |store: StoreKind| {
        report
            .backups
            .iter()
            .find(|b| b.store == store)
            .cloned()
            .expect("both stores")
    };
    let (pg_backup, ch_backup) = (taken(StoreKind::Postgres), taken(StoreKind::Clickhouse));

    // The raw tools on the same data.
    let owner = tool_env(settings, None);
    let dump = dir.join("raw.dump");
    let raw_dump = run_tool(
        "pg_dump",
        &["--format=custom", "--file", dump.to_str().unwrap()],
        &owner,
        None,
        None,
    )?;
    let client_config = dir.join("clickhouse-client.xml");
    clickhouse_client_config(settings, &client_config)?;
    let native = dir.join("raw.native");
    let database = state.clickhouse.database();
    let raw_export = run_tool(
        "clickhouse-client",
        &[
            &format!("--config-file={}", client_config.display()),
            "--query",
            &format!("SELECT * FROM `{database}`.requests FORMAT Native"),
        ],
        &[],
        None,
        Some(&native),
    )?;

    // Restores: Salvage into side databases, the raw tools into empty ones.
    let side = |id: i64, target: &str, tables: Vec<String>| RestoreRequest {
        backup_id: id,
        target: Some(target.to_owned()),
        tables,
        reason: Some(app::reason::Reason::own("bench")),
        ..Default::default()
    };
    let pg_restored = restore::restore(
        &state,
        &side(pg_backup.backup_id.unwrap(), pg_side, Vec::new()),
        super::common::cli_firing(Some(app::reason::Reason::own("bench"))),
        None,
    )
    .await
    .map_err(super::common::app_error)?;
    let ch_restored = restore::restore(
        &state,
        &side(
            ch_backup.backup_id.unwrap(),
            ch_side,
            vec!["requests".into()],
        ),
        super::common::cli_firing(Some(app::reason::Reason::own("bench"))),
        None,
    )
    .await
    .map_err(super::common::app_error)?;
    anyhow::ensure!(
        pg_restored.error.is_none() && ch_restored.error.is_none(),
        "a restore failed"
    );
    let admin = scratch_admin(settings);
    run_tool(
        "psql",
        &["-X", "-q", "-c", &format!("create database {pg_raw}")],
        &admin,
        None,
        None,
    )?;
    let raw_pg_restore = run_tool(
        "pg_restore",
        &[
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--dbname",
            pg_raw,
            dump.to_str().unwrap(),
        ],
        &tool_env(settings, Some(pg_raw)),
        None,
        None,
    )?;
    let create: String = ch
        .query(
            "SELECT create_table_query FROM system.tables WHERE database = ? AND name = 'requests'",
        )
        .bind(database)
        .fetch_one()
        .await?;
    ch.query(&format!("CREATE DATABASE `{ch_raw}`"))
        .execute()
        .await?;
    ch.query(
        &app::backups::ssr::clickhouse::retarget(&create, ch_raw, "requests")
            .map_err(anyhow::Error::msg)?,
    )
    .execute()
    .await?;
    let raw_import = run_tool(
        "clickhouse-client",
        &[
            &format!("--config-file={}", client_config.display()),
            "--query",
            &format!("INSERT INTO `{ch_raw}`.requests FORMAT Native"),
        ],
        &[],
        Some(&native),
        None,
    )?;

    // A drill of the same two backups: both restored into throwaway databases, verified,
    // the console's queries run on them, torn down.
    let drill_started = Instant::now();
    let options = app::jobs::ssr::RunOptions {
        targets: vec![
            pg_backup.backup_id.unwrap_or_default(),
            ch_backup.backup_id.unwrap_or_default(),
        ],
        ..Default::default()
    };
    let finished = app::jobs::ssr::run(
        &state,
        &app::drills::ssr::RESTORE_DRILL,
        super::common::cli_firing(Some(app::reason::Reason::own("bench"))),
        options,
    )
    .await
    .map_err(super::common::app_error)?
    .context("a run without a tick always starts")?;
    let drill = finished
        .report::<app::drills::ssr::run::DrillReport>()
        .context("the drill reports")?
        .clone();
    anyhow::ensure!(
        drill.status == app::drills::DrillStatus::Passed,
        "the drill did not pass: {:?}",
        drill.error
    );
    let drill_whole = seconds(drill_started);

    let ch_size: u64 = std::fs::metadata(&native)?.len();
    let row = |what: &str, salvage: f64, raw: f64| {
        println!(
            "{what:<34} {salvage:>8.2} s   raw {raw:>8.2} s   {:>5.2}×",
            salvage / raw.max(0.001)
        );
    };
    println!();
    row(
        "PostgreSQL backup (pg_dump)",
        pg_backup.duration_ms as f64 / 1000.0,
        raw_dump,
    );
    row(
        "ClickHouse backup (Native, LZ4)",
        ch_backup.duration_ms as f64 / 1000.0,
        raw_export,
    );
    row(
        "PostgreSQL restore into a side db",
        pg_restored.duration_ms as f64 / 1000.0,
        raw_pg_restore,
    );
    row(
        "ClickHouse restore into a side db",
        ch_restored.duration_ms as f64 / 1000.0,
        raw_import,
    );
    row(
        "Drill of both stores (whole)",
        drill_whole,
        raw_pg_restore + raw_import,
    );
    println!(
        "  the drill's measured recovery (fetch, restore, verify): {:.2} s; the rest is the console's queries and the teardown",
        drill.recovery_ms as f64 / 1000.0
    );
    println!(
        "\nThe job with both verifications and retention: {whole_job:.2} s. ClickHouse: {} of Native, {} in Salvage's LZ4 files.",
        app::format::format_bytes(ch_size as i64),
        app::format::format_bytes(ch_backup.bytes)
    );
    println!(
        "Salvage's restores include their verification (rows and schema of every table); the raw tools check nothing."
    );
    println!(
        "Peak memory of this process: {:.0} MiB (run with another --rows to compare).",
        peak_rss_mib()
    );
    Ok(())
}

/// `PG*` variables for the scratch database (or `database`) as its owner.
pub(crate) fn tool_env(settings: &Settings, database: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = scratch_admin(settings);
    let url = url::Url::parse(settings.database_url.expose_secret()).expect("a valid URL");
    env[4].1 = database
        .map(str::to_owned)
        .unwrap_or_else(|| url.path().trim_start_matches('/').to_owned());
    env
}

/// A client configuration file (mode 0600) holding the ClickHouse password, so it never
/// appears on a command line; the TCP port comes from `SALVAGE_CH_TCP_PORT` (19000 for
/// the local stores).
fn clickhouse_client_config(settings: &Settings, path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let port = std::env::var("SALVAGE_CH_TCP_PORT").unwrap_or_else(|_| "19000".into());
    let host = settings
        .clickhouse
        .url
        .host_str()
        .unwrap_or("127.0.0.1")
        .to_owned();
    let xml = format!(
        "<config><host>{host}</host><port>{port}</port><user>{}</user><password>{}</password></config>\n",
        settings.clickhouse.user,
        settings.clickhouse.password.expose_secret()
    );
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut file, xml.as_bytes())?;
    Ok(())
}
