//! The recovery objectives per store: what admins set (`recovery_objectives`), or the
//! defaults (RPO from `SALVAGE_RPO_<STORE>_HOURS`, 24 h; RTO 1 h).

use std::time::Duration;

use super::super::StoreKind;
use crate::server::AppState;

/// The recovery point and time objectives of one store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Objectives {
    pub rpo: Duration,
    pub rto: Duration,
}

/// The objectives of `store` now.
pub async fn current(state: &AppState, store: StoreKind) -> Result<Objectives, sqlx::Error> {
    let set = sqlx::query!(
        "select rpo_seconds, rto_seconds from recovery_objectives where store = $1",
        store.as_str()
    )
    .fetch_optional(&state.pg)
    .await?
    .map(|row| (row.rpo_seconds, row.rto_seconds));
    Ok(match set {
        Some((rpo, rto)) => Objectives {
            rpo: Duration::from_secs(rpo.max(1) as u64),
            rto: Duration::from_secs(rto.max(1) as u64),
        },
        None => Objectives {
            rpo: state.backups().rpo(store),
            rto: state.backups().rto_default,
        },
    })
}

/// The recovery time objective of `store`.
pub async fn rto(state: &AppState, store: StoreKind) -> Result<Duration, sqlx::Error> {
    Ok(current(state, store).await?.rto)
}
