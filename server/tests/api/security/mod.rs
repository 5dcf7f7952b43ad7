//! Attacks on the gates, each shown to fail: brute force and lock-outs, session theft
//! and fixation, floods, tampering with the history, keys used past their revocation,
//! and what lower roles and anonymous callers can read. Every test here was written
//! against the code before its fix and watched fail there.

mod database;
mod exposure;
mod headers;
mod history;
mod ingest;
mod sessions;
mod sign_in;
