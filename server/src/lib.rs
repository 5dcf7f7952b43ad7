//! The `salvage` binary's library: configuration, start-up, the HTTP routes that are not
//! part of the console, and the CLI.
//!
//! # Layout
//!
//! - [`config`] — [`Settings`](config::Settings) from the environment; secrets redacted.
//! - [`startup`] — [`Application`](startup::Application): state, router, listener.
//! - [`deadline`] — the console's deadline: a page or server function answers within
//!   `SALVAGE_STORE_DEADLINE_SECS`, naming the store that does not answer.
//! - [`routes`] — `/health/*`, `/ingest/*`, `/cron/*`.
//! - [`metrics`] — `/metrics` (Prometheus) and the request counter every route passes.
//! - [`openapi`] — the OpenAPI description of those routes, `/api/openapi.json`.
//! - [`cli`] — the command line, one file per command group: `serve` and `migrate`,
//!   `user …`, `history verify`, `replay` and `expire`, `cron …` and `cron-secret …`,
//!   `ingest-key …`, `demo …` (demo accounts, history and traffic for `make run`),
//!   `bench …`.
//! - [`scheduler`] — the in-process scheduler of `salvage serve`.
//! - [`site`] — the compiled site embedded in the binary (`build.rs`), served by `serve`.
//! - [`telemetry`] — logging.
//!
//! `main.rs` only parses the command line, reads settings and calls [`cli::run`].
//! Everything is in this library so integration tests start the real application.

pub mod cli;
pub mod config;
pub mod deadline;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod scheduler;
pub mod site;
pub mod startup;
pub mod telemetry;
