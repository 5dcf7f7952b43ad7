//! What `/admin/drills` shows and changes besides the drill itself: the figures against
//! the objectives, the due dates of each cadence, a tabletop exercise logged by hand, and
//! an admin's change of the objectives.

use super::super::{DrillKind, DrillsOverview, Due, Objective, StoreKind, Tabletop};
use super::alerts;
use super::cadence::{self, AFTER_CHANGE};
use super::records;
use crate::auth::ssr::Actor;
use crate::backups::ssr::{catalogue, objectives};
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::server::{unix_ms, AppState};

/// The drills shown (newest first).
const SHOWN: i64 = 100;

/// Everything the page shows.
pub async fn overview(state: &AppState) -> Result<DrillsOverview, AppError> {
    let now = state.clock.now();
    let pg_err = AppError::wrap("Read the drills");
    let drills = records::list(&state.pg, SHOWN).await.map_err(&pg_err)?;
    let queued: i64 = crate::queues::ssr::stats::queue_depths(&state.pg)
        .await
        .map_err(&pg_err)?
        .iter()
        .map(|(_, depth)| depth)
        .sum();
    let mut rows = Vec::new();
    let mut cadences = Vec::new();
    for store in StoreKind::ALL {
        // The cadence's points carry the store's objectives: read once.
        let points = cadence::points(state, store).await.map_err(&pg_err)?;
        let set = points.objectives;
        cadences.push(points);
        let set_by = sqlx::query_scalar!(
            "select updated_by from recovery_objectives where store = $1",
            store.as_str()
        )
        .fetch_optional(&state.pg)
        .await
        .map_err(&pg_err)?;
        let latest = catalogue::latest_verified(&state.pg, store)
            .await
            .map_err(&pg_err)?;
        let last_pass = drills.iter().find_map(|d| {
            (d.status == super::super::DrillStatus::Passed)
                .then(|| d.stores.iter().find(|s| s.store == store && s.ok))
                .flatten()
                .map(|s| s.recovery_ms)
        });
        let archive_rpo = match store {
            StoreKind::Postgres => archive_exposure(state, now).await,
            StoreKind::Clickhouse => None,
        };
        rows.push(Objective {
            rpo_from_archive: archive_rpo.is_some(),
            store,
            rpo_target_secs: set.rpo.as_secs() as i64,
            rto_target_secs: set.rto.as_secs() as i64,
            functional_days: set.functional_days,
            tabletop_days: set.tabletop_days,
            set_by,
            rpo_measured_ms: archive_rpo.or(latest
                .and_then(|b| b.backup.finished_ms)
                .map(|finished| unix_ms(now) - finished)),
            queued_rows: if store == StoreKind::Clickhouse {
                queued
            } else {
                0
            },
            rto_measured_ms: last_pass,
            rto_median_ms: alerts::median_recovery_ms(&state.pg, store, now, 0)
                .await
                .map_err(&pg_err)?,
        });
    }
    Ok(DrillsOverview {
        now_ms: unix_ms(now),
        drills,
        objectives: rows,
        due: due(&cadences),
    })
}

/// PostgreSQL's recovery point from its WAL archive, when archiving works: pgBackRest is
/// set up, the repository holds a base backup, and the archive command is not failing.
/// `None` otherwise (the dump's age is the recovery point then).
async fn archive_exposure(state: &AppState, now: time::OffsetDateTime) -> Option<i64> {
    use crate::backups::ssr::pitr::{alerts, window};
    let pitr = state.backups().pitr.as_ref()?;
    let window = window(pitr, &state.pg, now).await.ok()?;
    let archiver = alerts::Archiver::read(&state.pg).await.ok()?;
    alerts::archive_exposure_ms(window.oldest_ms, &archiver, now)
}

/// The next due date of each store's cadences.
fn due(cadences: &[cadence::Points]) -> Vec<Due> {
    let mut due = Vec::new();
    for points in cadences {
        let store = points.store;
        due.push(Due {
            what: format!(
                "{}: functional drill (every {} days)",
                store.label(),
                points.objectives.functional_days
            ),
            due_ms: unix_ms(
                points.last_passed.unwrap_or(points.installed)
                    + points.objectives.functional_every(),
            ),
            since: if points.last_passed.is_some() {
                "its last passing drill".into()
            } else {
                "installation".into()
            },
        });
        if let Some(change) = &points.change {
            due.push(Due {
                what: format!(
                    "{}: functional drill after a schema change (within {} days)",
                    store.label(),
                    AFTER_CHANGE.whole_days()
                ),
                due_ms: unix_ms(change.at + AFTER_CHANGE),
                since: change.what.clone(),
            });
        }
        due.push(Due {
            what: format!(
                "{}: tabletop exercise (every {} days)",
                store.label(),
                points.objectives.tabletop_days
            ),
            due_ms: unix_ms(points.tabletop_due()),
            since: if points.last_tabletop.is_some() {
                "the last tabletop".into()
            } else {
                "installation".into()
            },
        });
    }
    due
}

/// A checked field: trimmed, present, at most `max` characters.
fn field(name: &'static str, value: &str, max: usize, required: bool) -> Result<String, AppError> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(AppError::invalid(name, "required"));
    }
    if value.chars().count() > max {
        return Err(AppError::invalid(name, format!("at most {max} characters")));
    }
    Ok(value.to_owned())
}

