//! A PostgreSQL outage, as on-call people meet it: every server function and every
//! `/admin` page answers 503 with `Retry-After` and a sentence naming PostgreSQL, never a
//! 500 with an error reference. The outage is real: a [`FaultyLink`] in front of the real
//! PostgreSQL is cut, so open connections close and new ones are refused.
//!
//! [`FaultyLink`]: crate::helpers::FaultyLink

use app::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Options};
use crate::security::caller_mistakes::every_server_function;

/// What the pages and server functions say when PostgreSQL does not answer.
const POSTGRES_DOWN: &str = "PostgreSQL is not answering";

/// Well-formed arguments for each server function (an ill-formed call would be refused
/// as 422 before it reaches the store). A server function missing here fails the test,
/// so a new one cannot skip it.
fn arguments(endpoint: &str) -> Option<Value> {
    Some(match endpoint {
        "auth/me"
        | "auth/sign-out"
        | "overview/posture"
        | "history/verify"
        | "queues/overview"
        | "crons/overview"
        | "settings/cron-secret"
        | "settings/ingest-keys"
        | "settings/users"
        | "alerts/counts" => json!({}),
        "alerts/open" => json!({"kind": "", "severity": "", "status": ""}),
        "alerts/resolved" => json!({"kind": "", "severity": ""}),
        "alerts/detail" => json!({"alert_id": 1}),
        "alerts/acknowledge" => json!({"selection": "1@1", "note": "outage test", "until": ""}),
        "alerts/resolve" => json!({"selection": "1@1", "note": "outage test"}),
        "alerts/note" => json!({"alert_id": 1, "note": "outage test"}),
        "alerts/silence" => json!({"kind": "clickhouse_down", "key": "", "ends_at": "1h",
            "reason": "outage test"}),
        "alerts/unsilence" => json!({"silence_id": 1, "reason": "outage test"}),
        "backups/overview" => json!({}),
        "backups/verify" | "backups/plan" => json!({"id": 1}),
        "backups/restore" => json!({"backup_id": 1, "mode": "side", "target": "",
            "tables": "", "confirm": "", "reason": "outage test"}),
        "backups/rollback" => json!({"id": 1, "reason": "outage test"}),
        "backups/pitr" => json!({}),
        "backups/pitr-restore" => json!({"to": "latest", "port": "", "reason": "outage test"}),
        "backups/side-stop" => json!({"port": 1, "reason": "outage test"}),
        "drills/overview" => json!({}),
        "drills/tabletop" => json!({"scenario": "s", "participants": "p", "findings": "f",
            "follow_ups": ""}),
        "drills/objectives" => json!({"store": "postgres", "rpo_hours": 24, "rto_minutes": 60,
            "reason": "outage test"}),
        "incidents/mode" | "incidents/snapshot" => json!({"id": 1}),
        "incidents/key-snapshot" => json!({"id": 1, "key_id": 1}),
        "incidents/freeze" => json!({"id": 1, "on": true, "reason": "outage test"}),
        "incidents/tick" => json!({"id": 1, "item": "customers_told", "done": true}),
        "incidents/owner" => json!({"id": 1, "rca_owner": "someone"}),
        "auth/sign-in" => json!({"email": "admin@test.salvage", "password": "x", "next": "/admin"}),
        "auth/password" => json!({"current_password": "a long passphrase here",
            "new_password": "another long passphrase", "confirm_password": "another long passphrase"}),
        "auth/setup-status" => json!({"token": "sgs_not_a_token"}),
        "auth/setup" => json!({"token": "sgs_not_a_token", "email": "first@test.salvage",
            "password": "a long passphrase here", "confirm_password": "a long passphrase here"}),
        "history/search" => {
            json!({"kind": "", "actor": "", "outcome": "", "from": "", "to": "", "q": "", "before": ""})
        }
        "history/entry" => json!({"id": 1}),
        "history/note" => json!({"title": "", "body": "a note", "incident_id": ""}),
        "history/incident" => json!({"title": "Outage", "severity": "sev2", "started_at": "",
            "resolved_at": "", "body": ""}),
        "history/resolve" => json!({"incident_id": 1, "resolved_at": "", "body": "fixed"}),
        "jobs/start" => json!({"job": "expire-fallback", "reason": "outage test"}),
        "jobs/cancel" => json!({"run_id": 1}),
        "settings/cron-secret/rotate" => json!({"grace_hours": 24, "reason": "outage test"}),
        "settings/cron-secret/end-grace" => json!({"secret_id": 1, "reason": "outage test"}),
        "settings/ingest-keys/create" => json!({"name": "outage key", "organization": "*"}),
        "settings/ingest-keys/revoke" => json!({"key_id": 1, "reason": "outage test"}),
        "settings/ingest-keys/usage" => json!({"key_id": 1}),
        "settings/users/add" => {
            json!({"email": "new@test.salvage", "role": "operator", "reason": "outage test"})
        }
        "settings/users/role" => json!({"user_id": 1, "role": "manager", "reason": "outage test"}),
        "settings/users/disabled" => {
            json!({"user_id": 1, "disabled": true, "reason": "outage test"})
        }
        "dlq/overview" => json!({"filter": "", "after": ""}),
        "migrations/overview" => json!({}),
        "migrations/change" => {
            json!({"name": "webhook_event_payload_bytes", "action": "pause", "reason": "outage test"})
        }
        "dlq/dry-run" => json!({"filter": "reason=exhausted"}),
        "dlq/redrive" => json!({"filter": "", "reason": "outage test"}),
        "dlq/redrive-status" | "dlq/delivery" => json!({"id": 1}),
        "dlq/purge" => json!({"filter": "", "confirm": "1", "reason": "outage test"}),
        "dlq/recover" => json!({"webhook_id": 1, "reason": "outage test"}),
        "settings/webhooks" => json!({}),
        "settings/webhooks/create" => json!({"url": "https://hooks.example.com/in",
            "description": "", "event_types": "order.paid", "max_retries": ""}),
        "settings/webhooks/enabled" => json!({"id": 1, "enabled": false, "reason": "outage test"}),
        "settings/webhooks/delete" => json!({"id": 1, "reason": "outage test"}),
        _ => return None,
    })
}

