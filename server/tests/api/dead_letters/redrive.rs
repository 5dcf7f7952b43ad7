//! Redrive (by filter, exactly once each; cancel between batches; "re-enable and
//! recover"), purge (typed count, the freeze) and retention.

use std::collections::HashSet;
use std::time::Duration;

use app::auth::ssr::Actor;
use app::dead_letters::ssr::filter::DlqFilter;
use app::dead_letters::ssr::{dlq, redrive};

use super::receiver::{Behaviour, Receiver};
use super::{deliver, events, reasons, statuses, webhook};
use crate::helpers::{spawn_app, spawn_app_tweaked, TestApp};

/// Two endpoints, each with `n` dead letters: `a` exhausted (500), `b` rejected (410).
pub async fn two_kinds_of_dead_letters(app: &TestApp, receiver: &Receiver, n: usize) -> (i64, i64) {
    receiver.set("a", Behaviour::status(500));
    receiver.set("b", Behaviour::status(410));
    let (a, _) = webhook(app, &receiver.url("a"), 0).await;
    let (b, _) = webhook(app, &receiver.url("b"), 0).await;
    sqlx::query("update webhooks set max_in_flight = 32")
        .execute(&app.pg)
        .await
        .unwrap();
    events(app, n).await;
    deliver(app).await;
    assert_eq!(reasons(app, a).await, vec![("exhausted".into(), n as i64)]);
    assert_eq!(reasons(app, b).await, vec![("rejected".into(), n as i64)]);
    (a, b)
}

/// Settings where no circuit opens (these tests look at redrive alone).
pub fn no_breaker(settings: &mut salvage::config::Settings) {
    settings.webhooks.breaker_failures = 10_000;
}

