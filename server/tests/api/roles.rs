//! The role matrix: every server function and every `/admin` page, for anonymous,
//! operator, manager and admin. A refused call answers 401/403, changes no row and writes
//! no history entry; an allowed one does what it says.
//!
//! One file over 500 lines on purpose: the matrix (every endpoint, its arguments and its
//! roles) is one table that must be read whole.

use app::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Client, TestApp};

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

/// The world each call runs in: one account per role, an open incident, a target user.
struct World {
    app: TestApp,
    clients: Vec<(Who, Client)>,
    incident: i64,
    /// A complete ClickHouse backup to verify and restore.
    backup: i64,
}

impl World {
    async fn new() -> Self {
        let app = spawn_app().await;
        let mut clients = vec![(Who::Anonymous, app.client())];
        for role in Role::ALL {
            clients.push((Who::As(role), app.signed_in(role).await));
        }
        let (_, incident) = clients[1]
            .1
            .call(
                "history/incident",
                json!({"title": "Matrix incident", "severity": "sev3", "started_at": "",
                       "resolved_at": "", "body": ""}),
            )
            .await;
        let incident = incident.as_i64().expect("an incident id");
        let answer = crate::helpers::run_job(&app, "backup").await;
        let backup = answer["backups"][1]["backupId"]
            .as_i64()
            .expect("a ClickHouse backup");
        Self {
            app,
            clients,
            incident,
            backup,
        }
    }

    fn client(&self, who: Who) -> &Client {
        &self.clients.iter().find(|(w, _)| *w == who).unwrap().1
    }

    /// Counts of every table a call could change.
    async fn snapshot(&self) -> Vec<i64> {
        let mut counts = Vec::new();
        for table in [
            "users",
            "runbook_history",
            "setup_tokens",
            "ingest_keys",
            "cron_job_runs",
            "internal_alerts where status = 'resolved'",
            "internal_alert_events",
            "alert_silences where ended_at is not null",
            "alert_silences",
            "drills",
            "incident_checklist",
            "incident_owners",
            "recovery_objectives",
            "write_freezes",
            "write_freezes where ended_at is not null",
            "webhooks",
            "webhooks where enabled",
            "webhooks where deleted_at is not null",
            "webhook_deliveries",
            "webhook_deliveries where status = 'dead'",
            "webhook_redrives",
            "webhook_redrives where cancel_requested",
        ] {
            counts.push(self.app.count(table).await);
        }
        let roles: i64 = sqlx::query_scalar(
            "select coalesce(sum(hashtext(email || role || disabled::text || session_generation::text)), 0)::bigint from users",
        )
        .fetch_one(&self.app.pg)
        .await
        .unwrap();
        counts.push(roles);
        counts
    }

    /// Waits until the job a button started in the background has finished.
    async fn background_runs_finished(&self) {
        let pg = &self.app.pg;
        let done = crate::helpers::eventually(std::time::Duration::from_secs(30), || async {
            let running: i64 = sqlx::query_scalar(
                "select count(*) from cron_job_runs where outcome = 'running' and actor <> 'matrix'",
            )
            .fetch_one(pg)
            .await
            .unwrap();
            running == 0
        })
        .await;
        let running: Vec<(String, String)> = sqlx::query_as(
            "select job_name, actor from cron_job_runs where outcome = 'running' and actor <> 'matrix'",
        )
        .fetch_all(pg)
        .await
        .unwrap();
        assert!(done, "the run started by the button finished: {running:?}");
    }

    /// A fresh open alert to act on (raised as expiry raises one): (id, version).
    async fn alert(&self) -> (i64, i32) {
        let key = uuid::Uuid::new_v4().simple().to_string();
        let signal =
            app::alerts::ssr::Signal::new(key, app::alerts::Severity::Warning, "Matrix alert");
        let id = crate::alerts::raise_data_expired_signal(&self.app.pg, &signal).await;
        (id, 1)
    }

    /// A fresh open incident, begun `days_ago` days ago (recorded as the CLI would, so
    /// the people's rate of annotations is not spent on the matrix's setup).
    async fn open_incident(&self, days_ago: i64) -> i64 {
        let started = time::OffsetDateTime::now_utc() - time::Duration::days(days_ago);
        app::history::ssr::record(
            &self.app.pg,
            &app::history::ssr::NewEntry::new(
                "incident",
                "Matrix incident",
                &app::auth::ssr::Actor::cli(),
                app::history::Outcome::Info,
            )
            .with_times(started, None)
            .with_severity(Some("sev4".into())),
            "matrix incident",
        )
        .await
        .unwrap()
    }

