//! `salvage recover`: the steps in dependency order, each timed, each recorded in the
//! database being recovered as it ends, so a run stopped at a step resumes from it and
//! nothing is done twice; the `recovery` history entry at the end.

pub mod plan;
pub mod postgres;
pub mod progress;

use std::collections::HashMap;
use std::time::Instant;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use self::progress::{Done, Plan, Progress};
use super::{RecoveryReport, Step, StepReport, TableCount};
use crate::auth::ssr::Actor;
use crate::backups::ssr::postgres as pg;
use crate::backups::ssr::restore::{self, TableCheck};
use crate::backups::RestoreStatus;
use crate::format::{format_duration, format_utc, format_utc_secs, group_digits};
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::jobs::ssr::{Caller, Firing, RunOptions, Tracker};
use crate::reason::Reason;
use crate::server::AppState;
use crate::stores::StoreKind;

pub use plan::RecoverRequest;

/// Why a recovery did not finish.
#[derive(Debug)]
pub enum RecoverError {
    /// Refused before anything changed (the CLI exits 2).
    Refused(String),
    /// A step failed; run again to resume from it.
    Failed { step: Option<Step>, error: String },
}

impl RecoverError {
    pub fn failed(step: Option<Step>, error: impl std::fmt::Display) -> Self {
        RecoverError::Failed {
            step,
            error: error.to_string(),
        }
    }
}

impl std::fmt::Display for RecoverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoverError::Refused(why) => write!(f, "Refused, nothing changed: {why}."),
            RecoverError::Failed {
                step: Some(step),
                error,
            } => write!(
                f,
                "Step {} ({}) failed: {error}. Run the same command again to resume from it.",
                step.number(),
                step.label()
            ),
            RecoverError::Failed { step: None, error } => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for RecoverError {}

/// What a caller does once the migrations ran (the server registers its jobs there).
pub type AfterMigrate<'a> = &'a (dyn Fn(AppState) -> BoxFuture<'static, Result<(), String>> + Sync);

/// Where progress lines go.
pub type Say<'a> = &'a (dyn Fn(String) + Sync);

/// What a step leaves for the report (and for a later run that resumes).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StepDetail {
    #[serde(default)]
    reached_ms: Option<i64>,
    #[serde(default)]
    tables: Vec<TableCount>,
    #[serde(default)]
    replayed: i64,
    #[serde(default)]
    findings: Vec<String>,
}

crate::history::ssr::details! {
    /// A recovery from total loss as it ended: the point asked for and reached, the
    /// measured RPO and RTO, every step's duration, every table against its source (the
    /// report, less the entry's own id).
    pub struct Recovered for Recovery {
        #[serde(flatten)]
        report: RecoveryReport,
    }
}

/// Recovers both stores as `request` asks, or resumes the recovery this database holds.
pub async fn recover(
    state: &AppState,
    request: &RecoverRequest,
    actor: &Actor,
    after_migrate: AfterMigrate<'_>,
    say: Say<'_>,
) -> Result<RecoveryReport, RecoverError> {
    let settings = state.backups();
    let database = pg::database_name(&settings.database_url);
    let conn = pg::connect(pg::working_url(settings), None)
        .await
        .map_err(|e| RecoverError::failed(None, format!("PostgreSQL did not answer: {e}")))?;
    let mut progress = Progress::new(conn);
    let pg_err = |e: sqlx::Error| RecoverError::failed(None, format!("PostgreSQL: {e}"));
    let asked = plan::asked(request.target);
    let plan = match progress.plan().await.map_err(pg_err)? {
        Some(plan) if plan.asked == asked => {
            say(format!(
                "Resuming the recovery to {asked} begun at {}.",
                format_utc(plan.started_ms)
            ));
            plan
        }
        Some(plan) => {
            return Err(RecoverError::Refused(format!(
                "a recovery to {} begun at {} is unfinished in {database}: run it again with \
                 the same point to finish it",
                plan.asked,
                format_utc(plan.started_ms)
            )))
        }
        None => {
            let held = progress.tables_held().await.map_err(pg_err)?;
            if held > 0 && request.confirm.as_deref().map(str::trim) != Some(database.as_str()) {
                return Err(RecoverError::Refused(format!(
                    "the database {database} holds {held} tables: recover onto an empty \
                     database, or name it with --confirm {database} (its tables are then set \
                     aside in a schema of their own, never dropped)"
                )));
            }
            let plan = plan::decide(state, request).await?;
            progress.begin(&plan).await.map_err(pg_err)?;
            plan
        }
    };
    say(format!(
        "PostgreSQL from {}; ClickHouse from backup {}.",
        plan.postgres.describe(),
        plan.clickhouse
            .as_ref()
            .map(|c| format!("{} (taken {})", c.backup_id, format_utc(c.at_ms)))
            .unwrap_or_else(|| "-".into())
    ));
    let done = progress.done().await.map_err(pg_err)?;
    let mut steps = Vec::new();
    let mut details: HashMap<Step, StepDetail> = HashMap::new();
    for step in Step::ALL {
        let n = step.number();
        if let Some(earlier) = done.get(&step) {
            say(format!(
                "{n}/7 {}: done earlier ({})",
                step.label(),
                earlier.summary
            ));
            steps.push(StepReport {
                step,
                ms: earlier.ms,
                earlier: true,
                summary: earlier.summary.clone(),
            });
            details.insert(
                step,
                serde_json::from_value(earlier.detail.clone()).unwrap_or_default(),
            );
            continue;
        }
        say(format!("{n}/7 {} …", step.label()));
        let clock = Instant::now();
        let (summary, detail) = run_step(state, &plan, request, step, actor, after_migrate)
            .await
            .map_err(|error| RecoverError::failed(Some(step), error))?;
        let ms = clock.elapsed().as_millis() as i64;
        let record = Done {
            ms,
            summary: summary.clone(),
            detail: serde_json::to_value(&detail).unwrap_or_default(),
        };
        progress
            .finish(step, &record)
            .await
            .map_err(|e| RecoverError::failed(Some(step), format!("recording it: {e}")))?;
        say(format!(
            "{n}/7 {}: {summary} ({})",
            step.label(),
            format_duration(ms)
        ));
        steps.push(StepReport {
            step,
            ms,
            earlier: false,
            summary,
        });
        details.insert(step, detail);
    }
    let report = finish(state, &plan, steps, &details, actor).await?;
    progress.end().await.map_err(pg_err)?;
    Ok(report)
}