#[tokio::test]
async fn a_redrive_by_filter_sends_exactly_the_filtered_dead_letters_once_each() {
    let app = spawn_app_tweaked(no_breaker).await;
    let receiver = Receiver::start().await;
    let (a, b) = two_kinds_of_dead_letters(&app, &receiver, 30).await;
    let first_ids: HashSet<String> = receiver
        .hits("a")
        .into_iter()
        .map(|h| h.webhook_id)
        .collect();

    let filter = DlqFilter::parse(&format!("webhook={a}&reason=exhausted")).unwrap();
    let dry = dlq::dry_run(&app.pg, &filter).await.unwrap();
    assert_eq!(dry.count, 30);
    assert_eq!(dry.sample.len(), 5);

    receiver.set("a", Behaviour::status(200));
    let done = redrive::run(&app.state, &filter, cli("endpoint fixed"), None)
        .await
        .unwrap();
    assert_eq!(
        (done.status, done.total, done.done),
        (app::dead_letters::RedriveStatus::Finished, 30, 30)
    );
    deliver(&app).await;

    let delivered = receiver.delivered_by_id("a");
    assert_eq!(delivered.len(), 30, "each filtered letter was delivered");
    assert!(delivered.values().all(|&n| n == 1), "once each");
    let redriven: HashSet<String> = delivered.into_keys().collect();
    assert_eq!(
        redriven, first_ids,
        "with the webhook-id of its first attempt"
    );
    assert_eq!(statuses(&app, a).await, vec![("delivered".into(), 30)]);
    assert_eq!(
        receiver.hits("b").len(),
        30,
        "the other endpoint was not sent again"
    );
    assert_eq!(reasons(&app, b).await, vec![("rejected".into(), 30)]);

    // The same filter again matches nothing: nothing is sent twice.
    let again = redrive::run(&app.state, &filter, cli("again"), None).await;
    assert!(matches!(again, Err(app::error::AppError::Conflict { .. })));
    let entry: (String, serde_json::Value) = sqlx::query_as(
        "select title, details from runbook_history where kind = 'redrive' order by id desc limit 1",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert!(entry.0.contains("30 of 30"), "{}", entry.0);
    assert_eq!(entry.1["filter"], format!("webhook={a}&reason=exhausted"));
}

#[tokio::test]
async fn cancel_stops_a_redrive_between_batches_and_leaves_the_rest_dead() {
    let app = spawn_app_tweaked(|settings| {
        no_breaker(settings);
        settings.webhooks.redrive_batch = 5;
        settings.webhooks.redrive_rate = 5;
    })
    .await;
    let receiver = Receiver::start().await;
    let (a, _) = two_kinds_of_dead_letters(&app, &receiver, 20).await;
    let filter = DlqFilter::parse(&format!("webhook={a}")).unwrap();
    let id = redrive::start(
        &app.state,
        &Actor::cli(),
        &filter,
        &crate::helpers::reason("try a few"),
        Default::default(),
    )
    .await
    .unwrap();
    let state = app.state.clone();
    let started = crate::helpers::eventually(Duration::from_secs(5), || async {
        redrive::load(&state, id).await.unwrap().done >= 5
    })
    .await;
    assert!(started);
    // Cancel as the page's button does: the runner's one cancel, on the redrive's run.
    let run_id = redrive::load(&state, id)
        .await
        .unwrap()
        .run_id
        .expect("a run");
    app::jobs::ssr::cancel(&state, run_id, &Actor::cli())
        .await
        .unwrap();
    let stopped = crate::helpers::eventually(Duration::from_secs(5), || async {
        !redrive::load(&state, id).await.unwrap().running()
    })
    .await;
    assert!(stopped);
    let run = redrive::load(&state, id).await.unwrap();
    assert_eq!(run.status, app::dead_letters::RedriveStatus::Cancelled);
    let outcome: String = sqlx::query_scalar("select outcome from cron_job_runs where id = $1")
        .bind(run_id)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(outcome, "cancelled", "its run says so too");
    assert!(run.done < 20, "stopped early: {}", run.done);
    assert_eq!(run.done % 5, 0, "between batches");
    assert_eq!(
        statuses(&app, a).await,
        vec![("dead".into(), 20 - run.done), ("pending".into(), run.done)]
    );
}

#[tokio::test]
async fn a_redrive_waits_while_the_endpoints_circuit_is_open_and_goes_on_once_a_probe_succeeds() {
    let app = spawn_app_tweaked(|settings| {
        settings.webhooks.breaker_failures = 2;
    })
    .await;
    let receiver = Receiver::start().await;
    let (a, _) = two_kinds_of_dead_letters(&app, &receiver, 5).await;
    let filter = DlqFilter::parse(&format!("webhook={a}")).unwrap();
    let id = redrive::start(
        &app.state,
        &Actor::cli(),
        &filter,
        &crate::helpers::reason("endpoint fixed"),
        Default::default(),
    )
    .await
    .unwrap();
    // One letter goes back, for the probe; the rest wait.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(redrive::load(&app.state, id).await.unwrap().done, 1);
    assert!(redrive::load(&app.state, id).await.unwrap().running());

    receiver.set("a", Behaviour::status(200));
    app.state.clock.advance(time::Duration::seconds(61));
    let probe = deliver(&app).await;
    assert_eq!((probe.probes, probe.delivered), (1, 1));
    // (The clock jumped a minute past the run's last heartbeat: until the redrive beats
    // again it looks abandoned, so wait for it to say finished.)
    let state = app.state.clone();
    let finished = crate::helpers::eventually(Duration::from_secs(10), || async {
        redrive::load(&state, id).await.unwrap().status
            == app::dead_letters::RedriveStatus::Finished
    })
    .await;
    assert!(finished);
    assert_eq!(redrive::load(&app.state, id).await.unwrap().done, 5);
    deliver(&app).await;
    assert_eq!(statuses(&app, a).await, vec![("delivered".into(), 5)]);
    assert_eq!(receiver.delivered_by_id("a").len(), 5);
}

#[tokio::test]
async fn re_enable_and_recover_closes_the_circuit_and_redrives_what_died_since_it_started_failing()
{
    let app = spawn_app_tweaked(|settings| {
        settings.webhooks.breaker_failures = 2;
    })
    .await;
    let receiver = Receiver::start().await;
    let (a, _) = two_kinds_of_dead_letters(&app, &receiver, 6).await;
    // An older dead letter, from before this failure began: not part of the recovery.
    sqlx::query(
        "update webhook_deliveries set dlq_at = dlq_at - interval '2 days'
          where id = (select min(id) from webhook_deliveries where webhook_id = $1)",
    )
    .bind(a)
    .execute(&app.pg)
    .await
    .unwrap();
    let paused: bool =
        sqlx::query_scalar("select paused_at is not null from webhooks where id = $1")
            .bind(a)
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert!(paused);

    receiver.set("a", Behaviour::status(200));
    let id = redrive::recover(
        &app.state,
        &Actor::cli(),
        a,
        &crate::helpers::reason("endpoint fixed"),
        Default::default(),
    )
    .await
    .unwrap()
    .expect("a redrive");
    let state = app.state.clone();
    crate::helpers::eventually(Duration::from_secs(5), || async {
        !redrive::load(&state, id).await.unwrap().running()
    })
    .await;
    assert_eq!(redrive::load(&app.state, id).await.unwrap().done, 5);
    deliver(&app).await;
    assert_eq!(
        statuses(&app, a).await,
        vec![("dead".into(), 1), ("delivered".into(), 5)]
    );
    let open: Option<time::OffsetDateTime> =
        sqlx::query_scalar("select paused_at from webhooks where id = $1")
            .bind(a)
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert!(open.is_none());
}

#[tokio::test]
async fn a_purge_takes_the_typed_count_or_nothing_and_waits_for_an_incident_freeze() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (a, b) = two_kinds_of_dead_letters(&app, &receiver, 12).await;
    let filter = DlqFilter::parse(&format!("webhook={a}")).unwrap();
    let actor = Actor::cli();

    let wrong = dlq::purge(
        &app.state,
        &actor,
        &filter,
        "11",
        &crate::helpers::reason("tidy"),
    )
    .await;
    assert!(
        matches!(wrong, Err(app::error::AppError::Conflict { .. })),
        "{wrong:?}"
    );
    assert_eq!(
        reasons(&app, a).await,
        vec![("exhausted".into(), 12)],
        "nothing deleted"
    );

    // During an incident freeze, no purge.
    let mut conn = app.pg.acquire().await.unwrap();
    app::freeze::ssr::open_incident(&mut conn, 1, "incident", "test")
        .await
        .unwrap();
    let frozen = dlq::purge(
        &app.state,
        &actor,
        &filter,
        "12",
        &crate::helpers::reason("tidy"),
    )
    .await;
    assert!(
        matches!(frozen, Err(app::error::AppError::Conflict { .. })),
        "{frozen:?}"
    );
    assert_eq!(reasons(&app, a).await, vec![("exhausted".into(), 12)]);
    app::freeze::ssr::lift_incident(&mut conn).await.unwrap();

    let history = app.count("runbook_history").await;
    let purged = dlq::purge(
        &app.state,
        &actor,
        &filter,
        "12",
        &crate::helpers::reason("tidy"),
    )
    .await
    .unwrap();
    assert_eq!(purged.deleted, 12);
    assert!(reasons(&app, a).await.is_empty());
    assert_eq!(
        reasons(&app, b).await,
        vec![("rejected".into(), 12)],
        "the other endpoint's stay"
    );
    assert_eq!(app.count("runbook_history").await, history + 1);
    let details: serde_json::Value =
        sqlx::query_scalar("select details from runbook_history where id = $1")
            .bind(purged.history_id)
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(
        (details["deleted"].as_i64(), details["filter"].as_str()),
        (Some(12), Some(format!("webhook={a}").as_str()))
    );
}

