//! Webhook deliveries and their dead letters: the delivery engine (`ssr`: ingest of
//! events, the workers, retries, the circuit breaker, redrive and purge, the alert kinds,
//! alert notifications), `/admin/dlq` (`page`), a delivery's attempts
//! (`/admin/dlq/deliveries/:id`, `delivery_page`) and the endpoints' settings page
//! (`/admin/settings/webhooks`, `settings_page`).

mod actions;
pub mod api;
pub mod delivery_page;
pub mod page;
mod parts;
pub mod settings_page;
#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

crate::stored::stored_enum! {
    /// Why a delivery was dead-lettered (`webhook_deliveries.dlq_reason`).
    pub enum DlqReason {
        /// Every attempt failed (an error status, a timeout, no connection).
        Exhausted = "exhausted",
        /// The endpoint answered 410 or a 4xx other than 408/429: retrying cannot help.
        Rejected = "rejected",
        /// The webhook was deleted while the delivery was pending.
        WebhookDeleted = "webhook_deleted",
        /// The event's payload was removed (retention) before the delivery was sent.
        PayloadMissing = "payload_missing",
    }
}

impl DlqReason {
    /// What a person does about it.
    pub fn advice(self) -> &'static str {
        match self {
            DlqReason::Exhausted => "the endpoint failed for the whole retry window: fix it (or contact its owner), then redrive",
            DlqReason::Rejected => "the endpoint refused the payload: check its answer before redriving",
            DlqReason::WebhookDeleted => "terminal: the webhook no longer exists",
            DlqReason::PayloadMissing => "terminal: the payload was removed by retention",
        }
    }
}

crate::stored::stored_enum! {
    /// Where a delivery is.
    pub enum DeliveryStatus {
        Pending = "pending",
        Delivered = "delivered",
        Dead = "dead",
    }
}

/// An endpoint's state, as its circuit and its owner left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointState {
    /// Delivering; the last attempt succeeded (or none failed since).
    Healthy,
    /// Recent attempts failed, the circuit is still closed.
    Failing,
    /// The circuit is open: one probe at a time until one succeeds.
    Paused,
    /// An admin turned it off: its deliveries wait.
    Disabled,
    /// Deleted; its pending deliveries were dead-lettered.
    Deleted,
}

impl EndpointState {
    pub fn label(self) -> &'static str {
        match self {
            EndpointState::Healthy => "healthy",
            EndpointState::Failing => "failing",
            EndpointState::Paused => "paused",
            EndpointState::Disabled => "disabled",
            EndpointState::Deleted => "deleted",
        }
    }
}

/// The event type of the console's own alert notifications.
pub const ALERT_EVENT_TYPE: &str = "salvage.alert";

/// The redrive job's name (on demand: its input is the redrive recorded for a filter).
pub const REDRIVE_JOB: &str = "redrive";

/// One endpoint, as the settings page and the dead-letter page list it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: i64,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub state: EndpointState,
    pub max_retries: i32,
    pub max_in_flight: i32,
    pub consecutive_failures: i32,
    pub failing_since_ms: Option<i64>,
    pub paused_at_ms: Option<i64>,
    /// Deliveries due now and not yet delivered.
    pub backlog: i64,
    pub dead: i64,
    pub created_at_ms: i64,
    pub created_by: String,
}

/// The hover text of a webhook's URL: says why a masked one (`https://host/…`, as
/// everyone but an admin sees it) ends there.
pub fn url_title(url: &str) -> Option<&'static str> {
    url.ends_with("/…").then_some(
        "Only admins see the rest of a webhook's URL: it can hold the receiver's secret.",
    )
}

/// A short name for an endpoint in tables: its description, or its URL.
pub fn endpoint_label(endpoint: &Endpoint) -> String {
    if endpoint.description.trim().is_empty() {
        endpoint.url.clone()
    } else {
        endpoint.description.clone()
    }
}

/// One cell of the breakdown: a webhook and a reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BreakdownRow {
    pub webhook_id: i64,
    pub webhook: String,
    pub reason: DlqReason,
    pub count: i64,
    pub oldest_ms: i64,
    pub newest_ms: i64,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    /// The newest dead letter's payload, cut to 300 characters.
    pub sample_payload: Option<String>,
}

