//! The plain-form layer (post, redirect, get) keeps a function's answer in the session
//! only for a signed-in person on a page served without the client, and never an answer
//! that holds a secret shown once. A stranger's posts make no session rows.

use app::auth::Role;

use crate::alerts::plain_page::post_form;
use crate::helpers::{spawn_app, Client, TestApp};

/// The bytes of every session row, joined: what a backup of `sessions` would carry.
async fn session_bytes(app: &TestApp) -> Vec<u8> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar("select data from sessions")
        .fetch_all(&app.pg)
        .await
        .unwrap();
    rows.concat()
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test]
async fn a_thousand_posts_from_a_stranger_leave_the_sessions_table_as_it_was() {
    let app = spawn_app().await;
    app.signed_in(Role::Operator).await;
    let before = app.count("sessions").await;
    assert_eq!(before, 1);
    // No cookie jar: every post is a new stranger. A foreign origin, arguments the
    // function cannot read, and a path that is no function at all.
    let stranger = Client::with_origin(&app.address, "https://elsewhere.example");
    let from_the_console = Client::new(&app.address);
    let posts = [
        (
            &stranger,
            "alerts/note",
            vec![("alert_id", "1"), ("note", "hello")],
        ),
        (
            &from_the_console,
            "alerts/note",
            vec![("alert_id", "not a number")],
        ),
        (&from_the_console, "no/such-function", vec![("x", "1")]),
    ];

    for n in 0..1000 {
        let (client, endpoint, fields) = &posts[n % posts.len()];
        let response = post_form(client, "/admin/alerts", endpoint, fields).await;
        assert!(
            response.headers().get("set-cookie").is_none(),
            "post {n} to {endpoint} was given a cookie"
        );
    }

    assert_eq!(app.count("sessions").await, before);
}

#[tokio::test]
async fn a_secret_shown_once_is_never_kept_in_a_session_whichever_page_posts_it() {
    let app = spawn_app().await;
    let admin = app.signed_in(Role::Admin).await;

    for page in ["/admin/alerts", "/admin/settings/ingest-keys"] {
        let response = post_form(
            &admin,
            page,
            "settings/ingest-keys/create",
            &[("name", "made by a plain form"), ("organization", "*")],
        )
        .await;
        assert_eq!(response.status(), 303, "back to {page}");
    }

    // Both keys were made (the action is the function's), and neither secret is in a
    // session row; the key prefix every ingest secret starts with is not there either.
    let keys: i64 = sqlx::query_scalar("select count(*) from ingest_keys where name = $1")
        .bind("made by a plain form")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(keys, 2);
    let stored = session_bytes(&app).await;
    assert!(!holds(&stored, "shownOnce"), "a secret was kept");
    assert!(!holds(&stored, "form_outcome"), "an answer was kept");
}

#[tokio::test]
async fn a_post_from_a_page_the_client_hydrates_keeps_no_outcome() {
    let (app, id, version) = crate::alerts::with_an_alert().await;
    let operator = app.signed_in(Role::Operator).await;
    let selection = format!("{id}@{version}");

    let response = post_form(
        &operator,
        "/admin/queues",
        "alerts/acknowledge",
        &[
            ("selection", selection.as_str()),
            ("note", "posted before the client took over"),
            ("until", ""),
        ],
    )
    .await;

    assert_eq!(response.status(), 303);
    assert_eq!(crate::sign_in_form::location(&response), "/admin/queues");
    assert!(!holds(&session_bytes(&app).await, "form_outcome"));
    // The same post from the plain alerts page keeps its outcome, to be shown once.
    let response = post_form(
        &operator,
        "/admin/alerts",
        "alerts/note",
        &[
            ("alert_id", id.to_string().as_str()),
            ("note", "from the plain page"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert!(holds(&session_bytes(&app).await, "form_outcome"));
}
