//! The alerts page served without the client: rendered whole on the server, its forms
//! posted plainly (post, redirect, get), the outcome of a post shown once on the page it
//! came back to, the live refresh loaded instead of the WASM client.

use app::auth::Role;

use super::{events, open_alert, raise_data_expired, with_an_alert};
use crate::helpers::{Client, TestApp};
use crate::sign_in_form::location;

/// What a browser sends when a form of `page` posts to the server function `endpoint`
/// (as a plain form: it asks for HTML).
pub(crate) async fn post_form(
    client: &Client,
    page: &str,
    endpoint: &str,
    fields: &(impl serde::Serialize + ?Sized),
) -> reqwest::Response {
    client
        .http
        .post(format!("{}/api/{endpoint}", client.address))
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .header("referer", format!("{}{page}", client.address))
        .form(fields)
        .send()
        .await
        .expect("the app answers")
}

async fn status_of(app: &TestApp, id: i64) -> String {
    sqlx::query_scalar("select status from internal_alerts where id = $1")
        .bind(id)
        .fetch_one(&app.pg)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_alerts_page_loads_the_live_refresh_and_not_the_client() {
    let (app, id, _) = with_an_alert().await;
    let operator = app.signed_in(Role::Operator).await;

    let (status, html) = operator
        .get_html(&format!("/admin/alerts?alert={id}"))
        .await;

    assert_eq!(status, 200);
    for client_part in ["salvage.wasm", "/pkg/salvage.js"] {
        assert!(!html.contains(client_part), "{client_part} in {html}");
    }
    assert!(html.contains("import init from '/live/live.js'"), "{html}");
    assert!(
        html.contains(r#"name="salvage-live-every-ms" content="5000""#),
        "{html}"
    );
    assert!(html.contains(r#"id="live-status""#), "{html}");
    assert!(
        html.contains("Not refreshing: the live refresh has not started"),
        "until the script runs, the page says it is static: {html}"
    );
    // Rendered whole: the list, the open alert's facts and its forms.
    assert!(
        html.contains(r#"id="live-open-alerts" data-live"#),
        "{html}"
    );
    assert!(html.contains(r#"data-testid="open-alerts""#), "{html}");
    assert!(html.contains(r#"id="live-alert" data-live"#), "{html}");
    assert!(
        html.contains(r#"action="/api/alerts/acknowledge" method="post""#),
        "the panel's forms post plainly: {html}"
    );
    assert!(
        html.contains(r#"action="/api/alerts/acknowledge?form=bulk""#),
        "the bulk bar is a form too: {html}"
    );
    // A page reached the usual way still loads the client.
    let (_, queues) = operator.get_html("/admin/queues").await;
    assert!(queues.contains("salvage.wasm"), "{queues}");
    assert!(!queues.contains("/live/live.js"), "{queues}");
}

#[tokio::test]
async fn a_plain_acknowledgement_goes_back_to_the_alert_and_the_page_shows_it() {
    let (app, id, version) = with_an_alert().await;
    let operator = app.signed_in(Role::Operator).await;
    let page = format!("/admin/alerts?alert={id}");

    let response = post_form(
        &operator,
        &page,
        "alerts/acknowledge",
        &[
            ("selection", format!("{id}@{version}").as_str()),
            ("note", "draining the queue by hand"),
            ("until", ""),
        ],
    )
    .await;

    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), page);
    assert_eq!(status_of(&app, id).await, "acknowledged");
    let (_, html) = operator.get_html(&page).await;
    assert!(html.contains("draining the queue by hand"), "{html}");
    assert!(!html.contains(r#"role="alert""#), "no error shown: {html}");
}

#[tokio::test]
async fn a_refused_plain_form_changes_nothing_and_its_page_says_why_once() {
    let (app, id, version) = with_an_alert().await;
    let first = app.signed_in(Role::Operator).await;
    let late = app.signed_in(Role::Operator).await;
    let page = format!("/admin/alerts?alert={id}");
    let seen = format!("{id}@{version}");
    let ack = |note: &'static str| [("selection", seen.as_str()), ("note", note), ("until", "")];
    let response = post_form(&first, &page, "alerts/acknowledge", &ack("mine")).await;
    assert_eq!(response.status(), 303);
    let before = events(&app, id).await;

    let response = post_form(&late, &page, "alerts/acknowledge", &ack("typed meanwhile")).await;

    assert_eq!(response.status(), 303, "back to the page, refused or not");
    assert_eq!(location(&response), page);
    assert_eq!(events(&app, id).await, before, "nothing changed");
    // The live refresh's load leaves the outcome for the person's own next load.
    let live = late
        .http
        .get(format!("{}{page}", late.address))
        .header("x-salvage-live", "1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!live.contains("while you were typing"), "{live}");
    let (_, html) = late.get_html(&page).await;
    let refusal = html
        .split(r#"role="alert""#)
        .nth(1)
        .unwrap_or_else(|| panic!("no refusal on the page: {html}"));
    assert!(
        refusal.contains("acknowledged by") && refusal.contains("while you were typing"),
        "{refusal}"
    );
    assert_eq!(
        html.matches("while you were typing").count(),
        1,
        "shown by the panel's form, not by the bulk bar's too"
    );
    let (_, again) = late.get_html(&page).await;
    assert!(
        !again.contains("while you were typing"),
        "shown once: {again}"
    );
}

#[tokio::test]
async fn ticked_boxes_acknowledge_several_alerts_in_one_post() {
    let (app, first, first_version) = with_an_alert().await;
    raise_data_expired(&app, "events").await;
    let (second, second_version) = open_alert(&app, "data_expired", "events").await.unwrap();
    let operator = app.signed_in(Role::Operator).await;
    let a = format!("{first}@{first_version}");
    let b = format!("{second}@{second_version}");

    let response = post_form(
        &operator,
        "/admin/alerts",
        "alerts/acknowledge?form=bulk",
        &[
            ("selection[]", a.as_str()),
            ("selection[]", b.as_str()),
            ("note", "both, by hand"),
            ("until", "4h"),
        ],
    )
    .await;

    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/admin/alerts");
    assert_eq!(status_of(&app, first).await, "acknowledged");
    assert_eq!(status_of(&app, second).await, "acknowledged");

    // Nothing ticked: refused, in the bulk bar.
    let response = post_form(
        &operator,
        "/admin/alerts",
        "alerts/resolve?form=bulk",
        &[("note", "nothing ticked")],
    )
    .await;
    assert_eq!(response.status(), 303);
    let (_, html) = operator.get_html("/admin/alerts").await;
    let bulk = html
        .split(r#"id="bulk-alerts""#)
        .nth(1)
        .expect("the bulk bar");
    assert!(bulk.contains("select at least one alert"), "{bulk}");
    assert_eq!(status_of(&app, first).await, "acknowledged", "unchanged");
}

#[tokio::test]
async fn a_plain_form_is_gated_like_any_call_for_each_role_and_without_a_session() {
    let (app, id, version) = with_an_alert().await;
    let page = format!("/admin/alerts?alert={id}");
    let selection = format!("{id}@{version}");
    let fields = [
        ("selection", selection.as_str()),
        ("note", "not mine to do"),
        ("until", ""),
    ];
    let manager = app.signed_in(Role::Manager).await;
    let anonymous = app.client();

    let sessions = app.count("sessions").await;
    for (who, client) in [("manager", &manager), ("no session", &anonymous)] {
        let response = post_form(client, &page, "alerts/acknowledge", &fields).await;
        assert_eq!(response.status(), 303, "{who}");
        assert_eq!(status_of(&app, id).await, "firing", "{who} changed nothing");
    }
    assert_eq!(
        app.count("sessions").await,
        sessions,
        "no session is made for a post without one"
    );
    // The manager has no form to read a refusal in: the page offers them no change.
    let (_, html) = manager.get_html(&page).await;
    assert!(
        !html.contains(r#"action="/api/alerts/acknowledge""#),
        "{html}"
    );
    assert!(!html.contains(r#"id="bulk-alerts""#), "{html}");
    let (status, _) = anonymous.get_html(&page).await;
    assert_eq!(
        status, 303,
        "no session: the page sends to the sign-in page"
    );
}

#[tokio::test]
async fn a_plain_form_goes_back_only_to_a_console_page_of_this_host() {
    let (app, id, _) = with_an_alert().await;
    let operator = app.signed_in(Role::Operator).await;
    let response = operator
        .http
        .post(format!("{}/api/alerts/note", operator.address))
        .header("accept", "text/html")
        .header("referer", "https://elsewhere.example/admin/alerts")
        .form(&[("alert_id", id.to_string().as_str()), ("note", "a note")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/admin");
}

#[tokio::test]
async fn signing_out_by_a_plain_form_ends_the_session_and_goes_to_the_sign_in_page() {
    let app = crate::helpers::spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;

    let response = post_form(
        &operator,
        "/admin/alerts",
        "auth/sign-out",
        &[] as &[(&str, &str)],
    )
    .await;

    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/admin/login");
    let (status, _) = operator.get_html("/admin/alerts").await;
    assert_eq!(status, 303, "signed out");
}
