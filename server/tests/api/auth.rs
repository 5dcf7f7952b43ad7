//! Sign-in, sessions, throttling, origin checks, temporary passwords, the first admin.

use app::auth::Role;
use serde_json::json;

use crate::helpers::{spawn_app, Client, PASSWORD};

/// The `salvage_session` value a response sets, if it sets one.
pub(crate) fn session_set_by(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("salvage_session="))
        .map(|v| v.to_owned())
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("salvage_session=")
        .to_owned()
}

/// Signs `client` in as `email` and returns the raw response (to read its cookie).
async fn sign_in_raw(client: &Client, email: &str) -> reqwest::Response {
    client
        .call_server_fn(
            "auth/sign-in",
            json!({"email": email, "password": PASSWORD, "next": ""}),
        )
        .await
}

/// A client that sends exactly `cookie` as its session, like a stolen or old cookie.
fn client_with_cookie(address: &str, cookie: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("origin", address.parse().unwrap());
    headers.insert(
        "cookie",
        format!("salvage_session={cookie}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn whoami(http: &reqwest::Client, address: &str) -> u16 {
    http.post(format!("{address}/api/auth/me"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_and_reports_who_is_signed_in() {
    let app = spawn_app().await;
    app.add_user("ops@example.com", Role::Operator).await;
    let client = app.client();

    let response = client
        .call_server_fn(
            "auth/sign-in",
            json!({"email": "Ops@Example.com", "password": PASSWORD, "next": "/admin/history"}),
        )
        .await;

    assert_eq!(response.status(), 200);
    let cookie = session_set_by(&response).expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain http on 127.0.0.1 is local: {cookie}"
    );
    assert_eq!(response.json::<String>().await.unwrap(), "/admin/history");
    let (status, me) = client.call("auth/me", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(me["email"], "ops@example.com");
    assert_eq!(me["role"], "operator");
    let last_login: Option<time::OffsetDateTime> =
        sqlx::query_scalar("select last_login_at from users where email = 'ops@example.com'")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert!(last_login.is_some());
}

#[tokio::test]
async fn the_session_id_changes_at_sign_in_so_a_planted_id_is_worthless() {
    let app = spawn_app().await;
    app.add_user("ops@example.com", Role::Operator).await;
    let client = app.client();
    let first = sign_in_raw(&client, "ops@example.com").await;
    let first_id = cookie_value(&session_set_by(&first).unwrap());

    // Signing in again on the same browser (sending the first id) must issue a new id.
    let second = sign_in_raw(&client, "ops@example.com").await;
    let second_id = cookie_value(&session_set_by(&second).unwrap());

    assert_ne!(first_id, second_id);
    assert_eq!(
        whoami(&client_with_cookie(&app.address, &first_id), &app.address).await,
        401
    );
    assert_eq!(
        whoami(&client_with_cookie(&app.address, &second_id), &app.address).await,
        200
    );
}

#[tokio::test]
async fn signing_out_destroys_the_session_on_the_server() {
    let app = spawn_app().await;
    app.add_user("ops@example.com", Role::Operator).await;
    let client = app.client();
    let response = sign_in_raw(&client, "ops@example.com").await;
    let id = cookie_value(&session_set_by(&response).unwrap());
    assert_eq!(app.count("sessions").await, 1);

    let (status, _) = client.call("auth/sign-out", json!({})).await;

    assert_eq!(status, 200);
    assert_eq!(app.count("sessions").await, 0);
    // Replaying the old cookie, as someone who copied it would, gets nothing.
    assert_eq!(
        whoami(&client_with_cookie(&app.address, &id), &app.address).await,
        401
    );
}

#[tokio::test]
async fn every_failed_sign_in_gets_the_same_answer() {
    let app = spawn_app().await;
    app.add_user("ops@example.com", Role::Operator).await;
    let disabled = app.add_user("gone@example.com", Role::Operator).await;
    sqlx::query("update users set disabled = true where id = $1")
        .bind(disabled)
        .execute(&app.pg)
        .await
        .unwrap();
    let client = app.client();

    let wrong_password = client
        .sign_in("ops@example.com", "not the password at all")
        .await;
    let unknown_email = client.sign_in("nobody@example.com", PASSWORD).await;
    let disabled_account = client.sign_in("gone@example.com", PASSWORD).await;

    assert_eq!(wrong_password.0, 401);
    assert_eq!(wrong_password, unknown_email);
    assert_eq!(wrong_password, disabled_account);
    assert_eq!(app.count("sessions").await, 0);
}

#[tokio::test]
async fn repeated_failures_for_one_email_are_throttled_whether_or_not_it_exists() {
    let app = spawn_app().await;
    app.add_user("ops@example.com", Role::Operator).await;
    let client = app.client();
    for _ in 0..5 {
        assert_eq!(
            client
                .sign_in("ops@example.com", "wrong password 123")
                .await
                .0,
            401
        );
        assert_eq!(
            client
                .sign_in("ghost@example.com", "wrong password 123")
                .await
                .0,
            401
        );
    }

    // Even the right password is refused now, with a time to come back.
    let response = sign_in_raw(&client, "ops@example.com").await;
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=15 * 60).contains(&retry), "{retry}");
    let body: serde_json::Value = response.json().await.unwrap();
    let (ghost_status, ghost_body) = client
        .sign_in("ghost@example.com", "wrong password 123")
        .await;
    assert_eq!(ghost_status, 429);
    assert_eq!(body["kind"], ghost_body["kind"]);
    assert_eq!(app.count("sessions").await, 0);
    // Another email from the same address is still let through (below the per-client cap).
    app.add_user("lead@example.com", Role::Manager).await;
    assert_eq!(client.sign_in("lead@example.com", PASSWORD).await.0, 200);
}

#[tokio::test]
async fn one_client_address_trying_many_emails_is_throttled() {
    let app = spawn_app().await;
    app.add_user("ops@example.com", Role::Operator).await;
    let client = app.client();
    for n in 0..20 {
        assert_eq!(
            client
                .sign_in(&format!("guess{n}@example.com"), "password guess")
                .await
                .0,
            401
        );
    }

    let (status, _) = client.sign_in("ops@example.com", PASSWORD).await;

    assert_eq!(status, 429);
}

#[tokio::test]
async fn a_disabled_user_loses_access_at_once() {
    let app = spawn_app().await;
    let admin = app.signed_in(Role::Admin).await;
    let operator_id = app.add_user("ops@example.com", Role::Operator).await;
    let operator = app.signed_in_as("ops@example.com").await;
    assert_eq!(
        operator.call("history/search", history_query()).await.0,
        200
    );

    let (status, _) = admin
        .call(
            "settings/users/disabled",
            json!({"user_id": operator_id, "disabled": true, "reason": "left the team"}),
        )
        .await;

    assert_eq!(status, 200);
    assert_eq!(
        operator.call("history/search", history_query()).await.0,
        401
    );
    assert_eq!(operator.get("/admin").await.status(), 303);
    assert_eq!(operator.sign_in("ops@example.com", PASSWORD).await.0, 401);
}

fn history_query() -> serde_json::Value {
    json!({"kind": "", "actor": "", "outcome": "", "from": "", "to": "", "q": "", "before": ""})
}

#[tokio::test]
async fn a_cross_origin_server_function_call_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    app.add_user("boss@example.com", Role::Admin).await;
    let admin = app.signed_in_as("boss@example.com").await;
    let users_before = app.count("users").await;
    let history_before = app.count("runbook_history").await;
    // Same cookie jar, but the request claims another origin, as a forged form would.
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("origin", "https://evil.example".parse().unwrap());
    let forged = Client {
        address: admin.address.clone(),
        http: admin.http.clone(),
    };

    let response = forged
        .http
        .post(format!("{}/api/settings/users/add", app.address))
        .headers(headers)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=mallory%40evil.example&role=admin&reason=")
        .send()
        .await
        .unwrap();
    let no_origin = reqwest::Client::new()
        .post(format!("{}/api/history/note", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("title=&body=hello&incident_id=")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 403);
    assert_eq!(no_origin.status(), 403);
    assert_eq!(app.count("users").await, users_before);
    assert_eq!(app.count("runbook_history").await, history_before);
}

#[tokio::test]
async fn a_temporary_password_must_be_replaced_before_anything_else() {
    let app = spawn_app().await;
    let admin = app.signed_in(Role::Admin).await;
    let (status, added) = admin
        .call(
            "settings/users/add",
            json!({"email": "new@example.com", "role": "manager", "reason": "joined"}),
        )
        .await;
    assert_eq!(status, 200, "{added}");
    let temporary = added["temporary_password"]["shownOnce"]
        .as_str()
        .unwrap()
        .to_owned();
    let newcomer = app.client();

    let (status, next) = newcomer.sign_in("new@example.com", &temporary).await;
    assert_eq!((status, next.as_str()), (200, Some("/admin/account")));
    assert_eq!(
        newcomer.call("history/search", history_query()).await.0,
        403
    );
    assert_eq!(
        newcomer.get("/admin/history").await.headers()["location"],
        "/admin/account"
    );

    let (status, body) = newcomer
        .call(
            "auth/password",
            json!({"current_password": temporary, "new_password": "a brand new passphrase",
                   "confirm_password": "a brand new passphrase"}),
        )
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(
        newcomer.call("history/search", history_query()).await.0,
        200
    );
    assert_eq!(
        app.client().sign_in("new@example.com", &temporary).await.0,
        401
    );
    assert_eq!(
        app.client()
            .sign_in("new@example.com", "a brand new passphrase")
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn changing_a_password_checks_the_current_one_and_names_the_wrong_field() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;

    let (status, body) = operator
        .call(
            "auth/password",
            json!({"current_password": "not it", "new_password": "a brand new passphrase",
                   "confirm_password": "a brand new passphrase"}),
        )
        .await;
    let (short_status, short) = operator
        .call(
            "auth/password",
            json!({"current_password": PASSWORD, "new_password": "short",
                                       "confirm_password": "short"}),
        )
        .await;

    assert_eq!(status, 422);
    assert_eq!(body["field"], "current_password");
    assert_eq!(short_status, 422);
    assert_eq!(short["field"], "new_password");
    assert_eq!(
        app.count("runbook_history where kind = 'user_change' and details->>'change' = 'password'")
            .await,
        0
    );
}

#[tokio::test]
async fn the_setup_link_creates_the_first_admin_once() {
    let app = spawn_app().await;
    let token = app::auth::ssr::issue_setup_token(&app.pg, app.state.clock.now())
        .await
        .unwrap()
        .expect("no users yet");
    let visitor = app.client();
    let form = |token: &str, email: &str| json!({"token": token, "email": email, "password": PASSWORD, "confirm_password": PASSWORD});

    let (wrong_status, _) = visitor
        .call("auth/setup", form("0".repeat(64).as_str(), "x@example.com"))
        .await;
    let (status, body) = visitor
        .call("auth/setup", form(&token, "Root@Example.com"))
        .await;
    let (again_status, _) = visitor
        .call("auth/setup", form(&token, "second@example.com"))
        .await;

    assert_eq!(wrong_status, 404);
    assert_eq!(status, 200, "{body}");
    assert_eq!(again_status, 404);
    let users: Vec<(String, String)> = sqlx::query_as("select email, role from users")
        .fetch_all(&app.pg)
        .await
        .unwrap();
    assert_eq!(
        users,
        vec![("root@example.com".to_owned(), "admin".to_owned())]
    );
    assert_eq!(app.count("setup_tokens").await, 0);
    assert_eq!(
        app.count("runbook_history where kind = 'user_change'")
            .await,
        1
    );
    assert!(
        app::auth::ssr::issue_setup_token(&app.pg, app.state.clock.now())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        app.client().sign_in("root@example.com", PASSWORD).await.0,
        200
    );
}

#[tokio::test]
async fn a_session_expires_after_the_idle_time_on_the_server() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    let expiry: time::OffsetDateTime = sqlx::query_scalar("select expiry_date from sessions")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    let idle = expiry - time::OffsetDateTime::now_utc();
    assert!(
        (time::Duration::hours(8) - time::Duration::minutes(1)..=time::Duration::hours(8))
            .contains(&idle),
        "{idle}"
    );

    // Eight idle hours later, as far as the store is concerned.
    sqlx::query("update sessions set expiry_date = now() - interval '1 second'")
        .execute(&app.pg)
        .await
        .unwrap();

    assert_eq!(operator.call("auth/me", json!({})).await.0, 401);
    assert_eq!(operator.get("/admin").await.status(), 303);
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_anything_is_written() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    let before = app.count("runbook_history").await;

    let response = operator
        .call_server_fn(
            "history/note",
            json!({"title": "", "body": "x".repeat(300 * 1024), "incident_id": ""}),
        )
        .await;

    assert_eq!(response.status(), 413);
    assert_eq!(app.count("runbook_history").await, before);
}
