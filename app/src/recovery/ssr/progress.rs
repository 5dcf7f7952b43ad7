//! A recovery's plan and its finished steps, kept in the database being recovered
//! (schema `salvage_recovery`, outside `public`, which the first step replaces): a run
//! stopped at a step finds them there when run again and starts from that step. The
//! schema goes when the recovery ends; its record is then the `recovery` history entry.
//! If the database is lost again mid-recovery, its progress goes with it, as it should.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Connection, PgConnection, Row};

use super::super::Step;

/// What a recovery restores, decided once before anything changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// `latest`, or the moment asked for (RFC 3339).
    pub asked: String,
    pub lost_at_ms: Option<i64>,
    pub postgres: PgSource,
    /// The ClickHouse backup to restore (`clickhouse/<id>` in the repository).
    pub clickhouse: Option<ChPoint>,
    /// When the first run began: the recovery time counts from here.
    pub started_ms: i64,
    pub reason: String,
}

impl Plan {
    /// When the first run began.
    pub fn started_at(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.started_ms) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }
}

/// Where PostgreSQL comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum PgSource {
    /// pgBackRest's repository, replayed to the point.
    PointInTime,
    /// A logical backup (`postgres/<id>`), taken at `at_ms`.
    Dump { backup_id: i64, at_ms: i64 },
}

impl PgSource {
    pub fn describe(&self) -> String {
        match self {
            PgSource::PointInTime => "point-in-time".to_owned(),
            PgSource::Dump { backup_id, .. } => format!("dump {backup_id}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChPoint {
    pub backup_id: i64,
    pub at_ms: i64,
}

/// A finished step as recorded.
#[derive(Clone, Debug)]
pub struct Done {
    pub ms: i64,
    pub summary: String,
    pub detail: Value,
}

/// The progress, on a connection of its own as the database's owner.
pub struct Progress {
    conn: PgConnection,
}

impl Progress {
    pub fn new(conn: PgConnection) -> Self {
        Self { conn }
    }

    /// The plan of an unfinished recovery, if there is one.
    pub async fn plan(&mut self) -> Result<Option<Plan>, sqlx::Error> {
        let exists: bool =
            sqlx::query_scalar("select to_regclass('salvage_recovery.plan') is not null")
                .fetch_one(&mut self.conn)
                .await?;
        if !exists {
            return Ok(None);
        }
        let plan: Option<Value> = sqlx::query_scalar("select plan from salvage_recovery.plan")
            .fetch_optional(&mut self.conn)
            .await?;
        Ok(plan.and_then(|plan| serde_json::from_value(plan).ok()))
    }

    /// Tables anywhere in the database but the system's and this progress's own.
    pub async fn tables_held(&mut self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where c.relkind in ('r', 'p')
                and n.nspname not in ('pg_catalog', 'information_schema', 'salvage_recovery')
                and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%'",
        )
        .fetch_one(&mut self.conn)
        .await
    }

    /// Records `plan` as this database's recovery, in one transaction.
    pub async fn begin(&mut self, plan: &Plan) -> Result<(), sqlx::Error> {
        let mut tx = self.conn.begin().await?;
        for statement in [
            "create schema if not exists salvage_recovery",
            "create table if not exists salvage_recovery.plan
                (one boolean primary key default true check (one), plan jsonb not null)",
            "create table if not exists salvage_recovery.steps
                (step text primary key, ms bigint not null, summary text not null,
                 detail jsonb not null)",
        ] {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query("insert into salvage_recovery.plan (plan) values ($1)")
            .bind(serde_json::to_value(plan).unwrap_or_default())
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// The steps finished so far.
    pub async fn done(&mut self) -> Result<HashMap<Step, Done>, sqlx::Error> {
        let rows = sqlx::query("select step, ms, summary, detail from salvage_recovery.steps")
            .fetch_all(&mut self.conn)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let step = Step::parse(row.get("step"))?;
                Some((
                    step,
                    Done {
                        ms: row.get("ms"),
                        summary: row.get("summary"),
                        detail: row.get("detail"),
                    },
                ))
            })
            .collect())
    }

    pub async fn finish(&mut self, step: Step, done: &Done) -> Result<(), sqlx::Error> {
        sqlx::query(
            "insert into salvage_recovery.steps (step, ms, summary, detail)
             values ($1, $2, $3, $4)",
        )
        .bind(step.as_str())
        .bind(done.ms)
        .bind(&done.summary)
        .bind(&done.detail)
        .execute(&mut self.conn)
        .await
        .map(drop)
    }

    /// The recovery ended: its progress goes (the history entry keeps its record).
    pub async fn end(&mut self) -> Result<(), sqlx::Error> {
        sqlx::query("drop schema if exists salvage_recovery cascade")
            .execute(&mut self.conn)
            .await
            .map(drop)
    }
}