/// One dead letter in the list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: i64,
    pub webhook_id: i64,
    pub webhook: String,
    pub event_type: String,
    pub reason: DlqReason,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub dlq_at_ms: i64,
    pub created_at_ms: i64,
}

crate::stored::stored_enum! {
    /// Where a redrive is, or how it ended (`webhook_redrives.status`; `abandoned` is
    /// read, never stored: a `running` redrive whose run died).
    pub enum RedriveStatus {
        Running = "running",
        /// Every dead letter the filter chose was sent again.
        Finished = "finished",
        Cancelled = "cancelled",
        Failed = "failed",
        Abandoned = "abandoned",
    }
}

impl RedriveStatus {
    /// How the runner records a redrive that ended like this.
    pub fn run_status(self) -> crate::jobs::RunStatus {
        use crate::jobs::RunStatus;
        match self {
            RedriveStatus::Running => RunStatus::Running,
            RedriveStatus::Finished => RunStatus::Succeeded,
            RedriveStatus::Cancelled => RunStatus::Cancelled,
            RedriveStatus::Failed => RunStatus::Failed,
            RedriveStatus::Abandoned => RunStatus::Abandoned,
        }
    }
}

/// A redrive: its filter, counts and progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Redrive {
    pub id: i64,
    pub filter: String,
    pub status: RedriveStatus,
    pub total: i64,
    pub done: i64,
    /// Of those redriven, delivered since.
    pub delivered: i64,
    pub actor: String,
    pub reason: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub error: Option<String>,
    /// Its run of the redrive job: what Cancel takes.
    pub run_id: Option<i64>,
    /// Its history entry, once it ended.
    pub history_id: Option<i64>,
}

impl Redrive {
    pub fn running(&self) -> bool {
        self.status == RedriveStatus::Running
    }
}

/// What `/admin/dlq` shows for a filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DlqOverview {
    pub now_ms: i64,
    /// The filter as understood, in words ("webhook 3, reason exhausted").
    pub filter_label: String,
    pub dead_total: i64,
    pub matching: i64,
    pub backlog: i64,
    pub endpoints: Vec<Endpoint>,
    pub event_types: Vec<String>,
    pub breakdown: Vec<BreakdownRow>,
    /// The newest matching dead letters (a page; `next` continues).
    pub letters: Vec<DeadLetter>,
    /// The id to continue the list after, when there are more.
    pub next: Option<i64>,
    pub redrives: Vec<Redrive>,
    pub retention_days: i64,
    /// Dead letters that retention purges within 3 days.
    pub purged_soon: i64,
    pub frozen: bool,
}

/// What a redrive or purge would take: the count and a sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DryRun {
    pub filter: String,
    pub filter_label: String,
    pub count: i64,
    /// The payload bytes a redrive of them sends (each event's `payload_bytes`).
    pub bytes: i64,
    pub sample: Vec<DeadLetter>,
    /// Endpoints among them whose circuit is open (their part of a redrive waits).
    pub paused: Vec<String>,
}

/// One attempt of a delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: i32,
    pub started_at_ms: i64,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub response_snippet: Option<String>,
    pub probe: bool,
    pub redrive_id: Option<i64>,
}

/// A delivery and every attempt made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryDetail {
    pub id: i64,
    pub message_id: String,
    pub webhook_id: i64,
    pub webhook: String,
    pub event_id: i64,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub reason: Option<DlqReason>,
    pub attempts_since_redrive: i32,
    pub next_attempt_at_ms: Option<i64>,
    pub dlq_at_ms: Option<i64>,
    pub delivered_at_ms: Option<i64>,
    pub redrives: i32,
    pub payload: Option<String>,
    pub created_at_ms: i64,
    pub attempts: Vec<Attempt>,
}

/// A webhook just created: its id and its signing secret, shown this once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreatedWebhook {
    pub id: i64,
    pub secret: crate::format::ShownOnce,
}
