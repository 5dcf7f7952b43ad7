//! Alerts on the server: kinds and the signals their evaluators return, the store of
//! alerts (`store`) and the race-safe changes people make (`changes`), silences, the self-monitor job, the page's queries
//! and the `postgres_down` kind (the outages `server::watch` saw).
//!
//! Adding a kind (see docs/ARCHITECTURE.md, "Adding an alert kind"): a static
//! [`AlertKind`] in the feature that measures the condition, with an evaluator that
//! returns one [`Signal`] per firing key, its thresholds in [`AlertSettings`], a line in
//! `registry::ALERT_KINDS`, and tests that raise it at its threshold and not below.

pub mod changes;
pub mod input;
pub mod kind;
pub mod monitor;
pub mod outage;
pub mod query;
pub mod silences;
pub mod store;

pub use kind::{AlertKind, AlertSettings, EvalFuture, Fix, Signal};
pub use monitor::{evaluate, EvaluationReport, SELF_MONITOR};
