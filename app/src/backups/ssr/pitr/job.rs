//! The `pitr-backup` job: pgBackRest's base backup of PostgreSQL (full, differential or
//! incremental, whichever is due), then pgBackRest's `verify` of the repository. Retention
//! is pgBackRest's own (`repo1-retention-full` in its configuration), applied by the
//! backup itself. Every run is recorded in the history.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::info::PitrBackup;
use super::{PgBackRest, PitrSettings};
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::jobs::ssr::{Job, JobContext, JobFuture, Report};
use crate::jobs::RunStatus;

pub use crate::backups::PITR_BACKUP_JOB;

pub static PITR_BACKUP: Job = Job {
    name: PITR_BACKUP_JOB,
    description: "Takes pgBackRest's base backup of PostgreSQL (full weekly, differential daily, \
                  incremental otherwise), then verifies the repository.",
    schedule: "17 * * * *",
    grace: Duration::from_secs(1800),
    run: run_pitr_backup,
    permission: crate::auth::Permission::Operate,
    check: None,
};

crate::stored::stored_enum! {
    /// pgBackRest's kinds of base backup.
    pub enum PitrKind {
        /// Everything.
        Full = "full",
        /// What changed since the last full backup.
        Diff = "diff",
        /// What changed since the last backup of any kind.
        Incr = "incr",
    }
}

/// The job's input: a kind to take now; none (the schedule) takes the one that is due.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PitrBackupInput {
    #[serde(default)]
    pub kind: Option<PitrKind>,
}

