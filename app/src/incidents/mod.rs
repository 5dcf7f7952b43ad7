//! Incident mode: what declaring an incident gains beyond its history entry. The freeze
//! with an incident scope (risky mutations wait), status snapshots in the incident's
//! timeline, the post-recovery checklist that gates its resolution, and the RCA owner.
//!
//! Incidents sit above the features they look at (stores' health, queues, alerts, crons,
//! backups, the history chain), like drills. The history (a layer below) declares and
//! resolves incidents; it reaches incident mode only through the hooks the composition
//! root hands it in `AppState` (a snapshot on declare, the checklist before resolving).
//!
//! - DTOs here: [`CheckItem`], [`IncidentMode`], [`MANUAL_ITEMS`].
//! - `api` — the incident panel's server functions; `page` — the panel on an incident's
//!   history page. `ssr` (server only) — snapshots, the checklist, the freeze, the owner.

pub mod api;
pub mod page;
#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

/// The manual items of the post-recovery checklist: `(key, what a person confirms)`.
pub const MANUAL_ITEMS: &[(&str, &str)] = &[
    (
        "customers_told",
        "Customers and support were told it is fixed",
    ),
    (
        "data_checked",
        "Someone checked the restored or replayed data by hand",
    ),
    (
        "timeline_written",
        "The incident's timeline is written up here",
    ),
];

/// One item of the post-recovery checklist: a live check Salvage measures, or a manual
/// one a person ticks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckItem {
    pub key: String,
    pub label: String,
    /// Measured now (else ticked by a person).
    pub live: bool,
    pub ok: bool,
    /// What was measured, or who ticked it.
    pub detail: String,
    pub checked_by: Option<String>,
    pub checked_ms: Option<i64>,
}

/// An incident's mode: its freeze, checklist, owner and snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentMode {
    pub incident_id: i64,
    /// Not resolved yet.
    pub open: bool,
    /// This incident's freeze is on.
    pub frozen: bool,
    /// Another incident's freeze is on (only one at a time).
    pub other_freeze: Option<i64>,
    /// Open: measured now. Resolved: as recorded with the resolution.
    pub checks: Vec<CheckItem>,
    /// `false`: resolved before the checklist was recorded with resolutions.
    #[serde(default = "recorded_by_default")]
    pub checks_recorded: bool,
    pub rca_owner: Option<String>,
    pub snapshots: i64,
}

impl IncidentMode {
    /// Whether every check passes (resolution needs it, or an admin's override).
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

fn recorded_by_default() -> bool {
    true
}
