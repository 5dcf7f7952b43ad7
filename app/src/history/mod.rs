//! The runbook history: every action, drill, incident and note, append-only and
//! hash-chained, at `/admin/history`.
//!
//! - DTOs here: [`Entry`], [`Outcome`], [`HistoryPage`], [`ChainReport`].
//! - `api` — search, open an entry, add a note, declare and resolve incidents, verify.
//! - `page` — the list with filters, the entry page with an incident's timeline.
//! - `ssr` (server only) — [`append`](ssr::append), the one way an entry is written,
//!   inside the caller's transaction; search with keyset pagination; chain verification;
//!   CSV and Markdown export.

pub mod api;
pub mod page;
#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

/// The kinds of entry Salvage writes. Stored as text; later features add theirs here.
pub const KINDS: &[&str] = &[
    "drill",
    "incident",
    "incident_resolved",
    "activation",
    "restore",
    "replay",
    "redrive",
    "expiry",
    "secret_rotation",
    "user_change",
    "ingest_key",
    "cron",
    "note",
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
    /// Emails of every account, offered in the actor filter.
    pub actors: Vec<String>,
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
}

/// An entry that fails verification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BrokenLink {
    pub id: i64,
    pub problem: String,
}

/// Formats Unix milliseconds as `2026-11-22 10:04 UTC`.
pub fn format_utc(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "unknown".into(),
    }
}

/// Formats a duration in milliseconds the way an operator reads it: `840 ms`, `12.4 s`,
/// `3 min 20 s`, `2 h 05 min`.
pub fn format_duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{} h {:02} min", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

/// "just now", "5 min ago", "3 h ago", "12 d ago"; for a time ahead of `now_ms`
/// (a next tick, the end of a grace window): "in 40 s", "in 5 min", "in 3 h", "in 2 d".
pub fn format_ago(ms: i64, now_ms: i64) -> String {
    let seconds = (now_ms - ms) / 1000;
    if seconds < 0 {
        let ahead = -seconds;
        if ahead < 60 {
            format!("in {ahead} s")
        } else if ahead < 3600 {
            format!("in {} min", ahead / 60)
        } else if ahead < 86_400 {
            format!("in {} h", ahead / 3600)
        } else {
            format!("in {} d", ahead / 86_400)
        }
    } else if seconds < 60 {
        "just now".into()
    } else if seconds < 3600 {
        format!("{} min ago", seconds / 60)
    } else if seconds < 86_400 {
        format!("{} h ago", seconds / 3600)
    } else {
        format!("{} d ago", seconds / 86_400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_an_operator_would_say_them() {
        assert_eq!(format_duration(840), "840 ms");
        assert_eq!(format_duration(12_400), "12.4 s");
        assert_eq!(format_duration(200_000), "3 min 20 s");
        assert_eq!(format_duration(7_500_000), "2 h 05 min");
    }

    #[test]
    fn times_are_shown_in_utc_with_the_zone_named() {
        assert_eq!(format_utc(1_795_000_000_000), "2026-11-18 11:06 UTC");
    }

    #[test]
    fn relative_times_count_down_to_just_now() {
        let now = 10_000_000_000;
        assert_eq!(format_ago(now - 30_000, now), "just now");
        assert_eq!(format_ago(now - 5 * 60_000, now), "5 min ago");
        assert_eq!(format_ago(now - 3 * 3_600_000, now), "3 h ago");
        assert_eq!(format_ago(now - 49 * 3_600_000, now), "2 d ago");
        assert_eq!(format_ago(now + 40_000, now), "in 40 s");
        assert_eq!(format_ago(now + 5 * 60_000, now), "in 5 min");
        assert_eq!(format_ago(now + 86_399_000, now), "in 23 h");
        assert_eq!(format_ago(now + 49 * 3_600_000, now), "in 2 d");
    }
}
