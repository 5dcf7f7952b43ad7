//! The `salvage` binary's library: configuration, start-up, the HTTP routes that are not
//! part of the console, and the CLI.
//!
//! # Layout
//!
//! - [`config`] — [`Settings`](config::Settings) from the environment; secrets redacted.
//! - [`startup`] — [`Application`](startup::Application): state, router, listener.
//! - [`routes`] — `/health/*`, `/ingest/*`, `/cron/*`.
//! - [`cli`] — `salvage serve`, `migrate`, `user …`, `history verify`, `replay`,
//!   `expire`, `ingest-key …`, `demo …`, `bench …`; [`cron_cli`] — `cron …` and
//!   `cron-secret …`.
//! - [`scheduler`] — the in-process scheduler of `salvage serve`.
//! - [`bench`] — `salvage bench replay`.
//! - [`demo`] — demo accounts and a few months of history for `make run`.
//! - [`telemetry`] — logging.
//!
//! `main.rs` only parses the command line, reads settings and calls [`cli::run`].
//! Everything is in this library so integration tests start the real application.

pub mod bench;
pub mod cli;
pub mod config;
pub mod cron_cli;
pub mod demo;
pub mod routes;
pub mod scheduler;
pub mod startup;
pub mod telemetry;
