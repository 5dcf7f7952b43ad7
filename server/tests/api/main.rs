//! Integration tests: the real application against the real local PostgreSQL and
//! ClickHouse that `scripts/stores.sh start` runs. Each test gets fresh databases in both
//! stores, dropped when it ends.

mod alerts;
mod auth;
mod backups;
mod cli;
mod cli_output;
mod cluster;
mod console;
mod crons;
mod dead_letters;
mod drills;
mod health;
mod helpers;
mod history;
mod incidents;
mod long_actions;
mod metrics;
mod migrations;
mod openapi;
mod outage;
mod overview;
mod queues;
mod roles;
mod schema;
mod security;
mod sign_in_form;