/// Logs a tabletop exercise: a `drills` row and its `drill` history entry, together.
pub async fn log_tabletop(
    state: &AppState,
    actor: &Actor,
    tabletop: &Tabletop,
) -> Result<i64, AppError> {
    let scenario = field("scenario", &tabletop.scenario, 500, true)?;
    let participants = field("participants", &tabletop.participants, 500, true)?;
    let findings = field("findings", &tabletop.findings, 4000, true)?;
    let follow_ups = field("follow_ups", &tabletop.follow_ups, 4000, false)?;
    let now = state.clock.now();
    let pg_err = AppError::wrap("Log a tabletop exercise");
    let mut tx = state.pg.begin().await.map_err(&pg_err)?;
    let id: i64 = sqlx::query_scalar!(
        "insert into drills (kind, status, trigger, actor, actor_user_id, started_at, finished_at,
                             scenario, participants, findings, follow_ups)
         values ('tabletop', 'passed', 'manual', $1, $2, $3, $3, $4, $5, $6, $7) returning id",
        &actor.name,
        actor.user_id,
        now,
        &scenario,
        &participants,
        &findings,
        &follow_ups
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(&pg_err)?;
    let title = format!("Tabletop exercise: {scenario}");
    let details = records::TabletopLogged {
        drill_id: id,
        kind: DrillKind::Tabletop,
        scenario,
        participants,
        findings: findings.clone(),
        follow_ups,
    };
    let entry = NewEntry::new(details, title, actor, Outcome::Info)
        .with_times(now, Some(now))
        .with_body(findings);
    let history_id = append(&mut tx, &entry).await.map_err(&pg_err)?;
    records::set_history(&mut tx, id, history_id)
        .await
        .map_err(&pg_err)?;
    tx.commit().await.map_err(&pg_err)?;
    Ok(id)
}

/// Sets a store's objectives (admins, with a reason): the row and a history entry
/// An admin's change of a store's objectives and drill cadences; a cadence left out
/// keeps its value.
pub struct ObjectivesAsk {
    pub rpo_hours: i64,
    pub rto_minutes: i64,
    pub functional_days: Option<i64>,
    pub tabletop_days: Option<i64>,
}

/// Sets `store`'s objectives and cadences, with a history entry in one transaction.
pub async fn set_objectives(
    state: &AppState,
    actor: &Actor,
    store: StoreKind,
    ask: &ObjectivesAsk,
    reason: &crate::reason::Reason,
) -> Result<(), AppError> {
    let ObjectivesAsk {
        rpo_hours,
        rto_minutes,
        ..
    } = *ask;
    if !(1..=8760).contains(&rpo_hours) {
        return Err(AppError::invalid("rpo_hours", "between 1 and 8760 hours"));
    }
    if !(1..=10_080).contains(&rto_minutes) {
        return Err(AppError::invalid(
            "rto_minutes",
            "between 1 and 10080 minutes (a week)",
        ));
    }
    for (field, days) in [
        ("functional_days", ask.functional_days),
        ("tabletop_days", ask.tabletop_days),
    ] {
        if days.is_some_and(|d| !(1..=3650).contains(&d)) {
            return Err(AppError::invalid(field, "between 1 and 3650 days"));
        }
    }
    let before = objectives::current(state, store)
        .await
        .map_err(AppError::wrap("Read the recovery objectives"))?;
    let after = objectives::Objectives {
        rpo: std::time::Duration::from_secs(rpo_hours as u64 * 3600),
        rto: std::time::Duration::from_secs(rto_minutes as u64 * 60),
        functional_days: ask.functional_days.unwrap_or(before.functional_days),
        tabletop_days: ask.tabletop_days.unwrap_or(before.tabletop_days),
    };
    let now = state.clock.now();
    let pg_err = AppError::wrap("Set the recovery objectives");
    let mut tx = state.pg.begin().await.map_err(&pg_err)?;
    sqlx::query!(
        "insert into recovery_objectives
                (store, rpo_seconds, rto_seconds, functional_days, tabletop_days,
                 updated_at, updated_by, reason)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         on conflict (store) do update set rpo_seconds = excluded.rpo_seconds,
             rto_seconds = excluded.rto_seconds, functional_days = excluded.functional_days,
             tabletop_days = excluded.tabletop_days, updated_at = excluded.updated_at,
             updated_by = excluded.updated_by, reason = excluded.reason",
        store.as_str(),
        rpo_hours * 3600,
        rto_minutes * 60,
        after.functional_days as i32,
        after.tabletop_days as i32,
        now,
        &actor.name,
        reason.as_str()
    )
    .execute(&mut *tx)
    .await
    .map_err(&pg_err)?;
    let details = records::ObjectivesSet {
        store,
        before: before.into(),
        after: after.into(),
    };
    let entry = NewEntry::new(
        details,
        format!(
            "{} objectives set: RPO {rpo_hours} h, RTO {rto_minutes} min, a drill every {} days, a tabletop every {} days",
            store.label(),
            after.functional_days,
            after.tabletop_days
        ),
        actor,
        Outcome::Succeeded,
    )
    .with_reason(Some(reason.clone()));
    append(&mut tx, &entry).await.map_err(&pg_err)?;
    tx.commit().await.map_err(&pg_err)?;
    Ok(())
}
