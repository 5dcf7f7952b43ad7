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
mod annotate;
pub mod api;
#[cfg(feature = "ssr")]
pub mod chain;
#[cfg(feature = "ssr")]
pub mod export;
pub mod page;
#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

crate::stored::stored_enum! {
    /// The kinds of entry Salvage writes, each with its one stored name
    /// (`runbook_history.kind`). A reader meets stored text: a kind a later version
    /// added reads as its text ([`Entry::kind`] stays a `String`).
    pub enum EntryKind {
        Drill = "drill",
        /// The recovery objectives changed.
        Objectives = "objectives",
        Incident = "incident",
        IncidentResolved = "incident_resolved",
        IncidentSnapshot = "incident_snapshot",
        Freeze = "freeze",
        Activation = "activation",
        Backup = "backup",
        Restore = "restore",
        Upgrade = "upgrade",
        BackgroundMigration = "background_migration",
        Replay = "replay",
        Redrive = "redrive",
        DlqPurge = "dlq_purge",
        Webhook = "webhook",
        Expiry = "expiry",
        SecretRotation = "secret_rotation",
        UserChange = "user_change",
        IngestKey = "ingest_key",
        Cron = "cron",
        Note = "note",
        HistoryExport = "history_export",
        ChainVerify = "chain_verify",
        /// A recovery from total loss (`salvage recover`).
        Recovery = "recovery",
        Alert = "alert",
        Silence = "silence",
    }
}

impl EntryKind {
    /// How the page names it: the stored name in words.
    pub fn label(self) -> String {
        self.as_str().replace('_', " ")
    }

    /// Whether stored text names this kind.
    pub fn is(self, stored: &str) -> bool {
        self.as_str() == stored
    }
}

/// Incident severities, most severe first.
pub const SEVERITIES: &[&str] = &["sev1", "sev2", "sev3", "sev4"];

crate::stored::stored_enum! {
    /// How an entry ended.
    pub enum Outcome {
        /// The action did what it was asked.
        Succeeded = "succeeded",
        /// The action failed; `reason` or `details` say why.
        Failed = "failed",
        /// Part of the work was done.
        Partial = "partial",
        /// Not an action with a result: a note, a declared incident.
        Info = "info",
    }
}

/// One history entry as the console shows it. Times are Unix milliseconds (UTC).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the chain, from 1, gapless.
    pub id: i64,
    /// An [`EntryKind`]'s stored name (or a kind a later version added).
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

/// The result of walking the chain. Stored as a `chain_verify` entry's details, in the
/// history's camelCase (the aliases read entries recorded before).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainReport {
    /// Entries checked.
    pub entries: i64,
    /// The first entry that does not match, and how.
    #[serde(alias = "first_broken")]
    pub first_broken: Option<BrokenLink>,
    /// The hash of the newest entry (hex): note it somewhere else to detect a rewrite of
    /// the whole chain or the loss of its newest entries.
    #[serde(alias = "head_hash")]
    pub head_hash: Option<String>,
    /// When the verification ran (unix ms) and who ran it.
    #[serde(alias = "verified_at")]
    pub verified_at: i64,
    #[serde(alias = "verified_by")]
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
#[serde(rename_all = "camelCase")]
pub struct AnchorCheck {
    /// Anchors compared with the chain.
    pub checked: i64,
    /// The newest anchor's entry and when it was anchored (unix ms).
    #[serde(alias = "newest_seq")]
    pub newest_seq: Option<i64>,
    #[serde(alias = "newest_at")]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_report_recorded_before_the_camel_case_convention_still_reads() {
        let old = serde_json::json!({
            "entries": 12, "first_broken": {"id": 7, "problem": "hash differs"},
            "head_hash": "ab", "verified_at": 1, "verified_by": "cli:root",
            "anchors": {"checked": 2, "newest_seq": 11, "newest_at": 5, "problem": null,
                        "unavailable": false}
        });
        let report: ChainReport = serde_json::from_value(old).unwrap();
        assert_eq!(report.first_broken.as_ref().map(|b| b.id), Some(7));
        assert_eq!(report.anchors.newest_seq, Some(11));
        let now = serde_json::to_value(&report).unwrap();
        assert_eq!(now["firstBroken"]["id"], 7);
        assert_eq!(now["anchors"]["newestSeq"], 11);
        assert_eq!(serde_json::from_value::<ChainReport>(now).unwrap(), report);
    }

    #[test]
    fn every_entry_kind_has_its_own_stored_name() {
        let names: std::collections::HashSet<&str> =
            EntryKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), EntryKind::ALL.len());
        assert_eq!(EntryKind::IncidentResolved.label(), "incident resolved");
        assert!(EntryKind::Cron.is("cron") && !EntryKind::Cron.is("crons"));
    }
}
