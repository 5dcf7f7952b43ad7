//! Response headers: a nonce-bound Content-Security-Policy on every page, nothing of the
//! console cached, HSTS over https, features switched off.

use app::auth::Role;
use serde_json::json;

use crate::helpers::spawn_app;

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
}

/// The nonce of a page's CSP, and every `nonce="…"` in its HTML.
fn nonces(csp: &str, html: &str) -> (String, Vec<String>) {
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a nonce in the policy")
        .to_owned();
    let in_html = html
        .split("nonce=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect();
    (nonce, in_html)
}

#[tokio::test]
async fn every_page_carries_a_fresh_nonce_policy_its_scripts_match() {
    let app = spawn_app().await;
    let admin = app.signed_in(Role::Admin).await;
    let mut seen = Vec::new();
    for (client, path) in [
        (&app.anonymous, "/admin/login"),
        (&admin, "/admin"),
        (&admin, "/admin/history"),
        (&admin, "/admin/queues"),
        (&admin, "/admin/settings/users"),
    ] {
        let response = client.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let csp = header(&response, "content-security-policy").expect("a policy");
        assert_eq!(
            header(&response, "cache-control").as_deref(),
            Some("no-store"),
            "{path}"
        );
        let html = response.text().await.unwrap();
        let (nonce, in_html) = nonces(&csp, &html);
        assert!(nonce.len() >= 16, "{path}: {csp}");
        assert!(
            in_html.len() >= 2,
            "{path}: the theme and hydration scripts"
        );
        assert!(
            in_html.iter().all(|n| *n == nonce),
            "{path}: {in_html:?} vs {nonce}"
        );
        assert!(
            !html.contains("<script>"),
            "{path}: a script without its nonce"
        );
        for directive in [
            "script-src 'self' 'nonce-",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        seen.push(nonce);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "a new nonce per response");
}

#[tokio::test]
async fn server_functions_and_json_are_not_cached_and_features_are_off() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    let response = operator.call_server_fn("auth/me", json!({})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "cache-control").as_deref(),
        Some("no-store")
    );
    assert_eq!(
        header(&response, "content-security-policy").as_deref(),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    let policy = header(&response, "permissions-policy").expect("a permissions policy");
    assert!(
        policy.contains("camera=()") && policy.contains("geolocation=()"),
        "{policy}"
    );
    assert!(
        header(&response, "strict-transport-security").is_none(),
        "plain http"
    );
}

#[tokio::test]
async fn over_https_browsers_are_told_to_stay_on_https() {
    let (app, response) = super::signed_in_over_https().await;
    assert_eq!(
        header(&response, "strict-transport-security").as_deref(),
        Some("max-age=31536000")
    );
    let page = app.get("/admin/login").await;
    assert!(header(&page, "strict-transport-security").is_some());
}
