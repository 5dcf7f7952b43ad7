//! `webhook_event_payload_bytes`: the background migration that fills
//! `webhook_events.payload_bytes` for the events stored before the column existed (new
//! events get it on ingest). The dry run of a redrive sums it to say how many bytes the
//! redrive sends; until the backfill is done it measures the rows still missing it.
//!
//! Keyset by id, in chunks: only rows still missing the figure are changed, so a chunk
//! redone after a crash finds nothing it already did.

use sqlx::{PgConnection, Row};

use crate::jobs::ssr::background::{BackgroundMigration, Chunk, StepFuture};

pub static PAYLOAD_BYTES: BackgroundMigration = BackgroundMigration {
    name: "webhook_event_payload_bytes",
    description:
        "Fills in the payload size of webhook events stored before the column existed, so a \
                  redrive's dry run can say how many bytes it will send.",
    count,
    step,
};

/// The same measure ingest stores: the length of the payload's JSON text as
/// PostgreSQL writes it (0 once retention removed the payload).
pub const MEASURE: &str = "coalesce(octet_length(payload::text), 0)";

fn count(conn: &mut PgConnection) -> StepFuture<'_, i64> {
    Box::pin(async move {
        sqlx::query_scalar!(
            r#"select count(*) as "count!" from webhook_events where payload_bytes is null"#
        )
        .fetch_one(conn)
        .await
    })
}

fn step(conn: &mut PgConnection, cursor: Option<i64>, limit: i64) -> StepFuture<'_, Chunk> {
    Box::pin(async move {
        let row = sqlx::query(&format!(
            "with chunk as (
                 select id from webhook_events
                  where id > $1 and payload_bytes is null
                  order by id limit $2
                  for update),
             changed as (
                 update webhook_events e set payload_bytes = {MEASURE}
                   from chunk where e.id = chunk.id
                 returning e.id)
             select count(*) as rows, max(id) as last from changed"
        ))
        .bind(cursor.unwrap_or(0))
        .bind(limit)
        .fetch_one(conn)
        .await?;
        let rows: i64 = row.get("rows");
        let last: Option<i64> = row.get("last");
        Ok(Chunk {
            cursor: last.or(cursor).unwrap_or(0),
            rows,
            done: rows < limit,
        })
    })
}