/// The report, recorded as the `recovery` history entry.
async fn finish(
    state: &AppState,
    plan: &Plan,
    steps: Vec<StepReport>,
    details: &HashMap<Step, StepDetail>,
    actor: &Actor,
) -> Result<RecoveryReport, RecoverError> {
    let now = state.clock.now();
    let of = |step: Step| details.get(&step).cloned().unwrap_or_default();
    let reached_ms = of(Step::Postgres).reached_ms;
    let mut tables = of(Step::Postgres).tables;
    tables.extend(of(Step::Clickhouse).tables);
    let findings: Vec<String> = Step::ALL.iter().flat_map(|s| of(*s).findings).collect();
    let mut report = RecoveryReport {
        asked: plan.asked.clone(),
        postgres_source: plan.postgres.describe(),
        reached_ms,
        clickhouse_backup: plan.clickhouse.as_ref().map(|c| c.backup_id),
        clickhouse_at_ms: plan.clickhouse.as_ref().map(|c| c.at_ms),
        lost_at_ms: plan.lost_at_ms,
        rpo_secs: plan
            .lost_at_ms
            .zip(reached_ms)
            .map(|(lost, reached)| ((lost - reached) / 1000).max(0)),
        rto_ms: (crate::server::unix_ms(now) - plan.started_ms).max(0),
        steps,
        tables,
        replayed: of(Step::Replay).replayed,
        findings,
        history_id: 0,
    };
    let outcome = if report.findings.is_empty() {
        Outcome::Succeeded
    } else {
        Outcome::Partial
    };
    let title = format!(
        "Recovered PostgreSQL ({}{}) and ClickHouse (backup {}) in {}",
        report.postgres_source,
        report
            .reached_ms
            .map(|ms| format!(" to {}", format_utc_secs(ms)))
            .unwrap_or_default(),
        report
            .clickhouse_backup
            .map(|id| id.to_string())
            .unwrap_or_else(|| "-".into()),
        format_duration(report.rto_ms)
    );
    let mut entry = NewEntry::new(
        Recovered {
            report: report.clone(),
        },
        title,
        actor,
        outcome,
    );
    entry.started_at = plan.started_at();
    entry.finished_at = Some(now);
    entry.reason = Some(Reason::own(plan.reason.clone()));
    let record = async {
        let mut conn = state.pg.acquire().await?;
        append(&mut conn, &entry).await
    };
    report.history_id = record
        .await
        .map_err(|e| RecoverError::failed(None, format!("recording the recovery: {e}")))?;
    Ok(report)
}

fn table_counts(store: StoreKind, checks: &[TableCheck]) -> Vec<TableCount> {
    checks
        .iter()
        .map(|check| TableCount {
            store,
            name: check.name.clone(),
            expected: check.expected_rows,
            rows: check.rows,
        })
        .collect()
}

