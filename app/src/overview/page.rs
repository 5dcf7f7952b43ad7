//! The overview page: one row per store, refreshed every few seconds.

use std::time::Duration;

use leptos::prelude::*;

use super::api::load_stores_snapshot;
use crate::components::{Badge, Banner, Column, DataTable, PageHeader, Tone};
use crate::format::{format_bytes, group_digits};
use crate::health::{StoreCheck, StoresHealth, StoresSnapshot};

/// How often the overview asks the server for fresh probes.
pub const REFRESH_EVERY: Duration = Duration::from_secs(3);

/// `/admin`.
#[component]
pub fn OverviewPage() -> AnyView {
    let tick = crate::components::refresh_ticker(REFRESH_EVERY);
    let snapshot = Resource::new(move || tick.get(), |_| load_stores_snapshot());

    view! {
        <PageHeader
            title="Overview"
            subtitle=format!(
                "Live state of the stores Salvage protects. Refreshes every {} s.",
                REFRESH_EVERY.as_secs(),
            )
        />
        <Transition fallback=|| view! { <p class="muted" role="status">"Probing the stores…"</p> }>
            {move || Suspend::new(async move {
                match snapshot.await {
                    Ok(snapshot) => view! { <StoresView snapshot /> }.into_any(),
                    Err(error) => view! {
                        <Banner tone=Tone::Error test_id="stores-summary">
                            <strong>"Salvage did not answer. "</strong>
                            {error.to_string()}
                            " The state of the stores is unknown until it does."
                        </Banner>
                    }
                    .into_any(),
                }
            })}
        </Transition>
    }
    .into_any()
}

#[component]
fn StoresView(snapshot: StoresSnapshot) -> AnyView {
    let StoresSnapshot {
        health,
        postgres,
        clickhouse,
    } = snapshot;
    let (headline, sentence) = summary(&health);
    let banner_class = if health.all_ok() {
        "banner banner-ok"
    } else {
        "banner banner-error"
    };
    let pg_data = match postgres.size_bytes {
        Some(bytes) => format!(
            "{} in {}",
            format_bytes(bytes),
            postgres.database.unwrap_or_default()
        ),
        None => String::new(),
    };
    let ch_data = match (clickhouse.requests_rows, clickhouse.events_rows) {
        (Some(requests), Some(events)) => format!(
            "{} requests · {} events in {}",
            group_digits(requests),
            group_digits(events),
            clickhouse.database
        ),
        _ => String::new(),
    };
    let pool = format!(
        "Salvage holds {} of at most {} PostgreSQL connections ({} idle).",
        postgres.pool_open, postgres.pool_max, postgres.pool_idle
    );
    view! {
        <div class=banner_class role="status" aria-live="polite" data-testid="stores-summary">
            <strong>{headline}</strong>
            " "
            {sentence}
        </div>
        <section aria-labelledby="stores-heading" class="panel">
            <h2 id="stores-heading">"Stores"</h2>
            <DataTable
                columns=vec![
                    Column::text("Store"),
                    Column::text("Holds"),
                    Column::text("Status"),
                    Column::figures("Latency"),
                    Column::text("Version"),
                    Column::figures("Data"),
                    Column::text("Detail"),
                ]
                class="stores"
            >
                <StoreRow
                    name="PostgreSQL"
                    holds="accounts, fallback queues, runbook history"
                    check=health.postgres.clone()
                    version=postgres.version
                    data=pg_data
                />
                <StoreRow
                    name="ClickHouse"
                    holds="requests, events"
                    check=health.clickhouse.clone()
                    version=clickhouse.version
                    data=ch_data
                />
            </DataTable>
            <p class="footnote">
                "Checked at "
                <time datetime=health.checked_at.clone()>{clock_time(&health.checked_at)}</time>
                " UTC by Salvage "
                {health.version.clone()}
                ". "
                {pool}
            </p>
        </section>
    }
    .into_any()
}

