//! The runbook history: every action, drill, incident and note, append-only and
//! hash-chained, at `/admin/history`.
//!
//! - DTOs here: [`Entry`], [`Outcome`], [`HistoryPage`], [`ChainReport`].
//! - `api` — search, open an entry, add a note, declare and resolve incidents, verify.
//! - `page` — the list with filters, the entry page with an incident's timeline.
//! - `ssr` (server only) — [`append`](ssr::append), the one way an entry is written,
//!   inside the caller's transaction; search with keyset pagination and its filter from
//!   form fields; chain verification.
//! - `export` (server only) — `GET /admin/history/export`, CSV and Markdown, streamed.
//! - `chain` (server only) — verification: every hash recomputed, the anchors compared.
//! - `anchor` (server only) — the head copied to ClickHouse every few seconds.
//! - `annotate` (server only) — the rate of notes and incidents, incident times.

#[cfg(feature = "ssr")]
pub mod anchor;
#[cfg(feature = "ssr")]
pub mod annotate;
pub mod api;
#[cfg(feature = "ssr")]
pub mod chain;
#[cfg(feature = "ssr")]
pub mod export;
pub mod page;
#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

/// The kinds of entry Salvage writes. Stored as text; later features add theirs here.
pub const KINDS: &[&str] = &[
    "drill",
    "objectives",
    "incident",
    "incident_resolved",
    "incident_snapshot",
    "freeze",
    "activation",
    "backup",
    "restore",
    "upgrade",
    "background_migration",
    "replay",
    "redrive",
    "dlq_purge",
    "webhook",
    "expiry",
    "secret_rotation",
    "user_change",
    "ingest_key",
    "cron",
    "note",
    "history_export",
    "chain_verify",
    "alert",
    "silence",
];

/// Incident severities, most severe first.
pub const SEVERITIES: &[&str] = &["sev1", "sev2", "sev3", "sev4"];

/// How an entry ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action did what it was asked.
    Succeeded,
    /// The action failed; `reason` or `details` say why.
    Failed,
    /// Part of the work was done.
    Partial,
    /// Not an action with a result: a note, a declared incident.
    Info,
}

impl Outcome {
    /// Every outcome, for filters.
    pub const ALL: [Outcome; 4] = [
        Outcome::Succeeded,
        Outcome::Failed,
        Outcome::Partial,
        Outcome::Info,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Partial => "partial",
            Outcome::Info => "info",
        }
    }

    /// Parses a stored or submitted name.
    pub fn parse(value: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == value)
    }
}

/// One history entry as the console shows it. Times are Unix milliseconds (UTC).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the chain, from 1, gapless.
    pub id: i64,
    /// One of [`KINDS`] (or a kind a later version added).
    pub kind: String,
    pub title: String,
    pub body: String,
    /// Who did it: an email, `cli:<user>` or `system:<job>`.
    pub actor: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// The details object, pretty-printed JSON.
    pub details: String,
    /// The incident this entry belongs to.
    pub incident_id: Option<i64>,
    /// `sev1`…`sev4`, incidents only.
    pub severity: Option<String>,
    /// When it was written (may be later than `started_at` for back-dated entries).
    pub created_at: i64,
    /// The chain hash, hex.
    pub hash: String,
    /// "3 h ago", computed on the server when the page was loaded.
    pub started_ago: String,
}

impl Entry {
    /// How long it took, when it has an end.
    pub fn duration_ms(&self) -> Option<i64> {
        self.finished_at.map(|end| end - self.started_at)
    }
}

/// One page of a history search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub entries: Vec<Entry>,
    /// Pass as `before` to get the next (older) page; `None` on the last page.
    pub next_cursor: Option<String>,
    /// Everyone who appears as an actor in the history, offered in the actor filter
    /// (taken from the history itself, so it shows no account that never acted).
    pub actors: Vec<String>,
    /// The newest chain verification, whoever ran it.
    pub last_verification: Option<ChainReport>,
}

/// An incident with everything linked to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntryView {
    pub entry: Entry,
    /// For an incident: its linked entries, oldest first (notes, actions, resolution).
    pub timeline: Vec<Entry>,
    /// For an incident: when it was resolved, from its own end time or a resolution entry.
    pub resolved_at: Option<i64>,
}

/// The result of walking the chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainReport {
    /// Entries checked.
    pub entries: i64,
    /// The first entry that does not match, and how.
    pub first_broken: Option<BrokenLink>,
    /// The hash of the newest entry (hex): note it somewhere else to detect a rewrite of
    /// the whole chain or the loss of its newest entries.
    pub head_hash: Option<String>,
    /// When the verification ran (unix ms) and who ran it.
    pub verified_at: i64,
    pub verified_by: String,
    /// The chain compared with the heads anchored in ClickHouse.
    #[serde(default)]
    pub anchors: AnchorCheck,
}

impl ChainReport {
    /// Nothing wrong: the chain links up and agrees with every anchor.
    pub fn intact(&self) -> bool {
        self.first_broken.is_none() && self.anchors.problem.is_none()
    }
}

/// The chain against the heads anchored in ClickHouse.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnchorCheck {
    /// Anchors compared with the chain.
    pub checked: i64,
    /// The newest anchor's entry and when it was anchored (unix ms).
    pub newest_seq: Option<i64>,
    pub newest_at: Option<i64>,
    /// What the anchors show: the newest entries removed, or the chain rewritten.
    pub problem: Option<String>,
    /// ClickHouse did not answer, so the anchors could not be compared.
    pub unavailable: bool,
}

/// An entry that fails verification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BrokenLink {
    pub id: i64,
    pub problem: String,
}
