//! Alerts: the model every feature raises through, the self-monitor that raises and
//! clears them, and `/admin/alerts`, where operators start their shift.
//!
//! The model sits below the features (like the job runner): expiry raises
//! `data_expired` in its own transaction, and each feature contributes the evaluators of
//! its kinds, which the composition root lists (`registry::ALERT_KINDS`).
//!
//! - DTOs here: [`Severity`], [`AlertStatus`], [`Alert`], [`AlertEvent`], [`Silence`],
//!   [`AlertsOverview`], [`ResolvedOverview`], [`FixAction`].
//! - `api` — the server functions of the page (and the nav's counts).
//! - `page` — `/admin/alerts` (open alerts); `panel` — one alert; `resolved_view` and
//!   `silences_view` — the other two tabs; `parts` — what they share.
//! - `ssr` (server only) — kinds and signals (`ssr::kind`), the store and its race-safe
//!   changes (`ssr::store`), silences (`ssr::silences`), the self-monitor job
//!   (`ssr::monitor`), the page's queries (`ssr::query`) and the PostgreSQL outage
//!   watch (`ssr::outage`).

pub mod api;
pub mod page;
mod panel;
mod parts;
mod resolved_view;
mod silences_view;
#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

crate::stored::stored_enum! {
    /// How bad it is. Ordered: `Info < Warning < Critical`.
    #[derive(PartialOrd, Ord)]
    pub enum Severity {
        Info = "info",
        Warning = "warning",
        Critical = "critical",
    }
}

impl Severity {
    /// Most severe first, as the filters offer them.
    pub const MOST_SEVERE_FIRST: [Severity; 3] =
        [Severity::Critical, Severity::Warning, Severity::Info];
}

crate::stored::stored_enum! {
    /// Where an alert is: firing → acknowledged → resolved.
    pub enum AlertStatus {
        Firing = "firing",
        Acknowledged = "acknowledged",
        Resolved = "resolved",
    }
}

impl AlertStatus {
    pub fn is_open(self) -> bool {
        self != AlertStatus::Resolved
    }
}

/// The names of the alert kinds, in registry order, for the pages' filters and the
/// silence form (the registry itself, with each kind's evaluator, is server-only; a unit
/// test keeps the two equal).
pub const KIND_NAMES: &[&str] = &[
    "fallback_queue_high",
    "fallback_queue_old",
    "clickhouse_down",
    "replay_failing",
    "cron_dropout",
    "data_expired",
    "ingest_quota",
    "postgres_down",
    "backup_stale",
    "backup_failed",
    "backup_verify_failed",
    "drill_overdue",
    "tabletop_overdue",
    "drill_failed",
    "rto_exceeded",
    "wal_archive_lag",
    "pitr_backup_failed",
    "pitr_window_short",
    "webhook_backlog",
    "dlq_growing",
    "dlq_count_high",
    "webhook_paused",
    "dlq_retention_near",
    "migration_stuck",
];

/// An actor as the alert pages and messages name it: "the self-monitor" for Salvage's
/// own changes, the email or `cli:<user>` otherwise.
pub fn actor_name(actor: &str) -> String {
    if actor == "system:self-monitor" {
        "the self-monitor".into()
    } else {
        actor.to_owned()
    }
}

/// What the alert page offers to fix an alert inline (for roles that may operate): a run
/// of the job named `job`, started through the runner's one start function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixAction {
    /// The job's name in the registry.
    pub job: String,
    /// The button's words ("Replay the queues", "Back up now").
    pub label: String,
}

impl FixAction {
    /// Runs `job`, on a button saying `label`.
    pub fn run(job: &str, label: impl Into<String>) -> Self {
        Self {
            job: job.to_owned(),
            label: label.into(),
        }
    }
}

/// One alert as the page lists it. Times are Unix ms (UTC).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: i64,
    pub kind: String,
    /// What it is about: a queue, a job, a store, an ingest key.
    pub key: String,
    pub severity: Severity,
    pub status: AlertStatus,
    pub title: String,
    pub figure: Option<f64>,
    pub threshold: Option<f64>,
    pub unit: Option<String>,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
    pub occurrences: i64,
    /// What a change must carry to be applied (see the store's race rules).
    pub version: i32,
    /// The resolved alert this one re-opens.
    pub regressed_from: Option<i64>,
    pub flapping: bool,
    /// An active silence matches it: it is raised and listed, but quiet.
    pub silenced: bool,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<i64>,
    pub acknowledged_until: Option<i64>,
    pub resolved_at: Option<i64>,
    pub resolved_by: Option<String>,
    pub resolution_note: Option<String>,
    /// The page that fixes it.
    pub fix_href: String,
    pub fix_label: String,
    pub fix_action: Option<FixAction>,
}

