//! What an alert kind is, what its evaluator returns, and the thresholds in settings.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use super::super::{FixAction, Severity};
use crate::error::AppError;
use crate::server::AppState;

/// What an evaluator returns: one signal per key whose condition holds now. A key it
/// does not return is clear.
pub type EvalFuture = Pin<Box<dyn Future<Output = Result<Vec<Signal>, AppError>> + Send>>;

/// A kind of alert: its name (`internal_alerts.kind`), how it is evaluated and how it
/// ends.
pub struct AlertKind {
    pub name: &'static str,
    pub description: &'static str,
    /// Evaluates the condition for every key. `None`: raised by an event (expiry's
    /// `data_expired`) or recorded after the fact (`postgres_down`).
    pub evaluate: Option<fn(AppState, OffsetDateTime) -> EvalFuture>,
    /// Consecutive evaluations the condition must hold before the alert is raised
    /// (`clickhouse_down`: 2, so one slow ping raises nothing).
    pub fire_after: u32,
    /// Whether the self-monitor resolves it once the condition is clear for the
    /// recovering window. `data_expired` never is: a person resolves it with a note.
    pub auto_resolve: bool,
    /// Where a person fixes it.
    pub fix: Fix,
}

impl std::fmt::Debug for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertKind")
            .field("name", &self.name)
            .finish()
    }
}

/// The page that fixes an alert, and the action the alert page offers inline.
#[derive(Clone, Copy, Debug)]
pub struct Fix {
    pub href: &'static str,
    pub label: &'static str,
    pub action: Option<fn(&str) -> FixAction>,
}

impl Fix {
    /// The inline action for the alert about `key`.
    pub fn action_for(&self, key: &str) -> Option<FixAction> {
        self.action.map(|make| make(key))
    }
}

/// The kind named `name` in `kinds`.
pub fn find(kinds: &[&'static AlertKind], name: &str) -> Option<&'static AlertKind> {
    kinds.iter().copied().find(|k| k.name == name)
}

/// A condition that holds now, for one key.
#[derive(Clone, Debug, PartialEq)]
pub struct Signal {
    pub key: String,
    pub severity: Severity,
    pub title: String,
    /// The figure that raised it, the threshold it crossed, and the unit of both.
    pub figure: Option<f64>,
    pub threshold: Option<f64>,
    pub unit: Option<&'static str>,
    pub details: Value,
}

impl Signal {
    pub fn new(key: impl Into<String>, severity: Severity, title: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            severity,
            title: title.into(),
            figure: None,
            threshold: None,
            unit: None,
            details: Value::Object(Default::default()),
        }
    }

    /// The figure against its threshold, in `unit`.
    pub fn measured(mut self, figure: f64, threshold: f64, unit: &'static str) -> Self {
        self.figure = Some(figure);
        self.threshold = Some(threshold);
        self.unit = Some(unit);
        self
    }

    /// A figure without a threshold (rows deleted, seconds down).
    pub fn counted(mut self, figure: f64, unit: &'static str) -> Self {
        self.figure = Some(figure);
        self.unit = Some(unit);
        self
    }

    /// What the alert page shows beside the figure: an object whose keys are camelCase,
    /// the history's convention (debug builds, so every test, refuse any other key).
    pub fn with_details(mut self, details: Value) -> Self {
        debug_assert!(
            crate::history::ssr::camel_case_keys(&details),
            "alert details keys are camelCase: {details}"
        );
        self.details = details;
        self
    }
}

/// The thresholds and windows of the alerts (`SALVAGE_ALERT_*`).
#[derive(Clone, Debug)]
pub struct AlertSettings {
    /// `fallback_queue_high`: a queue deeper than this is a warning…
    pub queue_warning_rows: i64,
    /// …and deeper than this critical.
    pub queue_critical_rows: i64,
    /// `fallback_queue_old`: the oldest queued row older than this share of the TTL is a
    /// warning (in %)…
    pub queue_age_warning_pct: f64,
    /// …and older than this critical: expiry is about to delete it.
    pub queue_age_critical_pct: f64,
    /// `replay_failing`: this many replay runs failing in a row…
    pub replay_failed_runs: i64,
    /// …or a queued row that failed this many replay attempts.
    pub replay_failed_attempts: i64,
    /// Consecutive clear evaluations before the self-monitor resolves an alert.
    pub recover_evaluations: i32,
    /// More state changes than this within `flap_window` for one kind and key: flapping.
    pub flap_changes: i64,
    pub flap_window: Duration,
    /// An active silence that matched nothing for this long is marked idle.
    pub silence_idle_after: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            queue_warning_rows: 1_000,
            queue_critical_rows: 100_000,
            queue_age_warning_pct: 50.0,
            queue_age_critical_pct: 85.0,
            replay_failed_runs: 2,
            replay_failed_attempts: 3,
            recover_evaluations: 2,
            flap_changes: 4,
            flap_window: Duration::from_secs(30 * 60),
            silence_idle_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl crate::server::AppState {
    /// The alerts' thresholds and windows (`SALVAGE_ALERT_*`).
    pub fn alerts(&self) -> &AlertSettings {
        self.part()
    }
}

/// Every alert kind: the composition root's `registry::ALERT_KINDS`, handed down as the
/// state's part so that code below the root never imports upward.
#[derive(Clone, Copy)]
pub struct AlertKinds(pub &'static [&'static AlertKind]);

impl crate::server::AppState {
    /// Every alert kind (see `AlertKinds`).
    pub fn alert_kinds(&self) -> &'static [&'static AlertKind] {
        self.part::<AlertKinds>().0
    }
}