#[tokio::test]
async fn with_postgresql_cut_every_server_function_answers_503_naming_it() {
    let app = spawn_app_with(Options {
        postgres_link: true,
        ..Options::default()
    })
    .await;
    let admin = app.signed_in(Role::Admin).await;
    let anonymous = app.client();
    app.postgres_link.as_ref().unwrap().cut();

    let endpoints = every_server_function();
    assert!(
        endpoints.len() >= 28 && endpoints.contains("jobs/start"),
        "the registry lists {endpoints:?}"
    );
    let mut wrong = Vec::new();
    for endpoint in &endpoints {
        let args = arguments(endpoint)
            .unwrap_or_else(|| panic!("give `{endpoint}` arguments in outage.rs"));
        let caller = if endpoint.starts_with("auth/setup") || endpoint == "auth/sign-in" {
            &anonymous
        } else {
            &admin
        };
        let response = caller.call_server_fn(endpoint, args).await;
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").cloned();
        let body = response.text().await.unwrap_or_default();
        // The answer says which store in its data too, not only in its words.
        let stores = serde_json::from_str::<serde_json::Value>(&body)
            .map(|answer| answer["stores"].clone())
            .unwrap_or_default();
        let named = stores == serde_json::json!(["postgres"]);
        if status != 503 || retry_after.is_none() || !body.contains(POSTGRES_DOWN) || !named {
            wrong.push(format!(
                "{endpoint}: {status}, Retry-After {retry_after:?}, {body}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "with PostgreSQL cut, these did not answer 503 naming it:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test]
async fn with_postgresql_cut_every_admin_page_answers_503_and_says_postgresql_is_down() {
    let app = spawn_app_with(Options {
        postgres_link: true,
        ..Options::default()
    })
    .await;
    let admin = app.signed_in(Role::Admin).await;
    app.postgres_link.as_ref().unwrap().cut();

    let mut wrong = Vec::new();
    for page in [
        "/admin",
        "/admin/alerts",
        "/admin/backups",
        "/admin/alerts?view=resolved",
        "/admin/alerts?view=silences",
        "/admin/history",
        "/admin/history/1",
        "/admin/account",
        "/admin/settings/users",
        "/admin/queues",
        "/admin/crons",
        "/admin/settings/cron-secret",
        "/admin/settings/ingest-keys",
    ] {
        let response = admin.get(page).await;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        // The sentence says since when, and what cannot work meanwhile.
        let said = body.contains(POSTGRES_DOWN)
            && body.contains("since")
            && body.contains("alerts cannot be recorded");
        if status != 503 || !said || body.contains("reference") {
            wrong.push(format!("{page}: {status}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "with PostgreSQL cut, these pages did not answer 503 saying it is down: {wrong:?}"
    );

    // And once it answers again, so does the console, without a restart.
    app.postgres_link.as_ref().unwrap().restore();
    let back = crate::helpers::eventually(std::time::Duration::from_secs(10), || async {
        admin.get("/admin/queues").await.status().as_u16() == 200
    })
    .await;
    assert!(back, "the console recovers when PostgreSQL does");

    // The outage this process saw goes on record as a resolved postgres_down alert.
    app.state.postgres_watch.answered(app.state.clock.now());
    crate::alerts::evaluate(&app).await;
    let (status, seconds): (String, f64) =
        sqlx::query_as("select status, figure from internal_alerts where kind = 'postgres_down'")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(status, "resolved");
    assert!(seconds >= 0.0);
}

/// The store deadline of the random-cut test: short, so twenty rounds stay quick.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

fn short_store_deadline(settings: &mut salvage::config::Settings) {
    settings.deadlines.store = DEADLINE;
}

/// A little randomness for the moment of each cut (no seedable generator is a
/// dependency here; the uuid's random bits serve).
fn random_below(n: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() as u64) % n
}

#[tokio::test]
async fn cut_at_random_moments_every_page_and_server_function_answers_within_the_deadline() {
    let app = spawn_app_with(Options {
        postgres_link: true,
        tweak: Some(short_store_deadline),
        ..Options::default()
    })
    .await;
    let admin = app.signed_in(Role::Admin).await;
    let link = app.postgres_link.as_ref().unwrap();
    let pages = [
        "/admin",
        "/admin/alerts",
        "/admin/queues",
        "/admin/history",
        "/admin/crons",
    ];
    let functions = [
        "overview/posture",
        "alerts/open",
        "queues/overview",
        "history/search",
    ];
    // An answer slower than the deadline, with a margin for a busy machine's timers.
    let late = DEADLINE + std::time::Duration::from_secs(2);
    let mut wrong = Vec::new();

    for round in 0..20 {
        let mut calls = tokio::task::JoinSet::new();
        for page in pages {
            let admin = admin.clone();
            calls.spawn(async move {
                let started = std::time::Instant::now();
                let status = admin.get(page).await.status().as_u16();
                (page.to_owned(), status, started.elapsed())
            });
        }
        for endpoint in functions {
            let (admin, args) = (admin.clone(), arguments(endpoint).unwrap());
            calls.spawn(async move {
                let started = std::time::Instant::now();
                let status = admin.call_server_fn(endpoint, args).await.status().as_u16();
                (endpoint.to_owned(), status, started.elapsed())
            });
        }
        // Before the calls reach the store, while they query, or while they render.
        tokio::time::sleep(std::time::Duration::from_millis(random_below(250))).await;
        link.cut();
        while let Some(answer) = calls.join_next().await {
            let (what, status, took) = answer.unwrap();
            if took > late || !matches!(status, 200 | 503) {
                wrong.push(format!(
                    "round {round}: {what} answered {status} after {took:?}"
                ));
            }
        }
        // And while it is cut, a fresh call meets the outage between requests.
        let started = std::time::Instant::now();
        let status = admin.get("/admin/queues").await.status().as_u16();
        if started.elapsed() > late || status != 503 {
            wrong.push(format!(
                "round {round}: during the cut, {status} after {:?}",
                started.elapsed()
            ));
        }
        link.restore();
        let back = crate::helpers::eventually(std::time::Duration::from_secs(20), || async {
            admin.get("/admin/queues").await.status().as_u16() == 200
        })
        .await;
        assert!(
            back,
            "round {round}: the console did not come back with PostgreSQL"
        );
    }

    assert!(
        wrong.is_empty(),
        "{} slow or wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
