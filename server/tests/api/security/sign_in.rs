//! Guessing passwords: bursts, lock-outs, and the cost of checking.

use app::auth::Role;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_tweaked, Client, PASSWORD};

/// Statuses of `attempts` concurrent sign-ins as `email` with a wrong password, each from
/// a fresh client (its own connection).
async fn concurrent_wrong_sign_ins(address: &str, emails: Vec<String>) -> Vec<u16> {
    let mut set = tokio::task::JoinSet::new();
    for email in emails {
        let client = Client::new(address);
        set.spawn(async move { client.sign_in(&email, "not the password at all").await.0 });
    }
    set.join_all().await
}

fn count(statuses: &[u16], wanted: &[u16]) -> usize {
    statuses.iter().filter(|s| wanted.contains(s)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_300_wrong_passwords_for_one_email_is_checked_at_most_five_times() {
    let app = spawn_app().await;
    app.add_user("admin@example.com", Role::Admin).await;

    let statuses =
        concurrent_wrong_sign_ins(&app.address, vec!["admin@example.com".into(); 300]).await;

    let checked = count(&statuses, &[401]);
    let refused = count(&statuses, &[429, 503]);
    assert!(
        checked <= 5,
        "{checked} passwords were checked: {statuses:?}"
    );
    assert!(checked >= 1, "the first attempts are checked");
    assert_eq!(checked + refused, 300, "{statuses:?}");
    // Each checked attempt is one recorded failure; refused ones record nothing.
    assert_eq!(app.count("sign_in_failures").await, checked as i64);
    let gate = app::auth::ssr::password_gate();
    assert!(
        gate.peak() <= gate.limit(),
        "{} > {}",
        gate.peak(),
        gate.limit()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_never_run_more_at_once_than_the_gate_has_permits() {
    let app = spawn_app().await;
    // Twenty different emails: the throttle lets every one through to the check.
    let emails = (0..20).map(|n| format!("guess{n}@example.com")).collect();

    let statuses = concurrent_wrong_sign_ins(&app.address, emails).await;

    assert_eq!(count(&statuses, &[401, 503]), 20, "{statuses:?}");
    let gate = app::auth::ssr::password_gate();
    assert!(gate.peak() >= 1);
    assert!(
        gate.peak() <= gate.limit(),
        "{} checks ran at once with {} permits",
        gate.peak(),
        gate.limit()
    );
}

fn behind_a_load_balancer(settings: &mut salvage::config::Settings) {
    settings.trusted_proxies = app::server::client::TrustedProxies::parse("127.0.0.1").unwrap();
}

#[tokio::test]
async fn an_attackers_failures_from_one_address_do_not_lock_the_admin_out() {
    let app = spawn_app_tweaked(behind_a_load_balancer).await;
    app.add_user("admin@example.com", Role::Admin).await;
    let attacker = Client::forwarded_for(&app.address, "203.0.113.7");
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            attacker
                .sign_in("admin@example.com", "guess guess guess")
                .await
                .0,
        );
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
    // Even the right password waits, from the attacker's address.
    assert_eq!(attacker.sign_in("admin@example.com", PASSWORD).await.0, 429);

    let admin = Client::forwarded_for(&app.address, "198.51.100.9");
    let (status, body) = admin.sign_in("admin@example.com", PASSWORD).await;

    assert_eq!(status, 200, "{body}");
    // The attacker's failures stay counted against the attacker.
    assert_eq!(attacker.sign_in("admin@example.com", PASSWORD).await.0, 429);
}

/// One wrong password for `admin@example.com` from each address (as `X-Forwarded-For`),
/// in turn.
async fn one_guess_from_each(address: &str, forwarded: impl Iterator<Item = String>) -> Vec<u16> {
    let mut statuses = Vec::new();
    for from in forwarded {
        let attacker = Client::forwarded_for(address, &from);
        statuses.push(
            attacker
                .sign_in("admin@example.com", "guess guess guess")
                .await
                .0,
        );
    }
    statuses
}

#[tokio::test]
async fn addresses_of_one_ipv6_64_count_as_one_network() {
    let app = spawn_app_tweaked(behind_a_load_balancer).await;
    app.add_user("admin@example.com", Role::Admin).await;
    let hosts = (1..=7).map(|host| format!("2001:db8:7:7::{host:x}"));
    let statuses = one_guess_from_each(&app.address, hosts).await;
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
    let elsewhere = Client::forwarded_for(&app.address, "2001:db8:7:8::1");
    assert_eq!(
        elsewhere.sign_in("admin@example.com", PASSWORD).await.0,
        200
    );
}

#[tokio::test]
async fn a_forged_forwarded_for_is_ignored_without_a_trusted_proxy() {
    let app = spawn_app().await;
    app.add_user("admin@example.com", Role::Admin).await;
    let forged = (1..=7).map(|n| format!("203.0.113.{n}"));
    let statuses = one_guess_from_each(&app.address, forged).await;
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
}

#[tokio::test]
async fn changing_a_password_is_throttled_like_signing_in() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    let change = |current: &'static str| {
        let operator = operator.clone();
        async move {
            operator
                .call(
                    "auth/password",
                    json!({"current_password": current,
                           "new_password": "a brand new password",
                           "confirm_password": "a brand new password"}),
                )
                .await
                .0
        }
    };
    let hash_before: String = sqlx::query_scalar("select password_hash from users")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(change("guessing the password").await);
    }
    assert_eq!(statuses, [422, 422, 422, 422, 422, 429]);
    assert_eq!(change(PASSWORD).await, 429, "the right one waits too");
    let hash_after: String = sqlx::query_scalar("select password_hash from users")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(hash_before, hash_after, "nothing changed");
}

#[tokio::test]
async fn wrong_setup_links_from_one_address_are_throttled_like_wrong_passwords() {
    let app = spawn_app_tweaked(behind_a_load_balancer).await;
    let token = app::auth::ssr::issue_setup_token(&app.pg, app.state.clock.now())
        .await
        .unwrap()
        .expect("no users yet");
    let form = |token: &str| {
        json!({"token": token, "email": "root@example.com",
               "password": PASSWORD, "confirm_password": PASSWORD})
    };
    let guesser = Client::forwarded_for(&app.address, "203.0.113.7");
    let mut statuses = Vec::new();
    for n in 0..7 {
        let guess = format!("sgs_{n:0>60}");
        statuses.push(guesser.call("auth/setup", form(&guess)).await.0);
    }
    assert_eq!(statuses, [404, 404, 404, 404, 404, 429, 429]);
    assert_eq!(guesser.call("auth/setup", form(&token)).await.0, 429);

    // The person holding the link, elsewhere, is not held up by the guesser.
    let owner = Client::forwarded_for(&app.address, "198.51.100.9");
    let (status, body) = owner.call("auth/setup", form(&token)).await;
    assert_eq!(status, 200, "{body}");

    // Once an account exists a post is refused (after the pause) and leaves no trace.
    let failures = app.count("sign_in_failures").await;
    for _ in 0..3 {
        assert_eq!(owner.call("auth/setup", form(&token)).await.0, 404);
    }
    assert_eq!(app.count("sign_in_failures").await, failures);
}
