//! The freeze: one mechanism with two scopes, below the features, shown by every page's
//! banner.
//!
//! - **restore**: while a store is restored in place, the work that writes to it waits
//!   (ingest and replay check it; restores hold it).
//! - **incident**: while an incident is frozen, the risky mutations wait: expiry never
//!   deletes queued data, backup retention deletes nothing, an in-place restore needs an
//!   admin who confirms the incident. Ingest and replay go on.
//!
//! - DTOs here: [`Freeze`] (an open freeze); [`StoreKind`] is infrastructure's.
//! - `ssr` (server only) — opening, closing and checking a freeze.

#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

pub use crate::stores::StoreKind;

/// An open freeze: a restore's of one store, or an incident's of both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    /// The store a restore froze; none for an incident freeze.
    pub store: Option<StoreKind>,
    pub reason: String,
    pub started_by: String,
    pub started_ms: i64,
    pub restore_id: Option<i64>,
    pub incident_id: Option<i64>,
}
