//! The OpenAPI description: committed as generated, served, complete, and true to what
//! the routes really accept and answer.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, CRON_SECRET};

fn document() -> Value {
    serde_json::from_str(&salvage::openapi::document()).expect("the description is JSON")
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let found = &doc["components"]["schemas"][name];
    assert!(found.is_object(), "no schema {name}");
    found
}

fn properties(doc: &Value, name: &str) -> BTreeSet<String> {
    schema(doc, name)["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{name} has no properties"))
        .keys()
        .cloned()
        .collect()
}

fn required(doc: &Value, name: &str) -> BTreeSet<String> {
    schema(doc, name)["required"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .map(|f| f.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn keys(answer: &Value) -> BTreeSet<String> {
    answer
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {answer}"))
        .keys()
        .cloned()
        .collect()
}

/// `answer` has every required field of `name`, and (unless the schema is open) no
/// field it does not describe.
fn conforms(doc: &Value, name: &str, answer: &Value, open: bool) {
    let fields = keys(answer);
    let missing: Vec<_> = required(doc, name).difference(&fields).cloned().collect();
    assert!(
        missing.is_empty(),
        "{name}: {missing:?} missing from {answer}"
    );
    if !open {
        let extra: Vec<_> = fields.difference(&properties(doc, name)).cloned().collect();
        assert!(
            extra.is_empty(),
            "{name} does not describe {extra:?} of {answer}"
        );
    }
}

#[test]
fn the_committed_description_is_the_generated_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == salvage::openapi::document(),
        "docs/openapi.json differs from what the code describes; if the change is meant, \
         run `cargo run -q -p salvage -- openapi > docs/openapi.json` and commit it"
    );
}

#[test]
fn every_route_and_its_errors_are_described() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/ingest/requests", "post"),
        ("/ingest/events", "post"),
        ("/ingest/webhook-events", "post"),
        ("/ingest/schema-events", "post"),
        ("/cron/{job}", "post"),
        ("/health/ready", "get"),
        ("/health/deep", "get"),
        ("/metrics", "get"),
        ("/api/openapi.json", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is not described"
        );
    }
    for path in ["/ingest/requests", "/ingest/events"] {
        let responses = &paths[path]["post"]["responses"];
        for status in ["200", "202", "400", "401", "413", "422", "429", "503"] {
            assert!(responses[status].is_object(), "{path}: no {status}");
        }
        assert_eq!(paths[path]["post"]["security"], json!([{"ingest_key": []}]));
    }
    let errors = &paths["/ingest/webhook-events"]["post"]["responses"];
    for status in ["400", "401", "409", "413", "422", "503"] {
        assert!(errors[status].is_object(), "webhook-events: no {status}");
    }
    let errors = &paths["/ingest/schema-events"]["post"]["responses"];
    for status in [
        "200", "201", "400", "401", "403", "409", "413", "422", "503",
    ] {
        assert!(errors[status].is_object(), "schema-events: no {status}");
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for scheme in ["ingest_key", "cron_secret", "health_token", "metrics_token"] {
        assert_eq!(schemes[scheme]["scheme"], "bearer", "{scheme}");
    }
}

/// The examples the description gives are accepted by the real routes, and the real
/// answers (successes and errors) have the fields the description names.
#[tokio::test]
async fn the_routes_accept_the_examples_and_answer_as_described() {
    let doc = document();
    let app = spawn_app().await;
    let served: Value = app
        .http
        .get(format!("{}/api/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, doc, "/api/openapi.json serves the description");

    // A key for every organisation: webhook events take no other.
    let key = app::ingest_keys::ssr::create(&app.pg, &app::auth::ssr::Actor::cli(), "docs", "*")
        .await
        .unwrap()
        .1;
    let post = |path: &'static str, body: Value| {
        let request = app
            .http
            .post(format!("{}{path}", app.address))
            .bearer_auth(&key)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    for (path, row) in [
        ("/ingest/requests", "RequestRow"),
        ("/ingest/events", "EventRow"),
    ] {
        let example = schema(&doc, row)["example"].clone();
        assert!(example.is_object(), "{row} has an example");
        let (status, answer) = post(path, json!([example])).await;
        assert_eq!(status, 200, "{path}: {answer}");
        conforms(&doc, "IngestAnswer", &answer, false);
        assert_eq!(answer["stored"], "clickhouse");

        // The example with a field the description does not name is refused, by field.
        let mut unknown = example.clone();
        unknown["colour"] = json!("red");
        let (status, error) = post(path, json!([unknown])).await;
        assert_eq!(status, 422, "{path}: {error}");
        conforms(&doc, "ErrorBody", &error, false);
        assert_eq!(error["field"], "rows[0].colour");
    }
    let event = schema(&doc, "WebhookEventRequest")["example"].clone();
    let (status, answer) = post("/ingest/webhook-events", event).await;
    assert_eq!(status, 202, "{answer}");
    conforms(&doc, "Enqueued", &answer, false);
    let change = schema(&doc, "SchemaEventRequest")["example"].clone();
    let (status, answer) = post("/ingest/schema-events", change).await;
    assert_eq!(status, 201, "{answer}");
    conforms(&doc, "SchemaEventAnswer", &answer, false);

    let anonymous = app.http.post(format!("{}/ingest/requests", app.address));
    let refused = anonymous.json(&json!([])).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    conforms(&doc, "ErrorBody", &refused.json().await.unwrap(), false);

    let (_, ready) = app.get_json("/health/ready").await;
    conforms(&doc, "Ready", &ready, false);
    let (_, deep) = app.get_json("/health/deep").await;
    conforms(&doc, "Deep", &deep, false);

    let cron = |job: &'static str| {
        let request = app
            .http
            .post(format!("{}/cron/{job}", app.address))
            .bearer_auth(CRON_SECRET);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // A run's answer carries its job's own report fields beside the described ones.
    conforms(&doc, "CronAnswer", &cron("replay-fallback").await, true);
    conforms(&doc, "ErrorBody", &cron("no-such-job").await, false);
}
