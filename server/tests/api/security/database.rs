//! The application's own database role cannot rewrite the history.

use app::auth::Role;
use serde_json::json;

use crate::helpers::{spawn_app_with, Options};

#[tokio::test]
async fn the_application_role_can_append_to_the_history_but_never_change_it_nor_the_services_data()
{
    let app = spawn_app_with(Options {
        two_roles: true,
        ..Options::default()
    })
    .await;
    // A table of the guarded service, made by its owner; the grants are renewed after
    // it, as after every migration and restore.
    let owner = app.state.schema_owner.as_ref().expect("two roles");
    sqlx::query("create table orders (id int primary key)")
        .execute(&owner.pool)
        .await
        .unwrap();
    app::server::postgres::grant_application_role(&owner.pool, &owner.app_role)
        .await
        .unwrap();
    // The console works as the application role.
    let operator = app.signed_in(Role::Operator).await;
    let (status, body) = operator
        .call(
            "history/note",
            json!({"title": "", "body": "on shift", "incident_id": ""}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let role: String = sqlx::query_scalar("select current_user::text")
        .fetch_one(&app.state.pg)
        .await
        .unwrap();
    assert_eq!(role, "salvage_app");

    for attack in [
        "update runbook_history set title = 'forged'",
        "delete from runbook_history",
        "truncate runbook_history",
        "alter table runbook_history disable trigger runbook_history_append_only",
        "create or replace function runbook_history_digest(h runbook_history) returns bytea
         language sql stable as $$ select h.hash $$",
        "drop trigger runbook_history_append_only on runbook_history",
        "delete from _sqlx_migrations",
        "create table sneaky (n int)",
        // The other records of what was done: added to, never changed or removed.
        "delete from webhook_attempts",
        "truncate webhook_attempts",
        "delete from backup_files",
        "delete from alert_silence_matches",
        // The guarded service's own data: only the owner (restores, drills) touches it.
        "select count(*) from orders",
        "insert into orders (id) values (1)",
        "delete from orders",
    ] {
        let error = sqlx::query(attack)
            .execute(&app.state.pg)
            .await
            .expect_err(attack);
        let code = error
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.to_string())
            .unwrap_or_default();
        assert!(
            code == "42501",
            "{attack}: expected permission denied (42501), got {error}"
        );
    }
    let entries: i64 =
        sqlx::query_scalar("select count(*) from runbook_history where title = 'forged'")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(entries, 0);
}

/// A database its owner migrated alone (`salvage migrate` with only the owner's URL), so
/// the application role has no grants: the next migrate with both roles reads the
/// migrations' record as the owner and renews the grants, instead of failing on them.
#[tokio::test]
async fn migrate_with_both_roles_repairs_a_database_the_owner_migrated_alone() {
    let app = spawn_app_with(Options {
        two_roles: true,
        ..Options::default()
    })
    .await;
    let owner = app.state.schema_owner.as_ref().expect("two roles");
    sqlx::query(&format!(
        "revoke all on all tables in schema public from {}",
        owner.app_role
    ))
    .execute(&owner.pool)
    .await
    .unwrap();
    let read = || sqlx::query("select count(*) from _sqlx_migrations").fetch_one(&app.state.pg);
    assert!(read().await.is_err(), "the grants were revoked");

    salvage::startup::migrate_postgres(&app.state)
        .await
        .expect("migrate renews the grants");

    assert!(read().await.is_ok(), "the application role reads again");
    let role: String = sqlx::query_scalar("select current_user::text")
        .fetch_one(&app.state.pg)
        .await
        .unwrap();
    assert_eq!(role, owner.app_role);
}