    /// A fresh webhook with `n` dead letters (made as the delivery engine makes them):
    /// its id and `n`.
    async fn dead_letters(&self, n: i64) -> (i64, i64) {
        let created = app::dead_letters::ssr::endpoints::create(
            &self.app.pg,
            &app::auth::ssr::Actor::cli(),
            &app::dead_letters::ssr::endpoints::NewWebhook {
                url: "https://hooks.example.com/matrix".into(),
                description: "matrix".into(),
                event_types: vec!["order.paid".into()],
                max_retries: 5,
                max_in_flight: 4,
            },
        )
        .await
        .unwrap();
        let now = time::OffsetDateTime::now_utc();
        for _ in 0..n {
            let mut tx = self.app.pg.begin().await.unwrap();
            app::dead_letters::ssr::ingest::enqueue(
                &mut tx,
                "order.paid",
                &json!({"matrix": true}),
                &uuid::Uuid::new_v4().to_string(),
                None,
                now,
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        sqlx::query(
            "update webhook_deliveries set status = 'dead', dlq_at = now(), dlq_reason = 'exhausted'
              where webhook_id = $1",
        )
        .bind(created.id)
        .execute(&self.app.pg)
        .await
        .unwrap();
        (created.id, n)
    }

    /// A fresh user to act on (created as the CLI would).
    async fn target(&self) -> i64 {
        let email = format!("target-{}@test.salvage", uuid::Uuid::new_v4().simple());
        self.app.add_user(&email, Role::Operator).await
    }
}

/// One server function: its endpoint, which roles may call it, and how to build a call.
struct Case {
    endpoint: &'static str,
    allowed: Allowed,
    /// History entries an allowed call writes (a call that starts work in the
    /// background writes them when it ends; the matrix waits for them).
    records: i64,
}

/// Which roles may do something.
type Allowed = fn(Role) -> bool;

fn any(_: Role) -> bool {
    true
}
fn admins(role: Role) -> bool {
    role == Role::Admin
}
fn managers(role: Role) -> bool {
    matches!(role, Role::Manager | Role::Admin)
}
fn operators(role: Role) -> bool {
    matches!(role, Role::Operator | Role::Admin)
}

const CASES: &[Case] = &[
    Case {
        endpoint: "auth/me",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "overview/stores",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "history/search",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "history/entry",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "history/verify",
        allowed: managers,
        records: 1,
    },
    Case {
        endpoint: "history/note",
        allowed: any,
        records: 1,
    },
    // The incident and its first status snapshot.
    Case {
        endpoint: "history/incident",
        allowed: any,
        records: 2,
    },
    Case {
        endpoint: "history/resolve",
        allowed: any,
        records: 1,
    },
    Case {
        endpoint: "alerts/counts",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "alerts/open",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "alerts/resolved",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "alerts/detail",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "alerts/acknowledge",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "alerts/resolve",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "alerts/note",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "alerts/silence",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "alerts/unsilence",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "queues/overview",
        allowed: any,
        records: 0,
    },
    // The run continues in the background; the matrix waits for it before counting.
    Case {
        endpoint: "queues/replay",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "queues/cancel",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "backups/overview",
        allowed: any,
        records: 0,
    },
    // The backup job: a backup and a verification of each store.
    Case {
        endpoint: "backups/create",
        allowed: operators,
        records: 4,
    },
    Case {
        endpoint: "backups/verify",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "backups/plan",
        allowed: admins,
        records: 0,
    },
    Case {
        endpoint: "backups/restore",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "backups/cancel-restore",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "backups/rollback",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "crons/overview",
        allowed: any,
        records: 0,
    },
    // In the background too; the job (expiry, with nothing to expire) writes no entry of
    // its own, so the run's own "ran by hand" entry is the one.
    Case {
        endpoint: "crons/run",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "settings/cron-secret",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "settings/cron-secret/rotate",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "settings/cron-secret/end-grace",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "settings/ingest-keys",
        allowed: admins,
        records: 0,
    },
    Case {
        endpoint: "settings/ingest-keys/create",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "settings/ingest-keys/revoke",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "settings/users",
        allowed: admins,
        records: 0,
    },
    Case {
        endpoint: "settings/users/add",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "settings/users/role",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "settings/users/disabled",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "drills/overview",
        allowed: any,
        records: 0,
    },
    // In the background: each store's restore into its throwaway database, then the
    // drill's own entry.
    Case {
        endpoint: "drills/run",
        allowed: operators,
        records: 3,
    },
    Case {
        endpoint: "drills/cancel",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "drills/tabletop",
        allowed: any,
        records: 1,
    },
    Case {
        endpoint: "drills/objectives",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "incidents/mode",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "incidents/snapshot",
        allowed: any,
        records: 1,
    },
    Case {
        endpoint: "incidents/freeze",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "incidents/tick",
        allowed: any,
        records: 1,
    },
    Case {
        endpoint: "incidents/owner",
        allowed: any,
        records: 1,
    },
    Case {
        endpoint: "dlq/overview",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "migrations/overview",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "migrations/change",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "dlq/dry-run",
        allowed: operators,
        records: 0,
    },
    // In the background: the redrive's entry when it finishes.
    Case {
        endpoint: "dlq/redrive",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "dlq/redrive-status",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "dlq/cancel-redrive",
        allowed: operators,
        records: 0,
    },
    Case {
        endpoint: "dlq/purge",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "dlq/delivery",
        allowed: any,
        records: 0,
    },
    // The endpoint's re-enabling, then its redrive's entry when that finishes.
    Case {
        endpoint: "dlq/recover",
        allowed: operators,
        records: 2,
    },
    Case {
        endpoint: "settings/webhooks",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "settings/webhooks/create",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "settings/webhooks/enabled",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "settings/webhooks/delete",
        allowed: admins,
        records: 1,
    },
    // Last: it changes the caller's own password (the session stays signed in).
    Case {
        endpoint: "auth/password",
        allowed: any,
        records: 1,
    },
];
// Not in the matrix, because they are for people who are not signed in yet, and have
// tests of their own in auth.rs: auth/sign-in, auth/sign-out, auth/setup-status, auth/setup.

async fn arguments(world: &World, endpoint: &str) -> Value {
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
            // checklist passes: begun before the world's verified backup, every manual
            // item ticked.
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
            json!({"incident_id": id, "resolved_at": "", "body": "fixed"})
        }
        "drills/run" => json!({"reason": "matrix"}),
        "drills/cancel" => {
            // Each allowed call needs a drill that is still running.
            let run: i64 = sqlx::query_scalar(
                "insert into cron_job_runs (job_name, ran_at, heartbeat_at, trigger, actor)
                 values ('restore-drill', now(), now(), 'cli', 'matrix') returning id",
            )
            .fetch_one(&world.app.pg)
            .await
            .unwrap();
            let drill: i64 = sqlx::query_scalar(
                "insert into drills (kind, run_id, trigger, actor, started_at)
                 values ('functional', $1, 'cli', 'matrix', now()) returning id",
            )
            .bind(run)
            .fetch_one(&world.app.pg)
            .await
            .unwrap();
            json!({"id": drill})
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
        "dlq/redrive-status" | "dlq/cancel-redrive" => {
            let id: i64 = sqlx::query_scalar(
                "insert into webhook_redrives (filter, total, max_id, cutoff, actor, reason, started_at, heartbeat_at)
                 values ('{\"query\": \"\", \"label\": \"matrix\"}', 1, 1, now(), 'matrix', 'matrix', now(), now())
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
        "queues/replay" => json!({"reason": "matrix"}),
        "queues/cancel" => {
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
        "crons/run" => json!({"job": "expire-fallback", "reason": "matrix"}),
        "backups/create" => json!({"reason": "matrix"}),
        "backups/verify" | "backups/plan" => json!({"id": world.backup}),
        "backups/restore" => json!({"backup_id": world.backup, "mode": "side",
            "target": format!("salvage_test_matrix_{}", uuid::Uuid::new_v4().simple()),
            "tables": "history_anchors", "confirm": "", "reason": "matrix"}),
        "backups/cancel-restore" => {
            // Each allowed call needs a restore that is still running.
            let id: i64 = sqlx::query_scalar(
                "insert into restores (backup_id, store, mode, target, tables, actor, started_at)
                 values ($1, 'clickhouse', 'side', 'x', '{}', 'matrix', now()) returning id",
            )
            .bind(world.backup)
            .fetch_one(&world.app.pg)
            .await
            .unwrap();
            json!({"id": id})
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
        "settings/ingest-keys/revoke" => {
            let (id, _) = app::queues::ssr::keys::create(
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
                "queues/replay" | "crons/run" | "backups/create" | "drills/run"
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
                failures.push(format!("{path} as {who:?}: {status} {location:?}"));
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
