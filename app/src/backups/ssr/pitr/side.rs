//! A side cluster recovered to a point: pgBackRest restores the repository into a new
//! data directory, a PostgreSQL is started on it on another port, and it replays the
//! archived WAL up to the point (or all of it, for "latest") and is promoted. The live
//! cluster is not touched. The side cluster keeps running for inspection until stopped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::Connection;
use time::OffsetDateTime;

use super::{PgBackRest, PitrSettings};
use crate::backups::ssr::{BackupError, BackupSettings};

/// How far a restore replays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Everything archived.
    Latest,
    /// Up to this moment (transactions committed after it are not replayed).
    Time(OffsetDateTime),
}

/// A recovered side cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Side {
    pub port: u16,
    pub data_dir: PathBuf,
    /// The last transaction replayed: the point the restore reached.
    pub reached: Option<OffsetDateTime>,
}

/// A server program (`pg_ctl`, `pg_controldata`): in `SALVAGE_PG_BIN_DIR`, else the
/// newest of Debian's `/usr/lib/postgresql/<version>/bin`, else the `PATH`.
pub fn server_tool(settings: &BackupSettings, name: &str) -> PathBuf {
    if let Some(dir) = &settings.pg_bin_dir {
        return dir.join(name);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin").join(name))
        .filter(|path| path.exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| PathBuf::from(name))
}

/// The settings a recovering server may not have lower than the primary had, as the
/// restored control file records them (`pg_controldata`): the live server may be the one
/// that is lost, so they are read from the backup, never asked of it.
async fn primary_limits(
    settings: &BackupSettings,
    pitr: &PitrSettings,
    dir: &str,
) -> Result<Vec<String>, BackupError> {
    let output = as_owner(pitr, &server_tool(settings, "pg_controldata"))
        .arg(dir)
        .output()
        .await
        .map_err(|error| {
            BackupError::tool(format!("pg_controldata could not be started: {error}"))
        })?;
    if !output.status.success() {
        return Err(BackupError::tool(format!(
            "pg_controldata failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(limits_of(&String::from_utf8_lossy(&output.stdout)))
}

/// `-c name=value` for each limit `pg_controldata` printed.
pub fn limits_of(controldata: &str) -> Vec<String> {
    const LIMITS: [(&str, &str); 5] = [
        ("max_connections setting:", "max_connections"),
        ("max_worker_processes setting:", "max_worker_processes"),
        ("max_wal_senders setting:", "max_wal_senders"),
        ("max_prepared_xacts setting:", "max_prepared_transactions"),
        ("max_locks_per_xact setting:", "max_locks_per_transaction"),
    ];
    controldata
        .lines()
        .filter_map(|line| {
            let (label, name) = LIMITS.iter().find(|(label, _)| line.starts_with(label))?;
            let value = line[label.len()..].trim();
            value
                .chars()
                .all(|c| c.is_ascii_digit())
                .then(|| format!("-c {name}={value}"))
        })
        .collect()
}

/// A command run as the user pgBackRest runs as (the data directory's owner).
fn as_owner(pitr: &PitrSettings, program: &Path) -> tokio::process::Command {
    match &pitr.run_as {
        Some(user) => {
            let mut command = tokio::process::Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program);
            command
        }
        None => tokio::process::Command::new(program),
    }
}

async fn pg_ctl_run(
    settings: &BackupSettings,
    pitr: &PitrSettings,
    args: &[&str],
) -> Result<(), BackupError> {
    let output = as_owner(pitr, &server_tool(settings, "pg_ctl"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|error| BackupError::tool(format!("pg_ctl could not be started: {error}")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(BackupError::tool(format!(
        "pg_ctl {} failed: {}",
        args.first().copied().unwrap_or_default(),
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

/// Restores into `data_dir` (which must not exist yet) up to `target`, starts a
/// PostgreSQL on `port` there, waits (at most `wait`) until it has replayed and been
/// promoted, and says the point it reached. `url` is how to reach the live cluster; the
/// side cluster answers to the same roles on `port`.
pub async fn start(
    settings: &BackupSettings,
    pitr: &PitrSettings,
    data_dir: &Path,
    port: u16,
    target: Target,
    url: &url::Url,
    wait: Duration,
) -> Result<Side, BackupError> {
    if data_dir.exists() {
        return Err(BackupError::Refused(format!(
            "{} exists: a side cluster restores into a new directory",
            data_dir.display()
        )));
    }
    let dir = data_dir.display().to_string();
    let pg1 = format!("--pg1-path={dir}");
    let mut args = vec![pg1.as_str(), "restore", "--archive-mode=off"];
    let time_target;
    match target {
        Target::Latest => args.push("--type=default"),
        Target::Time(at) => {
            time_target = format!("--target={}", pg_time(at));
            args.extend([
                "--type=time",
                time_target.as_str(),
                "--target-action=promote",
            ]);
        }
    }
    PgBackRest::new(pitr).run(&args).await?;
    let limits = primary_limits(settings, pitr, &dir).await?.join(" ");
    // No Unix socket: its path under a deep data directory can pass the kernel's
    // 107-byte limit ("could not create any Unix-domain sockets"), and the side
    // cluster is only ever reached over TCP on 127.0.0.1.
    let options =
        format!("-p {port} -k '' -c listen_addresses=127.0.0.1 -c archive_mode=off {limits}");
    let log = format!("{dir}/side.log");
    // `pg_ctl` only says "could not start server. Examine the log output."; the log
    // goes with the directory, so its reason is carried into the error.
    pg_ctl_run(
        settings,
        pitr,
        &[
            "start", "-D", &dir, "-l", &log, "-w", "-t", "600", "-o", &options,
        ],
    )
    .await
    .map_err(|error| {
        BackupError::tool(format!("{error} (the server said: {})", server_said(&log)))
    })?;
    let mut side_url = url.clone();
    side_url
        .set_port(Some(port))
        .map_err(|()| BackupError::tool("the database URL has no port to change"))?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Ok(mut conn) = sqlx::PgConnection::connect(side_url.as_str()).await {
            let state = sqlx::query!(
                r#"select pg_is_in_recovery() as "recovering!",
                          pg_last_xact_replay_timestamp() as reached"#
            )
            .fetch_one(&mut conn)
            .await;
            if let Ok(row) = state {
                if !row.recovering {
                    return Ok(Side {
                        port,
                        data_dir: data_dir.to_owned(),
                        reached: row.reached,
                    });
                }
            }
        }
        // A server that stopped (recovery ended short of its target, a setting it
        // refuses) will not come back: say why at once, from its log.
        if !data_dir.join("postmaster.pid").exists() {
            return Err(BackupError::tool(format!(
                "the side cluster on port {port} stopped during its recovery: {}",
                server_said(&log)
            )));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(BackupError::tool(format!(
                "the side cluster on port {port} did not finish its recovery in {} s (see {log})",
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The last FATAL or PANIC line of a server log, without its prefix: why a server that
/// stopped stopped.
fn server_said(log: &str) -> String {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .rfind(|line| line.contains("FATAL") || line.contains("PANIC"))
        .map(|line| {
            line.split_once(": ")
                .map_or(line, |(_, said)| said)
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|| "no FATAL line in its log".to_owned())
}

/// Stops the side cluster in `data_dir` and deletes it.
pub async fn stop(
    settings: &BackupSettings,
    pitr: &PitrSettings,
    data_dir: &Path,
) -> Result<(), BackupError> {
    let dir = data_dir.display().to_string();
    if data_dir.join("postmaster.pid").exists() {
        pg_ctl_run(settings, pitr, &["stop", "-D", &dir, "-m", "fast", "-w"]).await?;
    }
    // A restore killed a moment ago may still be exiting as `rm` walks the directory:
    // a second pass takes what it wrote last.
    for attempt in 1..=3 {
        let removed = as_owner(pitr, Path::new("rm"))
            .args(["-rf", "--", &dir])
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .map_err(|error| BackupError::tool(format!("rm could not be started: {error}")))?;
        if removed.success() && !data_dir.exists() {
            return Ok(());
        }
        if attempt < 3 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    Err(BackupError::Storage(format!("{dir} could not be deleted")))
}

/// A moment as pgBackRest's `--target` reads it: UTC with its offset, microseconds.
fn pg_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_primary_limits_are_read_from_the_control_data() {
        let printed = "wal_level setting:                    replica\n\
                       max_connections setting:              300\n\
                       max_worker_processes setting:         8\n\
                       max_wal_senders setting:              10\n\
                       max_prepared_xacts setting:           0\n\
                       max_locks_per_xact setting:           64\n";
        assert_eq!(
            super::limits_of(printed),
            vec![
                "-c max_connections=300",
                "-c max_worker_processes=8",
                "-c max_wal_senders=10",
                "-c max_prepared_transactions=0",
                "-c max_locks_per_transaction=64",
            ]
        );
    }

    #[test]
    fn a_target_time_is_written_in_utc_with_microseconds() {
        let at = time::macros::datetime!(2026-12-07 03:04:05.000123 +01:00);
        assert_eq!(super::pg_time(at), "2026-12-07 02:04:05.000123+00");
    }
}
