//! Each store's drill cadences from its objectives, `tabletop_overdue`, and the guarded
//! service's schema changes (`POST /ingest/schema-events`) making a drill due within a
//! week, each at its threshold and just below, with the injected clock.

use app::auth::Role;
use serde_json::{json, Value};
use time::Duration;

use crate::alerts::{alerts_of, evaluate};
use crate::backups::{app_with_data, back_up};
use crate::helpers::{run_job, spawn_app, TestApp};

/// The open alerts of `kind`, by key.
async fn open_keys(app: &TestApp, kind: &str) -> Vec<String> {
    evaluate(app).await;
    let mut keys: Vec<String> = alerts_of(app, kind)
        .await
        .into_iter()
        .filter(|(_, _, _, status, _)| status != "resolved")
        .map(|(_, key, _, _, _)| key)
        .collect();
    keys.sort();
    keys
}

async fn set_cadence(app: &TestApp, store: &str, functional: i64, tabletop: i64) -> (u16, Value) {
    let admin = app.signed_in(Role::Admin).await;
    admin
        .call(
            "drills/objectives",
            json!({"store": store, "rpo_hours": 24, "rto_minutes": 60, "reason": "runbook cadence",
                   "functional_days": functional, "tabletop_days": tabletop}),
        )
        .await
}

#[tokio::test]
async fn each_store_is_due_on_its_own_cadence_and_tabletops_on_theirs() {
    let app = app_with_data().await;
    back_up(&app).await;
    let answer = run_job(&app, "restore-drill").await;
    assert_eq!(answer["outcome"], "succeeded", "{answer}");

    // PostgreSQL is drilled every 14 days; ClickHouse keeps the 90-day default. A bad
    // cadence is refused by its field and changes nothing.
    let (status, refused) = set_cadence(&app, "postgres", 0, 30).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["field"], "functional_days", "{refused}");
    let (status, refused) = set_cadence(&app, "postgres", 14, 3651).await;
    assert_eq!(
        (status, refused["field"].as_str()),
        (422, Some("tabletop_days"))
    );
    let stored: i64 = app
        .count("recovery_objectives where store = 'postgres'")
        .await;
    assert_eq!(stored, 0, "a refused change writes nothing");
    let (status, body) = set_cadence(&app, "postgres", 14, 30).await;
    assert_eq!(status, 200, "{body}");

    app.state
        .clock
        .advance(Duration::days(14) - Duration::hours(1));
    assert!(open_keys(&app, "drill_overdue").await.is_empty());
    app.state.clock.advance(Duration::hours(2));
    assert_eq!(open_keys(&app, "drill_overdue").await, ["postgres"]);

    // The page's due list says the same, per store, with each cadence.
    let admin = app.signed_in(Role::Admin).await;
    let (_, overview) = admin.call("drills/overview", json!({})).await;
    let due: Vec<String> = overview["due"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["what"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        due.contains(&"PostgreSQL: functional drill (every 14 days)".to_owned()),
        "{due:?}"
    );
    assert!(
        due.contains(&"ClickHouse: functional drill (every 90 days)".to_owned()),
        "{due:?}"
    );
    let objectives = &overview["objectives"];
    assert_eq!(objectives[0]["functional_days"], 14, "{objectives}");

    // Tabletops: ClickHouse's every 20 days counts from installation (14 days ago).
    let (status, _) = set_cadence(&app, "clickhouse", 90, 20).await;
    assert_eq!(status, 200);
    app.state
        .clock
        .advance(Duration::days(6) - Duration::hours(2));
    assert!(open_keys(&app, "tabletop_overdue").await.is_empty());
    app.state.clock.advance(Duration::hours(2));
    assert_eq!(open_keys(&app, "tabletop_overdue").await, ["clickhouse"]);

    // A tabletop logged: clear (resolved once the kind's recovering evaluations passed).
    let (status, logged) = admin
        .call(
            "drills/tabletop",
            json!({"scenario": "ClickHouse lost its disk", "participants": "ops",
                   "findings": "replay first", "follow_ups": ""}),
        )
        .await;
    assert_eq!(status, 200, "{logged}");
    evaluate(&app).await;
    assert!(open_keys(&app, "tabletop_overdue").await.is_empty());
}

