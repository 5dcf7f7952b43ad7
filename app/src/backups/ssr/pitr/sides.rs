//! The side clusters a point-in-time restore left running, as the side directory holds
//! them: `side-<port>` is a cluster's data directory, `side-<port>.json` what made it.
//! The files are the record, not a table: they say what is running on this host even
//! when the live database is the one that was lost.
//!
//! A side cluster runs until a person stops it (`salvage backup side stop <port>`, the
//! backups page's Stop) or the janitor ([`PITR_SIDE_JANITOR`]) stops it a day after it
//! started.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::PitrSettings;
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::jobs::ssr::{Job, JobContext, JobFuture, Report};
use crate::jobs::RunStatus;
use crate::server::{unix_ms, AppState};

/// How long a side cluster may run before the janitor stops it.
pub const SIDE_LIFETIME: Duration = Duration::from_secs(86_400);

/// What made a side cluster, written beside its data directory once it has recovered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SideRecord {
    pub port: u16,
    pub data_dir: PathBuf,
    pub started_ms: i64,
    /// `latest`, or the moment asked for (unix ms).
    pub to: String,
    pub reached_ms: Option<i64>,
    pub by: String,
    pub run_id: i64,
}

/// The data directory of the side cluster on `port`.
pub fn data_dir(pitr: &PitrSettings, port: u16) -> PathBuf {
    pitr.side_dir.join(format!("side-{port}"))
}

fn record_path(pitr: &PitrSettings, port: u16) -> PathBuf {
    pitr.side_dir.join(format!("side-{port}.json"))
}

/// Writes what made a side cluster.
pub fn record(pitr: &PitrSettings, side: &SideRecord) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(side).map_err(std::io::Error::other)?;
    let path = record_path(pitr, side.port);
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, json)?;
    std::fs::rename(partial, path)
}

/// Removes a side cluster's record (its directory is gone).
pub fn forget(pitr: &PitrSettings, port: u16) {
    std::fs::remove_file(record_path(pitr, port)).ok();
}

/// A side cluster found in the side directory. One whose restore died before it
/// recovered has a directory and no record: it is listed with its directory's age.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SideCluster {
    pub port: u16,
    pub data_dir: PathBuf,
    pub started_ms: i64,
    /// What made it, when its restore got as far as recording it.
    pub record: Option<SideRecord>,
    /// Whether its server is running (a `postmaster.pid` in its directory).
    pub running: bool,
}

/// The side clusters on this host, by port.
pub fn list(pitr: &PitrSettings) -> Vec<SideCluster> {
    let mut out: Vec<SideCluster> = std::fs::read_dir(&pitr.side_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let port: u16 = name.strip_prefix("side-")?.parse().ok()?;
            let dir = entry.path();
            let record: Option<SideRecord> = std::fs::read(record_path(pitr, port))
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .map(OffsetDateTime::from)
                .map(unix_ms)
                .unwrap_or(0);
            Some(SideCluster {
                port,
                started_ms: record.as_ref().map_or(modified, |r| r.started_ms),
                running: dir.join("postmaster.pid").exists(),
                data_dir: dir,
                record,
            })
        })
        .collect();
    out.sort_by_key(|side| side.port);
    out
}

crate::history::ssr::details! {
    /// A side cluster stopped and its directory deleted.
    struct SideStopped for Restore {
        store: crate::backups::StoreKind,
        pitr: bool,
        port: u16,
        started_ms: i64,
        by_janitor: bool,
    }
}

/// Stops the side cluster on `port`, deletes its directory and record, and records it
/// in the history: the one function behind the page's Stop, `salvage backup side stop`
/// and the janitor. Admins only; a port with no side cluster is a 404.
pub async fn stop(
    state: &AppState,
    port: u16,
    actor: &Actor,
    reason: Option<crate::reason::Reason>,
) -> Result<SideCluster, AppError> {
    actor.authorize(crate::auth::Permission::Administer)?;
    let Some(pitr) = state.backups().pitr.clone() else {
        return Err(AppError::invalid(
            "store",
            "point-in-time restore needs pgBackRest: set SALVAGE_PGBACKREST_CONFIG",
        ));
    };
    let Some(side) = list(&pitr).into_iter().find(|side| side.port == port) else {
        return Err(AppError::NotFound {
            what: format!("No side cluster runs on port {port}."),
        });
    };
    stop_found(state, &pitr, &side, actor, reason, false).await?;
    Ok(side)
}

