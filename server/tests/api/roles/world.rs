//! The app every call of the matrix runs in.

use app::auth::Role;
use serde_json::json;

use super::Who;
use crate::helpers::{Client, TestApp};

/// The world each call runs in: one account per role, an open incident, a target user.
pub(super) struct World {
    pub(super) app: TestApp,
    pub(super) clients: Vec<(Who, Client)>,
    pub(super) incident: i64,
    /// A complete ClickHouse backup to verify and restore.
    pub(super) backup: i64,
}

impl World {
    pub(super) async fn new() -> Self {
        // Point-in-time recovery on: its server functions act on the repository.
        let app = crate::helpers::spawn_app_with(crate::helpers::Options {
            pitr: true,
            tweak: Some(matrix_side_dir),
            ..Default::default()
        })
        .await;
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

    pub(super) fn client(&self, who: Who) -> &Client {
        &self.clients.iter().find(|(w, _)| *w == who).unwrap().1
    }

    /// Counts of every table a call could change.
    pub(super) async fn snapshot(&self) -> Vec<i64> {
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
            "cron_job_runs where cancel_requested",
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
    pub(super) async fn background_runs_finished(&self) {
        let pg = &self.app.pg;
        // A drill restores and verifies both stores: alone it ends in seconds, but under
        // the full suite on two cores one took over 30 s. A run that hangs still fails.
        let done = crate::helpers::eventually(std::time::Duration::from_secs(120), || async {
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
    pub(super) async fn alert(&self) -> (i64, i32) {
        let key = uuid::Uuid::new_v4().simple().to_string();
        let signal =
            app::alerts::ssr::Signal::new(key, app::alerts::Severity::Warning, "Matrix alert");
        let id = crate::alerts::raise_data_expired_signal(&self.app.pg, &signal).await;
        (id, 1)
    }

    /// A fresh open incident, begun `days_ago` days ago (recorded as the CLI would, so
    /// the people's rate of annotations is not spent on the matrix's setup).
    pub(super) async fn open_incident(&self, days_ago: i64) -> i64 {
        let started = time::OffsetDateTime::now_utc() - time::Duration::days(days_ago);
        app::history::ssr::record(
            &self.app.pg,
            &app::history::ssr::NewEntry::new(
                app::history::ssr::IncidentDeclared {},
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
    pub(super) async fn dead_letters(&self, n: i64) -> (i64, i64) {
        let created = app::dead_letters::ssr::endpoints::create(
            &self.app.pg,
            &self.app.state.webhooks().secret_keys,
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
    pub(super) async fn target(&self) -> i64 {
        let email = format!("target-{}@test.salvage", uuid::Uuid::new_v4().simple());
        self.app.add_user(&email, Role::Operator).await
    }
}

/// Side clusters of the matrix's own (the `side-stop` case makes their directories), so
/// the ones its refused calls leave are never listed beside real ones.
fn matrix_side_dir(settings: &mut salvage::config::Settings) {
    if let Some(pitr) = settings.backups.pitr.as_mut() {
        pitr.side_dir = pitr.side_dir.join("matrix");
    }
}
