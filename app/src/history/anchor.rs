//! Anchors: the history's head, copied to ClickHouse every few seconds.
//!
//! The chain alone proves that no entry was changed *inside* it, but whoever owns the
//! PostgreSQL table can delete the newest entries, or rewrite the whole chain with fresh
//! hashes, and it still links up. Each anchor is `(sequence, hash)` of the head at one
//! moment, written to a different store with different credentials; verification walks
//! the chain and the anchors side by side and reports an anchored entry that is gone
//! (truncation) or that no longer has its anchored hash (a rewrite).

use std::time::Duration;

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::AnchorCheck;
use crate::format::format_utc;
use crate::server::clickhouse::ClickHouse;

/// How often the head is anchored (when it moved).
pub const ANCHOR_EVERY: Duration = Duration::from_secs(2);

#[derive(Row, Serialize, Deserialize)]
struct Anchor {
    seq: u64,
    hash: String,
    anchored_at: u32,
}

/// Why anchoring failed this time.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
}

/// Anchors the head if it moved past `last` (the newest sequence anchored, read from
/// ClickHouse when `None`). Returns the newest anchored sequence. Idempotent: two
/// replicas anchoring the same head write the same pair.
pub async fn anchor_head(
    pg: &PgPool,
    clickhouse: &ClickHouse,
    last: Option<i64>,
) -> Result<i64, AnchorError> {
    let last = match last {
        Some(last) => last,
        None => {
            clickhouse
                .client()
                .query("SELECT toInt64(max(seq)) FROM history_anchors")
                .fetch_one::<i64>()
                .await?
        }
    };
    let head = sqlx::query!(
        "select id, encode(hash, 'hex') as \"hash!\" from runbook_history order by id desc limit 1"
    )
    .fetch_optional(pg)
    .await?;
    let Some(head) = head.filter(|head| head.id > last) else {
        return Ok(last);
    };
    clickhouse
        .client()
        .query("INSERT INTO history_anchors (seq, hash) VALUES (?, ?)")
        .bind(head.id as u64)
        .bind(head.hash.as_str())
        .execute()
        .await?;
    tracing::debug!(seq = head.id, "history head anchored");
    Ok(head.id)
}

/// Walks the anchors in sequence order beside the chain (which calls [`Self::entry`]
/// for each entry in id order, then [`Self::finish`]).
pub(super) struct AnchorWalk {
    cursor: Option<clickhouse::query::RowCursor<Anchor>>,
    next: Option<Anchor>,
    check: AnchorCheck,
}

impl AnchorWalk {
    /// Starts reading the anchors; a ClickHouse that does not answer marks the check
    /// unavailable (the chain is still verified).
    pub(super) async fn start(clickhouse: &ClickHouse) -> Self {
        let mut walk = Self {
            cursor: clickhouse
                .client()
                .query("SELECT seq, hash, toUInt32(anchored_at) AS anchored_at FROM history_anchors ORDER BY seq")
                .fetch::<Anchor>()
                .ok(),
            next: None,
            check: AnchorCheck::default(),
        };
        walk.advance().await;
        walk
    }

    async fn advance(&mut self) {
        let Some(cursor) = self.cursor.as_mut() else {
            self.check.unavailable = true;
            self.next = None;
            return;
        };
        match cursor.next().await {
            Ok(next) => self.next = next,
            Err(error) => {
                tracing::warn!(%error, "history anchors could not be read");
                self.check.unavailable = true;
                self.cursor = None;
                self.next = None;
            }
        }
    }

    fn found(&mut self, anchor: &Anchor, problem: Option<String>) {
        self.check.checked += 1;
        self.check.newest_seq = Some(anchor.seq as i64);
        self.check.newest_at = Some(i64::from(anchor.anchored_at) * 1000);
        if self.check.problem.is_none() {
            self.check.problem = problem;
        }
    }

    /// The chain's entry `id` with stored hash `hash` (hex).
    pub(super) async fn entry(&mut self, id: i64, hash: &str) {
        while let Some(anchor) = self.next.take() {
            let seq = anchor.seq as i64;
            if seq > id {
                self.next = Some(anchor);
                return;
            }
            let problem = if seq < id {
                Some(format!(
                    "entry #{seq}, anchored {}, is missing from the chain",
                    format_utc(i64::from(anchor.anchored_at) * 1000)
                ))
            } else if anchor.hash != hash {
                Some(format!(
                    "entry #{seq} no longer has the hash anchored {}: the chain was rewritten",
                    format_utc(i64::from(anchor.anchored_at) * 1000)
                ))
            } else {
                None
            };
            self.found(&anchor, problem);
            self.advance().await;
        }
    }

    /// The chain ended at `last_id`: anchors past it mean its newest entries are gone.
    pub(super) async fn finish(mut self, last_id: i64) -> AnchorCheck {
        while let Some(anchor) = self.next.take() {
            let problem = Some(format!(
                "the newest entries are gone: entry #{} was anchored {}, but the chain ends at #{last_id}",
                anchor.seq,
                format_utc(i64::from(anchor.anchored_at) * 1000)
            ));
            self.found(&anchor, problem);
            self.advance().await;
        }
        self.check
    }
}
