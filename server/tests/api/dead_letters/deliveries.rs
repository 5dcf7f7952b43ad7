//! Sending: the retry schedule, the four reasons for a dead letter, `Retry-After`,
//! signatures, two workers, a worker killed mid-send, endpoints that do not wait for each
//! other, and the circuit breaker.

use std::collections::HashSet;
use std::time::Duration;

use super::receiver::{verify, Behaviour, Receiver};
use super::{deliver, events, reasons, statuses, to_next_attempt, webhook};
use crate::helpers::{spawn_app, spawn_app_tweaked};

#[tokio::test]
async fn failed_attempts_follow_the_schedule_within_the_jitter_then_dead_letter_as_exhausted() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.set("down", Behaviour::status(500));
    let (id, secret) = webhook(&app, &receiver.url("down"), 2).await;
    events(&app, 1).await;

    let mut attempted_at = app.state.clock.now();
    assert_eq!(deliver(&app).await.attempted, 1);
    // Retry n waits 30 s × 4^(n-1), ±20 %.
    for (retry, base) in [(1, 30.0), (2, 120.0)] {
        let next = to_next_attempt(&app, id).await;
        let waited = (next - attempted_at).as_seconds_f64();
        assert!(
            waited >= base * 0.8 - 1.0 && waited <= base * 1.2 + 1.0,
            "retry {retry} waited {waited} s, expected {base} s ± 20 %"
        );
        attempted_at = app.state.clock.now();
        assert_eq!(deliver(&app).await.attempted, 1, "retry {retry}");
    }
    // The third attempt was the last (2 retries): dead-lettered, never tried again.
    assert_eq!(reasons(&app, id).await, vec![("exhausted".into(), 1)]);
    app.state.clock.advance(time::Duration::days(1));
    assert_eq!(deliver(&app).await.attempted, 0);

    let hits = receiver.hits("down");
    assert_eq!(hits.len(), 3);
    let ids: HashSet<&str> = hits.iter().map(|h| h.webhook_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "every retry carries the same webhook-id");
    assert!(hits.iter().all(|h| verify(&secret, h)), "each is signed");
    let mut tampered = hits[0].clone();
    tampered.body = b"{}".to_vec();
    assert!(
        !verify(&secret, &tampered),
        "a changed body fails the check"
    );
    let attempts: Vec<(i32, Option<i32>, Option<String>)> = sqlx::query_as(
        "select a.attempt, a.status_code, a.response_snippet from webhook_attempts a
           join webhook_deliveries d on d.id = a.delivery_id where d.webhook_id = $1 order by a.id",
    )
    .bind(id)
    .fetch_all(&app.pg)
    .await
    .unwrap();
    assert_eq!(
        attempts,
        (1..=3)
            .map(|n| (n, Some(500), Some("answer 500".to_owned())))
            .collect::<Vec<_>>(),
        "every attempt is kept with its status and the start of the answer"
    );
}

#[tokio::test]
async fn a_410_or_another_4xx_stops_at_once_as_rejected_while_408_and_429_are_retried() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let mut cases = Vec::new();
    for (path, status) in [("gone", 410), ("bad", 400), ("slow", 408), ("busy", 429)] {
        receiver.set(path, Behaviour::status(status));
        cases.push((path, status, webhook(&app, &receiver.url(path), 5).await.0));
    }
    events(&app, 1).await;
    deliver(&app).await;
    for (path, status, id) in cases {
        let expected = if matches!(status, 408 | 429) {
            vec![("pending".to_owned(), 1)]
        } else {
            vec![("dead".to_owned(), 1)]
        };
        assert_eq!(statuses(&app, id).await, expected, "{path}");
        if status == 410 || status == 400 {
            let (reason, last_status): (String, i32) = sqlx::query_as(
                "select dlq_reason, last_status from webhook_deliveries where webhook_id = $1",
            )
            .bind(id)
            .fetch_one(&app.pg)
            .await
            .unwrap();
            assert_eq!(
                (reason.as_str(), last_status),
                ("rejected", i32::from(status))
            );
        }
        assert_eq!(receiver.hits(path).len(), 1, "{path}");
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.set(
        "later",
        Behaviour {
            retry_after: Some(900),
            ..Behaviour::status(503)
        },
    );
    let (id, _) = webhook(&app, &receiver.url("later"), 5).await;
    events(&app, 1).await;
    let before = app.state.clock.now();
    deliver(&app).await;
    let next = to_next_attempt(&app, id).await;
    let waited = (next - before).as_seconds_f64();
    assert!(
        (900.0..905.0).contains(&waited),
        "waited {waited} s for Retry-After: 900"
    );
}

