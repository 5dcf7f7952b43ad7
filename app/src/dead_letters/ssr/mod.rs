//! The delivery engine on the server.
//!
//! - `endpoints`: the webhooks (create, enable, delete), their URL rules and secrets.
//! - `ingest`: `POST /ingest/webhook-events`, one delivery per subscribed endpoint in the
//!   event's transaction.
//! - `send`: one HTTP attempt, signed by the Standard Webhooks convention, to an address
//!   that is checked when it is resolved.
//! - `deliver`: the workers (claim, send) and the `deliver-webhooks` job; `record`: an
//!   attempt's outcome (retry or dead-letter, the circuit), recorded in batches.
//! - `filter`: a dead-letter filter, parsed from the page's query and turned into SQL.
//! - `dlq`: the page's figures, the dry run, purge, and the `expire-dead-letters` job.
//! - `redrive`: redrives, in keyset batches, with progress and cancel.
//! - `notify`: alert notifications turned into deliveries.
//! - `backfill`: the background migration that fills `webhook_events.payload_bytes`.
//! - `alerts`: `webhook_backlog`, `dlq_growing`, `webhook_paused`, `dlq_retention_near`.

pub mod alerts;
pub mod backfill;
pub mod deliver;
pub mod dlq;
pub mod endpoints;
pub mod filter;
pub mod ingest;
mod notify;
mod record;
pub mod redrive;
pub mod send;

use std::time::Duration;

pub use deliver::DELIVER_WEBHOOKS;
pub use dlq::EXPIRE_DEAD_LETTERS;

/// How deliveries are made. `SALVAGE_WEBHOOK_*`.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// One attempt's limit (`SALVAGE_WEBHOOK_TIMEOUT_SECS`, 10).
    pub timeout: Duration,
    /// Allow loopback, link-local and private addresses (`SALVAGE_WEBHOOK_ALLOW_PRIVATE`;
    /// the demo and the tests, whose receivers are local).
    pub allow_private: bool,
    /// The event types the service may enqueue (`SALVAGE_WEBHOOK_EVENT_TYPES`).
    pub event_types: Vec<String>,
    /// The first retry's delay; each next one is `backoff_factor` times longer, ±20 %.
    pub backoff_base: Duration,
    pub backoff_factor: u32,
    /// No retry waits longer than this (a `Retry-After` included).
    pub backoff_max: Duration,
    /// Failures in a row that open an endpoint's circuit
    /// (`SALVAGE_WEBHOOK_BREAKER_FAILURES`, 10).
    pub breaker_failures: i32,
    /// How often a paused endpoint is probed with one delivery.
    pub probe_every: Duration,
    /// Sends in flight at once in one process, over every endpoint.
    pub workers: usize,
    /// How often the continuous worker looks for due deliveries when idle.
    pub poll_every: Duration,
    /// How long the scheduler's run keeps delivering before the next tick takes over.
    pub run_budget: Duration,
    /// Dead letters are kept this long (`SALVAGE_DLQ_RETENTION_DAYS`, 30); so are event
    /// payloads.
    pub retention: Duration,
    /// `webhook_backlog`: due deliveries above this many (100) or older than
    /// `backlog_age` (15 min).
    pub backlog_rows: i64,
    pub backlog_age: Duration,
    /// `dlq_growing`: new dead letters in the last hour above this many (50).
    pub dlq_growing_per_hour: i64,
    /// `dlq_count_high`: dead letters waiting, in all, above this many (1,000): a large
    /// dead-letter queue that stopped growing still needs a redrive or a purge.
    pub dlq_count_high: i64,
    /// A redrive requeues this many per batch (500)…
    pub redrive_batch: i64,
    /// …and at most this many per endpoint per second (`SALVAGE_REDRIVE_RATE`, 200).
    pub redrive_rate: u32,
    /// The keys signing secrets are sealed with at rest (`SALVAGE_WEBHOOK_SECRET_KEYS`;
    /// the first seals). Empty: no webhook can be added.
    pub secret_keys: crate::server::sealed::KeyRing,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            allow_private: false,
            event_types: [
                "order.created",
                "order.paid",
                "order.refunded",
                "customer.updated",
                "invoice.failed",
            ]
            .map(String::from)
            .to_vec(),
            backoff_base: Duration::from_secs(30),
            backoff_factor: 4,
            backoff_max: Duration::from_secs(12 * 3600),
            breaker_failures: 10,
            probe_every: Duration::from_secs(60),
            workers: 32,
            poll_every: Duration::from_millis(500),
            run_budget: Duration::from_secs(50),
            retention: Duration::from_secs(30 * 86_400),
            backlog_rows: 100,
            backlog_age: Duration::from_secs(15 * 60),
            dlq_growing_per_hour: 50,
            dlq_count_high: 1000,
            redrive_batch: 500,
            redrive_rate: 200,
            secret_keys: Default::default(),
        }
    }
}

impl crate::server::AppState {
    /// The delivery settings (the state's part for webhook deliveries).
    pub fn webhooks(&self) -> &WebhookSettings {
        self.part()
    }
}
