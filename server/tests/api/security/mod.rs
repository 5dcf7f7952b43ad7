//! Attacks on the gates, each shown to fail: brute force and lock-outs, session theft
//! and fixation, floods, tampering with the history, keys used past their revocation,
//! and what lower roles and anonymous callers can read. Each test attacks through the
//! same doors a real caller would (HTTP, the binary, the database roles) and fails when
//! the defence it names is taken away.

mod database;
mod exposure;
mod headers;
mod history;
mod ingest;
mod sessions;
mod sign_in;
