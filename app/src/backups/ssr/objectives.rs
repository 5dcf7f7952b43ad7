//! The recovery objectives per store: what admins set (`recovery_objectives`), or the
//! defaults (RPO from `SALVAGE_RPO_<STORE>_HOURS`, 24 h; RTO 1 h; a functional drill
//! every 90 days and a tabletop exercise every 30, as the runbooks set them).

use std::time::Duration;

use super::super::StoreKind;
use crate::server::AppState;

/// The default cadence of functional drills, in days.
pub const FUNCTIONAL_DAYS: i64 = 90;
/// The default cadence of tabletop exercises, in days.
pub const TABLETOP_DAYS: i64 = 30;

/// The recovery point and time objectives of one store, and how often its recovery is
/// proven (a functional drill) and rehearsed (a tabletop exercise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Objectives {
    pub rpo: Duration,
    pub rto: Duration,
    pub functional_days: i64,
    pub tabletop_days: i64,
}

impl Objectives {
    /// The functional drills' cadence.
    pub fn functional_every(&self) -> time::Duration {
        time::Duration::days(self.functional_days)
    }

    /// The tabletop exercises' cadence.
    pub fn tabletop_every(&self) -> time::Duration {
        time::Duration::days(self.tabletop_days)
    }
}

/// The objectives of `store` now.
pub async fn current(state: &AppState, store: StoreKind) -> Result<Objectives, sqlx::Error> {
    let set = sqlx::query!(
        "select rpo_seconds, rto_seconds, functional_days, tabletop_days
           from recovery_objectives where store = $1",
        store.as_str()
    )
    .fetch_optional(&state.pg)
    .await?;
    Ok(match set {
        Some(row) => Objectives {
            rpo: Duration::from_secs(row.rpo_seconds.max(1) as u64),
            rto: Duration::from_secs(row.rto_seconds.max(1) as u64),
            functional_days: i64::from(row.functional_days.max(1)),
            tabletop_days: i64::from(row.tabletop_days.max(1)),
        },
        None => Objectives {
            rpo: state.backups().rpo(store),
            rto: state.backups().rto_default,
            functional_days: FUNCTIONAL_DAYS,
            tabletop_days: TABLETOP_DAYS,
        },
    })
}

/// The recovery time objective of `store`.
pub async fn rto(state: &AppState, store: StoreKind) -> Result<Duration, sqlx::Error> {
    Ok(current(state, store).await?.rto)
}