#[tokio::test]
async fn retention_deletes_only_what_is_past_it_records_it_and_waits_during_a_freeze() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (a, _) = two_kinds_of_dead_letters(&app, &receiver, 3).await;
    sqlx::query(
        "update webhook_deliveries set dlq_at = dlq_at - interval '31 days'
          where id in (select id from webhook_deliveries where webhook_id = $1 order by id limit 2)",
    )
    .bind(a)
    .execute(&app.pg)
    .await
    .unwrap();

    let mut conn = app.pg.acquire().await.unwrap();
    app::freeze::ssr::open_incident(&mut conn, 1, "incident", "test")
        .await
        .unwrap();
    let held = crate::helpers::run_job(&app, "expire-dead-letters").await;
    assert_eq!(held["held"], true, "{held}");
    assert_eq!(
        app.count("webhook_deliveries where dlq_at is not null")
            .await,
        6
    );
    app::freeze::ssr::lift_incident(&mut conn).await.unwrap();

    let answer = crate::helpers::run_job(&app, "expire-dead-letters").await;
    assert_eq!(answer["deadLetters"], 2, "{answer}");
    assert_eq!(
        app.count("webhook_deliveries where dlq_at is not null")
            .await,
        4
    );
    assert_eq!(
        app.count("runbook_history where kind = 'dlq_purge'").await,
        1
    );
}

#[tokio::test]
async fn only_an_admin_turns_a_disabled_webhook_back_on_operators_close_paused_circuits() {
    let app = spawn_app_tweaked(no_breaker).await;
    let receiver = Receiver::start().await;
    let (a, b) = two_kinds_of_dead_letters(&app, &receiver, 2).await;
    // `a` was turned off by an admin; `b`'s circuit was opened by the workers.
    sqlx::query("update webhooks set enabled = false where id = $1")
        .bind(a)
        .execute(&app.pg)
        .await
        .unwrap();
    sqlx::query("update webhooks set paused_at = now(), failing_since = now() where id = $1")
        .bind(b)
        .execute(&app.pg)
        .await
        .unwrap();
    let operator = app.signed_in(app::auth::Role::Operator).await;
    let admin = app.signed_in(app::auth::Role::Admin).await;
    let history = app.count("runbook_history").await;
    let recover = |id: i64| serde_json::json!({"webhook_id": id, "reason": "receiver is back"});

    let (status, body) = operator.call("dlq/recover", recover(a)).await;

    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("only an admin"),
        "{body}"
    );
    let enabled: bool = sqlx::query_scalar("select enabled from webhooks where id = $1")
        .bind(a)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert!(!enabled, "still off");
    assert_eq!(
        statuses(&app, a).await,
        vec![("dead".into(), 2)],
        "nothing redriven"
    );
    assert_eq!(
        app.count("runbook_history").await,
        history,
        "nothing recorded"
    );

    // The operator may close the paused circuit; the admin may turn the webhook on.
    let (status, body) = operator.call("dlq/recover", recover(b)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin.call("dlq/recover", recover(a)).await;
    assert_eq!(status, 200, "{body}");
    let enabled: bool = sqlx::query_scalar("select enabled from webhooks where id = $1")
        .bind(a)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert!(enabled);
}

/// A run started from the terminal, for `reason`.
fn cli(reason: &str) -> app::jobs::ssr::Firing {
    app::jobs::ssr::Firing::by_hand(
        app::jobs::Trigger::Cli,
        Actor::cli(),
        Some(crate::helpers::reason(reason)),
        app::jobs::ssr::Caller::default(),
    )
}
