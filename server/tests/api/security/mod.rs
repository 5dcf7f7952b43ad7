//! Attacks on the gates, each shown to fail: brute force and lock-outs, session theft
//! and fixation, floods, tampering with the history, keys used past their revocation,
//! and what lower roles and anonymous callers can read. Each test attacks through the
//! same doors a real caller would (HTTP, the binary, the database roles) and fails when
//! the defence it names is taken away.

mod alerts;
pub(crate) mod caller_mistakes;
mod database;
mod exposure;
mod headers;
mod history;
mod ingest;
mod plain_forms;
mod sessions;
mod sign_in;

/// Salvage whose public URL is https, with an operator `ops@example.com` who has just
/// signed in from that origin: the app and the sign-in's response.
pub(crate) async fn signed_in_over_https() -> (crate::helpers::TestApp, reqwest::Response) {
    fn over_https(settings: &mut salvage::config::Settings) {
        settings.public_url = "https://127.0.0.1:0".parse().unwrap();
    }
    let app = crate::helpers::spawn_app_tweaked(over_https).await;
    app.add_user("ops@example.com", app::auth::Role::Operator)
        .await;
    let port = app.address.rsplit(':').next().unwrap();
    let client =
        crate::helpers::Client::with_origin(&app.address, &format!("https://127.0.0.1:{port}"));
    let response = client
        .call_server_fn(
            "auth/sign-in",
            serde_json::json!({"email": "ops@example.com", "password": crate::helpers::PASSWORD,
                               "next": ""}),
        )
        .await;
    (app, response)
}