fn firing(actor: &Actor, reason: &str) -> Firing {
    Firing::by_hand(
        crate::jobs::Trigger::Manual,
        actor.clone(),
        Some(Reason::own(reason.to_owned())),
        Caller::default(),
    )
}

/// Runs one step: its summary for a person, and what the report needs of it.
async fn run_step(
    state: &AppState,
    plan: &Plan,
    request: &RecoverRequest,
    step: Step,
    actor: &Actor,
    after_migrate: AfterMigrate<'_>,
) -> Result<(String, StepDetail), String> {
    let rows =
        |tables: &[TableCount]| group_digits(tables.iter().map(|t| t.rows.max(0) as u64).sum());
    match step {
        Step::Postgres => {
            let restored = postgres::restore(state, plan, request.target)
                .await
                .map_err(|e| e.to_string())?;
            let tables = table_counts(StoreKind::Postgres, &restored.checks);
            let summary = format!(
                "{} tables, {} rows, from {}{}{}",
                tables.len(),
                rows(&tables),
                plan.postgres.describe(),
                restored
                    .reached_ms
                    .map(|ms| format!(", reaching {}", format_utc_secs(ms)))
                    .unwrap_or_default(),
                restored
                    .aside
                    .as_ref()
                    .map(|aside| format!("; the tables there before are in schema {aside}"))
                    .unwrap_or_default()
            );
            Ok((
                summary,
                StepDetail {
                    reached_ms: restored.reached_ms,
                    tables,
                    ..StepDetail::default()
                },
            ))
        }
        Step::Migrations => {
            use crate::migrations::ssr::upgrade::{apply, BackupPolicy};
            let policy = BackupPolicy::Skip(Reason::own(
                "a recovery: the repository it came from is the backup",
            ));
            let upgraded = apply(state, &policy, actor)
                .await
                .map_err(|e| e.to_string())?;
            state
                .clickhouse
                .migrate()
                .await
                .map_err(|e| format!("ClickHouse's tables: {e}"))?;
            after_migrate(state.clone()).await?;
            Ok((
                format!(
                    "schema at version {}, {} migrations applied; ClickHouse's tables ready",
                    upgraded.to_version,
                    upgraded.applied.len()
                ),
                StepDetail::default(),
            ))
        }
        Step::Sync => {
            let synced = crate::backups::ssr::sync::sync(state, actor)
                .await
                .map_err(|e| e.to_string())?;
            Ok((
                format!(
                    "{} backups in the repository: {} added, {} completed, {} gone",
                    synced.found,
                    synced.added.len(),
                    synced.completed.len(),
                    synced.gone.len()
                ),
                StepDetail::default(),
            ))
        }
        Step::Clickhouse => {
            let point = plan
                .clickhouse
                .as_ref()
                .ok_or("the plan names no ClickHouse backup")?;
            // A run stopped in this step left its restore `running` and ClickHouse frozen.
            restore::abandon_interrupted(
                state,
                StoreKind::Clickhouse,
                &actor.name,
                plan.started_at(),
            )
            .await
            .map_err(|e| e.to_string())?;
            let reason = Reason::own(format!("Recovery from total loss: {}", plan.reason));
            let prepared = restore::prepare_recovery(state, point.backup_id, actor, reason)
                .await
                .map_err(|e| e.to_string())?;
            let restored = restore::execute(state, prepared, actor, &Tracker::detached(state))
                .await
                .map_err(|e| e.to_string())?;
            if restored.status != RestoreStatus::Verified {
                let bad = restored.tables.iter().find(|t| !t.ok()).map(|t| {
                    format!(
                        "{}: {} rows, its backup held {}",
                        t.name, t.rows, t.expected_rows
                    )
                });
                return Err(restored
                    .error
                    .or(bad)
                    .unwrap_or_else(|| format!("restore {} did not verify", restored.restore_id)));
            }
            let tables = table_counts(StoreKind::Clickhouse, &restored.tables);
            Ok((
                format!(
                    "backup {}: {} tables, {} rows (restore {})",
                    point.backup_id,
                    tables.len(),
                    rows(&tables),
                    restored.restore_id
                ),
                StepDetail {
                    tables,
                    ..StepDetail::default()
                },
            ))
        }
        Step::Replay => replay(state, plan, actor).await,
        Step::History => {
            let chain = crate::history::chain::verify_and_record(state, actor)
                .await
                .map_err(|e| e.to_string())?;
            let mut findings = Vec::new();
            if let Some(broken) = &chain.first_broken {
                findings.push(format!(
                    "the history chain is broken at entry #{}: {}",
                    broken.id, broken.problem
                ));
            }
            if let Some(problem) = &chain.anchors.problem {
                findings.push(format!(
                    "the history disagrees with its ClickHouse anchors: {problem}"
                ));
            }
            if chain.anchors.unavailable {
                findings.push("the history's ClickHouse anchors could not be read".to_owned());
            }
            let anchored = match chain.anchors.newest_seq {
                Some(seq) => format!(
                    "{} anchors agree, the newest at entry #{seq}; entries after it were \
                     written after ClickHouse's backup",
                    chain.anchors.checked
                ),
                None => "no anchor in ClickHouse's backup".to_owned(),
            };
            Ok((
                format!("{} entries intact; {anchored}", chain.entries),
                StepDetail {
                    findings,
                    ..StepDetail::default()
                },
            ))
        }
        Step::Checks => checks(state, plan, actor).await,
    }
}

