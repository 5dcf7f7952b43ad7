//! The overview page: the recovery posture (one verdict per store, the figures behind
//! it), the rest of the system, and the stores' probes. Served as plain HTML with the
//! live refresh, like the alerts page: it is mostly reading and the first page opened.

use leptos::prelude::*;

use super::api::load_posture;
use super::{Posture, StorePosture, SystemFigures};
use crate::components::{Badge, Banner, Column, DataTable, PageHeader, Tone};
use crate::format::{format_ago, format_bytes, format_duration, format_utc, group_digits};
use crate::health::{StoreCheck, StoresHealth, StoresSnapshot};
use crate::stores::StoreKind;

/// How often the overview refreshes: the live refresh's period.
pub use crate::alerts::page::REFRESH_EVERY;

/// `/admin`.
#[component]
pub fn OverviewPage() -> AnyView {
    let tick = crate::components::refresh_ticker(REFRESH_EVERY);
    let posture = Resource::new(move || tick.get(), |_| load_posture());

    view! {
        <PageHeader
            title="Overview"
            subtitle=format!(
                "Could each store be recovered now within its objectives, and what would a loss cost? Refreshes every {} s.",
                REFRESH_EVERY.as_secs(),
            )
        />
        {crate::components::transport::served_without_client().then(|| view! {
            <p id="live-status" class="live-status muted small" data-testid="live-status">
                "Not refreshing: the live refresh has not started (scripts off, or still loading). Reload to see changes."
            </p>
        })}
        // `data-live`: what the live refresh swaps when the page has no client.
        <div id="live-overview" data-live="">
            <Transition fallback=|| view! { <p class="muted" role="status">"Reading the posture…"</p> }>
                {move || Suspend::new(async move {
                    match posture.await {
                        Ok(posture) => view! { <PostureView posture /> }.into_any(),
                        Err(error) => view! {
                            <Banner tone=Tone::Error test_id="stores-summary">
                                <strong>"Salvage could not read the posture. "</strong>
                                {error.to_string()}
                            </Banner>
                        }
                        .into_any(),
                    }
                })}
            </Transition>
        </div>
    }
    .into_any()
}

#[component]
fn PostureView(posture: Posture) -> AnyView {
    let Posture {
        now_ms,
        stores,
        recovery,
        system,
    } = posture;
    view! {
        <section aria-labelledby="posture-heading" class="panel">
            <h2 id="posture-heading">"Recovery posture"</h2>
            <ul class="verdicts" data-testid="verdicts">
                {recovery.iter().map(|p| view! { <Verdict posture=p.clone() now_ms /> }).collect_view()}
            </ul>
            <RecoveryTable recovery now_ms />
        </section>
        <SystemView system now_ms />
        <StoresView snapshot=stores />
    }
    .into_any()
}

/// One store's verdict: recoverable within its objectives, or each reason why not.
#[component]
fn Verdict(posture: StorePosture, now_ms: i64) -> AnyView {
    let name = posture.store.label();
    let objectives = format!(
        "RPO {}, RTO {}",
        format_duration(posture.rpo_target_secs * 1000),
        format_duration(posture.rto_target_secs * 1000)
    );
    if posture.shortfalls.is_empty() {
        return view! {
            <li data-store=posture.store.as_str() data-verdict="ok">
                <Badge tone=Tone::Ok label="Recoverable" />
                " "
                <strong>{name}</strong>
                {format!(" can be recovered within its objectives ({objectives}).")}
            </li>
        }
        .into_any();
    }
    let reasons: Vec<String> = posture
        .shortfalls
        .iter()
        .map(|s| s.sentence(&posture, now_ms))
        .collect();
    view! {
        <li data-store=posture.store.as_str() data-verdict="short">
            <Badge tone=Tone::Error label="At risk" />
            " "
            <strong>{name}</strong>
            {format!(" might not be recovered within its objectives ({objectives}):")}
            <ul class="reasons">
                {reasons.into_iter().map(|r| view! { <li>{r}</li> }).collect_view()}
            </ul>
        </li>
    }
    .into_any()
}

