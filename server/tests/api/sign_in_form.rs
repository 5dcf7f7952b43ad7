//! The sign-in page as a plain HTML form: served without the client, posted as a browser
//! posts a form (asking for HTML), answered with redirects.

use app::auth::Role;

use crate::helpers::{spawn_app, Client, PASSWORD};

/// What a browser sends when the sign-in form is submitted.
async fn post_form(client: &Client, fields: &[(&str, &str)]) -> reqwest::Response {
    client
        .http
        .post(format!("{}/api/auth/sign-in", client.address))
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .form(fields)
        .send()
        .await
        .expect("the app answers")
}

/// The `Location` of a redirect (the plain forms' tests use it too).
pub(crate) fn location(response: &reqwest::Response) -> &str {
    response
        .headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .expect("an ASCII Location")
}

fn sets_a_session(response: &reqwest::Response) -> bool {
    crate::auth::session_set_by(response).is_some()
}

#[tokio::test]
async fn the_sign_in_page_is_a_plain_form_that_loads_no_client() {
    let app = spawn_app().await;

    let (status, html) = app.get_html("/admin/login?next=/admin/history").await;

    assert_eq!(status, 200);
    assert!(
        html.contains(r#"<form method="post" action="/api/auth/sign-in""#),
        "{html}"
    );
    assert!(
        html.contains(r#"name="next" value="/admin/history""#),
        "{html}"
    );
    for client_part in ["salvage.wasm", "/pkg/salvage.js", "type=\"module\""] {
        assert!(!html.contains(client_part), "{client_part} in {html}");
    }
    assert!(
        !html.contains("role=\"alert\""),
        "no refusal, no error: {html}"
    );
    // Every other page still loads the client: the first-admin page, anonymous too.
    let (_, setup) = app.get_html("/admin/setup?token=x").await;
    assert!(setup.contains("/pkg/salvage.js"), "{setup}");
}

#[tokio::test]
async fn a_form_sign_in_goes_to_the_page_asked_for_with_a_session() {
    let app = spawn_app().await;
    app.add_user("ops@example.com", Role::Operator).await;
    let client = app.client();

    let response = post_form(
        &client,
        &[
            ("email", "ops@example.com"),
            ("password", PASSWORD),
            ("next", "/admin/history?kind=backup"),
        ],
    )
    .await;

    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/admin/history?kind=backup");
    assert!(sets_a_session(&response));
    let (status, me) = client.call("auth/me", serde_json::json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(me["email"], "ops@example.com");
    assert_eq!(app.count("sessions").await, 1);

    // No page asked for: the role's home; a page elsewhere is not followed.
    for (next, home) in [("", "/admin/alerts"), ("https://evil.example/", "/admin")] {
        let response = post_form(
            &app.client(),
            &[
                ("email", "ops@example.com"),
                ("password", PASSWORD),
                ("next", next),
            ],
        )
        .await;
        assert_eq!(response.status(), 303, "{next}");
        assert_eq!(location(&response), home, "{next}");
    }
}

#[tokio::test]
async fn a_refused_form_sign_in_comes_back_to_the_form_with_its_reason_and_no_session() {
    let app = spawn_app().await;
    app.add_user("ops@example.com", Role::Operator).await;
    let client = app.client();

    for (password, refusal, words) in [
        (
            "not the password at all",
            "refused=credentials",
            "That email and password do not match an active account.",
        ),
        (
            "",
            "refused=missing&field=password",
            "password: enter your password",
        ),
    ] {
        let response = post_form(
            &client,
            &[
                ("email", "ops@example.com"),
                ("password", password),
                ("next", "/admin/queues"),
            ],
        )
        .await;

        assert_eq!(response.status(), 303, "{refusal}");
        let back = location(&response);
        assert_eq!(back, format!("/admin/login?next=/admin/queues&{refusal}"));
        assert!(!sets_a_session(&response), "{refusal}");

        let (status, html) = client.get_html(back).await;
        assert_eq!(status, 200);
        assert!(
            html.contains(&format!(
                r#"role="alert" class="banner banner-error">{words}</div>"#
            )),
            "{words} in {html}"
        );
        assert!(
            html.contains(r#"name="next" value="/admin/queues""#),
            "{html}"
        );
    }
    assert_eq!(app.count("sessions").await, 0);
    let (status, _) = client.call("auth/me", serde_json::json!({})).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_form_posted_from_another_site_signs_nobody_in() {
    let app = spawn_app().await;
    app.add_user("ops@example.com", Role::Operator).await;
    let elsewhere = Client::with_origin(&app.address, "https://evil.example");

    let response = post_form(
        &elsewhere,
        &[
            ("email", "ops@example.com"),
            ("password", PASSWORD),
            ("next", "/admin"),
        ],
    )
    .await;

    assert_eq!(response.status(), 303);
    assert_eq!(
        location(&response),
        "/admin/login?next=/admin&refused=other"
    );
    assert!(!sets_a_session(&response));
    assert_eq!(app.count("sessions").await, 0);
    let (_, html) = elsewhere.get_html(location(&response)).await;
    assert!(html.contains("The sign-in did not go through."), "{html}");
}

#[tokio::test]
async fn a_crafted_link_puts_no_words_of_its_own_on_the_sign_in_page() {
    let app = spawn_app().await;

    let (status, html) = app
        .get_html("/admin/login?refused=Your%20password%20expired%2C%20call%20555-0100")
        .await;

    assert_eq!(status, 200);
    assert!(!html.contains("555-0100"), "{html}");
    assert!(!html.contains("role=\"alert\""), "{html}");
}
