//! `salvage bench pitr`: PostgreSQL restored to latest from pgBackRest's repository,
//! Salvage's way (the `pitr-restore` job) beside the same by hand (`pgbackrest restore`,
//! `pg_ctl start`, waiting until recovery ends), on the demo data plus a generated
//! database of N GB, in the same run: several rounds, alternating which goes first,
//! with the page cache's dirty pages written out between runs so neither pays for the
//! other's writes; the medians are compared.

use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::{Connection, Executor};

use super::bench::Scratch;
use super::common::{cli_firing, current_state};
use crate::config::Settings;
use app::backups::ssr::pitr::restore::{restore, PitrRestoreRequest};
use app::backups::ssr::pitr::{sides, PgBackRest, PitrSettings};

const DATABASE: &str = "salvage_bench_pitr";

/// A command as the user pgBackRest runs as, to its end; its stderr when it fails.
fn as_owner(pitr: &PitrSettings, program: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut command = match &pitr.run_as {
        Some(user) => {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", user, "--", program]);
            command
        }
        None => std::process::Command::new(program),
    };
    let out = command
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {}: {}",
        args.first().copied().unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// A PostgreSQL server program, found as Salvage's side clusters find it.
fn server_tool(settings: &Settings, name: &str) -> String {
    app::backups::ssr::pitr::side::server_tool(&settings.backups, name)
        .display()
        .to_string()
}

/// By hand: restore to latest into a new directory, start a server there, wait until
/// it has left recovery. Seconds, then the directory is deleted.
async fn by_hand(settings: &Settings, pitr: &PitrSettings, url: &url::Url) -> anyhow::Result<f64> {
    let port = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await?
        .local_addr()?
        .port();
    let dir = pitr.side_dir.join(format!("bench-hand-{port}"));
    let d = dir.display().to_string();
    let started = Instant::now();
    let (config, stanza) = (
        format!("--config={}", pitr.config.display()),
        format!("--stanza={}", pitr.stanza),
    );
    let pg1 = format!("--pg1-path={d}");
    let restored = as_owner(
        pitr,
        "pgbackrest",
        &[
            &config,
            &stanza,
            &pg1,
            "restore",
            "--type=default",
            "--archive-mode=off",
        ],
    );
    // The primary's limits, as `pg_controldata` prints them from the restored control
    // file (what the server's "insufficient parameter settings" asks for).
    let controldata = match &pitr.run_as {
        Some(user) => std::process::Command::new("runuser")
            .args([
                "-u",
                user,
                "--",
                &server_tool(settings, "pg_controldata"),
                &d,
            ])
            .output(),
        None => std::process::Command::new(server_tool(settings, "pg_controldata"))
            .arg(&d)
            .output(),
    };
    let limits = controldata
        .map(|out| app::backups::ssr::pitr::side::limits_of(&String::from_utf8_lossy(&out.stdout)))
        .unwrap_or_default()
        .join(" ");
    let options = format!("-p {port} -k '' -c listen_addresses=127.0.0.1 {limits}");
    let log = format!("{d}/hand.log");
    let pg_ctl = server_tool(settings, "pg_ctl");
    let outcome = async {
        restored?;
        as_owner(
            pitr,
            &pg_ctl,
            &[
                "start", "-D", &d, "-l", &log, "-w", "-t", "3600", "-o", &options,
            ],
        )?;
        let mut side = url.clone();
        side.set_port(Some(port)).ok();
        loop {
            if let Ok(mut conn) = sqlx::PgConnection::connect(side.as_str()).await {
                let recovering: Result<bool, _> = sqlx::query_scalar("select pg_is_in_recovery()")
                    .fetch_one(&mut conn)
                    .await;
                if recovering.is_ok_and(|r| !r) {
                    return anyhow::Ok(started.elapsed().as_secs_f64());
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    .await;
    let _ = as_owner(pitr, &pg_ctl, &["stop", "-D", &d, "-m", "fast", "-w"]);
    let _ = as_owner(pitr, "rm", &["-rf", "--", &d]);
    outcome
}

/// `salvage bench pitr`.
pub async fn pitr(settings: &Settings, gb: u64, rounds: u32) -> anyhow::Result<()> {
    anyhow::ensure!((1..=100).contains(&gb), "--gb: between 1 and 100");
    anyhow::ensure!((1..=20).contains(&rounds), "--rounds: between 1 and 20");
    let state = current_state(settings).await?;
    let pitr = state
        .backups()
        .pitr
        .clone()
        .context("point-in-time recovery is off: set SALVAGE_PGBACKREST_CONFIG (scripts/stores.sh start does)")?;
    let (_, scratch) = Scratch::create(settings, DATABASE, Vec::new()).await?;
    let outcome = measure(settings, &state, &pitr, gb, rounds).await;
    scratch.drop_all().await;
    outcome
}

async fn measure(
    settings: &Settings,
    state: &app::server::AppState,
    pitr: &PitrSettings,
    gb: u64,
    rounds: u32,
) -> anyhow::Result<()> {
    let mut url = url::Url::parse(secrecy::ExposeSecret::expose_secret(
        settings
            .migrate_database_url
            .as_ref()
            .unwrap_or(&settings.database_url),
    ))?;
    let live = url.clone();
    url.set_path(DATABASE);
    let mut conn = sqlx::PgConnection::connect(url.as_str()).await?;
    eprintln!("Generating {gb} GB in {DATABASE}…");
    conn.execute("create table filler (id bigint primary key, pad text not null)")
        .await?;
    // ~1 KB a row: a million rows a gigabyte.
    for part in 0..gb {
        let from = part * 1_000_000 + 1;
        sqlx::query(
            "insert into filler select g, repeat(md5(g::text), 31) from generate_series($1, $2) g",
        )
        .bind(from as i64)
        .bind((from + 999_999) as i64)
        .execute(&mut conn)
        .await?;
    }
    let size: i64 =
        sqlx::query_scalar("select sum(pg_database_size(datname))::bigint from pg_database")
            .fetch_one(&mut conn)
            .await?;
    conn.close().await?;
    eprintln!("A base backup, then the WAL switched and archived (pgBackRest check)…");
    let tool = PgBackRest::new(pitr);
    tool.run(&["backup", "--type=incr"]).await?;
    tool.run(&["check"]).await?;

    let (mut hands, mut salvages, mut last) = (Vec::new(), Vec::new(), None);
    for round in 1..=rounds {
        // Odd rounds by hand first, even rounds Salvage first.
        for salvage_first in [round % 2 == 0, round % 2 != 0] {
            settle().await;
            if salvage_first {
                eprintln!("Round {round}: restoring to latest with Salvage…");
                let report = with_salvage(state, pitr).await?;
                salvages.push(report.restore_ms as f64 / 1000.0);
                last = Some(report);
            } else {
                eprintln!("Round {round}: restoring to latest by hand…");
                hands.push(by_hand(settings, pitr, &live).await?);
            }
        }
    }
    let report = last.context("no round ran")?;
    let (hand, salvage) = (median(&mut hands), median(&mut salvages));
    let listed = |times: &[f64]| {
        times
            .iter()
            .map(|t| format!("{t:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "PostgreSQL to latest from pgBackRest, {} cluster ({gb} GB generated), median of {rounds} rounds:",
        app::format::format_bytes(size)
    );
    println!(
        "  by hand (pgbackrest restore, pg_ctl start, recovery)  {hand:>8.1} s   (each: {})",
        listed(&hands)
    );
    println!(
        "  Salvage (pitr-restore: the same, and its checks)      {salvage:>8.1} s   {:.2}x   (each: {})",
        salvage / hand,
        listed(&salvages)
    );
    println!(
        "  Salvage's verification after it                      {:>8.1} s   ({} rows in {} tables counted, history chain of {})",
        report.verify_ms as f64 / 1000.0,
        app::format::group_digits(report.rows.max(0) as u64),
        report.tables.len(),
        report.chain_entries
    );
    Ok(())
}

/// Salvage's `pitr-restore` to latest, then its side cluster torn down.
async fn with_salvage(
    state: &app::server::AppState,
    pitr: &PitrSettings,
) -> anyhow::Result<app::backups::ssr::pitr::restore::PitrRestoreReport> {
    let request = PitrRestoreRequest {
        to: "latest".into(),
        port: None,
        reason: None,
    };
    let reason = app::reason::Reason::parse("benchmark").ok();
    let report = restore(state, &request, cli_firing(reason.clone()), None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stopped = sides::tear_down(
        state,
        pitr,
        report.port,
        &app::auth::ssr::Actor::cli(),
        reason.unwrap_or_else(|| app::reason::Reason::own("benchmark")),
    )
    .await;
    anyhow::ensure!(
        report.error.is_none(),
        "Salvage's restore failed: {:?}",
        report.error
    );
    stopped.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(report)
}

/// The previous run's deleted directory written out of the page cache before the next
/// run starts its clock.
async fn settle() {
    let _ = tokio::process::Command::new("sync").status().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    match times.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => times[n / 2],
        n => (times[n / 2 - 1] + times[n / 2]) / 2.0,
    }
}
