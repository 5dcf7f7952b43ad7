//! A server function called with missing or malformed arguments is the caller's mistake:
//! 422 naming `arguments`, never the server's 500, and not counted as a server error.

use app::auth::Role;

use crate::helpers::spawn_app;

/// Every server function the router serves, as `auth/me` (from the server-function
/// registry, so the list cannot fall behind the code: a new function is covered the day
/// it is written).
pub(crate) fn every_server_function() -> std::collections::BTreeSet<String> {
    leptos::server_fn::axum::server_fn_paths()
        .map(|(path, _)| path.trim_start_matches("/api/").to_owned())
        .collect()
}

#[tokio::test]
async fn every_server_function_answers_a_missing_or_malformed_argument_with_422() {
    let app = spawn_app().await;
    let endpoints = every_server_function();
    assert!(endpoints.len() >= 28, "the registry lists {endpoints:?}");
    let mut wrong = Vec::new();
    // Signed out last: signing out ends the session the others are called in.
    let (last, rest): (Vec<_>, Vec<_>) = endpoints.iter().partition(|e| *e == "auth/sign-out");
    let admin = app.signed_in(Role::Admin).await;

    for endpoint in rest.into_iter().chain(last) {
        for body in [
            "",
            "%zz=%zz&&=",
            "alert_id=not-a-number&id=x&limit=-&before=yesterday",
        ] {
            let response = admin
                .http
                .post(format!("{}/api/{endpoint}", app.address))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let about_arguments = text.contains(r#""field":"arguments""#);
            if status >= 500 || (about_arguments && status != 422) {
                wrong.push(format!("{endpoint} with {body:?}: {status} {text}"));
            }
        }
    }

    assert!(
        wrong.is_empty(),
        "answered as the server's error:\n{}",
        wrong.join("\n")
    );
    let (_, metrics) = app.get_html("/metrics").await;
    let server_errors: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("salvage_http_requests_total{route=\"/api/"))
        .filter(|line| line.contains("status=\"5"))
        .collect();
    assert!(server_errors.is_empty(), "{server_errors:?}");
}
