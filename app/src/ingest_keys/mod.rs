//! Ingest keys: the credentials machines send rows with (`/ingest/*`), created and
//! revoked by admins, shown once, stored as a digest.
//!
//! They sit beside the accounts, below the features: the queues' ingest and the dead
//! letters' webhook-event ingest both authenticate with them. The settings page and its
//! server functions live with the queues (`queues::page`, `queues::api`).
//!
//! - DTOs here: [`IngestKey`], [`CreatedKey`].
//! - `ssr` (server only) — create, revoke, list, and `authenticate` with its cache.

#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

/// An ingest key as settings list it (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestKey {
    pub id: i64,
    pub name: String,
    /// The key's first characters, to recognise it in a caller's configuration.
    pub prefix: String,
    /// The organisation it sends rows for, or `*` for every one.
    pub organization_id: String,
    pub created_at: i64,
    pub created_by: String,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// A key just created: the secret is in this response and nowhere else, ever.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    pub id: i64,
    pub secret: crate::format::ShownOnce,
}
