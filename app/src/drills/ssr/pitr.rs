//! The drill's point-in-time steps: when pgBackRest is set up (and
//! `SALVAGE_DRILL_PITR` is on), PostgreSQL is restored through the path a real loss would
//! take, into a side cluster, twice: to latest, and to a random moment between the end
//! of the newest base backup before the last commit the restore to latest reached and
//! that commit (the chain a loss today would replay: that backup and the WAL after it).
//! First, pgBackRest's `check` switches the WAL and waits until it is archived, so the
//! archive holds everything committed before the drill began, its own first rows among
//! it: on a quiet server, latest is the drill's start, not the last `archive_timeout`.
//! Each restore is verified (every table counted, the history chain, the schema) and
//! torn down. The restore to latest is PostgreSQL's measured recovery time: it replaces
//! the dump's, which stays in the steps for table-level restores.

use std::time::Instant;

use time::OffsetDateTime;

use super::super::{DrillStore, StoreKind};
use super::steps::{ms, step, Steps};
use crate::backups::ssr::pitr::restore::{self, PitrRestoreReport, PitrRestoreRequest};
use crate::backups::ssr::pitr::{sides, window, PgBackRest};
use crate::error::AppError;
use crate::jobs::ssr::JobContext;
use crate::jobs::RunStatus;

/// Runs the point-in-time steps of the drill, when they apply.
pub(super) async fn prove(
    ctx: &JobContext,
    steps: &mut Steps<'_>,
    stores: &mut [DrillStore],
) -> Result<(), AppError> {
    let state = &ctx.state;
    let Some(pitr) = state.backups().pitr.clone() else {
        return Ok(());
    };
    if !state.drills().pitr {
        return Ok(());
    }
    // The WAL switched and archived, then two restores, each with its teardown.
    steps.total += 5;
    let clock = Instant::now();
    let archived = PgBackRest::new(&pitr).run(&["check"]).await;
    let detail = match &archived {
        Ok(_) => "the WAL switched and archived: latest includes the drill's start".to_owned(),
        Err(error) => format!("the WAL could not be switched and archived: {error}"),
    };
    let ok = archived.is_ok();
    steps
        .push(step(
            Some(StoreKind::Postgres),
            "pitr archive",
            ms(clock),
            ok,
            Some(detail),
        ))
        .await?;
    let latest = restore_and_tear_down(ctx, steps, &pitr, "latest".into(), "pitr latest").await?;
    let latest = latest.filter(|r| r.status == RunStatus::Succeeded);
    if let Some(report) = &latest {
        if let Some(postgres) = stores.iter_mut().find(|s| s.store == StoreKind::Postgres) {
            postgres.recovery_ms = report.restore_ms + report.verify_ms;
        }
    }
    // A moment is reachable only up to the last commit the archive holds (PostgreSQL
    // ends a recovery that runs out of WAL short of its target as a failure): the
    // restore to latest just measured it.
    let Some(last_commit) = latest.as_ref().and_then(|r| r.reached_ms) else {
        let skipped = "no restore to latest reached a commit to aim below".to_owned();
        steps
            .push(step(
                Some(StoreKind::Postgres),
                "pitr point",
                0,
                false,
                Some(skipped),
            ))
            .await?;
        return Ok(());
    };
    if ctx.tracker.is_cancelled() {
        return Ok(());
    }
    let point = aim(state, &pitr, last_commit).await;
    match point {
        Ok(point) => {
            let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(point) * 1_000_000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let to = at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            restore_and_tear_down(ctx, steps, &pitr, to, "pitr point").await?;
        }
        Err(why) => {
            let failed = step(Some(StoreKind::Postgres), "pitr point", 0, false, Some(why));
            steps.push(failed).await?;
        }
    }
    Ok(())
}

/// The moment the second restore aims at, or why there is none: at or after the end of
/// the newest base backup before `last_commit`, and never before this binary's schema
/// was complete (a moment before `salvage migrate` ran restores a database with nothing
/// of Salvage's to verify), up to `last_commit`.
async fn aim(
    state: &crate::server::AppState,
    pitr: &crate::backups::ssr::pitr::PitrSettings,
    last_commit: i64,
) -> Result<i64, String> {
    let schema_complete = schema_complete_ms(&state.pg).await?;
    let window = window(pitr, &state.pg, state.clock.now())
        .await
        .map_err(|error| error.to_string())?;
    // The newest base backup that ended before that commit (one may have ended since:
    // it has no commit after it to aim at yet).
    let ended = window
        .backups
        .iter()
        .map(|b| b.stopped_ms)
        .filter(|&stopped| stopped <= last_commit)
        .max()
        .ok_or("nothing was committed after a base backup ended")?;
    let from = schema_complete.max(ended);
    if from > last_commit {
        return Err("nothing was committed after this binary's migrations were applied".into());
    }
    Ok(from + (rand::random::<u64>() % (last_commit - from + 1) as u64) as i64)
}

/// When the last of the live schema's migrations was committed, with a second to
/// spare: `_sqlx_migrations` records each one's start (`installed_on`, its transaction's
/// time) and how long it ran.
async fn schema_complete_ms(pg: &sqlx::PgPool) -> Result<i64, String> {
    let done: Option<OffsetDateTime> = sqlx::query_scalar(
        "select max(installed_on + execution_time * interval '1 microsecond' / 1000)
           from _sqlx_migrations",
    )
    .fetch_one(pg)
    .await
    .map_err(|e| format!("the live schema's migrations could not be read: {e}"))?;
    Ok(done.map_or(0, crate::server::unix_ms) + 1_000)
}

/// One restore through the point-in-time path as a step, and its teardown as another.
async fn restore_and_tear_down(
    ctx: &JobContext,
    steps: &mut Steps<'_>,
    pitr: &crate::backups::ssr::pitr::PitrSettings,
    to: String,
    name: &str,
) -> Result<Option<PitrRestoreReport>, AppError> {
    let postgres = Some(StoreKind::Postgres);
    let request = PitrRestoreRequest {
        to: to.clone(),
        port: None,
        reason: None,
    };
    let checked = match restore::check(&ctx.state, &request).await {
        Ok(checked) => checked,
        Err(error) => {
            steps
                .push(step(postgres, name, 0, false, Some(error.to_string())))
                .await?;
            return Ok(None);
        }
    };
    let port = checked.port;
    let report = restore::execute(ctx, checked, &ctx.tracker.step()).await?;
    let ok = report.status == RunStatus::Succeeded;
    let detail = match &report.error {
        Some(error) => error.clone(),
        None => format!(
            "to {to}: reached {}, {} rows in {} tables, history chain of {} intact",
            report
                .reached_ms
                .map(crate::format::format_utc_secs)
                .unwrap_or_else(|| "no transaction".into()),
            report.rows,
            report.tables.len(),
            report.chain_entries
        ),
    };
    steps
        .push(step(
            postgres,
            name,
            report.restore_ms + report.verify_ms,
            ok,
            Some(detail),
        ))
        .await?;
    if ok {
        let clock = Instant::now();
        let reason = crate::reason::Reason::own(format!("Restore drill {}", ctx.run_id));
        let stopped = sides::tear_down(&ctx.state, pitr, port, &ctx.actor, reason).await;
        let detail = match &stopped {
            Ok(()) => format!("side cluster on port {port} stopped and deleted"),
            Err(error) => format!("side cluster on port {port} left for the janitor: {error}"),
        };
        let teardown = step(
            postgres,
            "teardown",
            ms(clock),
            stopped.is_ok(),
            Some(detail),
        );
        steps.push(teardown).await?;
    }
    Ok(Some(report))
}
