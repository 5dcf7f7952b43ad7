//! The ingest door: keys revoked everywhere within seconds, floods refused before they
//! cost anything, each organisation's rows its own, and a queue with a ceiling.

use std::time::{Duration, Instant};

use app::auth::ssr::Actor;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Options, TestApp};

async fn new_key(app: &TestApp) -> (i64, String) {
    app::queues::ssr::keys::create(&app.pg, &Actor::cli(), "security test")
        .await
        .expect("create an ingest key")
}

fn one_event() -> Value {
    json!([{"id": uuid::Uuid::new_v4(), "ts": "2026-11-28T10:00:00Z", "trace_id": "t",
            "span_id": "s", "event_type": "trace", "name": "probe"}])
}

async fn send_event(app: &TestApp, key: &str) -> u16 {
    app.http
        .post(format!("{}/ingest/events", app.address))
        .bearer_auth(key)
        .json(&one_event())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_revoked_key_is_refused_within_five_seconds_on_another_instance() {
    let first = spawn_app().await;
    let second = spawn_app_with(Options {
        database_url: Some(first.database_url.clone()),
        ..Options::default()
    })
    .await;
    let (id, key) = new_key(&first).await;
    assert_eq!(send_event(&first, &key).await, 200);
    assert_eq!(
        send_event(&second, &key).await,
        200,
        "now cached on the second"
    );

    app::queues::ssr::keys::revoke(&first.pg, &first.state.ingest_keys, &Actor::cli(), id, None)
        .await
        .unwrap();
    let revoked = Instant::now();

    assert_eq!(
        send_event(&first, &key).await,
        401,
        "at once where it was revoked"
    );
    loop {
        let status = send_event(&second, &key).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked.elapsed() < Duration::from_secs(5),
            "still accepted {:?} after the revocation",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Opens a connection and sends the head of an ingest upload announcing `length` bytes,
/// with `authorization` if given; returns the stream, body unsent.
async fn upload_head(
    app: &TestApp,
    authorization: Option<&str>,
    length: usize,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let auth = authorization
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /ingest/requests HTTP/1.1\r\nHost: {address}\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// The status line of the response on `stream`, if one arrives within `within`.
async fn status_line(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0u8; 512];
    let read = tokio::time::timeout(within, stream.read(&mut buffer))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buffer[..read]).to_string();
    text.lines().next().map(str::to_owned)
}

#[tokio::test]
async fn a_bad_key_with_a_body_that_never_arrives_is_refused_at_once() {
    let app = spawn_app().await;
    for authorization in [None, Some("Bearer sgk_0000000000000000000000000000000000")] {
        let mut stream = upload_head(&app, authorization, 4 * 1024 * 1024).await;
        let started = Instant::now();

        let line = status_line(&mut stream, Duration::from_secs(3)).await;

        assert_eq!(
            line.as_deref(),
            Some("HTTP/1.1 401 Unauthorized"),
            "{authorization:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn an_array_of_millions_of_values_is_refused_at_the_row_cap() {
    let app = spawn_app().await;
    let (_, key) = new_key(&app).await;
    // ~4 million zeros in under 8 MiB: refused after the 5,001st, never parsed whole.
    let mut body = String::with_capacity(8 * 1024 * 1024);
    body.push('[');
    for n in 0..4_000_000 {
        if n > 0 {
            body.push(',');
        }
        body.push('0');
    }
    body.push(']');
    let response = app
        .http
        .post(format!("{}/ingest/requests", app.address))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["message"].as_str().unwrap().contains("5000"),
        "{answer}"
    );
    assert_eq!(app.count("requests_fallback").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_and_keyed_callers_get_through_a_flood_of_slow_uploads_and_health_checks() {
    let app = spawn_app().await;
    let (_, key) = new_key(&app).await;
    let operator = app.signed_in(app::auth::Role::Operator).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut flood = tokio::task::JoinSet::new();
    // 500 anonymous uploads that trickle a byte at a time.
    for _ in 0..500 {
        let mut stream = upload_head(&app, None, 1024 * 1024).await;
        let stop = stop.clone();
        flood.spawn(async move {
            use tokio::io::AsyncWriteExt;
            while !stop.is_cancelled() {
                if stream.write_all(b" ").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    // 200 callers asking /health/deep as fast as they can.
    for _ in 0..200 {
        let (client, stop) = (app.anonymous.clone(), stop.clone());
        flood.spawn(async move {
            while !stop.is_cancelled() {
                let _ = client
                    .http
                    .get(format!("{}/health/deep", client.address))
                    .send()
                    .await;
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    for round in 0..3 {
        let page = operator.get("/admin/queues").await;
        assert_eq!(page.status(), 200, "round {round}: the operator's page");
        assert_eq!(
            send_event(&app, &key).await,
            200,
            "round {round}: a keyed ingest"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.cancel();
    while flood.join_next().await.is_some() {}
}
