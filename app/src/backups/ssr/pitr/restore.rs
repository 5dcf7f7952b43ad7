//! The `pitr-restore` job: PostgreSQL restored to a moment (or to the latest archived
//! WAL) into a side cluster on another port, verified, and left running for
//! inspection until it is stopped ([`super::sides`]). On demand, admins only; its input
//! is a [`PitrRestoreRequest`], checked before the run is recorded. The live cluster is
//! never touched.
//!
//! The verification reads the side cluster: every table's rows counted (a table that
//! cannot be read fails it), the history's hash chain walked up to the point, and the
//! schema's migrations compared with the ones this binary carries.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::side::{self, Target};
use super::sides::{self, SideRecord};
use super::PitrSettings;
use crate::auth::ssr::Actor;
use crate::backups::ssr::BackupError;
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::jobs::ssr::{CheckFuture, Job, JobContext, JobFuture, Report, ON_DEMAND};
use crate::jobs::RunStatus;
use crate::server::{unix_ms, AppState};

pub use crate::backups::PITR_RESTORE_JOB;

/// How often a restore in progress beats its heartbeat (and so hears a Cancel).
const HEARTBEAT: Duration = Duration::from_millis(500);

/// How long a side cluster may take to replay before the restore gives up.
const RECOVERY_WAIT: Duration = Duration::from_secs(3600);

pub static PITR_RESTORE: Job = Job {
    name: PITR_RESTORE_JOB,
    description: "Restores PostgreSQL to a moment (or the latest archived WAL) into a side \
                  cluster on another port with pgBackRest, verifies it and keeps it running.",
    schedule: ON_DEMAND,
    grace: Duration::ZERO,
    run: run_pitr_restore,
    permission: crate::auth::Permission::Administer,
    check: Some(check_input),
};

/// What to restore to, and where: the job's input.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PitrRestoreRequest {
    /// `latest`, or a moment in RFC 3339 (`2026-12-07T03:00:00Z`).
    pub to: String,
    /// The side cluster's port; `None`: a free one.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub reason: Option<crate::reason::Reason>,
}

/// The target a request names, or the 422 naming `to`.
pub fn parse_target(to: &str) -> Result<Target, AppError> {
    let to = to.trim();
    if to.eq_ignore_ascii_case("latest") {
        return Ok(Target::Latest);
    }
    OffsetDateTime::parse(to, &time::format_description::well_known::Rfc3339)
        .map(Target::Time)
        .map_err(|_| {
            AppError::invalid(
                "to",
                format!("`{to}` is neither `latest` nor a moment like 2026-12-07T03:00:00Z"),
            )
        })
}

/// A request that names a moment the archive holds and a free port: what the run uses.
pub struct Checked {
    pitr: PitrSettings,
    target: Target,
    /// The side cluster's port.
    pub port: u16,
}

fn check_input(state: AppState, _actor: Actor, input: Value) -> CheckFuture {
    Box::pin(async move {
        let request: PitrRestoreRequest = crate::jobs::ssr::read_input(input)?;
        check(&state, &request).await.map(drop)
    })
}

