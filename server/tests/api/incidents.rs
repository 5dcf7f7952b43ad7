//! Incident mode against the real stores: the freeze holds expiry, retention and
//! in-place restores (and not ingest or replay) until it is lifted; the post-recovery
//! checklist gates resolving; status snapshots land in the timeline.

use app::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{run_job, spawn_app, spawn_app_tweaked, Client, TestApp};

async fn declare(client: &Client) -> i64 {
    let (status, id) = client
        .call(
            "history/incident",
            json!({"title": "ClickHouse is down", "severity": "sev2", "started_at": "",
                   "resolved_at": "", "body": ""}),
        )
        .await;
    assert_eq!(status, 200, "{id}");
    id.as_i64().unwrap()
}

async fn timeline(app: &TestApp, incident: i64, kind: &str) -> Vec<(String, Value)> {
    sqlx::query_as(
        "select title, details from runbook_history where incident_id = $1 and kind = $2 order by id",
    )
    .bind(incident)
    .bind(kind)
    .fetch_all(&app.pg)
    .await
    .unwrap()
}

/// Parks `n` rows in the requests queue, as an outage would, queued `days_ago` days ago.
async fn park(app: &TestApp, n: i64, days_ago: i64) {
    sqlx::query(
        "insert into requests_fallback (organization_id, id, ts, row_json, last_error, queued_at)
         select 'org_1', u, now(), json_build_object(
                  'id', u, 'ts', to_char(now() at time zone 'utc', 'YYYY-MM-DD HH24:MI:SS'),
                  'ts_ms', 0, 'organization_id', 'org_1', 'project', 'chat',
                  'provider', 'openai', 'model', 'gpt-4o-mini', 'status', 200,
                  'latency_ms', 100, 'prompt_tokens', 10, 'completion_tokens', 5,
                  'cost_usd', 0.0001, 'error', null)::text,
                'ClickHouse: network error (test)', now() - make_interval(days => $2::int)
           from (select gen_random_uuid() as u from generate_series(1, $1)) rows",
    )
    .bind(n)
    .bind(days_ago as i32)
    .execute(&app.pg)
    .await
    .unwrap();
}