/// The figures behind the verdicts: one column per store, one row per figure.
#[component]
fn RecoveryTable(recovery: Vec<StorePosture>, now_ms: i64) -> AnyView {
    let row = |label: &'static str, href: &'static str, cell: &dyn Fn(&StorePosture) -> String| {
        let cells: Vec<String> = recovery.iter().map(cell).collect();
        view! {
            <tr>
                <th scope="row"><a href=href>{label}</a></th>
                {cells.into_iter().map(|c| view! { <td class="figure">{c}</td> }).collect_view()}
            </tr>
        }
    };
    let heads: Vec<&'static str> = recovery.iter().map(|p| p.store.label()).collect();
    let rows = vec![
        row("Would lose now", "/admin/backups", &|p| exposure(p)),
        row(
            "Newest verified backup",
            "/admin/backups",
            &|p| match p.newest_verified {
                Some((id, at)) => format!(
                    "#{id}, {} old (RPO {})",
                    format_duration(now_ms - at),
                    format_duration(p.rpo_target_secs * 1000)
                ),
                None => "none".into(),
            },
        ),
        row("Point-in-time window", "/admin/backups", &|p| {
            window(p, now_ms)
        }),
        row("Last drill", "/admin/drills", &|p| match &p.last_drill {
            Some(d) if d.passed => format!(
                "#{}: recovered in {} (RTO {}), {}",
                d.drill_id,
                format_duration(d.recovery_ms),
                format_duration(p.rto_target_secs * 1000),
                format_ago(d.started_ms, now_ms)
            ),
            Some(d) => format!(
                "#{}: failed, {}",
                d.drill_id,
                format_ago(d.started_ms, now_ms)
            ),
            None => "never".into(),
        }),
        row("Next functional drill", "/admin/drills", &|p| {
            p.drill_due_ms
                .map(|due| format!("{} ({})", format_utc(due), format_ago(due, now_ms)))
                .unwrap_or_else(|| "—".into())
        }),
        row(
            "Queued for ClickHouse",
            "/admin/queues",
            &|p| match p.store {
                StoreKind::Clickhouse => match p.oldest_queued_ms {
                    Some(oldest) => format!(
                        "{} rows, oldest {}",
                        group_digits(p.queued_rows.max(0) as u64),
                        format_ago(oldest, now_ms)
                    ),
                    None => "none".into(),
                },
                StoreKind::Postgres => "—".into(),
            },
        ),
    ];
    view! {
        <table class="data posture" data-testid="posture">
            <thead>
                <tr>
                    <th scope="col">"Figure"</th>
                    {heads.into_iter().map(|h| view! { <th scope="col">{h}</th> }).collect_view()}
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

/// What a loss now would cost: the newest recoverable point's age, and for PostgreSQL
/// the queued rows that arrived after it.
fn exposure(p: &StorePosture) -> String {
    let Some(ms) = p.exposure_ms else {
        return "everything: no recoverable point".into();
    };
    let source = if p.exposure_from_archive {
        "of writes (WAL archive)"
    } else {
        "of writes (newest verified backup)"
    };
    match p.rows_only_in_queue {
        Some(rows) if rows > 0 => format!(
            "{} {source}, and {} queued rows",
            format_duration(ms),
            group_digits(rows as u64)
        ),
        _ => format!("{} {source}", format_duration(ms)),
    }
}

/// PostgreSQL's point-in-time window and the archive's lag.
fn window(p: &StorePosture, now_ms: i64) -> String {
    let Some(w) = &p.window else {
        return match p.store {
            StoreKind::Postgres => "not set up".into(),
            StoreKind::Clickhouse => "—".into(),
        };
    };
    if let Some(error) = &w.error {
        return format!("unreadable: {error}");
    }
    let lag = match (w.failing, w.lag_secs) {
        (true, _) => "archiving failing".to_owned(),
        (false, Some(secs)) => {
            format!("last archived {}", format_ago(now_ms - secs * 1000, now_ms))
        }
        (false, None) => "nothing archived yet".to_owned(),
    };
    match (w.oldest_ms, w.newest_ms) {
        (Some(oldest), Some(newest)) => {
            format!("{} → {}; {lag}", format_utc(oldest), format_utc(newest))
        }
        _ => format!("no base backup yet; {lag}"),
    }
}

/// The rest of the system: each figure links to its page.
#[component]
fn SystemView(system: SystemFigures, now_ms: i64) -> AnyView {
    let SystemFigures {
        critical,
        warning,
        info,
        taken,
        dead_letters,
        paused_endpoints,
        flagged_crons,
        migrations_stuck,
        migrations_failed,
        freezes,
        open_incidents,
    } = system;
    let tone = |bad: bool| if bad { Tone::Error } else { Tone::Ok };
    let alerts = format!(
        "{critical} critical, {warning} warning, {info} info untaken; {taken} acknowledged or silenced"
    );
    let crons = if flagged_crons.is_empty() {
        "none flagged".to_owned()
    } else {
        format!(
            "{} flagged: {}",
            flagged_crons.len(),
            flagged_crons.join(", ")
        )
    };
    let freeze = match freezes.first() {
        None => "none".to_owned(),
        Some(f) => format!(
            "{} ({}), since {}",
            f.store.map(|s| s.label()).unwrap_or("incident"),
            f.reason,
            format_ago(f.started_ms, now_ms)
        ),
    };
    // A restore's freeze is the backups page's; an incident's, its incident's page.
    let freeze_href = match freezes.first().and_then(|f| f.incident_id) {
        Some(id) => format!("/admin/history/{id}"),
        None if !freezes.is_empty() => "/admin/backups".to_owned(),
        None => "/admin/history".to_owned(),
    };
    let incident_href = open_incidents
        .first()
        .map(|(id, _, _)| format!("/admin/history/{id}"))
        .unwrap_or_else(|| "/admin/history".into());
    let incident = match open_incidents.first() {
        None => "none open".to_owned(),
        Some((id, title, at)) => format!("#{id} {title}, open {}", format_ago(*at, now_ms)),
    };
    let items = vec![
        (
            "Open alerts",
            "/admin/alerts".to_owned(),
            tone(critical + warning > 0),
            alerts,
        ),
        (
            "Dead letters",
            "/admin/dlq".to_owned(),
            tone(dead_letters > 0),
            group_digits(dead_letters.max(0) as u64),
        ),
        (
            "Paused endpoints",
            "/admin/settings/webhooks".to_owned(),
            tone(paused_endpoints > 0),
            paused_endpoints.to_string(),
        ),
        (
            "Cron jobs",
            "/admin/crons".to_owned(),
            tone(!flagged_crons.is_empty()),
            crons,
        ),
        (
            "Background migrations",
            "/admin/migrations".to_owned(),
            tone(migrations_stuck + migrations_failed > 0),
            format!("{migrations_stuck} stuck, {migrations_failed} failed"),
        ),
        (
            "Write freeze",
            freeze_href,
            tone(!freezes.is_empty()),
            freeze,
        ),
        (
            "Incident",
            incident_href,
            tone(!open_incidents.is_empty()),
            incident,
        ),
    ];
    view! {
        <section aria-labelledby="system-heading" class="panel">
            <h2 id="system-heading">"The rest of the system"</h2>
            <table class="data system" data-testid="system">
                <tbody>
                    {items
                        .into_iter()
                        .map(|(label, href, tone, text)| {
                            let word = if tone == Tone::Ok { "OK" } else { "Attention" };
                            view! {
                                <tr>
                                    <th scope="row"><a href=href>{label}</a></th>
                                    <td><Badge tone label=word /></td>
                                    <td>{text}</td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </section>
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
        <section aria-labelledby="stores-heading" class="panel">
            <h2 id="stores-heading">"Stores"</h2>
            <div class=banner_class role="status" data-testid="stores-summary">
                <strong>{headline}</strong>
                " "
                {sentence}
            </div>
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
    // "answered" is a word, not an error: it is not set in the error's monospace, whose
    // narrow column broke it mid-word.
    let detail = match check.error {
        Some(error) => view! { <td class="detail">{error}</td> }.into_any(),
        None => view! { <td class="muted">"answered"</td> }.into_any(),
    };
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
            {detail}
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

/// The headline and sentence above the stores' table.
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