impl Alert {
    /// "1,234 rows (threshold 1,000 rows)", or nothing when the alert has no figure.
    pub fn figure_text(&self) -> Option<String> {
        let figure = self.figure?;
        let unit = self.unit.as_deref().unwrap_or("");
        let show = |v: f64| format_figure(v, unit);
        Some(match self.threshold {
            Some(threshold) => format!("{} (threshold {})", show(figure), show(threshold)),
            None => show(figure),
        })
    }

    /// Time from first seen to acknowledged, in ms.
    pub fn time_to_acknowledge(&self) -> Option<i64> {
        self.acknowledged_at.map(|at| at - self.first_seen_at)
    }

    /// Time from first seen to resolved, in ms.
    pub fn time_to_resolve(&self) -> Option<i64> {
        self.resolved_at.map(|at| at - self.first_seen_at)
    }
}

/// A figure with its unit: rows grouped by thousands; times (in `s`, `seconds`, `min`,
/// `h` or `days`) as durations in the unit that reads best ("508 ms", "4 min 30 s",
/// "90 d 03 h"), never a rounded "0 s".
pub fn format_figure(value: f64, unit: &str) -> String {
    let ms_per_unit = match unit {
        "s" | "seconds" => Some(1_000.0),
        "min" => Some(60_000.0),
        "h" => Some(3_600_000.0),
        "days" => Some(86_400_000.0),
        _ => None,
    };
    if let Some(ms) = ms_per_unit {
        return crate::format::format_duration((value * ms).round() as i64);
    }
    match unit {
        "%" => format!("{value:.1} %"),
        "" => crate::format::group_digits(value.max(0.0) as u64),
        unit => format!(
            "{} {unit}",
            crate::format::group_digits(value.max(0.0) as u64)
        ),
    }
}

/// One change on an alert's timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub at: i64,
    /// `raised`, `regressed`, `fired_again`, `severity_changed`, `acknowledged`,
    /// `unacknowledged`, `note`, `silenced`, `flapping`, `stable`, `resolved`,
    /// `auto_resolved`.
    pub event: String,
    pub actor: String,
    pub note: Option<String>,
    pub history_id: Option<i64>,
}

impl AlertEvent {
    /// The event in words, for the timeline.
    pub fn label(&self) -> &'static str {
        match self.event.as_str() {
            "raised" => "raised",
            "regressed" => "raised again (regressed)",
            "fired_again" => "fired again",
            "severity_changed" => "severity changed",
            "acknowledged" => "acknowledged",
            "unacknowledged" => "acknowledgement ended",
            "note" => "note",
            "silenced" => "muted by a silence",
            "flapping" => "flapping",
            "stable" => "stable again",
            "resolved" => "resolved",
            "auto_resolved" => "resolved by the self-monitor",
            _ => "changed",
        }
    }
}

/// A silence. Times are Unix ms (UTC).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: i64,
    pub kind: String,
    /// `None`: every key of the kind.
    pub key_pattern: Option<String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub created_by: String,
    pub reason: String,
    pub ended_at: Option<i64>,
    pub ended_by: Option<String>,
    /// Alerts it has muted.
    pub matched: i64,
    pub last_matched_at: Option<i64>,
    /// Active, yet it has matched nothing for 24 h: probably no longer needed.
    pub idle: bool,
    pub active: bool,
}

/// Everything one alert's panel shows besides the alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertDetail {
    pub alert: Alert,
    pub timeline: Vec<AlertEvent>,
    /// Silences that matched it, active or expired.
    pub silences: Vec<Silence>,
    /// The alerts of the same kind and key before this one (regressions), newest first.
    pub earlier: Vec<Alert>,
}

/// The strip of counts at the top of the page (open alerts). `critical`, `warning` and
/// `info` count alerts still firing and not silenced: what nobody has taken yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertCounts {
    pub critical: i64,
    pub warning: i64,
    pub info: i64,
    pub acknowledged: i64,
    pub silenced: i64,
    pub flapping: i64,
    /// The open write freezes: every page shows them as a banner beside the count.
    #[serde(default)]
    pub freezes: Vec<crate::freeze::Freeze>,
}

impl AlertCounts {
    /// Alerts nobody has taken yet (critical and warning, firing, not silenced): the
    /// nav's count.
    pub fn needing_attention(&self) -> i64 {
        self.critical + self.warning
    }
}

