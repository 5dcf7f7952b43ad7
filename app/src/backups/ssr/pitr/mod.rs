//! Point-in-time recovery for PostgreSQL, driven through pgBackRest: Salvage writes no
//! WAL handling of its own. pgBackRest archives the WAL (the server's `archive_command`),
//! takes the base backups and restores; Salvage runs it, reads its repository
//! (`pgbackrest info`), and measures what it reports against the objectives.
//!
//! - [`PitrSettings`]: where pgBackRest's configuration is, the stanza, the OS user it
//!   runs as (the one that owns the repository and PostgreSQL's data).
//! - [`PgBackRest`]: one pgBackRest command, its output or its error.
//! - `info`: the repository as `pgbackrest info --output=json` describes it.
//! - [`window`]: the oldest and newest moments a restore can reach, and the archive's lag.

pub mod alerts;
pub mod info;
pub mod job;
pub mod restore;
pub mod side;
pub mod sides;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use time::OffsetDateTime;

use super::BackupError;
use crate::server::unix_ms;

/// `SALVAGE_PGBACKREST_*`: pgBackRest as this installation runs it. Absent: no
/// continuous archiving is configured, and PostgreSQL's recovery point is its last dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PitrSettings {
    /// `SALVAGE_PGBACKREST_CONFIG`: pgBackRest's configuration file (the repository, its
    /// cipher passphrase, the stanza's data directory and port). Passed to every command.
    pub config: PathBuf,
    /// `SALVAGE_PGBACKREST_STANZA` (default `salvage`).
    pub stanza: String,
    /// `SALVAGE_PGBACKREST_RUN_AS`: the OS user pgBackRest runs as, through `runuser`,
    /// when Salvage runs as root (the repository must have one owner: PostgreSQL's).
    pub run_as: Option<String>,
    /// `SALVAGE_ARCHIVE_TIMEOUT_SECS`: PostgreSQL's `archive_timeout` (default 60 s), so a
    /// quiet server still archives a segment that often; the lag alert counts in it.
    pub archive_timeout: Duration,
    /// `SALVAGE_PITR_FULL_EVERY_DAYS` (default 7): a full base backup at least this often.
    pub full_every: Duration,
    /// `SALVAGE_PITR_DIFF_EVERY_HOURS` (default 24): a differential at least this often;
    /// the job's other runs (hourly) take incrementals.
    pub diff_every: Duration,
    /// `SALVAGE_PITR_SIDE_DIR`: where side clusters are restored (default: `side` beside
    /// pgBackRest's configuration file). The OS user pgBackRest runs as must own it.
    pub side_dir: PathBuf,
}

/// How long a pgBackRest command waits for another one's lock on the stanza.
pub const LOCK_WAIT: Duration = Duration::from_secs(120);

/// pgBackRest, run with the installation's configuration and stanza.
pub struct PgBackRest<'a> {
    settings: &'a PitrSettings,
}

impl<'a> PgBackRest<'a> {
    pub fn new(settings: &'a PitrSettings) -> Self {
        Self { settings }
    }

    /// The command line: `pgbackrest --config=… --stanza=… <args>`, through `runuser`
    /// when it runs as another user.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = match &self.settings.run_as {
            Some(user) => {
                let mut command = tokio::process::Command::new("runuser");
                command.args(["-u", user, "--", "pgbackrest"]);
                command
            }
            None => tokio::process::Command::new("pgbackrest"),
        };
        command
            .arg(format!("--config={}", self.settings.config.display()))
            .arg(format!("--stanza={}", self.settings.stanza))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs `args` to the end and returns what it printed; a failure is a
    /// [`BackupError::Tool`] naming the command and what pgBackRest said. A command that
    /// finds another holding the stanza's lock (pgBackRest's error 50: a backup, an
    /// expire, a `stanza-create` of a server starting) waits for it, up to [`LOCK_WAIT`].
    pub async fn run(&self, args: &[&str]) -> Result<String, BackupError> {
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        loop {
            match self.run_once(args).await {
                Err(BackupError::Tool(said))
                    if said.contains("ERROR: [050]") && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                done => return done,
            }
        }
    }

    async fn run_once(&self, args: &[&str]) -> Result<String, BackupError> {
        let what = format!("pgbackrest {}", args.first().copied().unwrap_or_default());
        let started = |error: std::io::Error| {
            BackupError::tool(format!(
                "{what} could not be started ({error}); is pgBackRest installed?"
            ))
        };
        // Its own process group, killed whole when this future is dropped (a Cancel):
        // through `runuser`, killing the direct child alone would leave pgBackRest
        // running, writing into a directory that is being deleted.
        let child = self
            .command(args)
            .process_group(0)
            .spawn()
            .map_err(started)?;
        let group = KillGroupOnDrop(child.id());
        let output = child.wait_with_output().await.map_err(started)?;
        std::mem::forget(group);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = stderr
            .lines()
            .chain(stdout.lines())
            .map(str::trim)
            .find(|line| line.contains("ERROR"))
            .or_else(|| stderr.lines().map(str::trim).find(|l| !l.is_empty()))
            .unwrap_or("no message")
            .to_owned();
        Err(BackupError::tool(format!(
            "{what} failed ({}): {said}",
            output.status
        )))
    }

    /// Makes the stanza, or confirms it: pgBackRest's `stanza-create` changes nothing
    /// when the stanza exists and matches the cluster.
    pub async fn stanza_create(&self) -> Result<(), BackupError> {
        self.run(&["stanza-create"]).await.map(|_| ())
    }

    /// The repository, as `pgbackrest info --output=json` describes it.
    pub async fn info(&self) -> Result<info::Repository, BackupError> {
        let json = self.run(&["info", "--output=json"]).await?;
        info::parse(&json, &self.settings.stanza)
    }
}