#[tokio::test]
async fn a_deleted_webhooks_pending_deliveries_and_a_removed_payload_are_dead_lettered_with_their_reason(
) {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (deleted, _) = webhook(&app, &receiver.url("deleted"), 5).await;
    let (kept, _) = webhook(&app, &receiver.url("kept"), 5).await;
    let ids = events(&app, 3).await;

    let dead = app::dead_letters::ssr::endpoints::delete(
        &app.pg,
        &app::auth::ssr::Actor::cli(),
        deleted,
        &crate::helpers::reason("customer left"),
        app.state.clock.now(),
    )
    .await
    .unwrap();
    assert_eq!(dead, 3);
    assert_eq!(
        reasons(&app, deleted).await,
        vec![("webhook_deleted".into(), 3)]
    );

    // Retention removed one event's payload before it was sent.
    sqlx::query("update webhook_events set payload = null where id = $1")
        .bind(ids[0])
        .execute(&app.pg)
        .await
        .unwrap();
    deliver(&app).await;
    assert_eq!(
        reasons(&app, kept).await,
        vec![("payload_missing".into(), 1)]
    );
    assert_eq!(
        receiver.hits("kept").len(),
        2,
        "the two with a payload were sent"
    );
    assert!(receiver.hits("deleted").is_empty());
}

#[tokio::test]
async fn a_private_address_is_refused_at_send_time_when_private_addresses_are_not_allowed() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (id, _) = webhook(&app, &receiver.url("inside"), 0).await;
    events(&app, 1).await;
    let mut strict = app.state.clone();
    strict
        .part_mut::<app::dead_letters::ssr::WebhookSettings>()
        .allow_private = false;
    app::dead_letters::ssr::deliver::work(&strict, Duration::from_secs(10), true, None)
        .await
        .unwrap();
    assert!(receiver.hits("inside").is_empty(), "nothing reached it");
    let error: String =
        sqlx::query_scalar("select last_error from webhook_deliveries where webhook_id = $1")
            .bind(id)
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert!(error.contains("loopback"), "{error}");
}

#[tokio::test]
async fn two_workers_at_once_deliver_each_message_exactly_once() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (id, secret) = webhook(&app, &receiver.url("twice"), 5).await;
    sqlx::query("update webhooks set max_in_flight = 16 where id = $1")
        .bind(id)
        .execute(&app.pg)
        .await
        .unwrap();
    events(&app, 200).await;
    // Both keep claiming for 3 s, racing for the same rows and the same 16 slots.
    let busy =
        || app::dead_letters::ssr::deliver::work(&app.state, Duration::from_secs(3), false, None);
    let (a, b) = tokio::join!(busy(), busy());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.attempted + b.attempted, 200, "{a:?} {b:?}");
    assert_eq!(a.delivered + b.delivered, 200);
    let counts = receiver.delivered_by_id("twice");
    assert_eq!(counts.len(), 200);
    assert!(counts.values().all(|&n| n == 1), "one request per message");
    assert!(receiver.hits("twice").iter().all(|h| verify(&secret, h)));
    assert_eq!(statuses(&app, id).await, vec![("delivered".into(), 200)]);
    assert_eq!(app.count("webhook_attempts").await, 200);
}

