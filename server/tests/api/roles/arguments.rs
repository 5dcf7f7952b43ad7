//! A valid call of each server function in the matrix.

use app::auth::Role;
use serde_json::{json, Value};

use super::{Who, World};

pub(super) async fn arguments(world: &World, endpoint: &str) -> Value {
    match endpoint {
        "history/search" => {
            json!({"kind": "", "actor": "", "outcome": "", "from": "", "to": "", "q": "", "before": ""})
        }
        "history/entry" => json!({"id": world.incident}),
        "history/note" => {
            json!({"title": "", "body": "matrix note", "incident_id": world.incident.to_string()})
        }
        "history/incident" => {
            json!({"title": "Matrix", "severity": "sev4", "started_at": "", "resolved_at": "", "body": ""})
        }
        "history/resolve" => {
            // Each allowed call needs an open incident of its own whose post-recovery
            // checklist passes: begun before the world's verified backup, an RCA owner
            // named, every manual item ticked.
            let id = world.open_incident(30).await;
            sqlx::query(
                "insert into incident_checklist (incident_id, item, checked_by, checked_at)
                 select $1, unnest($2::text[]), 'matrix', now()",
            )
            .bind(id)
            .bind(
                app::incidents::MANUAL_ITEMS
                    .iter()
                    .map(|(key, _)| key.to_string())
                    .collect::<Vec<_>>(),
            )
            .execute(&world.app.pg)
            .await
            .unwrap();
            sqlx::query(
                "insert into incident_owners (incident_id, rca_owner, set_by, set_at)
                 values ($1, 'matrix', 'matrix', now())",
            )
            .bind(id)
            .execute(&world.app.pg)
            .await
            .unwrap();
            json!({"incident_id": id, "resolved_at": "", "body": "fixed"})
        }
        "drills/tabletop" => json!({"scenario": "ClickHouse lost its disk",
            "participants": "matrix", "findings": "restore took too long", "follow_ups": ""}),
        "drills/objectives" => {
            json!({"store": "clickhouse", "rpo_hours": 12, "rto_minutes": 30, "reason": "matrix"})
        }
        "incidents/mode" | "incidents/snapshot" | "incidents/owner" => {
            let id = world.open_incident(0).await;
            json!({"id": id, "rca_owner": "matrix@test.salvage"})
        }
        "incidents/freeze" => {
            // One incident freeze at a time: lift the one an earlier call set.
            sqlx::query(
                "update write_freezes set ended_at = now() where scope = 'incident' and ended_at is null",
            )
            .execute(&world.app.pg)
            .await
            .unwrap();
            let id = world.open_incident(0).await;
            json!({"id": id, "on": true, "reason": "matrix"})
        }
        "incidents/tick" => {
            let id = world.open_incident(0).await;
            json!({"id": id, "item": "customers_told", "done": true})
        }
        "dlq/overview" => json!({"filter": "", "after": ""}),
        "migrations/overview" => json!({}),
        "migrations/change" => {
            // Each allowed call pauses a migration that is pending again.
            sqlx::query("update background_migrations set status = 'pending'")
                .execute(&world.app.pg)
                .await
                .unwrap();
            json!({"name": "webhook_event_payload_bytes", "action": "pause", "reason": "matrix"})
        }
        "dlq/dry-run" => json!({"filter": ""}),
        "dlq/redrive" => {
            // Each allowed call needs dead letters of its own.
            let (webhook, _) = world.dead_letters(2).await;
            json!({"filter": format!("webhook={webhook}"), "reason": "matrix"})
        }
        "dlq/redrive-status" => {
            let id: i64 = sqlx::query_scalar(
                "insert into webhook_redrives (filter, total, max_id, cutoff, actor, reason, started_at)
                 values ('{\"query\": \"\", \"label\": \"matrix\"}', 1, 1, now(), 'matrix', 'matrix', now())
                 returning id",
            )
            .fetch_one(&world.app.pg)
            .await
            .unwrap();
            json!({"id": id})
        }
        "dlq/purge" => {
            // A purge waits for the incident freeze an earlier call set: lift it.
            sqlx::query(
                "update write_freezes set ended_at = now() where scope = 'incident' and ended_at is null",
            )
            .execute(&world.app.pg)
            .await
            .unwrap();
            let (webhook, count) = world.dead_letters(3).await;
            json!({"filter": format!("webhook={webhook}"), "confirm": count.to_string(), "reason": "matrix"})
        }
        "dlq/delivery" => {
            let (webhook, _) = world.dead_letters(1).await;
            let id: i64 =
                sqlx::query_scalar("select max(id) from webhook_deliveries where webhook_id = $1")
                    .bind(webhook)
                    .fetch_one(&world.app.pg)
                    .await
                    .unwrap();
            json!({"id": id})
        }
        "dlq/recover" => {
            let (webhook, _) = world.dead_letters(2).await;
            sqlx::query("update webhooks set paused_at = now() - interval '1 minute', failing_since = now() - interval '1 hour' where id = $1")
                .bind(webhook)
                .execute(&world.app.pg)
                .await
                .unwrap();
            json!({"webhook_id": webhook, "reason": "matrix"})
        }
        "settings/webhooks/create" => json!({"url": "https://hooks.example.com/in",
            "description": "matrix", "event_types": "order.paid", "max_retries": "3"}),
        "settings/webhooks/enabled" => {
            let (webhook, _) = world.dead_letters(0).await;
            json!({"id": webhook, "enabled": false, "reason": "matrix"})
        }
        "settings/webhooks/delete" => {
            let (webhook, _) = world.dead_letters(0).await;
            json!({"id": webhook, "reason": "matrix"})
        }
        "settings/users/add" => {
            json!({"email": format!("new-{}@test.salvage", uuid::Uuid::new_v4().simple()), "role": "operator", "reason": "matrix"})
        }
        "settings/users/role" => {
            json!({"user_id": world.target().await, "role": "manager", "reason": "matrix"})
        }
        "settings/users/disabled" => {
            json!({"user_id": world.target().await, "disabled": true, "reason": "matrix"})
        }
        "alerts/open" => json!({"kind": "", "severity": "", "status": ""}),
        "alerts/resolved" => json!({"kind": "", "severity": ""}),
        "alerts/detail" => json!({"alert_id": world.alert().await.0}),
        "alerts/acknowledge" => {
            // Each allowed call needs an alert of its own, at the version it has.
            let (id, version) = world.alert().await;
            json!({"selection": format!("{id}@{version}"), "note": "matrix", "until": ""})
        }
        "alerts/resolve" => {
            let (id, version) = world.alert().await;
            json!({"selection": format!("{id}@{version}"), "note": "matrix"})
        }
        "alerts/note" => json!({"alert_id": world.alert().await.0, "note": "matrix"}),
        "alerts/silence" => {
            json!({"kind": "clickhouse_down", "key": "", "ends_at": "1h", "reason": "matrix"})
        }
        "alerts/unsilence" => {
            let (_, id) = world
                .client(Who::As(Role::Operator))
                .call(
                    "alerts/silence",
                    json!({"kind": "clickhouse_down", "key": "", "ends_at": "1h", "reason": "to end"}),
                )
                .await;
            json!({"silence_id": id, "reason": "matrix"})
        }
        "jobs/start" => json!({"job": "expire-fallback", "reason": "matrix"}),
        "jobs/cancel" => {
            // Each allowed call needs a run that is still running.
            let run: i64 = sqlx::query_scalar(
                "insert into cron_job_runs (job_name, ran_at, heartbeat_at, trigger, actor)
                 values ('replay-fallback', now(), now(), 'cli', 'matrix') returning id",
            )
            .fetch_one(&world.app.pg)
            .await
            .unwrap();
            json!({"run_id": run})
        }
        "backups/verify" | "backups/plan" => json!({"id": world.backup}),
        "backups/restore" => json!({"backup_id": world.backup, "mode": "side",
            "target": format!("salvage_test_matrix_{}", uuid::Uuid::new_v4().simple()),
            "tables": "history_anchors", "confirm": "", "reason": "matrix"}),
        "backups/side-stop" => {
            // Each allowed call needs a side cluster: its directory (never started).
            let pitr = world.app.state.backups().pitr.clone().unwrap();
            let port = crate::helpers::free_port().await;
            // The matrix's own side directory (see world.rs).
            crate::backups::pitr::side_dir_made(&pitr);
            std::fs::create_dir_all(app::backups::ssr::pitr::sides::data_dir(&pitr, port)).unwrap();
            json!({"port": port, "reason": "matrix"})
        }
        "backups/rollback" => {
            // Each allowed call needs an in-place restore whose live tables are aside.
            let id: i64 = sqlx::query_scalar(
                "insert into restores (backup_id, store, mode, target, tables, actor, started_at,
                                       status, aside)
                 values ($1, 'postgres', 'in_place', 'x', '{}', 'matrix', now(), 'verified',
                         'salvage_pre_matrix') returning id",
            )
            .bind(world.backup)
            .fetch_one(&world.app.pg)
            .await
            .unwrap();
            json!({"id": id, "reason": "matrix"})
        }
        "settings/cron-secret/rotate" => json!({"grace_hours": 24, "reason": "matrix"}),
        "settings/cron-secret/end-grace" => {
            // Each allowed call needs a secret in its grace window.
            let rotated = app::crons::ssr::secrets::rotate(
                &world.app.pg,
                &app::auth::ssr::Actor::cli(),
                "cli",
                24,
                None,
                time::OffsetDateTime::now_utc(),
            )
            .await
            .unwrap();
            json!({"secret_id": rotated.previous.unwrap().0, "reason": "matrix"})
        }
        "settings/ingest-keys/create" => json!({"name": "matrix key", "organization": "org_1"}),
        "settings/ingest-keys/usage" | "incidents/key-snapshot" => {
            let (key_id, _) = app::ingest_keys::ssr::create(
                &world.app.pg,
                &app::auth::ssr::Actor::cli(),
                "leaked",
                "org_1",
            )
            .await
            .unwrap();
            let id = world.open_incident(0).await;
            json!({"id": id, "key_id": key_id})
        }
        "settings/ingest-keys/revoke" => {
            let (id, _) = app::ingest_keys::ssr::create(
                &world.app.pg,
                &app::auth::ssr::Actor::cli(),
                "to revoke",
                "org_1",
            )
            .await
            .unwrap();
            json!({"key_id": id, "reason": "matrix"})
        }
        "auth/password" => json!({"current_password": crate::helpers::PASSWORD,
            "new_password": "another long passphrase", "confirm_password": "another long passphrase"}),
        _ => json!({}),
    }
}
