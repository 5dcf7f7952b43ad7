//! The console's own queries, run by a drill on what it restored: the queues page's
//! figures and the history's chain verification on PostgreSQL, a sample of ids read back
//! by id on ClickHouse. Each answers a `QueryResult`; none writes.

use super::super::{QueryResult, TableResult};
use crate::server::AppState;

/// How many ids of each ClickHouse table are read back by id.
const SAMPLE_IDS: usize = 100;

/// The queues page's figures and the history's chain verification, on the restored
/// PostgreSQL database.
pub async fn postgres(state: &AppState, database: &str) -> Vec<QueryResult> {
    use crate::backups::ssr::postgres as pg;
    let options = match secrecy::ExposeSecret::expose_secret(pg::working_url(state.backups()))
        .parse::<sqlx::postgres::PgConnectOptions>()
    {
        Ok(options) => options.database(database).application_name("salvage-drill"),
        Err(error) => {
            return vec![QueryResult {
                name: "connect".into(),
                ok: false,
                detail: error.to_string(),
            }]
        }
    };
    let pool = match sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
    {
        Ok(pool) => pool,
        Err(error) => {
            return vec![QueryResult {
                name: "connect".into(),
                ok: false,
                detail: format!("PostgreSQL: {error}"),
            }]
        }
    };
    let now = state.clock.now();
    let queues = match crate::queues::ssr::stats::queue_stats(&pool, state.queues().ttl, now).await
    {
        Ok(stats) => QueryResult {
            name: "queues page".into(),
            ok: true,
            detail: format!(
                "queues page: {}",
                stats
                    .iter()
                    .map(|q| format!("{} {} queued", q.queue.as_str(), q.depth))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        Err(error) => QueryResult {
            name: "queues page".into(),
            ok: false,
            detail: format!("PostgreSQL: {error}"),
        },
    };
    let chain = match crate::history::chain::verify(&pool, &state.clickhouse, now, "drill").await {
        Ok(report) => match &report.first_broken {
            None => QueryResult {
                name: "history chain".into(),
                ok: true,
                detail: format!("history chain: {} entries link up", report.entries),
            },
            Some(broken) => QueryResult {
                name: "history chain".into(),
                ok: false,
                detail: format!("entry {}: {}", broken.id, broken.problem),
            },
        },
        Err(error) => QueryResult {
            name: "history chain".into(),
            ok: false,
            detail: format!("PostgreSQL: {error}"),
        },
    };
    pool.close().await;
    vec![queues, chain]
}

/// A sample of ids of each restored ClickHouse table, read back by id.
pub async fn clickhouse(
    state: &AppState,
    database: &str,
    tables: &[TableResult],
) -> Vec<QueryResult> {
    let client = state.clickhouse.client();
    let mut results = Vec::new();
    // The application's tables, whose rows have ids (Salvage's own have none).
    let application = state.clickhouse.application_tables();
    for table in tables
        .iter()
        .filter(|t| application.contains(&t.name.as_str()))
    {
        let name = format!("{} ids", table.name);
        let sampled = client
            .query(&format!(
                "SELECT toString(id) FROM `{database}`.`{}` LIMIT {SAMPLE_IDS}",
                table.name
            ))
            .fetch_all::<String>()
            .await;
        let ids = match sampled {
            Ok(ids) => ids,
            Err(error) => {
                results.push(QueryResult {
                    name,
                    ok: false,
                    detail: format!("ClickHouse: {error}"),
                });
                continue;
            }
        };
        if ids.is_empty() {
            results.push(QueryResult {
                name,
                ok: table.expected_rows == 0,
                detail: format!("{}: no rows to sample", table.name),
            });
            continue;
        }
        let list = ids
            .iter()
            .map(|id| format!("'{}'", id.replace('\'', "")))
            .collect::<Vec<_>>()
            .join(", ");
        let found = client
            .query(&format!(
                "SELECT count() FROM `{database}`.`{}` WHERE toString(id) IN ({list})",
                table.name
            ))
            .fetch_one::<u64>()
            .await;
        results.push(match found {
            Ok(found) if found as usize >= ids.len() => QueryResult {
                name,
                ok: true,
                detail: format!(
                    "{}: {} of {} sampled ids found by id",
                    table.name,
                    ids.len(),
                    ids.len()
                ),
            },
            Ok(found) => QueryResult {
                name,
                ok: false,
                detail: format!(
                    "{}: only {found} of {} sampled ids found by id",
                    table.name,
                    ids.len()
                ),
            },
            Err(error) => QueryResult {
                name,
                ok: false,
                detail: format!("ClickHouse: {error}"),
            },
        });
    }
    results
}