#[component]
fn StoreRow(
    name: &'static str,
    holds: &'static str,
    check: StoreCheck,
    version: Option<String>,
    data: String,
) -> AnyView {
    let (tone, word) = if check.ok {
        (Tone::Ok, "Healthy")
    } else {
        (Tone::Error, "Down")
    };
    let latency = check.latency_ms.map(|ms| format!("{ms:.1} ms"));
    let data = (!data.is_empty()).then_some(data);
    let full_version = version.clone();
    view! {
        <tr data-store=name>
            <th scope="row">{name}</th>
            <td class="muted">{holds}</td>
            <td><Badge tone label=word /></td>
            <td class="num">{or_unknown(latency, "Not measured: the store did not answer.")}</td>
            <td title=full_version>
                {or_unknown(
                    version.map(|v| short_version(&v).to_owned()),
                    "Not known: the store did not answer the question.",
                )}
            </td>
            <td class="num">{or_unknown(data, "Not known: the store did not answer the question.")}</td>
            <td class="detail">{check.error.unwrap_or_else(|| "answered".to_owned())}</td>
        </tr>
    }
    .into_any()
}

/// A value, or the word "unknown" with the reason on hover: never a made-up zero.
fn or_unknown(value: Option<String>, why: &'static str) -> impl IntoView {
    match value {
        Some(value) => view! { <span>{value}</span> }.into_any(),
        None => view! { <span class="muted" title=why>"unknown"</span> }.into_any(),
    }
}

/// The headline and sentence above the table.
fn summary(health: &StoresHealth) -> (&'static str, &'static str) {
    match (health.postgres.ok, health.clickhouse.ok) {
        (true, true) => ("All stores healthy.", "PostgreSQL and ClickHouse both answered."),
        (true, false) => (
            "ClickHouse down.",
            "PostgreSQL answers; ClickHouse does not. Salvage keeps probing and recovers by itself when it returns.",
        ),
        (false, true) => (
            "PostgreSQL down.",
            "ClickHouse answers; PostgreSQL does not. Salvage keeps probing and recovers by itself when it returns.",
        ),
        (false, false) => (
            "PostgreSQL and ClickHouse down.",
            "Neither store answers. Nothing can be written until one returns.",
        ),
    }
}

/// `2026-11-22T10:00:03.123Z` → `10:00:03`.
fn clock_time(rfc3339: &str) -> String {
    rfc3339
        .split_once('T')
        .map(|(_, rest)| rest.chars().take(8).collect())
        .unwrap_or_else(|| rfc3339.to_owned())
}

/// `15.18 (Debian 15.18-0+deb12u1)` → `15.18`; the full string is on hover.
fn short_version(version: &str) -> &str {
    version.split_whitespace().next().unwrap_or(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ok: bool) -> StoreCheck {
        StoreCheck {
            ok,
            latency_ms: ok.then_some(1.0),
            error: (!ok).then(|| "refused".into()),
        }
    }

    fn health(postgres: bool, clickhouse: bool) -> StoresHealth {
        StoresHealth {
            postgres: check(postgres),
            clickhouse: check(clickhouse),
            checked_at: "2026-11-22T10:00:03.123Z".into(),
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn the_summary_names_the_store_that_is_down() {
        assert_eq!(summary(&health(true, true)).0, "All stores healthy.");
        assert_eq!(summary(&health(true, false)).0, "ClickHouse down.");
        assert_eq!(summary(&health(false, true)).0, "PostgreSQL down.");
        assert_eq!(
            summary(&health(false, false)).0,
            "PostgreSQL and ClickHouse down."
        );
    }

    #[test]
    fn the_clock_time_is_cut_from_the_timestamp() {
        assert_eq!(clock_time("2026-11-22T10:00:03.123Z"), "10:00:03");
    }

    #[test]
    fn versions_are_shortened_to_their_number() {
        assert_eq!(short_version("15.18 (Debian 15.18-0+deb12u1)"), "15.18");
        assert_eq!(short_version("18.16.1"), "18.16.1");
    }
}
