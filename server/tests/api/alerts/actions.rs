//! What people do to alerts: acknowledge, resolve, note, silence; the races between
//! them and the self-monitor; bulk changes; the history they leave.

use app::auth::Role;
use serde_json::json;
use time::Duration;

use super::{alerts_of, evaluate, events, message, open_alert, queue_rows, with_an_alert};
use crate::helpers::spawn_app;

#[tokio::test]
async fn two_operators_at_once_one_wins_and_the_other_reads_what_happened() {
    let (app, id, version) = with_an_alert().await;
    let alice = app.signed_in(Role::Operator).await;
    let bob = app.signed_in(Role::Admin).await;
    let history = app.count("runbook_history").await;
    let selection = format!("{id}@{version}");
    let (a, b) = tokio::join!(
        alice.call(
            "alerts/acknowledge",
            json!({"selection": selection, "note": "on it", "until": ""})
        ),
        bob.call(
            "alerts/acknowledge",
            json!({"selection": selection, "note": "me too", "until": ""})
        )
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    let loser = if a.0 == 409 { &a.1 } else { &b.1 };
    assert!(
        message(loser).contains("acknowledged by")
            && message(loser).contains("while you were typing"),
        "{loser}"
    );
    assert_eq!(
        app.count("runbook_history").await,
        history + 1,
        "only the winner is recorded"
    );
    assert_eq!(
        events(&app, id)
            .await
            .iter()
            .filter(|e| *e == "acknowledged")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_change_to_an_alert_the_self_monitor_resolved_meanwhile_changes_nothing_and_says_so() {
    let (app, id, version) = with_an_alert().await;
    let operator = app.signed_in(Role::Operator).await;
    super::empty_queue(&app, "requests").await;
    evaluate(&app).await;
    evaluate(&app).await;
    let history = app.count("runbook_history").await;
    let (status, body) = operator
        .call(
            "alerts/acknowledge",
            json!({"selection": format!("{id}@{version}"), "note": "looking", "until": ""}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        message(&body).contains("resolved by the self-monitor"),
        "{body}"
    );
    let (status, body) = operator
        .call(
            "alerts/resolve",
            json!({"selection": format!("{id}@{version}"), "note": "fixed"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(app.count("runbook_history").await, history);
    assert_eq!(
        alerts_of(&app, "fallback_queue_high").await[0].3,
        "resolved"
    );
}

#[tokio::test]
async fn resolving_a_still_firing_alert_is_refused_instead_of_reopening_it() {
    let (app, id, version) = with_an_alert().await;
    let operator = app.signed_in(Role::Operator).await;
    let (status, body) = operator
        .call(
            "alerts/resolve",
            json!({"selection": format!("{id}@{version}"), "note": "done"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(message(&body).contains("still firing"), "{body}");
    assert_eq!(alerts_of(&app, "fallback_queue_high").await.len(), 1);
}

#[tokio::test]
async fn a_bulk_acknowledge_is_one_history_entry_and_all_or_nothing() {
    let app = spawn_app().await;
    queue_rows(&app, "requests", 1_500, app.state.clock.now(), None).await;
    queue_rows(&app, "events", 1_500, app.state.clock.now(), None).await;
    evaluate(&app).await;
    let (a, va) = open_alert(&app, "fallback_queue_high", "requests")
        .await
        .unwrap();
    let (b, vb) = open_alert(&app, "fallback_queue_high", "events")
        .await
        .unwrap();
    let operator = app.signed_in(Role::Operator).await;
    let history = app.count("runbook_history").await;

    let (status, body) = operator
        .call(
            "alerts/acknowledge",
            json!({"selection": format!("{a}@{va},{b}@{}", vb + 7), "note": "both", "until": ""}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(message(&body).starts_with("Nothing changed."), "{body}");
    assert_eq!(
        alerts_of(&app, "fallback_queue_high")
            .await
            .iter()
            .filter(|x| x.3 == "acknowledged")
            .count(),
        0
    );

    let (status, body) = operator
        .call("alerts/acknowledge", json!({"selection": format!("{a}@{va},{b}@{vb}"), "note": "both queues, ClickHouse maintenance", "until": "4h"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.count("runbook_history").await, history + 1);
    let (kind, body_text): (String, String) =
        sqlx::query_as("select kind, body from runbook_history order by id desc limit 1")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(
        (kind.as_str(), body_text.as_str()),
        ("alert", "both queues, ClickHouse maintenance")
    );
    let linked: i64 = sqlx::query_scalar(
        "select count(*) from internal_alert_events where event = 'acknowledged' and history_id is not null",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(linked, 2, "each alert's timeline points at the entry");
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let (app, id, version) = with_an_alert().await;
    let operator = app.signed_in(Role::Operator).await;
    let before = (
        app.count("internal_alert_events").await,
        app.count("runbook_history").await,
    );
    for (endpoint, args, field) in [
        (
            "alerts/acknowledge",
            json!({"selection": format!("{id}@{version}"), "note": "", "until": ""}),
            "note",
        ),
        (
            "alerts/acknowledge",
            json!({"selection": format!("{id}"), "note": "x", "until": ""}),
            "selection",
        ),
        (
            "alerts/acknowledge",
            json!({"selection": format!("{id}@{version}"), "note": "x", "until": "-2h"}),
            "until",
        ),
        (
            "alerts/silence",
            json!({"kind": "fallback_queue_high", "key": "", "ends_at": "", "reason": "x"}),
            "ends_at",
        ),
        (
            "alerts/silence",
            json!({"kind": "fallback_queue_high", "key": "", "ends_at": "2020-01-01T00:00", "reason": "x"}),
            "ends_at",
        ),
        (
            "alerts/silence",
            json!({"kind": "no_such_kind", "key": "", "ends_at": "2h", "reason": "x"}),
            "kind",
        ),
        (
            "alerts/silence",
            json!({"kind": "fallback_queue_high", "key": "", "ends_at": "2h", "reason": ""}),
            "reason",
        ),
        (
            "alerts/open",
            json!({"kind": "", "severity": "sev1", "status": ""}),
            "severity",
        ),
    ] {
        let (status, body) = operator.call(endpoint, args).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (422, Some(field)),
            "{endpoint}: {body}"
        );
    }
    assert_eq!(
        before,
        (
            app.count("internal_alert_events").await,
            app.count("runbook_history").await
        )
    );
}

#[tokio::test]
async fn a_silence_mutes_without_hiding_and_stays_on_the_alert_after_it_ends() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    let (status, silence) = operator
        .call("alerts/silence", json!({"kind": "fallback_queue_high", "key": "req*", "ends_at": "1h", "reason": "ClickHouse upgrade"}))
        .await;
    assert_eq!(status, 200, "{silence}");
    queue_rows(&app, "requests", 1_500, app.state.clock.now(), None).await;
    queue_rows(&app, "events", 1_500, app.state.clock.now(), None).await;
    evaluate(&app).await;

    let (_, open) = operator
        .call(
            "alerts/open",
            json!({"kind": "", "severity": "", "status": ""}),
        )
        .await;
    let listed = open["alerts"].as_array().unwrap();
    let muted: Vec<(&str, bool)> = listed
        .iter()
        .map(|a| (a["key"].as_str().unwrap(), a["silenced"].as_bool().unwrap()))
        .collect();
    assert!(
        muted.contains(&("requests", true)) && muted.contains(&("events", false)),
        "listed, muted: {muted:?}"
    );
    assert_eq!(open["counts"]["silenced"], 1);
    assert_eq!(
        open["counts"]["warning"], 1,
        "the muted one is not counted as needing attention"
    );
    let quiet: Vec<Option<String>> = sqlx::query_scalar(
        "select n.quiet_reason from alert_notifications n join internal_alerts a on a.id = n.alert_id order by a.dedup_key",
    )
    .fetch_all(&app.pg)
    .await
    .unwrap();
    assert_eq!(
        quiet,
        vec![None, Some("silenced".to_owned())],
        "events notifies, requests is quiet"
    );

    let (id, _) = open_alert(&app, "fallback_queue_high", "requests")
        .await
        .unwrap();
    let (status, ended) = operator
        .call(
            "alerts/unsilence",
            json!({"silence_id": silence, "reason": "upgrade done"}),
        )
        .await;
    assert_eq!(status, 200, "{ended}");
    let (_, detail) = operator
        .call("alerts/detail", json!({"alert_id": id}))
        .await;
    assert_eq!(detail["alert"]["silenced"], false);
    let shown = detail["silences"].as_array().unwrap();
    assert_eq!(
        (shown.len(), shown[0]["active"].as_bool()),
        (1, Some(false)),
        "the ended silence is still shown: {detail}"
    );
    assert!(events(&app, id).await.contains(&"silenced".to_owned()));
}

#[tokio::test]
async fn a_silence_that_matched_nothing_for_a_day_is_marked_idle() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    operator
        .call("alerts/silence", json!({"kind": "clickhouse_down", "key": "", "ends_at": "3d", "reason": "maintenance week"}))
        .await;
    app.state.clock.advance(Duration::hours(25));
    let (_, open) = operator
        .call(
            "alerts/open",
            json!({"kind": "", "severity": "", "status": ""}),
        )
        .await;
    assert_eq!(open["silences"][0]["idle"], true, "{open}");
}

#[tokio::test]
async fn notes_go_on_the_timeline_and_into_the_history_and_health_deep_counts_open_alerts() {
    let (app, id, _) = with_an_alert().await;
    let operator = app.signed_in(Role::Operator).await;
    let (status, body) = operator
        .call(
            "alerts/note",
            json!({"alert_id": id, "note": "replay started by hand"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, detail) = operator
        .call("alerts/detail", json!({"alert_id": id}))
        .await;
    let timeline = detail["timeline"].as_array().unwrap();
    let note = timeline
        .iter()
        .find(|e| e["event"] == "note")
        .expect("the note");
    assert_eq!(note["note"], "replay started by hand");
    assert_eq!(note["history_id"], body["history_id"]);

    let (_, deep) = app.get_json("/health/deep").await;
    assert_eq!(deep["alerts"]["open"], 1, "{deep}");
    assert_eq!(deep["alerts"]["critical"], 0);
    assert_eq!(deep["alerts"]["byKind"]["fallback_queue_high"], 1);
}

#[tokio::test]
async fn operators_land_on_the_alerts_page_after_signing_in_and_the_page_lists_the_alert() {
    let (app, _, _) = with_an_alert().await;
    app.add_user("landing@test.salvage", Role::Operator).await;
    let client = app.client();
    let (status, next) = client
        .call("auth/sign-in", json!({"email": "landing@test.salvage", "password": crate::helpers::PASSWORD, "next": ""}))
        .await;
    assert_eq!((status, next.as_str()), (200, Some("/admin/alerts")));
    let (status, html) = client.get_html("/admin/alerts").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("The requests queue holds 1,500 rows"),
        "the alert is on the page"
    );
    app.add_user("manager-landing@test.salvage", Role::Manager)
        .await;
    let (_, next) = app
        .client()
        .call("auth/sign-in", json!({"email": "manager-landing@test.salvage", "password": crate::helpers::PASSWORD, "next": ""}))
        .await;
    assert_eq!(next, "/admin/drills", "managers land on the drills");
}

#[tokio::test]
async fn the_cli_lists_acknowledges_resolves_and_silences_with_the_same_functions() {
    let (app, id, _) = with_an_alert().await;
    let list = crate::cli::salvage_on(&app, &["alerts", "list"], "");
    let text = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        text.contains("fallback_queue_high") && text.contains("1,500 rows"),
        "{text}"
    );
    assert_eq!(list.status.code(), Some(0), "no critical alert open");

    let ack = crate::cli::salvage_on(
        &app,
        &[
            "alerts",
            "ack",
            "--id",
            &id.to_string(),
            "--note",
            "from the terminal",
            "--until",
            "2h",
        ],
        "",
    );
    assert!(
        ack.status.success(),
        "{}",
        String::from_utf8_lossy(&ack.stderr)
    );
    let (status, by): (String, String) =
        sqlx::query_as("select status, acknowledged_by from internal_alerts where id = $1")
            .bind(id)
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(status, "acknowledged");
    assert!(by.starts_with("cli:"), "{by}");

    let refused = crate::cli::salvage_on(
        &app,
        &[
            "alerts",
            "silence",
            "--kind",
            "fallback_queue_high",
            "--until",
            "2020-01-01",
            "--reason",
            "x",
        ],
        "",
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("ends_at"),
        "names the field"
    );
    let silenced = crate::cli::salvage_on(
        &app,
        &[
            "alerts",
            "silence",
            "--kind",
            "fallback_queue_high",
            "--key",
            "requests",
            "--until",
            "1h",
            "--reason",
            "maintenance",
        ],
        "",
    );
    assert!(
        silenced.status.success(),
        "{}",
        String::from_utf8_lossy(&silenced.stderr)
    );
    assert_eq!(app.count("alert_silences").await, 1);

    // Clear at the last evaluation: a person may resolve it before the self-monitor does.
    super::empty_queue(&app, "requests").await;
    evaluate(&app).await;
    let resolve = crate::cli::salvage_on(
        &app,
        &[
            "alerts",
            "resolve",
            "--id",
            &id.to_string(),
            "--note",
            "drained",
        ],
        "",
    );
    assert!(
        resolve.status.success(),
        "{}",
        String::from_utf8_lossy(&resolve.stderr)
    );
    assert_eq!(
        alerts_of(&app, "fallback_queue_high").await[0].3,
        "resolved"
    );
}