/// `/admin/alerts`' open view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertsOverview {
    pub now: i64,
    pub counts: AlertCounts,
    /// Open alerts that pass the filters: by severity, then oldest first.
    pub alerts: Vec<Alert>,
    /// When the self-monitor last evaluated, and whether it runs here.
    pub last_evaluation_at: Option<i64>,
    pub silences: Vec<Silence>,
}

/// How long alerts of one kind took to be handled over 30 days.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoisyKind {
    pub kind: String,
    pub alerts: i64,
    pub median_resolve_ms: Option<i64>,
}

/// `/admin/alerts?view=resolved`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResolvedOverview {
    pub now: i64,
    /// The newest resolved alerts that pass the filters.
    pub alerts: Vec<Alert>,
    /// Medians over the last 30 days.
    pub median_acknowledge_ms: Option<i64>,
    pub median_resolve_ms: Option<i64>,
    pub resolved_30d: i64,
    pub noisiest: Vec<NoisyKind>,
}

/// The outcome of a change to one alert (acknowledge, resolve, note).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    pub alert_id: i64,
    /// The alert's version after the change.
    pub version: i32,
    pub history_id: i64,
}

/// One alert of a bulk selection: its id and the version the person saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub id: i64,
    pub version: i32,
}

/// A selection of alerts as the acknowledge and resolve functions take it: `id@version`
/// items separated by commas (`12@3,15@1`). It reads from one value (the app's client,
/// the panel's hidden field, the API) or from a list (the ticked boxes of a plain form,
/// `selection[]=12@3&selection[]=15@1`), joined into the same text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Selection(pub String);

impl<'de> Deserialize<'de> for Selection {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> serde::de::Visitor<'de> for OneOrMany {
            type Value = Selection;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("id@version items, in one value or a list")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Selection, E> {
                Ok(Selection(value.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut items: A,
            ) -> Result<Selection, A::Error> {
                let mut all = Vec::new();
                // At most a little over what a change accepts: the check names the limit.
                while let Some(item) = items.next_element::<String>()? {
                    if all.len() > 1_000 {
                        return Err(serde::de::Error::custom("too many alerts selected"));
                    }
                    all.push(item);
                }
                Ok(Selection(all.join(",")))
            }
        }
        deserializer.deserialize_any(OneOrMany)
    }
}

/// Bumped by a page that changed alerts, so the nav's count follows at once.
#[derive(Clone, Copy)]
pub struct AlertsChanged(pub leptos::prelude::RwSignal<u32>);

#[cfg(test)]
mod tests {

    #[derive(serde::Deserialize)]
    struct Form {
        selection: super::Selection,
    }

    fn read_form(body: &str) -> Result<super::Selection, serde_qs::Error> {
        serde_qs::Config::new(5, false)
            .deserialize_str::<Form>(body)
            .map(|form| form.selection)
    }

    #[test]
    fn a_selection_reads_from_one_value_or_from_ticked_boxes() {
        let one = read_form("selection=12%403%2C15%401").unwrap();
        assert_eq!(one, super::Selection("12@3,15@1".into()));
        let ticked = read_form("selection%5B%5D=12%403&selection%5B%5D=15%401").unwrap();
        assert_eq!(ticked, super::Selection("12@3,15@1".into()));
        let json: super::Selection = serde_json::from_str("\"7@1\"").unwrap();
        assert_eq!(json, super::Selection("7@1".into()));
        assert_eq!(serde_json::to_string(&json).unwrap(), "\"7@1\"");
    }
    use super::*;

    #[test]
    fn severities_and_statuses_read_back_from_their_names_and_order_by_gravity() {
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
        }
        for s in AlertStatus::ALL {
            assert_eq!(AlertStatus::parse(s.as_str()), Some(s));
        }
        assert!(Severity::Critical > Severity::Warning && Severity::Warning > Severity::Info);
        assert_eq!(Severity::parse("sev1"), None);
    }

    #[test]
    fn figures_are_said_with_their_unit_and_threshold() {
        assert_eq!(format_figure(1234.0, "rows"), "1,234 rows");
        assert_eq!(format_figure(90.0, "seconds"), "1 min 30 s");
        assert_eq!(format_figure(87.5, "%"), "87.5 %");
        // Times in the unit that reads best, whatever unit the kind measured in.
        assert_eq!(format_figure(0.508, "s"), "508 ms");
        assert_eq!(format_figure(4.5, "min"), "4 min 30 s");
        assert_eq!(format_figure(1.5, "h"), "1 h 30 min");
        assert_eq!(format_figure(91.0, "days"), "91 d 00 h");
    }
}
