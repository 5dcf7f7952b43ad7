//! The role matrix: every server function and every `/admin` page, for anonymous,
//! operator, manager and admin. A refused call answers 401/403, changes no row and writes
//! no history entry; an allowed one does what it says.
//!
//! The matrix is three files read together: `cases` lists every server function and the
//! roles that may call it, `arguments` builds a valid call of each, and `world` is the
//! app they run in (one account per role, an incident, a backup). The tests are here.

mod arguments;
mod cases;
mod world;

use app::auth::Role;
use serde_json::json;

use crate::helpers::spawn_app;
use arguments::arguments;
use cases::{admins, any, Allowed, CASES};
use world::World;

/// Who makes the call.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Anonymous,
    As(Role),
}

const EVERYONE: [Who; 4] = [
    Who::Anonymous,
    Who::As(Role::Operator),
    Who::As(Role::Manager),
    Who::As(Role::Admin),
];

#[tokio::test]
async fn every_server_function_enforces_its_role_for_every_caller() {
    let world = World::new().await;
    let mut failures = Vec::new();
    for case in CASES {
        for who in EVERYONE {
            let args = arguments(&world, case.endpoint).await;
            let before = world.snapshot().await;
            let history_before = world.app.count("runbook_history").await;

            let (status, body) = world.client(who).call(case.endpoint, args).await;
            if matches!(
                case.endpoint,
                "jobs/start" | "backups/restore" | "backups/verify" | "dlq/redrive" | "dlq/recover"
            ) && status == 200
            {
                world.background_runs_finished().await;
            }

            let after = world.snapshot().await;
            let expected = match who {
                Who::Anonymous => 401,
                Who::As(role) if (case.allowed)(role) => 200,
                Who::As(_) => 403,
            };
            if status != expected {
                failures.push(format!(
                    "{} as {who:?}: {status}, expected {expected}: {body}",
                    case.endpoint
                ));
                continue;
            }
            if expected == 200 {
                let app = &world.app;
                crate::helpers::eventually(std::time::Duration::from_secs(15), || async {
                    app.count("runbook_history").await - history_before >= case.records
                })
                .await;
                let written = world.app.count("runbook_history").await - history_before;
                if written != case.records {
                    failures.push(format!(
                        "{} as {who:?} wrote {written} history entries",
                        case.endpoint
                    ));
                }
            } else {
                if before != after {
                    failures.push(format!(
                        "{} as {who:?} was refused but changed rows",
                        case.endpoint
                    ));
                }
                let message = body["message"]
                    .as_str()
                    .or(body["error"].as_str())
                    .unwrap_or_default();
                if expected == 403 && !message.contains("only") {
                    failures.push(format!(
                        "{} as {who:?}: unclear refusal {body}",
                        case.endpoint
                    ));
                }
            }
        }
    }
    // The side databases the allowed restores made.
    let made: Vec<String> = world
        .app
        .clickhouse
        .client()
        .query("SELECT name FROM system.databases WHERE name LIKE 'salvage_test_matrix_%'")
        .fetch_all()
        .await
        .unwrap();
    for name in made {
        let _ = world
            .app
            .clickhouse
            .client()
            .query(&format!("DROP DATABASE IF EXISTS `{name}`"))
            .execute()
            .await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn allowed_calls_do_what_they_say() {
    let world = World::new().await;
    let admin = world.client(Who::As(Role::Admin));
    let target = world.target().await;

    let (_, added) = admin
        .call(
            "settings/users/add",
            json!({"email": "Added@Test.Salvage", "role": "manager", "reason": "new hire"}),
        )
        .await;
    admin
        .call(
            "settings/users/role",
            json!({"user_id": target, "role": "admin", "reason": "promotion"}),
        )
        .await;
    let manager = world.client(Who::As(Role::Manager));
    let (_, note) = manager
        .call("history/note", json!({"title": "", "body": "Customer comms sent", "incident_id": world.incident.to_string()}))
        .await;

    let role: String =
        sqlx::query_scalar("select role from users where email = 'added@test.salvage'")
            .fetch_one(&world.app.pg)
            .await
            .unwrap();
    assert_eq!(role, "manager");
    assert_eq!(added["email"], "added@test.salvage");
    let promoted: String = sqlx::query_scalar("select role from users where id = $1")
        .bind(target)
        .fetch_one(&world.app.pg)
        .await
        .unwrap();
    assert_eq!(promoted, "admin");
    let (kind, actor, reason): (String, String, Option<String>) = sqlx::query_as(
        "select kind, actor, reason from runbook_history where details->>'change' = 'role'",
    )
    .fetch_one(&world.app.pg)
    .await
    .unwrap();
    assert_eq!(
        (kind.as_str(), reason.as_deref()),
        ("user_change", Some("promotion"))
    );
    assert!(actor.starts_with("admin-"), "{actor}");
    let linked: Option<i64> =
        sqlx::query_scalar("select incident_id from runbook_history where id = $1")
            .bind(note.as_i64().unwrap())
            .fetch_one(&world.app.pg)
            .await
            .unwrap();
    assert_eq!(linked, Some(world.incident));
}

#[tokio::test]
async fn every_admin_page_enforces_its_role_for_every_caller() {
    let world = World::new().await;
    let incident_page = format!("/admin/history/{}", world.incident);
    let pages: Vec<(&str, Allowed)> = vec![
        ("/admin", any),
        ("/admin/alerts", any),
        ("/admin/alerts?view=resolved", any),
        ("/admin/alerts?view=silences", any),
        ("/admin/history", any),
        (incident_page.as_str(), any),
        ("/admin/account", any),
        ("/admin/settings/users", admins),
        ("/admin/queues", any),
        ("/admin/crons", any),
        ("/admin/backups", any),
        ("/admin/drills", any),
        ("/admin/dlq", any),
        ("/admin/migrations", any),
        ("/admin/settings/webhooks", any),
        ("/admin/settings/cron-secret", any),
        ("/admin/settings/ingest-keys", admins),
    ];
    let mut failures = Vec::new();
    for (path, allowed) in &pages {
        for who in EVERYONE {
            let response = world.client(who).get(path).await;
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = response.text().await.unwrap();
            let ok = match who {
                Who::Anonymous => {
                    status == 303
                        && location
                            .as_deref()
                            .is_some_and(|l| l.starts_with("/admin/login?next=/admin"))
                }
                Who::As(role) if allowed(role) => status == 200,
                Who::As(_) => status == 403 && body.contains("only admins can"),
            };
            if !ok {
                let said: String = body.chars().take(300).collect();
                failures.push(format!("{path} as {who:?}: {status} {location:?} {said}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn the_history_export_is_for_managers_and_admins() {
    let world = World::new().await;
    let mut seen = Vec::new();
    for who in EVERYONE {
        let response = world
            .client(who)
            .get("/admin/history/export?format=csv")
            .await;
        seen.push((who, response.status().as_u16()));
    }
    assert_eq!(
        seen,
        vec![
            (Who::Anonymous, 401),
            (Who::As(Role::Operator), 403),
            (Who::As(Role::Manager), 200),
            (Who::As(Role::Admin), 200),
        ]
    );
}

#[tokio::test]
async fn the_last_active_admin_cannot_be_demoted_or_disabled() {
    let app = spawn_app().await;
    let admin_id = app.add_user("only-admin@test.salvage", Role::Admin).await;
    let admin = app.signed_in_as("only-admin@test.salvage").await;
    let before = app.count("runbook_history").await;

    let (demote, body) = admin
        .call(
            "settings/users/role",
            json!({"user_id": admin_id, "role": "operator", "reason": ""}),
        )
        .await;
    let (disable, _) = admin
        .call(
            "settings/users/disabled",
            json!({"user_id": admin_id, "disabled": true, "reason": ""}),
        )
        .await;

    assert_eq!(demote, 409, "{body}");
    assert_eq!(disable, 409);
    assert_eq!(app.count("runbook_history").await, before);
    assert_eq!(
        app.count("users where role = 'admin' and not disabled")
            .await,
        1
    );
}
