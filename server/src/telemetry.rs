//! Logging. `RUST_LOG` picks the levels (default: info for Salvage, warn for drivers);
//! `SALVAGE_LOG_FORMAT=json` switches to one JSON object per line for log shippers.
//! Logs go to stderr, so a command's own output on stdout stays clean.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, early in `main`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    if std::env::var("SALVAGE_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
