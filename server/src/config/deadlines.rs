//! How long anything may take: a request, its body, a store's answer to the console, a
//! statement (`SALVAGE_REQUEST_TIMEOUT_SECS`, `SALVAGE_BODY_TIMEOUT_SECS`,
//! `SALVAGE_STORE_DEADLINE_SECS`, `SALVAGE_PG_STATEMENT_TIMEOUT_SECS`).

use std::time::Duration;

use super::{ConfigError, Env};

/// The time limits of the HTTP server and of the store calls under it.
#[derive(Clone, Debug)]
pub struct Deadlines {
    /// `SALVAGE_REQUEST_TIMEOUT_SECS`: a request that has not produced its response in
    /// this long gets 408. Default 30. (A streamed download may take longer once started.)
    pub request: Duration,
    /// `SALVAGE_BODY_TIMEOUT_SECS`: a request body that stalls this long between chunks is
    /// cut off. Default 10.
    pub body: Duration,
    /// `SALVAGE_STORE_DEADLINE_SECS`: a console page or server function that has no
    /// answer after this long answers 503 naming the store that is not answering, whatever
    /// its store calls were doing (waiting for a connection, connecting, a statement).
    /// Default 8: above the 5 s a request waits for a PostgreSQL connection, so an outage
    /// is normally said by the call that met it, and this is the bound on top.
    pub store: Duration,
    /// `SALVAGE_PG_STATEMENT_TIMEOUT_SECS`: PostgreSQL cancels a statement of the
    /// application's pool that runs longer (its `statement_timeout`), so no statement
    /// holds a connection and its locks after its caller is gone. Default 60. Expiry's
    /// bulk delete sets its own, longer limit.
    pub statement: Duration,
}

pub(super) fn deadlines(env: &Env) -> Result<Deadlines, ConfigError> {
    let secs = |name, range, default| -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(
            env.bounded(name, range, "seconds", default)?,
        ))
    };
    Ok(Deadlines {
        request: secs("SALVAGE_REQUEST_TIMEOUT_SECS", 1..=3600, 30)?,
        body: secs("SALVAGE_BODY_TIMEOUT_SECS", 1..=600, 10)?,
        store: secs("SALVAGE_STORE_DEADLINE_SECS", 2..=600, 8)?,
        statement: secs("SALVAGE_PG_STATEMENT_TIMEOUT_SECS", 5..=86_400, 60)?,
    })
}
