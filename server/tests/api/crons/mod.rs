//! The cron plane against the real stores: the secret on `/cron/<job>` (missing,
//! malformed, wrong, expired, the grace window on an injected clock) here; in `runs`,
//! each trigger recorded with its caller, retention, dropout detection on a day of runs,
//! and two schedulers on one database running each tick once.

mod runs;

use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;

use app::auth::Role;
use app::jobs::schedule::Schedule;

use crate::helpers::{spawn_app, spawn_app_with, Options, TestApp, CRON_SECRET};

/// `GET /cron/<job>` with `authorization` as the header (`None`: no header).
async fn call_cron(app: &TestApp, job: &str, authorization: Option<&str>) -> (u16, Value) {
    let mut request = app
        .http
        .get(format!("{}/cron/{job}", app.address))
        .header("user-agent", "uptime-monitor/2.1");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn with_secret(app: &TestApp, job: &str, secret: &str) -> u16 {
    call_cron(app, job, Some(&format!("Bearer {secret}")))
        .await
        .0
}

/// Waits (up to 10 s) until no cron run of `app`'s database is still running.
async fn all_runs_finished(app: &TestApp) -> bool {
    crate::helpers::eventually(Duration::from_secs(10), || async {
        let running: i64 =
            sqlx::query_scalar("select count(*) from cron_job_runs where outcome = 'running'")
                .fetch_one(&app.pg)
                .await
                .unwrap();
        running == 0
    })
    .await
}

async fn runs_of(app: &TestApp, job: &str) -> i64 {
    sqlx::query_scalar("select count(*) from cron_job_runs where job_name = $1")
        .bind(job)
        .fetch_one(&app.pg)
        .await
        .unwrap()
}

#[tokio::test]
async fn cron_calls_without_a_working_secret_get_401_and_run_nothing() {
    let app = spawn_app().await;
    // CRON_SECRET became the first secret, kept as a digest.
    let (source, created_by, digest): (String, String, Vec<u8>) =
        sqlx::query_as("select source, created_by, secret_hash from cron_secrets")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(
        (source.as_str(), created_by.as_str()),
        ("environment", "environment:CRON_SECRET")
    );
    assert_eq!(digest, app::server::tokens::digest(CRON_SECRET));

    let basic = format!("Basic {CRON_SECRET}");
    let cases: [(&str, Option<&str>, &str); 5] = [
        ("missing", None, "Send `Authorization: Bearer"),
        (
            "malformed",
            Some(basic.as_str()),
            "must read `Bearer <cron secret>`",
        ),
        ("empty", Some("Bearer "), "Bearer"),
        (
            "wrong",
            Some("Bearer sgc_0000000000000000000000000000"),
            "not a current cron secret",
        ),
        (
            "lowercase scheme",
            Some("bearer x"),
            "must read `Bearer <cron secret>`",
        ),
    ];
    for (what, header, says) in cases {
        let (status, body) = call_cron(&app, "replay-fallback", header).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["kind"], "unauthorized", "{what}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{what}: {body}"
        );
    }
    // Unknown jobs are not revealed without the secret.
    assert_eq!(call_cron(&app, "no-such-job", None).await.0, 401);

    // Expired: a rotation with no grace ends the old secret at once.
    let admin = app.signed_in(Role::Admin).await;
    let (status, rotated) = admin
        .call(
            "settings/cron-secret/rotate",
            json!({"grace_hours": 0, "reason": "leaked"}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let (status, body) = call_cron(
        &app,
        "replay-fallback",
        Some(&format!("Bearer {CRON_SECRET}")),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().unwrap().contains("stopped working"),
        "{body}"
    );

    assert_eq!(
        runs_of(&app, "replay-fallback").await,
        0,
        "no refused call ran anything"
    );

    // With the new secret the job runs; an unknown job is a 404 naming the jobs.
    let new = rotated["secret"]["shownOnce"].as_str().unwrap();
    assert!(new.starts_with("sgc_") && new.len() == 68, "{new}");
    assert_eq!(with_secret(&app, "replay-fallback", new).await, 200);
    let (status, body) = call_cron(&app, "no-such-job", Some(&format!("Bearer {new}"))).await;
    assert_eq!(status, 404);
    assert!(body["jobs"]
        .as_array()
        .unwrap()
        .contains(&json!("expire-fallback")));
}

#[tokio::test]
async fn the_previous_secret_works_inside_its_grace_window_and_not_a_second_after() {
    let app = spawn_app().await;
    let admin = app.signed_in(Role::Admin).await;
    let (status, rotated) = admin
        .call(
            "settings/cron-secret/rotate",
            json!({"grace_hours": 24, "reason": "quarterly"}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"]["shownOnce"].as_str().unwrap().to_owned();
    let (previous_id, expires_ms) = (
        rotated["previous"][0].as_i64().unwrap(),
        rotated["previous"][1].as_i64().unwrap(),
    );
    let expires =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(expires_ms) * 1_000_000).unwrap();

    assert_eq!(with_secret(&app, "expire-fallback", CRON_SECRET).await, 200);
    assert_eq!(with_secret(&app, "expire-fallback", &new).await, 200);

    app.state.clock.set(expires - time::Duration::seconds(1));
    assert_eq!(
        with_secret(&app, "expire-fallback", CRON_SECRET).await,
        200,
        "one second before"
    );
    app.state.clock.set(expires + time::Duration::seconds(1));
    assert_eq!(
        with_secret(&app, "expire-fallback", CRON_SECRET).await,
        401,
        "one second after"
    );
    assert_eq!(with_secret(&app, "expire-fallback", &new).await, 200);

    // Ending a grace window early works at once.
    app.state.clock.set(OffsetDateTime::now_utc());
    let (_, second) = admin
        .call(
            "settings/cron-secret/rotate",
            json!({"grace_hours": 24, "reason": "again"}),
        )
        .await;
    let newest = second["secret"]["shownOnce"].as_str().unwrap().to_owned();
    assert_eq!(
        with_secret(&app, "expire-fallback", &new).await,
        200,
        "in its grace window"
    );
    let (status, body) = admin
        .call(
            "settings/cron-secret/end-grace",
            json!({"secret_id": second["previous"][0], "reason": "every scheduler switched"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(with_secret(&app, "expire-fallback", &new).await, 401);
    assert_eq!(with_secret(&app, "expire-fallback", &newest).await, 200);
    let (status, _) = admin
        .call(
            "settings/cron-secret/end-grace",
            json!({"secret_id": previous_id, "reason": "already over"}),
        )
        .await;
    assert_eq!(status, 409, "a secret past its grace has nothing to end");

    // The list shows each secret's state and last caller; the history has each step
    // and never a secret.
    let (_, list) = admin.call("settings/cron-secret", json!({})).await;
    let secrets = list["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 3);
    assert!(
        secrets[0]["expires_at"].is_null(),
        "the current secret comes first"
    );
    assert_eq!(secrets[0]["last_used_agent"], "uptime-monitor/2.1");
    assert_eq!(secrets[0]["last_used_addr"], "127.0.0.1");
    assert_eq!(secrets[0]["callers"][0]["agent"], "uptime-monitor/2.1");
    let texts: Vec<String> = sqlx::query_scalar(
        "select title || ' ' || body || ' ' || details::text from runbook_history
          where kind = 'secret_rotation' order by id",
    )
    .fetch_all(&app.pg)
    .await
    .unwrap();
    assert_eq!(texts.len(), 3, "two rotations, one early end: {texts:?}");
    for text in &texts {
        for secret in [CRON_SECRET, new.as_str(), newest.as_str()] {
            assert!(!text.contains(secret), "a secret in the history: {text}");
        }
    }
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("select secret_hash from cron_secrets")
        .fetch_all(&app.pg)
        .await
        .unwrap();
    assert!(stored.iter().all(|h| h.len() == 32), "SHA-256 digests only");
}
