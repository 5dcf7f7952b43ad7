//! What lower roles and anonymous callers can read.

use app::auth::Role;
use serde_json::json;

use crate::helpers::{closed_port, spawn_app, spawn_app_with, Client, Options, CRON_SECRET};

#[tokio::test]
async fn the_history_actor_list_names_only_people_who_acted() {
    let app = spawn_app().await;
    app.add_user("quiet-admin@example.com", Role::Admin).await;
    let operator = app.signed_in(Role::Operator).await;
    operator
        .call(
            "history/note",
            json!({"title": "", "body": "on shift", "incident_id": ""}),
        )
        .await;

    let search = json!({"kind": "", "actor": "", "outcome": "", "from": "", "to": "", "q": "",
                        "before": ""});
    let (status, page) = operator.call("history/search", search).await;

    assert_eq!(status, 200, "{page}");
    let actors: Vec<&str> = page["actors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(!actors.contains(&"quiet-admin@example.com"), "{actors:?}");
    assert!(
        actors.iter().any(|a| a.starts_with("operator-")),
        "{actors:?}"
    );
}

#[tokio::test]
async fn who_calls_the_cron_routes_from_where_is_for_admins_only() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/cron/expire-fallback", app.address))
        .header("authorization", format!("Bearer {CRON_SECRET}"))
        .header("user-agent", "secret-monitor/7.1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    for endpoint in ["crons/overview", "settings/cron-secret"] {
        for role in [Role::Operator, Role::Manager] {
            let (status, body) = app.signed_in(role).await.call(endpoint, json!({})).await;
            assert_eq!(status, 200, "{endpoint}: {body}");
            let text = body.to_string();
            assert!(
                !text.contains("secret-monitor"),
                "{endpoint} as {role}: {text}"
            );
            assert!(!text.contains("127.0.0.1"), "{endpoint} as {role}: {text}");
        }
        let (_, body) = app
            .signed_in(Role::Admin)
            .await
            .call(endpoint, json!({}))
            .await;
        assert!(
            body.to_string().contains("secret-monitor/7.1"),
            "{endpoint}: {body}"
        );
    }
}

/// Every key anywhere in `value`.
fn keys(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                out.push(key.clone());
                keys(value, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

const HEALTH_TOKEN: &str = "health-token-0123456789abcdef";

fn with_health_token(settings: &mut salvage::config::Settings) {
    settings.health_token = Some(HEALTH_TOKEN.into());
}

#[tokio::test]
async fn anonymous_health_answers_carry_no_driver_errors_or_version() {
    let port = closed_port().await;
    let app = spawn_app_with(Options {
        clickhouse_url: Some(format!("http://127.0.0.1:{port}")),
        tweak: Some(with_health_token),
        ..Options::default()
    })
    .await;
    for path in ["/health/ready", "/health/deep"] {
        let (_, body) = app.get_json(path).await;
        let mut found = Vec::new();
        keys(&body, &mut found);
        assert!(!found.contains(&"error".to_owned()), "{path}: {body}");
        assert!(!found.contains(&"version".to_owned()), "{path}: {body}");
        // What a monitor needs is still there.
        assert!(body["status"].is_string(), "{path}: {body}");
        assert!(found.contains(&"latencyMs".to_owned()), "{path}: {body}");
    }
    let (_, deep) = app.get_json("/health/deep").await;
    assert!(deep["fallback"]["queue"].is_number(), "{deep}");

    let monitor = Client::with_headers(
        &app.address,
        &[("authorization", &format!("Bearer {HEALTH_TOKEN}"))],
    );
    let (_, body) = monitor.get_json("/health/deep").await;
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"), "{body}");
    assert!(body["clickhouse"]["error"].is_string(), "{body}");
    let wrong = Client::with_headers(
        &app.address,
        &[("authorization", "Bearer nope-nope-nope-nope")],
    );
    let (_, body) = wrong.get_json("/health/deep").await;
    assert!(body.get("version").is_none(), "{body}");
}

#[tokio::test]
async fn a_webhooks_url_is_an_admins_to_see_and_the_history_records_it_masked() {
    let app = spawn_app().await;
    let admin = app.signed_in(Role::Admin).await;
    let secret_path = "/services/T0001/B0002/XXXXsecretXXXX";
    let url = format!("https://hooks.example.com{secret_path}?token=also-secret");
    let (status, created) = admin
        .call(
            "settings/webhooks/create",
            json!({"url": url, "description": "", "event_types": "order.paid", "max_retries": ""}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_i64().unwrap();
    let (status, _) = admin
        .call(
            "settings/webhooks/enabled",
            json!({"id": id, "enabled": false, "reason": "receiver moved"}),
        )
        .await;
    assert_eq!(status, 200);

    for role in [Role::Operator, Role::Manager] {
        let viewer = app.signed_in(role).await;
        for (endpoint, args) in [
            ("settings/webhooks", json!({})),
            ("dlq/overview", json!({"filter": "", "after": ""})),
        ] {
            let (status, body) = viewer.call(endpoint, args).await;
            assert_eq!(status, 200, "{body}");
            let text = body.to_string();
            assert!(
                !text.contains("XXXXsecretXXXX"),
                "{role:?} {endpoint}: {text}"
            );
            assert!(!text.contains("also-secret"), "{role:?} {endpoint}: {text}");
            assert!(
                text.contains("https://hooks.example.com/…"),
                "{role:?} {endpoint}: {text}"
            );
        }
    }
    let (_, listed) = admin.call("settings/webhooks", json!({})).await;
    assert!(
        listed.to_string().contains(secret_path),
        "the admin sees it whole"
    );
    let recorded: Vec<String> = sqlx::query_scalar(
        "select title || ' ' || coalesce(details::text, '') from runbook_history
          where kind = 'webhook'",
    )
    .fetch_all(&app.pg)
    .await
    .unwrap();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    for entry in recorded {
        assert!(
            !entry.contains("XXXXsecretXXXX") && !entry.contains("also-secret"),
            "{entry}"
        );
        assert!(entry.contains("hooks.example.com"), "{entry}");
    }
}