/// Checks `request` against the archive and the host: the 4xx naming the field, or
/// what a restore needs.
pub async fn check(state: &AppState, request: &PitrRestoreRequest) -> Result<Checked, AppError> {
    let Some(pitr) = state.backups().pitr.clone() else {
        return Err(AppError::invalid(
            "store",
            "point-in-time restore needs pgBackRest: set SALVAGE_PGBACKREST_CONFIG",
        ));
    };
    let target = parse_target(&request.to)?;
    let now = state.clock.now();
    if let Target::Time(at) = target {
        if at > now {
            return Err(AppError::invalid("to", "the moment is in the future"));
        }
        let window = super::window(&pitr, &state.pg, now)
            .await
            .map_err(|e| AppError::internal("Read the recovery window", e.to_string()))?;
        let Some(oldest) = window.oldest_ms else {
            return Err(AppError::invalid(
                "to",
                "the repository holds no base backup yet: run pitr-backup first",
            ));
        };
        if unix_ms(at) < oldest {
            return Err(AppError::invalid(
                "to",
                format!(
                    "the oldest moment a restore can reach is {} (the first base backup's end)",
                    crate::format::format_utc(oldest)
                ),
            ));
        }
    }
    let live_port = live_url(state)?.port().unwrap_or(5432);
    let port = match request.port {
        Some(port) if port < 1024 => {
            return Err(AppError::invalid("port", "choose a port of 1024 or above"))
        }
        Some(port) if port == live_port => {
            return Err(AppError::invalid(
                "port",
                format!("{port} is the live cluster's port"),
            ))
        }
        Some(port) => {
            if sides::data_dir(&pitr, port).exists() {
                return Err(AppError::invalid(
                    "port",
                    format!("a side cluster on {port} exists: stop it first"),
                ));
            }
            if tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .is_err()
            {
                return Err(AppError::invalid("port", format!("{port} is in use")));
            }
            port
        }
        None => free_port()
            .await
            .map_err(|e| AppError::internal("Find a free port", e.to_string()))?,
    };
    Ok(Checked { pitr, target, port })
}

async fn free_port() -> std::io::Result<u16> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    Ok(listener.local_addr()?.port())
}

/// The live cluster's URL, with the owner's credentials when there are any (the side
/// cluster answers to the same roles).
fn live_url(state: &AppState) -> Result<url::Url, AppError> {
    let settings = state.backups();
    let url = settings
        .owner_url
        .as_ref()
        .unwrap_or(&settings.database_url)
        .expose_secret()
        .to_owned();
    url::Url::parse(&url).map_err(|e| AppError::internal("Read the database URL", e.to_string()))
}

/// One table of the side cluster, counted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SideTable {
    pub name: String,
    pub rows: i64,
}

/// What the restore did: the typed outcome every door reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PitrRestoreReport {
    pub status: RunStatus,
    pub port: u16,
    pub data_dir: PathBuf,
    /// `latest`, or the moment asked for (unix ms).
    pub to: String,
    /// The last transaction the side cluster replayed: the point reached.
    pub reached_ms: Option<i64>,
    pub tables: Vec<SideTable>,
    pub rows: i64,
    /// History entries on the side cluster, and the first one that breaks the chain.
    pub chain_entries: i64,
    pub chain_broken_at: Option<i64>,
    /// The newest migration applied on the side cluster, and what differs from this
    /// binary's migrations (a side cluster older than the binary is not a problem).
    pub schema_version: i64,
    pub schema_problem: Option<String>,
    pub restore_ms: i64,
    pub verify_ms: i64,
    pub duration_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub history_id: i64,
}