/// The fallback queues replayed into ClickHouse until they are empty, by the replay job.
async fn replay(
    state: &AppState,
    plan: &Plan,
    actor: &Actor,
) -> Result<(String, StepDetail), String> {
    let job = crate::jobs::ssr::find_any(state, crate::queues::REPLAY_JOB)
        .ok_or("the replay job is not registered")?;
    let mut replayed = 0;
    let mut runs = 0;
    loop {
        let queued: i64 = crate::queues::ssr::stats::queue_depths(&state.pg)
            .await
            .map_err(|e| format!("PostgreSQL: {e}"))?
            .iter()
            .map(|(_, depth)| depth)
            .sum();
        if queued == 0 {
            break;
        }
        let reason = format!("Recovery from total loss: {}", plan.reason);
        let finished =
            crate::jobs::ssr::run(state, job, firing(actor, &reason), RunOptions::default())
                .await
                .map_err(|e| e.to_string())?
                .ok_or("another replica claimed the replay")?;
        runs += 1;
        if finished.rows == 0 {
            return Err(format!(
                "{queued} rows queued and a replay moved none{}",
                finished.error.map(|e| format!(": {e}")).unwrap_or_default()
            ));
        }
        replayed += finished.rows;
    }
    Ok((
        format!(
            "{} rows replayed in {runs} {}; the queues are empty",
            group_digits(replayed as u64),
            if runs == 1 { "run" } else { "runs" }
        ),
        StepDetail {
            replayed,
            ..StepDetail::default()
        },
    ))
}

/// The post-recovery checks, pgBackRest's own check when it archives, and a fresh backup
/// of both stores (the recovered state is the first point of the new servers).
async fn checks(
    state: &AppState,
    plan: &Plan,
    actor: &Actor,
) -> Result<(String, StepDetail), String> {
    let mut findings: Vec<String> = crate::migrations::ssr::check::run(state)
        .await
        .checks
        .into_iter()
        .filter(|check| !check.ok)
        .map(|check| format!("the check {} failed: {}", check.name, check.detail))
        .collect();
    if let Some(pitr) = &state.backups().pitr {
        if let Err(error) = crate::backups::ssr::pitr::PgBackRest::new(pitr)
            .run(&["check"])
            .await
        {
            findings.push(format!(
                "pgBackRest does not archive the new server yet ({error}): it is a new \
                 cluster to pgBackRest; give it a new repository path or stanza and take a \
                 full backup (README: Recovering from total loss)"
            ));
        }
    }
    let reason = format!("The first backup after a recovery: {}", plan.reason);
    let finished = crate::jobs::ssr::run(
        state,
        &crate::backups::ssr::BACKUP,
        firing(actor, &reason),
        RunOptions::default(),
    )
    .await
    .map_err(|e| e.to_string())?
    .ok_or("another replica claimed the backup")?;
    let report = finished
        .report::<crate::backups::ssr::create::BackupReport>()
        .ok_or_else(|| {
            finished
                .error
                .clone()
                .unwrap_or_else(|| "the backup did not report".into())
        })?;
    let mut taken = Vec::new();
    for backup in &report.backups {
        match backup.backup_id {
            Some(id) if backup.error.is_none() => {
                taken.push(format!("{} backup {id}", backup.store.label()))
            }
            _ => {
                return Err(format!(
                    "the fresh backup of {} failed: {}",
                    backup.store.label(),
                    backup.error.as_deref().unwrap_or("no backup id")
                ))
            }
        }
    }
    Ok((
        format!(
            "{}; fresh backups: {}",
            match findings.len() {
                0 => "every check passes".to_owned(),
                1 => "1 finding".to_owned(),
                n => format!("{n} findings"),
            },
            taken.join(", ")
        ),
        StepDetail {
            findings,
            ..StepDetail::default()
        },
    ))
}