/// Stops the side cluster on `port` that a drill made, as part of the drill's own run
/// (whoever may run drills may tear down what their drill made).
pub async fn tear_down(
    state: &AppState,
    pitr: &PitrSettings,
    port: u16,
    actor: &Actor,
    reason: crate::reason::Reason,
) -> Result<(), AppError> {
    match list(pitr).into_iter().find(|side| side.port == port) {
        Some(side) => stop_found(state, pitr, &side, actor, Some(reason), false)
            .await
            .map(drop),
        None => Ok(()),
    }
}

async fn stop_found(
    state: &AppState,
    pitr: &PitrSettings,
    side: &SideCluster,
    actor: &Actor,
    reason: Option<crate::reason::Reason>,
    by_janitor: bool,
) -> Result<i64, AppError> {
    super::side::stop(state.backups(), pitr, &side.data_dir)
        .await
        .map_err(|e| AppError::internal("Stop a side cluster", e.to_string()))?;
    forget(pitr, side.port);
    let details = SideStopped {
        store: crate::backups::StoreKind::Postgres,
        pitr: true,
        port: side.port,
        started_ms: side.started_ms,
        by_janitor,
    };
    let title = format!("Side cluster on port {} stopped and deleted", side.port);
    let internal = AppError::wrap("Record a side cluster's stop");
    let mut tx = state.pg.begin().await.map_err(&internal)?;
    let entry = NewEntry::new(details, title, actor, Outcome::Succeeded).with_reason(reason);
    let id = append(&mut tx, &entry).await.map_err(&internal)?;
    tx.commit().await.map_err(&internal)?;
    Ok(id)
}

pub use crate::backups::PITR_SIDE_JANITOR_JOB;

pub static PITR_SIDE_JANITOR: Job = Job {
    name: PITR_SIDE_JANITOR_JOB,
    description: "Stops and deletes the side clusters point-in-time restores left running \
                  for more than a day.",
    schedule: "41 * * * *",
    grace: Duration::from_secs(1800),
    run: run_janitor,
    permission: crate::auth::Permission::Operate,
    check: None,
};

/// What the janitor stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JanitorReport {
    pub stopped: Vec<u16>,
    pub kept: Vec<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report for JanitorReport {
    fn status(&self) -> RunStatus {
        if self.error.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        }
    }
    fn rows(&self) -> i64 {
        self.stopped.len() as i64
    }
    fn error(&self) -> Option<String> {
        self.error.clone()
    }
    fn details(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

fn run_janitor(ctx: JobContext) -> JobFuture {
    Box::pin(async move {
        let mut report = JanitorReport {
            stopped: Vec::new(),
            kept: Vec::new(),
            error: None,
        };
        let Some(pitr) = ctx.state.backups().pitr.clone() else {
            return Ok(Box::new(report) as Box<dyn Report>);
        };
        let cutoff = unix_ms(ctx.now) - SIDE_LIFETIME.as_millis() as i64;
        for side in list(&pitr) {
            if side.started_ms > cutoff {
                report.kept.push(side.port);
                continue;
            }
            let reason = crate::reason::Reason::own(format!(
                "running for more than {} hours",
                SIDE_LIFETIME.as_secs() / 3600
            ));
            match stop_found(&ctx.state, &pitr, &side, &ctx.actor, Some(reason), true).await {
                Ok(_) => report.stopped.push(side.port),
                Err(error) => {
                    report.error = Some(format!("port {}: {error}", side.port));
                }
            }
        }
        Ok(Box::new(report) as Box<dyn Report>)
    })
}
