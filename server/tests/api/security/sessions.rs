//! Sessions: kept alive by use, ended by age, replaced on a password change, and a
//! cookie a sibling domain cannot plant over https.

use std::time::Duration;

use app::auth::Role;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_tweaked, PASSWORD};

fn session_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn value_of(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap();
    pair.split_once('=').unwrap().1.to_owned()
}

async fn me_with_cookie(address: &str, cookie: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{address}/api/auth/me"))
        .header("origin", address)
        .header("cookie", format!("salvage_session={cookie}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn four_second_idle(settings: &mut salvage::config::Settings) {
    settings.session_idle = Duration::from_secs(4);
}

#[tokio::test]
async fn an_active_session_outlives_its_idle_time() {
    let app = spawn_app_tweaked(four_second_idle).await;
    let operator = app.signed_in(Role::Operator).await;

    // Nine seconds of steady use, more than twice the idle time.
    for second in 1..=9 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (status, _) = operator.call("auth/me", json!({})).await;
        assert_eq!(status, 200, "signed out {second} s after signing in");
    }

    // And idle for longer than the idle time, it ends.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(operator.call("auth/me", json!({})).await.0, 401);
}

fn three_second_cap(settings: &mut salvage::config::Settings) {
    settings.session_max = Duration::from_secs(3);
}

#[tokio::test]
async fn a_session_ends_at_its_maximum_age_however_active() {
    let app = spawn_app_tweaked(three_second_cap).await;
    let operator = app.signed_in(Role::Operator).await;
    for _ in 0..2 {
        assert_eq!(operator.call("auth/me", json!({})).await.0, 200);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    assert_eq!(operator.call("auth/me", json!({})).await.0, 401);
    assert_eq!(app.count("sessions").await, 0, "ended on the server too");
}

#[tokio::test]
async fn changing_the_password_replaces_the_session_id() {
    let app = spawn_app().await;
    app.add_user("ops@example.com", Role::Operator).await;
    let client = app.client();
    let signed_in = client
        .call_server_fn(
            "auth/sign-in",
            json!({"email": "ops@example.com", "password": PASSWORD, "next": ""}),
        )
        .await;
    let old = value_of(&session_cookie(&signed_in, "salvage_session").expect("a cookie"));

    let changed = client
        .call_server_fn(
            "auth/password",
            json!({"current_password": PASSWORD,
                   "new_password": "a brand new password",
                   "confirm_password": "a brand new password"}),
        )
        .await;
    assert_eq!(changed.status(), 200);
    let new = value_of(&session_cookie(&changed, "salvage_session").expect("a new cookie"));

    assert_ne!(old, new);
    assert_eq!(
        me_with_cookie(&app.address, &old).await,
        401,
        "the old id is dead"
    );
    assert_eq!(me_with_cookie(&app.address, &new).await, 200);
    assert_eq!(client.call("auth/me", json!({})).await.0, 200);
}

#[tokio::test]
async fn over_https_the_session_cookie_is_host_prefixed_and_secure() {
    let (_app, response) = super::signed_in_over_https().await;

    assert_eq!(response.status(), 200);
    let cookie = session_cookie(&response, "__Host-salvage_session").expect("a __Host- cookie");
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(attributes.contains(&"Secure"), "{cookie}");
    assert!(attributes.contains(&"Path=/"), "{cookie}");
    assert!(!cookie.to_lowercase().contains("domain="), "{cookie}");
    assert!(session_cookie(&response, "salvage_session").is_none());
}