impl Report for PitrRestoreReport {
    fn status(&self) -> RunStatus {
        self.status
    }
    fn rows(&self) -> i64 {
        self.rows
    }
    fn error(&self) -> Option<String> {
        self.error.clone()
    }
    fn history_id(&self) -> Option<i64> {
        Some(self.history_id)
    }
    fn details(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

crate::history::ssr::details! {
    /// PostgreSQL restored to a moment into a side cluster, and what its verification read.
    struct PitrRestored for Restore {
        store: crate::backups::StoreKind,
        pitr: bool,
        port: u16,
        to: String,
        reached_ms: Option<i64>,
        rows: i64,
        tables: usize,
        chain_entries: i64,
        chain_broken_at: Option<i64>,
        schema_version: i64,
        schema_problem: Option<String>,
        duration_ms: i64,
        error: Option<String>,
        run_id: i64,
    }
}

fn run_pitr_restore(ctx: JobContext) -> JobFuture {
    Box::pin(async move {
        let request: PitrRestoreRequest = ctx.input()?;
        let checked = check(&ctx.state, &request).await?;
        Ok(Box::new(execute(&ctx, checked, &ctx.tracker).await?) as Box<dyn Report>)
    })
}

/// What the verification read on the side cluster.
struct Verified {
    tables: Vec<SideTable>,
    chain_entries: i64,
    chain_broken_at: Option<i64>,
    schema_version: i64,
    schema_problem: Option<String>,
}

impl Verified {
    fn problem(&self) -> Option<String> {
        if let Some(id) = self.chain_broken_at {
            return Some(format!("the history chain breaks at entry #{id}"));
        }
        self.schema_problem.clone()
    }
}

/// Restores what `checked` names for run `ctx` (its own, or a drill's with the drill's
/// step `tracker`), verifies it and records it in the history. `Err` only when the
/// record cannot be written; a restore that fails is a report saying so, with nothing
/// left behind.
pub async fn execute(
    ctx: &JobContext,
    checked: Checked,
    tracker: &crate::jobs::ssr::Tracker,
) -> Result<PitrRestoreReport, AppError> {
    let Checked { pitr, target, port } = checked;
    let settings = ctx.state.backups().clone();
    let data_dir = sides::data_dir(&pitr, port);
    let url = live_url(&ctx.state)?;
    let to = match target {
        Target::Latest => "latest".to_owned(),
        Target::Time(at) => unix_ms(at).to_string(),
    };
    let started = Instant::now();
    tracker.report(0, 2).await.ok();
    // pgBackRest's restore and the replay are one long step: a heartbeat every second
    // meanwhile picks up a Cancel pressed on any replica, and the step stops at once
    // (pgBackRest is killed with its future; what it made is deleted below).
    let restored = {
        let start = side::start(
            &settings,
            &pitr,
            &data_dir,
            port,
            target,
            &url,
            RECOVERY_WAIT,
        );
        tokio::pin!(start);
        // The first beat is at once: a Cancel pressed as the run began is heard before
        // pgBackRest has written anything.
        let mut beats = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                biased;
                () = tracker.cancelled() => break Err(BackupError::Cancelled),
                restored = &mut start => break restored,
                _ = beats.tick() => {
                    tracker.report(0, 2).await.ok();
                }
            }
        }
    };
    let restore_ms = started.elapsed().as_millis() as i64;
    let verify_started = Instant::now();
    let verified = match restored {
        Ok(side) => {
            tracker.report(1, 2).await.ok();
            sides::record(
                &pitr,
                &SideRecord {
                    port,
                    data_dir: data_dir.clone(),
                    started_ms: unix_ms(ctx.now),
                    to: to.clone(),
                    reached_ms: side.reached.map(unix_ms),
                    by: ctx.actor.name.clone(),
                    run_id: ctx.run_id,
                },
            )
            .map_err(|e| BackupError::Storage(e.to_string()))
            .and(Ok(side))
        }
        Err(error) => Err(error),
    };
    let verified = match verified {
        Ok(side) => {
            let mut side_url = url.clone();
            side_url.set_port(Some(port)).ok();
            match verify(&ctx.state, &side_url, ctx.now).await {
                Ok(v) => Ok((side, v)),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    let verify_ms = verify_started.elapsed().as_millis() as i64;
    let (side, verified, error) = match verified {
        Ok((side, verified)) => {
            let reached_too_far = match (target, side.reached) {
                (Target::Time(at), Some(reached)) if reached > at => Some(format!(
                    "the side cluster replayed past the moment asked for (to {})",
                    crate::format::format_utc(unix_ms(reached))
                )),
                _ => None,
            };
            let error = reached_too_far.or_else(|| verified.problem());
            (Some(side), Some(verified), error)
        }
        Err(error) => {
            // Nothing half-made stays behind: the directory and its server go.
            side::stop(&settings, &pitr, &data_dir).await.ok();
            sides::forget(&pitr, port);
            (None, None, Some(error.to_string()))
        }
    };
    let cancelled = tracker.is_cancelled() && side.is_none();
    let status = match (&error, cancelled) {
        (_, true) => RunStatus::Cancelled,
        (Some(_), false) => RunStatus::Failed,
        (None, false) => RunStatus::Succeeded,
    };
    let reached_ms = side.as_ref().and_then(|s| s.reached).map(unix_ms);
    let tables = verified
        .as_ref()
        .map(|v| v.tables.clone())
        .unwrap_or_default();
    let rows = tables.iter().map(|t| t.rows).sum();
    let duration_ms = started.elapsed().as_millis() as i64;
    let details = PitrRestored {
        store: crate::backups::StoreKind::Postgres,
        pitr: true,
        port,
        to: to.clone(),
        reached_ms,
        rows,
        tables: tables.len(),
        chain_entries: verified.as_ref().map_or(0, |v| v.chain_entries),
        chain_broken_at: verified.as_ref().and_then(|v| v.chain_broken_at),
        schema_version: verified.as_ref().map_or(0, |v| v.schema_version),
        schema_problem: verified.as_ref().and_then(|v| v.schema_problem.clone()),
        duration_ms,
        error: error.clone(),
        run_id: ctx.run_id,
    };
    let title = match (&status, reached_ms) {
        (RunStatus::Succeeded, Some(reached)) => format!(
            "PostgreSQL restored to {} on port {port} (pgBackRest), {} rows verified",
            crate::format::format_utc(reached),
            rows
        ),
        (RunStatus::Succeeded, None) => {
            format!("PostgreSQL restored on port {port} (pgBackRest), {rows} rows verified")
        }
        (RunStatus::Cancelled, _) => "PostgreSQL point-in-time restore cancelled".to_owned(),
        _ => "PostgreSQL point-in-time restore failed".to_owned(),
    };
    let outcome = match status {
        RunStatus::Succeeded => Outcome::Succeeded,
        _ => Outcome::Failed,
    };
    let internal = AppError::wrap("Record a point-in-time restore");
    let mut tx = ctx.state.pg.begin().await.map_err(&internal)?;
    let entry = NewEntry::new(details, title, &ctx.actor, outcome)
        .with_reason(ctx.reason.clone())
        .with_times(ctx.now, Some(ctx.state.clock.now()))
        .with_body(error.clone().unwrap_or_default());
    let history_id = append(&mut tx, &entry).await.map_err(&internal)?;
    tx.commit().await.map_err(&internal)?;
    let verified = verified.unwrap_or(Verified {
        tables: Vec::new(),
        chain_entries: 0,
        chain_broken_at: None,
        schema_version: 0,
        schema_problem: None,
    });
    Ok(PitrRestoreReport {
        status,
        port,
        data_dir,
        to,
        reached_ms,
        tables,
        rows,
        chain_entries: verified.chain_entries,
        chain_broken_at: verified.chain_broken_at,
        schema_version: verified.schema_version,
        schema_problem: verified.schema_problem,
        restore_ms,
        verify_ms,
        duration_ms,
        error,
        history_id,
    })
}

/// Reads the side cluster at `url`: every table counted, the history chain walked, the
/// schema's migrations compared with this binary's.
async fn verify(
    state: &AppState,
    url: &url::Url,
    now: OffsetDateTime,
) -> Result<Verified, BackupError> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url.as_str())
        .await
        .map_err(BackupError::postgres)?;
    let verified = read_side(state, &pool, now).await;
    pool.close().await;
    verified
}

async fn read_side(
    state: &AppState,
    pool: &sqlx::PgPool,
    now: OffsetDateTime,
) -> Result<Verified, BackupError> {
    let names: Vec<(String, String)> = sqlx::query_as(
        "select table_schema::text, table_name::text from information_schema.tables
          where table_type = 'BASE TABLE'
            and table_schema not in ('pg_catalog', 'information_schema')
          order by 1, 2",
    )
    .fetch_all(pool)
    .await
    .map_err(BackupError::postgres)?;
    // A moment before `salvage migrate` first ran has no Salvage schema to check: said
    // as such, not as a missing relation.
    let has = |wanted: &str| names.iter().any(|(s, t)| s == "public" && t == wanted);
    let (has_history, has_migrations) = (has("runbook_history"), has("_sqlx_migrations"));
    let mut tables = Vec::with_capacity(names.len());
    for (schema, table) in names {
        let quoted = format!(
            "\"{}\".\"{}\"",
            schema.replace('"', "\"\""),
            table.replace('"', "\"\"")
        );
        let rows: i64 = sqlx::query_scalar(&format!("select count(*) from {quoted}"))
            .fetch_one(pool)
            .await
            .map_err(|e| BackupError::Integrity(format!("{quoted} cannot be read: {e}")))?;
        let name = if schema == "public" {
            table
        } else {
            format!("{schema}.{table}")
        };
        tables.push(SideTable { name, rows });
    }
    if !has_migrations {
        return Ok(Verified {
            tables,
            chain_entries: 0,
            chain_broken_at: None,
            schema_version: 0,
            schema_problem: Some(format!(
                "Salvage's schema did not exist yet at that moment (none of this binary's {} \
                 migrations applied): restore to a later moment",
                crate::server::postgres::MIGRATOR.iter().count()
            )),
        });
    }
    let (chain_entries, chain_broken_at) = if has_history {
        let chain = crate::history::chain::verify(pool, &state.clickhouse, now, "pitr-restore")
            .await
            .map_err(BackupError::postgres)?;
        (chain.entries, chain.first_broken.map(|b| b.id))
    } else {
        (0, None)
    };
    let (schema_version, schema_problem) = schema_of(pool).await?;
    Ok(Verified {
        tables,
        chain_entries,
        chain_broken_at,
        schema_version,
        schema_problem,
    })
}

/// The newest migration the side cluster applied, and what in its migrations this
/// binary does not know, carries with other contents, or saw fail half-way.
async fn schema_of(pool: &sqlx::PgPool) -> Result<(i64, Option<String>), BackupError> {
    let applied: Vec<(i64, bool, Vec<u8>)> =
        sqlx::query_as("select version, success, checksum from _sqlx_migrations")
            .fetch_all(pool)
            .await
            .map_err(BackupError::postgres)?;
    let known = &crate::server::postgres::MIGRATOR;
    let mut problems = Vec::new();
    for (version, success, checksum) in &applied {
        match known.iter().find(|m| m.version == *version) {
            None => problems.push(format!("{version} is unknown to this binary")),
            Some(m) if *m.checksum != **checksum => {
                problems.push(format!("{version} differs from this binary's"))
            }
            Some(_) if !success => problems.push(format!("{version} failed half-way")),
            Some(_) => {}
        }
    }
    let version = applied
        .iter()
        .filter(|(_, success, _)| *success)
        .map(|(v, _, _)| *v)
        .max()
        .unwrap_or(0);
    Ok((
        version,
        (!problems.is_empty()).then(|| format!("migrations: {}", problems.join("; "))),
    ))
}

/// Runs a point-in-time restore through the runner and waits for it (the CLI's door,
/// tests, drills): a request the check refuses is the 4xx naming the field, with
/// nothing made.
pub async fn restore(
    state: &AppState,
    request: &PitrRestoreRequest,
    firing: crate::jobs::ssr::Firing,
    on_progress: Option<crate::jobs::ssr::OnProgress>,
) -> Result<PitrRestoreReport, AppError> {
    let options = crate::jobs::ssr::RunOptions {
        on_progress,
        input: serde_json::to_value(request)
            .map_err(|e| AppError::internal("Read a restore request", e.to_string()))?,
        ..Default::default()
    };
    let finished = crate::jobs::ssr::run(state, &PITR_RESTORE, firing, options)
        .await?
        .ok_or_else(|| AppError::internal("Run a restore", "a manual run was refused"))?;
    match finished.report::<PitrRestoreReport>() {
        Some(report) => Ok(report.clone()),
        None => Err(AppError::internal(
            "Run a point-in-time restore",
            finished.error.unwrap_or_else(|| "no report".to_owned()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_latest_or_an_rfc3339_moment_and_anything_else_names_the_field() {
        assert_eq!(parse_target(" Latest ").unwrap(), Target::Latest);
        assert_eq!(
            parse_target("2026-12-07T03:00:00+01:00").unwrap(),
            Target::Time(time::macros::datetime!(2026-12-07 02:00:00 UTC))
        );
        let refused = parse_target("yesterday").unwrap_err();
        assert!(
            matches!(&refused, AppError::Invalid { field, .. } if field == "to"),
            "{refused:?}"
        );
    }
}
