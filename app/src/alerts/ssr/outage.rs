//! `postgres_down`: the outages [`crate::server::watch::PostgresWatch`] saw, recorded by
//! the self-monitor once PostgreSQL answers again.

/// `postgres_down`: recorded after the fact by the self-monitor, already resolved, with
/// the outage's measured duration.
pub static POSTGRES_DOWN: super::AlertKind = super::AlertKind {
    name: "postgres_down",
    description: "PostgreSQL did not answer; recorded with its duration once it answered again.",
    evaluate: None,
    fire_after: 1,
    auto_resolve: false,
    fix: super::Fix {
        href: "/admin",
        label: "Open the overview",
        action: None,
    },
};