async fn post_change(app: &TestApp, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = app
        .http
        .post(format!("{}/ingest/schema-events", app.address))
        .json(&body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn a_reported_schema_change_makes_a_drill_due_within_a_week() {
    let app = spawn_app().await;
    let actor = app::auth::ssr::Actor::cli();
    let key = app::ingest_keys::ssr::create(&app.pg, &actor, "deploys", "*")
        .await
        .unwrap()
        .1;
    let tenant = app::ingest_keys::ssr::create(&app.pg, &actor, "tenant", "org_1")
        .await
        .unwrap()
        .1;
    let now = app.state.clock.now();
    let change = json!({"name": "billing", "version": "42", "changed_at": rfc3339(now)});

    // Refused: no key, a tenant's key, a bad field, a body over the limit. Nothing stored.
    assert_eq!(post_change(&app, None, change.clone()).await.0, 401);
    assert_eq!(
        post_change(&app, Some(&tenant), change.clone()).await.0,
        403
    );
    let (status, error) = post_change(
        &app,
        Some(&key),
        json!({"name": "billing", "changed_at": rfc3339(now)}),
    )
    .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (422, Some("version")),
        "{error}"
    );
    let ahead = json!({"name": "billing", "version": "42",
                       "changed_at": rfc3339(now + Duration::hours(1))});
    let (status, error) = post_change(&app, Some(&key), ahead).await;
    assert_eq!(
        (status, error["field"].as_str()),
        (422, Some("changed_at")),
        "{error}"
    );
    let huge = json!({"name": "billing", "version": "x".repeat(8 * 1024)});
    assert_eq!(post_change(&app, Some(&key), huge).await.0, 413);
    assert_eq!(app.count("schema_events").await, 0);

    // Recorded once; sent again, the same record; the same version at another time, 409.
    let (status, first) = post_change(&app, Some(&key), change.clone()).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(
        first["drillDueMs"],
        app::server::unix_ms(now + Duration::days(7))
    );
    let (status, again) = post_change(&app, Some(&key), change.clone()).await;
    assert_eq!(
        (status, again["duplicate"].as_bool()),
        (200, Some(true)),
        "{again}"
    );
    assert_eq!(again["id"], first["id"]);
    // A retry that leaves the time out is the same change too.
    let (status, retry) = post_change(
        &app,
        Some(&key),
        json!({"name": "billing", "version": "42"}),
    )
    .await;
    assert_eq!(
        (status, retry["id"].clone()),
        (200, first["id"].clone()),
        "{retry}"
    );
    let moved = json!({"name": "billing", "version": "42",
                       "changed_at": rfc3339(now - Duration::hours(1))});
    assert_eq!(post_change(&app, Some(&key), moved).await.0, 409);
    assert_eq!(app.count("schema_events").await, 1);

    // Seven days on, no drill has passed since: due, for each store, naming the change.
    app.state
        .clock
        .advance(Duration::days(7) - Duration::minutes(1));
    assert!(open_keys(&app, "drill_overdue").await.is_empty());
    app.state.clock.advance(Duration::minutes(2));
    assert_eq!(
        open_keys(&app, "drill_overdue").await,
        ["clickhouse:change", "postgres:change"]
    );
    let title: String = sqlx::query_scalar(
        "select title from internal_alerts where kind = 'drill_overdue' and dedup_key = 'postgres:change'",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert!(title.contains("billing's schema version 42"), "{title}");
}

#[tokio::test]
async fn a_passing_drill_after_a_schema_change_clears_it_and_an_older_change_does_not_count() {
    let app = app_with_data().await;
    back_up(&app).await;
    let key = app::ingest_keys::ssr::create(&app.pg, &app::auth::ssr::Actor::cli(), "deploys", "*")
        .await
        .unwrap()
        .1;
    let before_drill = app.state.clock.now() - Duration::minutes(1);
    let answer = run_job(&app, "restore-drill").await;
    assert_eq!(answer["outcome"], "succeeded", "{answer}");
    // A change applied before the drill began: the drill proved it.
    let old = json!({"name": "billing", "version": "41", "changed_at": rfc3339(before_drill)});
    assert_eq!(post_change(&app, Some(&key), old).await.0, 201);
    app.state.clock.advance(Duration::days(8));
    assert!(open_keys(&app, "drill_overdue").await.is_empty());

    // A change after it: due a week later; a passing drill then clears it.
    let new = json!({"name": "billing", "version": "42"});
    assert_eq!(post_change(&app, Some(&key), new).await.0, 201);
    app.state
        .clock
        .advance(Duration::days(7) + Duration::hours(1));
    assert_eq!(
        open_keys(&app, "drill_overdue").await,
        ["clickhouse:change", "postgres:change"]
    );
    let answer = run_job(&app, "restore-drill").await;
    assert_eq!(answer["outcome"], "succeeded", "{answer}");
    evaluate(&app).await;
    assert!(open_keys(&app, "drill_overdue").await.is_empty());
}
