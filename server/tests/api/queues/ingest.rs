//! Ingest when a store is down, and bad input that changes nothing.

use super::*;

#[tokio::test]
async fn with_both_stores_down_ingest_answers_503_and_stores_nothing() {
    // One accepted call first: the key is known to this process, as in production.
    let (app, key) = app_with_a_used_key(Options {
        clickhouse_link: true,
        postgres_link: true,
        ..Options::default()
    })
    .await;
    app.clickhouse_link.as_ref().unwrap().cut();
    app.postgres_link.as_ref().unwrap().cut();

    let response = app
        .http
        .post(format!("{}/ingest/requests", app.address))
        .bearer_auth(&key)
        .json(&request_rows(100, 40))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Nothing was stored"),
        "{body}"
    );
    app.clickhouse_link.as_ref().unwrap().restore();
    app.postgres_link.as_ref().unwrap().restore();
    assert_eq!(clickhouse_counts(&app).await, (5, 5));
    assert_eq!(queued(&app).await, 0);
}

#[tokio::test]
async fn while_postgres_is_down_a_known_key_still_writes_to_clickhouse() {
    let (app, key) = app_with_a_used_key(Options {
        postgres_link: true,
        ..Options::default()
    })
    .await;
    app.postgres_link.as_ref().unwrap().cut();

    let (status, body) = post_rows(&app, &key, &request_rows(5, 5)).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(clickhouse_counts(&app).await, (10, 10));
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_stores_nothing() {
    let app = spawn_app().await;
    let key = ingest_key(&app).await;
    let (revoked_id, revoked) =
        app::ingest_keys::ssr::create(&app.pg, &Actor::cli(), "old", "org_1")
            .await
            .unwrap();
    app::ingest_keys::ssr::revoke(
        &app.pg,
        app.state.ingest_keys(),
        &Actor::cli(),
        revoked_id,
        None,
    )
    .await
    .unwrap();
    let good = serde_json::to_vec(&request_rows(0, 3)).unwrap();
    let mut wrong_ts = request_rows(0, 3);
    wrong_ts[1]["ts"] = json!("22/11/2026");
    let mut extra = request_rows(0, 3);
    extra[2]["tenant"] = json!("x");
    let mut wrong_type = request_rows(0, 2);
    wrong_type[0]["latency_ms"] = json!("fast");
    let too_many = request_rows(0, 5001);
    let mut huge = request_rows(0, 1);
    huge[0]["error"] = json!("x".repeat(9 * 1024 * 1024));

    // (what, key, body, expected status, field named in the error)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("no key", None, good.clone(), 401, None),
        (
            "wrong key",
            Some("sgk_0000000000000000000000000000"),
            good.clone(),
            401,
            None,
        ),
        (
            "revoked key",
            Some(revoked.as_str()),
            good.clone(),
            401,
            None,
        ),
        (
            "not JSON",
            Some(key.as_str()),
            b"[{\"id\":".to_vec(),
            400,
            None,
        ),
        (
            "not an array",
            Some(key.as_str()),
            b"{\"rows\": []}".to_vec(),
            400,
            None,
        ),
        (
            "empty batch",
            Some(key.as_str()),
            b"[]".to_vec(),
            422,
            Some("rows"),
        ),
        (
            "bad timestamp",
            Some(key.as_str()),
            serde_json::to_vec(&wrong_ts).unwrap(),
            422,
            Some("rows[1].ts"),
        ),
        (
            "unknown field",
            Some(key.as_str()),
            serde_json::to_vec(&extra).unwrap(),
            422,
            Some("rows[2].tenant"),
        ),
        (
            "wrong type",
            Some(key.as_str()),
            serde_json::to_vec(&wrong_type).unwrap(),
            422,
            Some("rows[0].latency_ms"),
        ),
        (
            "too many rows",
            Some(key.as_str()),
            serde_json::to_vec(&too_many).unwrap(),
            413,
            None,
        ),
        (
            "body too large",
            Some(key.as_str()),
            serde_json::to_vec(&huge).unwrap(),
            413,
            None,
        ),
    ];
    for (name, key, body, status, field) in cases {
        let (got, answer) = post(&app, key, "/ingest/requests", body).await;
        assert_eq!(got, status, "{name}: {answer}");
        if let Some(field) = field {
            assert_eq!(answer["field"], field, "{name}: {answer}");
        }
    }
    let (got, answer) = post(
        &app,
        Some(&key),
        "/ingest/events",
        serde_json::to_vec(&request_rows(0, 1)).unwrap(),
    )
    .await;
    assert_eq!(got, 422, "request rows are not events: {answer}");

    assert_eq!(clickhouse_counts(&app).await, (0, 0));
    assert_eq!(queued(&app).await, 0);
    assert_eq!(app.count("events_fallback").await, 0);
}

#[tokio::test]
async fn a_batch_clickhouse_refuses_is_answered_with_a_reference_not_its_own_words() {
    let app = spawn_app().await;
    let key = ingest_key(&app).await;
    app.clickhouse
        .client()
        .query("DROP TABLE requests")
        .execute()
        .await
        .unwrap();

    let (status, body) = post_rows(&app, &key, &request_rows(0, 3)).await;

    assert_eq!(status, 202, "{body}");
    assert_eq!(body["queued"], 3);
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("reference"), "{reason}");
    for exposed in ["Exception", "Code:", "requests", "salvage_test"] {
        assert!(!reason.contains(exposed), "{exposed} in {reason}");
    }
    // What ClickHouse said is kept for the console, under the same reference.
    let reference = reason
        .split("reference ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let kept: String = sqlx::query_scalar("select last_error from requests_fallback limit 1")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert!(
        kept.contains("Exception") && kept.contains(reference),
        "{kept}"
    );
}