#[tokio::test]
async fn the_incident_freeze_holds_expiry_and_retention_and_lets_ingest_and_replay_go_on() {
    let app = spawn_app_tweaked(|settings| {
        settings.backups.policy_postgres.keep = 1;
        settings.backups.policy_clickhouse.keep = 1;
    })
    .await;
    let operator = app.signed_in(Role::Operator).await;
    let incident = declare(&operator).await;
    park(&app, 5, 30).await;

    let (status, body) = operator
        .call(
            "incidents/freeze",
            json!({"id": incident, "on": true, "reason": "hold deletions"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = operator
        .call(
            "incidents/freeze",
            json!({"id": incident, "on": true, "reason": "twice"}),
        )
        .await;
    assert_eq!(status, 409, "one incident freeze at a time: {body}");

    // Expiry waits: the expired rows stay.
    let answer = run_job(&app, "expire-fallback").await;
    assert_eq!(answer["frozen"], true, "{answer}");
    assert_eq!(app.count("requests_fallback").await, 5);
    // Retention waits: two backups with keep = 1, none deleted.
    for _ in 0..2 {
        let answer = run_job(&app, "backup").await;
        assert_eq!(answer["deleted"], json!([]), "{answer}");
    }
    // Replay goes on: the rows reach ClickHouse.
    let answer = run_job(&app, "replay-fallback").await;
    assert_eq!(answer["outcome"], "succeeded", "{answer}");
    assert_eq!(
        app.count("requests_fallback").await,
        0,
        "replay drains during an incident"
    );

    // An in-place restore needs the incident confirmed.
    let backup: i64 = sqlx::query_scalar(
        "select max(id) from backups where store = 'clickhouse' and status = 'verified'",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    let mut request = crate::backups::in_place(&app, backup, app::backups::StoreKind::Clickhouse);
    let refused = crate::backups::restore(&app, request.clone())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("confirm"), "{refused}");
    assert_eq!(app.count("restores").await, 0, "nothing recorded");
    request.confirm_incident = true;
    let report = crate::backups::restore(&app, request).await.unwrap();
    assert_eq!(
        report.status,
        app::backups::RestoreStatus::Verified,
        "{report:?}"
    );

    // Lifted: expiry and retention act again.
    park(&app, 3, 30).await;
    let (status, body) = operator
        .call(
            "incidents/freeze",
            json!({"id": incident, "on": false, "reason": "recovered"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answer = run_job(&app, "expire-fallback").await;
    assert_eq!(answer["frozen"], false, "{answer}");
    assert_eq!(app.count("requests_fallback").await, 0);
    let answer = run_job(&app, "backup").await;
    assert!(
        !answer["deleted"].as_array().unwrap().is_empty(),
        "{answer}"
    );

    let freezes = timeline(&app, incident, "freeze").await;
    let titles: Vec<&str> = freezes.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        titles,
        vec![
            "Freeze on: expiry, backup retention and in-place restores wait",
            "Freeze lifted"
        ]
    );
}

#[tokio::test]
async fn resolving_needs_every_post_recovery_check_or_an_admins_override_with_a_reason() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    let manager = app.signed_in(Role::Manager).await;
    let admin = app.signed_in(Role::Admin).await;
    let incident = declare(&operator).await;

    let resolve = |reason: &'static str| json!({"incident_id": incident, "resolved_at": "", "body": "fixed", "override_reason": reason});
    // No backup verified since it began, nothing ticked.
    let (status, body) = operator.call("history/resolve", resolve("")).await;
    assert_eq!(status, 422, "{body}");
    let message = body.to_string();
    assert!(message.contains("checklist"), "{message}");
    assert!(
        message.contains("A backup of each store verified"),
        "{message}"
    );
    let (status, _) = operator
        .call("history/resolve", resolve("we are sure"))
        .await;
    assert_eq!(status, 403, "only an admin overrides");
    assert!(timeline(&app, incident, "incident_resolved")
        .await
        .is_empty());

    // Every check passing: a verified backup of each store, an RCA owner, every manual
    // item ticked.
    run_job(&app, "backup").await;
    let (status, body) = manager
        .call(
            "incidents/owner",
            json!({"id": incident, "rca_owner": "sam@example.com"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for (item, _) in app::incidents::MANUAL_ITEMS {
        let (status, body) = manager
            .call(
                "incidents/tick",
                json!({"id": incident, "item": item, "done": true}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, mode) = operator
        .call("incidents/mode", json!({"id": incident}))
        .await;
    assert_eq!(status, 200);
    let failing: Vec<&Value> = mode["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] != true)
        .collect();
    assert!(failing.is_empty(), "{failing:?}");
    let ticked = &mode["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "customers_told")
        .unwrap();
    assert!(
        ticked["checked_by"]
            .as_str()
            .unwrap()
            .starts_with("manager-"),
        "{ticked}"
    );
    let (status, body) = operator.call("history/resolve", resolve("")).await;
    assert_eq!(status, 200, "{body}");

    // An admin may override an incomplete checklist, and the reason is kept.
    let second = declare(&operator).await;
    let (status, body) = admin
        .call(
            "history/resolve",
            json!({"incident_id": second, "resolved_at": "", "body": "",
                   "override_reason": "the backup store is the incident"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let body: String = sqlx::query_scalar(
        "select body from runbook_history where incident_id = $1 and kind = 'incident_resolved'",
    )
    .bind(second)
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert!(
        body.contains("by an admin: the backup store is the incident"),
        "{body}"
    );
    assert!(
        body.contains("not ticked") || body.contains("Customers"),
        "names what was open: {body}"
    );
}

#[tokio::test]
async fn status_snapshots_capture_the_stores_queues_alerts_and_cron_flags_into_the_timeline() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    park(&app, 7, 0).await;
    let incident = declare(&operator).await;
    let snapshots = timeline(&app, incident, "incident_snapshot").await;
    assert_eq!(snapshots.len(), 1, "one on declare");
    let (title, details) = &snapshots[0];
    assert!(
        title.contains("PostgreSQL up, ClickHouse up, 7 rows queued"),
        "{title}"
    );
    assert_eq!(details["why"], "declared");
    assert_eq!(details["stores"]["clickhouse"]["ok"], true);
    let requests = details["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "requests")
        .unwrap();
    assert_eq!(requests["depth"], 7);
    assert!(details["alerts"]["critical"].is_number());
    assert!(details["cronFlagged"].is_array());

    let (status, _) = operator
        .call("incidents/snapshot", json!({"id": incident}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(timeline(&app, incident, "incident_snapshot").await.len(), 2);

    // A past incident logged after the fact gets no snapshot of today.
    let (status, past) = operator
        .call(
            "history/incident",
            json!({"title": "Last week", "severity": "sev3", "started_at": "2026-11-20T10:00",
                   "resolved_at": "2026-11-20T11:00", "body": ""}),
        )
        .await;
    assert_eq!(status, 200, "{past}");
    assert!(timeline(&app, past.as_i64().unwrap(), "incident_snapshot")
        .await
        .is_empty());
}

/// The keys of the checks of `incident` that do not pass now.
async fn failing(client: &Client, incident: i64) -> Vec<String> {
    let (status, mode) = client.call("incidents/mode", json!({"id": incident})).await;
    assert_eq!(status, 200, "{mode}");
    mode["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] != true)
        .map(|c| c["key"].as_str().unwrap().to_owned())
        .collect()
}

fn keys(list: &[&str]) -> Vec<String> {
    list.iter().map(|k| (*k).to_owned()).collect()
}

#[tokio::test]
async fn each_loose_end_of_an_outage_holds_the_checklist_until_it_is_tied_up() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    // Dead letters from before the incident are not the outage's.
    crate::dead_letters::dead_lettered(&app, 2).await;
    sqlx::query("update webhook_deliveries set dlq_at = now() - interval '1 day'")
        .execute(&app.pg)
        .await
        .unwrap();
    let incident = declare(&operator).await;
    run_job(&app, "backup").await;
    for (item, _) in app::incidents::MANUAL_ITEMS {
        operator
            .call(
                "incidents/tick",
                json!({"id": incident, "item": item, "done": true}),
            )
            .await;
    }
    // Only the owner is missing.
    assert_eq!(failing(&operator, incident).await, keys(&["rca_owner"]));
    operator
        .call(
            "incidents/owner",
            json!({"id": incident, "rca_owner": "sam@example.com"}),
        )
        .await;
    assert_eq!(failing(&operator, incident).await, keys(&[]));

    // The freeze on: held until lifted.
    let freeze = |on: bool| json!({"id": incident, "on": on, "reason": "checklist test"});
    assert_eq!(operator.call("incidents/freeze", freeze(true)).await.0, 200);
    assert_eq!(failing(&operator, incident).await, keys(&["freeze_lifted"]));
    assert_eq!(
        operator.call("incidents/freeze", freeze(false)).await.0,
        200
    );

    // A delivery dead-lettered since the incident began, and its endpoint paused.
    let (webhook, _) = crate::dead_letters::dead_lettered(&app, 1).await;
    sqlx::query("update webhooks set paused_at = now() where id = $1")
        .bind(webhook)
        .execute(&app.pg)
        .await
        .unwrap();
    assert_eq!(
        failing(&operator, incident).await,
        keys(&["endpoints_running", "outage_dead_letters"])
    );
    sqlx::query("update webhooks set paused_at = null where id = $1")
        .bind(webhook)
        .execute(&app.pg)
        .await
        .unwrap();
    sqlx::query("delete from webhook_deliveries where webhook_id = $1")
        .bind(webhook)
        .execute(&app.pg)
        .await
        .unwrap();

    // A background migration that failed.
    sqlx::query("update background_migrations set status = 'failed', last_error = 'test'")
        .execute(&app.pg)
        .await
        .unwrap();
    assert_eq!(
        failing(&operator, incident).await,
        keys(&["migrations_healthy"])
    );
    sqlx::query("update background_migrations set status = 'succeeded', last_error = null")
        .execute(&app.pg)
        .await
        .unwrap();
    assert_eq!(failing(&operator, incident).await, keys(&[]));
}

#[tokio::test]
async fn draining_queues_pass_only_with_a_reason_and_the_checklist_is_kept_as_it_stood() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    let incident = declare(&operator).await;
    run_job(&app, "backup").await;
    for (item, _) in app::incidents::MANUAL_ITEMS {
        operator
            .call(
                "incidents/tick",
                json!({"id": incident, "item": item, "done": true}),
            )
            .await;
    }
    operator
        .call(
            "incidents/owner",
            json!({"id": incident, "rca_owner": "sam"}),
        )
        .await;
    // Draining: a replay just moved rows, and more are queued.
    park(&app, 5, 0).await;
    run_job(&app, "replay-fallback").await;
    park(&app, 3, 0).await;
    assert_eq!(
        failing(&operator, incident).await,
        keys(&["queues_draining"])
    );

    let resolve = |draining: &str| {
        json!({"incident_id": incident, "resolved_at": "", "body": "fixed",
               "draining_reason": draining})
    };
    let (status, body) = operator.call("history/resolve", resolve("")).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string()
            .contains("The fallback queues are empty or draining"),
        "{body}"
    );
    let (status, body) = operator
        .call("history/resolve", resolve("replay drains 3 rows a minute"))
        .await;
    assert_eq!(status, 200, "{body}");

    // Resolved: the checklist as it stood, not re-measured. A paused endpoint now does
    // not turn it red.
    let (webhook, _) = crate::dead_letters::dead_lettered(&app, 1).await;
    sqlx::query("update webhooks set paused_at = now() where id = $1")
        .bind(webhook)
        .execute(&app.pg)
        .await
        .unwrap();
    let (_, mode) = operator
        .call("incidents/mode", json!({"id": incident}))
        .await;
    assert_eq!(mode["checks_recorded"], true, "{mode}");
    let checks = mode["checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["ok"] == true), "{mode}");
    let queues = checks
        .iter()
        .find(|c| c["key"] == "queues_draining")
        .unwrap();
    assert!(
        queues["detail"]
            .as_str()
            .unwrap()
            .contains("because replay drains 3 rows a minute"),
        "{queues}"
    );

    // An incident logged afterwards, resolved without incident mode: nothing recorded,
    // and nothing made up.
    let (status, past) = operator
        .call(
            "history/incident",
            json!({"title": "Old outage", "severity": "sev3", "started_at": "2026-11-01T09:00",
                   "resolved_at": "2026-11-01T10:00", "body": ""}),
        )
        .await;
    assert_eq!(status, 200, "{past}");
    let (_, mode) = operator
        .call("incidents/mode", json!({"id": past.as_i64().unwrap()}))
        .await;
    assert_eq!(mode["checks_recorded"], false, "{mode}");
    assert_eq!(mode["checks"], json!([]));
}