/// Which kind is due at `now`, given the repository's backups (oldest first): a full
/// backup when none is younger than `full_every`, a differential when no full or
/// differential is younger than `diff_every`, otherwise an incremental.
pub fn due(backups: &[PitrBackup], now: OffsetDateTime, settings: &PitrSettings) -> PitrKind {
    let now_ms = crate::server::unix_ms(now);
    let younger_than = |every: Duration, kinds: &[&str]| {
        backups.iter().any(|b| {
            kinds.contains(&b.kind.as_str()) && now_ms - b.stopped_ms < every.as_millis() as i64
        })
    };
    if !younger_than(settings.full_every, &["full"]) {
        PitrKind::Full
    } else if !younger_than(settings.diff_every, &["full", "diff"]) {
        PitrKind::Diff
    } else {
        PitrKind::Incr
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PitrBackupReport {
    pub status: RunStatus,
    /// Why nothing was done: pgBackRest is not set up here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<PitrKind>,
    /// The new backup, as the repository lists it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<PitrBackup>,
    pub duration_ms: i64,
    /// What pgBackRest's `verify` found wrong, when it found anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_id: Option<i64>,
}

impl Report for PitrBackupReport {
    fn status(&self) -> RunStatus {
        self.status
    }
    fn rows(&self) -> i64 {
        0
    }
    fn error(&self) -> Option<String> {
        self.error.clone().or_else(|| self.verify_error.clone())
    }
    fn history_id(&self) -> Option<i64> {
        self.history_id
    }
    fn details(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

crate::history::ssr::details! {
    /// A pgBackRest base backup of PostgreSQL, and the repository's verification.
    struct PitrBackedUp for Backup {
        store: crate::backups::StoreKind,
        pitr: bool,
        kind: PitrKind,
        label: Option<String>,
        size_bytes: Option<i64>,
        repo_bytes: Option<i64>,
        duration_ms: i64,
        verify_error: Option<String>,
        error: Option<String>,
        run_id: i64,
    }
}

fn run_pitr_backup(ctx: JobContext) -> JobFuture {
    Box::pin(async move { Ok(Box::new(pitr_backup(&ctx).await?) as Box<dyn Report>) })
}

async fn pitr_backup(ctx: &JobContext) -> Result<PitrBackupReport, AppError> {
    // A scheduled run has no input: it takes the kind that is due.
    let input: PitrBackupInput = if ctx.input.is_null() {
        PitrBackupInput::default()
    } else {
        ctx.input()?
    };
    let Some(settings) = ctx.state.backups().pitr.clone() else {
        return Ok(PitrBackupReport {
            status: RunStatus::Succeeded,
            skipped: Some("pgBackRest is not set up (SALVAGE_PGBACKREST_CONFIG)".into()),
            kind: None,
            backup: None,
            duration_ms: 0,
            verify_error: None,
            error: None,
            history_id: None,
        });
    };
    let started = std::time::Instant::now();
    let tool = PgBackRest::new(&settings);
    let taken = async {
        let before = tool.info().await?;
        let kind = input
            .kind
            .unwrap_or_else(|| due(&before.backups, ctx.now, &settings));
        ctx.tracker.report(0, 2).await.ok();
        tool.run(&["backup", &format!("--type={}", kind.as_str())])
            .await?;
        let after = tool.info().await?;
        let backup = after
            .backups
            .into_iter()
            .rfind(|b| !before.backups.iter().any(|old| old.label == b.label));
        ctx.tracker.report(1, 2).await.ok();
        // `verify` exits 0 whatever it finds: its text says when something is wrong.
        let verified = tool.run(&["verify", "--output=text"]).await?;
        let verify_error = verified
            .lines()
            .any(|line| line.trim_start().starts_with("status: error"))
            .then(|| verified.trim().to_owned());
        ctx.tracker.report(2, 2).await.ok();
        Ok::<_, super::BackupError>((kind, backup, verify_error))
    }
    .await;
    let duration_ms = started.elapsed().as_millis() as i64;
    let (kind, backup, verify_error, error) = match taken {
        Ok((kind, backup, verify_error)) => (kind, backup, verify_error, None),
        Err(error) => (
            input.kind.unwrap_or(PitrKind::Full),
            None,
            None,
            Some(error.to_string()),
        ),
    };
    let status = if error.is_some() || verify_error.is_some() {
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    };
    let title = match (&backup, &error) {
        (Some(b), None) => format!(
            "PostgreSQL {} backup {} (pgBackRest): {}",
            kind.as_str(),
            b.label,
            crate::format::format_bytes(b.repo_bytes)
        ),
        _ => format!("PostgreSQL {} backup (pgBackRest) failed", kind.as_str()),
    };
    let details = PitrBackedUp {
        store: crate::backups::StoreKind::Postgres,
        pitr: true,
        kind,
        label: backup.as_ref().map(|b| b.label.clone()),
        size_bytes: backup.as_ref().map(|b| b.size_bytes),
        repo_bytes: backup.as_ref().map(|b| b.repo_bytes),
        duration_ms,
        verify_error: verify_error.clone(),
        error: error.clone(),
        run_id: ctx.run_id,
    };
    let outcome = if status == RunStatus::Succeeded {
        Outcome::Succeeded
    } else {
        Outcome::Failed
    };
    let internal = AppError::wrap("Record a pgBackRest backup");
    let mut tx = ctx.state.pg.begin().await.map_err(&internal)?;
    let entry = NewEntry::new(details, title.clone(), &ctx.actor, outcome)
        .with_reason(ctx.reason.clone())
        .with_times(ctx.now, Some(ctx.state.clock.now()))
        .with_body(error.clone().or(verify_error.clone()).unwrap_or_default());
    let history_id = append(&mut tx, &entry).await.map_err(&internal)?;
    if let Some(why) = error.as_ref().or(verify_error.as_ref()) {
        let signal = crate::alerts::ssr::Signal::new(
            "postgres",
            crate::alerts::Severity::Critical,
            format!("{title}: {}", why.lines().next().unwrap_or_default()),
        )
        .with_details(serde_json::json!({ "runId": ctx.run_id, "historyId": history_id }));
        crate::alerts::ssr::store::raise_event(
            &mut tx,
            &super::alerts::PITR_BACKUP_FAILED,
            &signal,
            ctx.state.clock.now(),
        )
        .await
        .map_err(&internal)?;
    }
    tx.commit().await.map_err(&internal)?;
    Ok(PitrBackupReport {
        status,
        skipped: None,
        kind: Some(kind),
        backup,
        duration_ms,
        verify_error,
        error,
        history_id: Some(history_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PitrSettings {
        PitrSettings {
            config: "/etc/pgbackrest.conf".into(),
            stanza: "salvage".into(),
            run_as: None,
            archive_timeout: Duration::from_secs(60),
            full_every: Duration::from_secs(7 * 86_400),
            diff_every: Duration::from_secs(86_400),
            side_dir: "/var/lib/salvage/side".into(),
        }
    }

    fn backup(kind: &str, hours_ago: i64, now: OffsetDateTime) -> PitrBackup {
        let at = crate::server::unix_ms(now - time::Duration::hours(hours_ago));
        PitrBackup {
            label: format!("{kind}-{hours_ago}"),
            kind: kind.into(),
            started_ms: at - 60_000,
            stopped_ms: at,
            size_bytes: 1,
            repo_bytes: 1,
        }
    }

    #[test]
    fn the_kind_due_follows_the_weekly_full_and_daily_differential() {
        let now = OffsetDateTime::now_utc();
        let s = settings();
        assert_eq!(due(&[], now, &s), PitrKind::Full);
        assert_eq!(due(&[backup("full", 8 * 24, now)], now, &s), PitrKind::Full);
        assert_eq!(due(&[backup("full", 30, now)], now, &s), PitrKind::Diff);
        assert_eq!(
            due(&[backup("full", 30, now), backup("diff", 5, now)], now, &s),
            PitrKind::Incr
        );
        assert_eq!(due(&[backup("full", 2, now)], now, &s), PitrKind::Incr);
        // An incremental does not reset the differential's day.
        assert_eq!(
            due(&[backup("full", 30, now), backup("incr", 1, now)], now, &s),
            PitrKind::Diff
        );
    }
}