/// Kills a process group (SIGKILL, with `kill`) when dropped; forgotten once the
/// group's leader has been waited for.
struct KillGroupOnDrop(Option<u32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(leader) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{leader}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// What the archive lets a restore reach, and how far it is behind, at one moment.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    /// The oldest moment a restore can reach: the first base backup's end.
    pub oldest_ms: Option<i64>,
    /// The newest: the last WAL segment archived (a restore to "latest" reaches it).
    pub newest_ms: Option<i64>,
    /// When the last segment was archived (PostgreSQL's own record).
    pub archived_ms: Option<i64>,
    /// Seconds since then, at the moment of reading.
    pub lag_secs: Option<i64>,
    /// Archive attempts that failed since the server's statistics were reset, and the
    /// last one's time.
    pub failed_count: i64,
    pub last_failed_ms: Option<i64>,
    /// pgBackRest's word on the repository (`ok`, `no valid backups`, …).
    pub status: String,
    pub backups: Vec<info::PitrBackup>,
}

/// The window at `now`: the repository's backups from pgBackRest, the archiving's
/// progress from PostgreSQL's `pg_stat_archiver`.
pub async fn window(
    settings: &PitrSettings,
    pg: &sqlx::PgPool,
    now: OffsetDateTime,
) -> Result<Window, BackupError> {
    let repository = PgBackRest::new(settings).info().await?;
    let archiver = sqlx::query!(
        r#"select last_archived_time, failed_count as "failed_count!", last_failed_time
             from pg_stat_archiver"#
    )
    .fetch_one(pg)
    .await
    .map_err(BackupError::postgres)?;
    let archived = archiver.last_archived_time;
    let oldest = repository.backups.first().map(|b| b.stopped_ms);
    Ok(Window {
        oldest_ms: oldest,
        // Nothing is restorable before the first backup has ended.
        newest_ms: oldest.and(archived.map(unix_ms)),
        archived_ms: archived.map(unix_ms),
        lag_secs: archived.map(|at| (now - at).whole_seconds().max(0)),
        failed_count: archiver.failed_count,
        last_failed_ms: archiver.last_failed_time.map(unix_ms),
        status: repository.status,
        backups: repository.backups,
    })
}

/// What a restore of one store can reach now, as `salvage backup window` prints it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoreWindow {
    pub store: super::super::StoreKind,
    /// `pgbackrest` (the WAL archive: any moment in the window) or `backups` (Salvage's
    /// own backups: the moments they were taken).
    pub source: String,
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
    /// When the last WAL segment was archived (the archive only).
    pub archived_ms: Option<i64>,
    /// Seconds the newest restorable moment is behind `now`.
    pub lag_secs: Option<i64>,
}

/// Every store's window at `now`: PostgreSQL's from pgBackRest when archiving is set up,
/// otherwise (and ClickHouse's always) from the newest and oldest complete backups kept.
pub async fn windows(
    state: &crate::server::AppState,
    now: OffsetDateTime,
) -> Result<Vec<StoreWindow>, BackupError> {
    use super::super::StoreKind;
    let mut out = Vec::new();
    for store in StoreKind::ALL {
        if let (StoreKind::Postgres, Some(pitr)) = (store, &state.backups().pitr) {
            let window = window(pitr, &state.pg, now).await?;
            out.push(StoreWindow {
                store,
                source: "pgbackrest".into(),
                oldest_ms: window.oldest_ms,
                newest_ms: window.newest_ms,
                archived_ms: window.archived_ms,
                lag_secs: window.lag_secs,
            });
            continue;
        }
        let kept = sqlx::query!(
            "select min(finished_at) as oldest, max(finished_at) as newest from backups
              where store = $1 and deleted_at is null
                and status in ('completed', 'verified', 'verify_failed')",
            store.as_str()
        )
        .fetch_one(&state.pg)
        .await
        .map_err(BackupError::postgres)?;
        out.push(StoreWindow {
            store,
            source: "backups".into(),
            oldest_ms: kept.oldest.map(unix_ms),
            newest_ms: kept.newest.map(unix_ms),
            archived_ms: None,
            lag_secs: kept.newest.map(|at| (now - at).whole_seconds().max(0)),
        });
    }
    Ok(out)
}
