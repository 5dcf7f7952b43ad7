//! Ingest keys: the credentials machines send rows with (`/ingest/*`), created and
//! revoked by admins, shown once, stored as a digest.
//!
//! They sit beside the accounts, below the features: the queues' ingest and the dead
//! letters' webhook-event ingest both authenticate with them. The settings page and its
//! server functions live with the queues (`queues::page`, `queues::api`).
//!
//! - DTOs here: [`IngestKey`], [`CreatedKey`], [`KeyUsage`], [`KeySource`].
//! - `ssr` (server only) — create, revoke, list, and `authenticate` with its cache.
//! - `usage` (server only) — what each key did per hour and source address.

#[cfg(feature = "ssr")]
pub mod ssr;
#[cfg(feature = "ssr")]
pub mod usage;

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
    pub first_used_at: Option<i64>,
    /// Requests and rows of the last 7 days, and source addresses seen.
    pub requests_7d: i64,
    pub rows_7d: i64,
    pub addresses: i64,
}

/// A source address of a key's requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySource {
    pub address: String,
    pub requests: i64,
    pub rows: i64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// What a key did: its blast radius if it leaked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUsage {
    /// When it was read (the 7 days end here).
    pub now_ms: i64,
    pub key_id: i64,
    pub name: String,
    pub first_used_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
    /// Over the 7 days kept.
    pub requests: i64,
    pub rows: i64,
    /// Each hour with requests, oldest first: (hour, requests, rows).
    pub hours: Vec<(i64, i64, i64)>,
    /// The most recently seen addresses (up to 100), newest first.
    pub sources: Vec<KeySource>,
}

/// A key just created: the secret is in this response and nowhere else, ever.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    pub id: i64,
    pub secret: crate::format::ShownOnce,
}