#[tokio::test]
async fn a_worker_killed_mid_send_leaves_the_delivery_to_be_sent_again_with_the_same_id() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.set(
        "hang",
        Behaviour {
            delay: Duration::from_secs(30),
            ..Behaviour::status(200)
        },
    );
    let (id, _) = webhook(&app, &receiver.url("hang"), 5).await;
    events(&app, 1).await;

    let state = app.state.clone();
    let worker = tokio::spawn(async move {
        app::dead_letters::ssr::deliver::work(&state, Duration::from_secs(60), true, None).await
    });
    let arrived = crate::helpers::eventually(Duration::from_secs(10), || async {
        receiver.hits("hang").len() == 1
    })
    .await;
    assert!(arrived);
    worker.abort();
    let _ = worker.await;

    // Its lease holds: nobody else sends it meanwhile.
    receiver.set("hang", Behaviour::status(200));
    deliver(&app).await;
    assert_eq!(receiver.hits("hang").len(), 1);
    assert_eq!(statuses(&app, id).await, vec![("pending".into(), 1)]);

    // Once the lease has run out, the next worker sends it again, with the same id.
    app.state.clock.advance(time::Duration::seconds(41));
    assert_eq!(deliver(&app).await.delivered, 1);
    let hits = receiver.hits("hang");
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].webhook_id, hits[1].webhook_id);
    assert_eq!(statuses(&app, id).await, vec![("delivered".into(), 1)]);
}

