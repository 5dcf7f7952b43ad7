//! A leaked key's blast radius: requests and rows per hour and per source address after
//! a burst from two addresses, on the keys page's server function, `salvage ingest-key
//! show` and an incident's timeline; and retention pruning them.

use app::auth::Role;
use serde_json::{json, Value};
use time::Duration;

use super::request_rows;
use crate::helpers::{spawn_app_tweaked, Client, TestApp};

fn behind_a_load_balancer(settings: &mut salvage::config::Settings) {
    settings.trusted_proxies = app::server::client::TrustedProxies::parse("127.0.0.1").unwrap();
}

/// Sends `batches` batches of `rows` rows with `key`, as a client at `address`.
async fn burst(app: &TestApp, key: &str, address: &str, batches: u32, rows: u32) {
    let client = Client::forwarded_for(&app.address, address);
    for batch in 0..batches {
        let response = client
            .http
            .post(format!("{}/ingest/requests", app.address))
            .bearer_auth(key)
            .json(&request_rows(batch * rows, rows))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
}

#[tokio::test]
async fn a_keys_usage_counts_requests_rows_and_addresses_and_retention_prunes_it() {
    let app = spawn_app_tweaked(behind_a_load_balancer).await;
    let (key_id, key) =
        app::ingest_keys::ssr::create(&app.pg, &app::auth::ssr::Actor::cli(), "gateway", "*")
            .await
            .unwrap();
    burst(&app, &key, "203.0.113.7", 3, 4).await;
    burst(&app, &key, "198.51.100.9", 2, 5).await;
    // A refused batch (a row of another shape) counts as a request with no rows.
    let client = Client::forwarded_for(&app.address, "198.51.100.9");
    let refused = client
        .http
        .post(format!("{}/ingest/requests", app.address))
        .bearer_auth(&key)
        .json(&json!([{"id": "not a row"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 422);
    app.state.key_usage().flush(&app.pg).await.unwrap();

    let admin = app.signed_in(Role::Admin).await;
    let (status, usage) = admin
        .call("settings/ingest-keys/usage", json!({"key_id": key_id}))
        .await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(
        (usage["requests"].as_i64(), usage["rows"].as_i64()),
        (Some(6), Some(22))
    );
    let sources: Vec<(String, i64, i64)> = usage["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["address"].as_str().unwrap().to_owned(),
                s["requests"].as_i64().unwrap(),
                s["rows"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut sorted = sources.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("198.51.100.9".to_owned(), 3, 10),
            ("203.0.113.7".to_owned(), 3, 12)
        ]
    );
    assert!(
        usage["first_used_ms"].is_i64() && usage["last_used_ms"].is_i64(),
        "{usage}"
    );
    assert_eq!(usage["hours"].as_array().unwrap().len(), 1);

    // `salvage ingest-key show` prints the same, as a table and as JSON.
    let id = key_id.to_string();
    let shown = crate::cli::salvage_on(&app, &["ingest-key", "show", &id], "");
    let table = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(
        table.contains("Last 7 days: 6 requests, 22 rows, from 2 addresses"),
        "{table}"
    );
    assert!(table.contains("203.0.113.7"), "{table}");
    let json = crate::cli::salvage_on(&app, &["ingest-key", "show", &id, "--json"], "");
    let printed: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(printed["sources"], usage["sources"]);
    let missing = crate::cli::salvage_on(&app, &["ingest-key", "show", "99999"], "");
    assert_eq!(missing.status.code(), Some(1));

    // The keys list carries the 7-day totals.
    let (_, keys) = admin.call("settings/ingest-keys", json!({})).await;
    let listed = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key_id)
        .unwrap()
        .clone();
    assert_eq!(
        (
            listed["requests_7d"].clone(),
            listed["rows_7d"].clone(),
            listed["addresses"].clone()
        ),
        (json!(6), json!(22), json!(2)),
        "{listed}"
    );

    // An incident records the figures in its timeline with one call.
    let operator = app.signed_in(Role::Operator).await;
    let (_, incident) = operator
        .call(
            "history/incident",
            json!({"title": "Key leaked", "severity": "sev2", "started_at": "",
                   "resolved_at": "", "body": ""}),
        )
        .await;
    let (status, entry) = operator
        .call(
            "incidents/key-snapshot",
            json!({"id": incident, "key_id": key_id}),
        )
        .await;
    assert_eq!(status, 200, "{entry}");
    let (title, details): (String, Value) = sqlx::query_as(
        "select title, details from runbook_history where id = $1 and incident_id = $2",
    )
    .bind(entry.as_i64().unwrap())
    .bind(incident.as_i64().unwrap())
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert!(
        title.contains("6 requests and 22 rows in 7 days from 2 addresses"),
        "{title}"
    );
    assert_eq!(
        details["keyUsage"]["sources"].as_array().unwrap().len(),
        2,
        "{details}"
    );
    let (status, error) = operator
        .call(
            "incidents/key-snapshot",
            json!({"id": incident, "key_id": 99_999}),
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (422, Some("key_id")),
        "{error}"
    );

    // Retention: 7 days on, a new burst's hour stays; the old hour and address go.
    app.state
        .clock
        .advance(Duration::days(7) + Duration::hours(2));
    burst(&app, &key, "192.0.2.1", 1, 1).await;
    app.state.key_usage().flush(&app.pg).await.unwrap();
    app::ingest_keys::usage::prune(&app.pg, app.state.clock.now())
        .await
        .unwrap();
    let (_, usage) = admin
        .call("settings/ingest-keys/usage", json!({"key_id": key_id}))
        .await;
    assert_eq!(
        (usage["requests"].as_i64(), usage["rows"].as_i64()),
        (Some(1), Some(1)),
        "{usage}"
    );
    assert_eq!(app.count("ingest_key_usage").await, 1);
    assert_eq!(app.count("ingest_key_sources").await, 1);
}

#[tokio::test]
async fn a_key_keeps_its_hundred_most_recent_addresses() {
    let app = spawn_app_tweaked(behind_a_load_balancer).await;
    let (key_id, _) =
        app::ingest_keys::ssr::create(&app.pg, &app::auth::ssr::Actor::cli(), "gateway", "*")
            .await
            .unwrap();
    let usage = app.state.key_usage();
    let start = app.state.clock.now();
    for i in 0..105u8 {
        let address = std::net::IpAddr::from([10, 0, 0, i]);
        usage.record(
            key_id,
            Some(address),
            1,
            start + Duration::seconds(i64::from(i)),
        );
    }
    usage.flush(&app.pg).await.unwrap();
    assert_eq!(app.count("ingest_key_sources").await, 105);
    app::ingest_keys::usage::prune(&app.pg, app.state.clock.now())
        .await
        .unwrap();
    let kept: Vec<String> =
        sqlx::query_scalar("select address from ingest_key_sources order by last_seen limit 1")
            .fetch_all(&app.pg)
            .await
            .unwrap();
    assert_eq!(app.count("ingest_key_sources").await, 100);
    assert_eq!(kept, ["10.0.0.5"], "the five least recent went");
}