#[tokio::test]
async fn an_endpoint_that_hangs_never_holds_up_another_endpoints_deliveries() {
    let app = spawn_app_tweaked(|settings| {
        settings.webhooks.timeout = Duration::from_secs(3);
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.set(
        "stuck",
        Behaviour {
            delay: Duration::from_secs(20),
            ..Behaviour::status(200)
        },
    );
    let (stuck, _) = webhook(&app, &receiver.url("stuck"), 5).await;
    let (fine, _) = webhook(&app, &receiver.url("fine"), 5).await;
    events(&app, 40).await;

    let state = app.state.clone();
    let worker = tokio::spawn(async move {
        app::dead_letters::ssr::deliver::work(&state, Duration::from_secs(60), true, None).await
    });
    // Within the stuck endpoint's first timeout, every delivery to the other is done.
    let all_fine = crate::helpers::eventually(Duration::from_millis(2500), || async {
        statuses(&app, fine).await == vec![("delivered".to_owned(), 40)]
    })
    .await;
    assert!(all_fine, "fine: {:?}", statuses(&app, fine).await);
    assert!(
        receiver.hits("stuck").len() <= 4,
        "the stuck endpoint holds at most its 4 in flight"
    );
    assert_eq!(receiver.delivered_by_id("fine").len(), 40);
    worker.await.unwrap().unwrap();
    assert_eq!(statuses(&app, stuck).await, vec![("pending".into(), 40)]);
}

#[tokio::test]
async fn a_failing_endpoint_is_paused_then_probed_one_delivery_at_a_time_and_resumes_when_a_probe_succeeds(
) {
    let app = spawn_app_tweaked(|settings| {
        settings.webhooks.breaker_failures = 3;
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.set("flaky", Behaviour::status(500));
    let (id, _) = webhook(&app, &receiver.url("flaky"), 10).await;
    events(&app, 10).await;

    deliver(&app).await;
    let paused: Option<time::OffsetDateTime> =
        sqlx::query_scalar("select paused_at from webhooks where id = $1")
            .bind(id)
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert!(paused.is_some(), "3 failures in a row open the circuit");
    let before = receiver.hits("flaky").len();
    assert!(before < 10, "the circuit stopped the sends: {before}");

    // Paused: nothing is sent until the probe is due, then exactly one.
    app.state.clock.advance(time::Duration::seconds(30));
    deliver(&app).await;
    assert_eq!(
        receiver.hits("flaky").len(),
        before,
        "nothing before the probe is due"
    );
    app.state.clock.advance(time::Duration::seconds(31));
    let report = deliver(&app).await;
    assert_eq!((report.attempted, report.probes), (1, 1), "one probe");
    assert_eq!(
        statuses(&app, id).await,
        vec![("pending".into(), 10)],
        "nothing was dead-lettered while paused"
    );

    // The endpoint is back: the next probe succeeds, the circuit closes, and everything
    // due goes out.
    receiver.set("flaky", Behaviour::status(200));
    app.state.clock.advance(time::Duration::seconds(61));
    deliver(&app).await;
    let state: (Option<time::OffsetDateTime>, i32) =
        sqlx::query_as("select paused_at, consecutive_failures from webhooks where id = $1")
            .bind(id)
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(state, (None, 0));
    app.state.clock.advance(time::Duration::hours(1));
    deliver(&app).await;
    assert_eq!(statuses(&app, id).await, vec![("delivered".into(), 10)]);
    assert_eq!(receiver.delivered_by_id("flaky").len(), 10);
}

/// The key ring of `raw` (`id:base64,…`) in place of the app's.
fn ring(raw: &str) -> app::server::sealed::KeyRing {
    app::server::sealed::KeyRing::parse(raw).unwrap()
}

#[tokio::test]
async fn a_signing_secret_is_stored_sealed_and_deliveries_are_signed_with_it_after_a_rotation() {
    let mut app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (old, new) = (
        "old:".to_owned() + &"A".repeat(43) + "=",
        "new:".to_owned() + &"B".repeat(42) + "A=",
    );
    app.state
        .part_mut::<app::dead_letters::ssr::WebhookSettings>()
        .secret_keys = ring(&old);
    let (id, secret) = webhook(&app, &receiver.url("a"), 5).await;

    let stored: String = sqlx::query_scalar("select secret from webhooks where id = $1")
        .bind(id)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert!(stored.starts_with("sealed:v1:old:"), "{stored}");
    assert!(
        !stored.contains(secret.trim_start_matches("whsec_")),
        "{stored}"
    );

    // A webhook stored before sealing, in plain text, beside it.
    let plain = app::dead_letters::ssr::send::new_secret();
    let (legacy, _) = webhook(&app, &receiver.url("b"), 5).await;
    sqlx::query("update webhooks set secret = $2 where id = $1")
        .bind(legacy)
        .bind(&plain)
        .execute(&app.pg)
        .await
        .unwrap();

    // Rotation: the new key first, the old still held; start-up's reseal runs.
    app.state
        .part_mut::<app::dead_letters::ssr::WebhookSettings>()
        .secret_keys = ring(&format!("{new},{old}"));
    let actor = app::auth::ssr::Actor::system("test");
    let resealed = app::dead_letters::ssr::endpoints::reseal(
        &app.pg,
        &app.state.webhooks().secret_keys,
        &actor,
    )
    .await
    .unwrap();
    assert_eq!(resealed, 2);
    let stored: Vec<String> = sqlx::query_scalar("select secret from webhooks order by id")
        .fetch_all(&app.pg)
        .await
        .unwrap();
    assert!(
        stored.iter().all(|s| s.starts_with("sealed:v1:new:")),
        "{stored:?}"
    );
    // The old key can go now.
    app.state
        .part_mut::<app::dead_letters::ssr::WebhookSettings>()
        .secret_keys = ring(&new);
    events(&app, 1).await;
    deliver(&app).await;

    let (a, b) = (receiver.hits("a"), receiver.hits("b"));
    assert_eq!((a.len(), b.len()), (1, 1));
    assert!(
        verify(&secret, &a[0]),
        "signed with the secret the admin was shown"
    );
    assert!(
        verify(&plain, &b[0]),
        "the plain secret, sealed, still signs the same"
    );

    // Without the key that sealed them, nothing is sent unsigned: deliveries wait.
    app.state
        .part_mut::<app::dead_letters::ssr::WebhookSettings>()
        .secret_keys = ring(&old);
    events(&app, 1).await;
    deliver(&app).await;
    assert_eq!(
        receiver.hits("a").len(),
        1,
        "nothing sent without its secret"
    );
    assert_eq!(
        statuses(&app, id).await,
        vec![("delivered".into(), 1), ("pending".into(), 1)]
    );
}
