//! `POST /ingest/requests` and `POST /ingest/events`.
//!
//! A batch goes to ClickHouse in one INSERT. If ClickHouse fails or does not answer in
//! time, the same rows go into the fallback queue in one PostgreSQL transaction. The
//! caller gets 2xx only once the rows are durable in one of the two, and the body says
//! which; when neither takes them: 503 with `Retry-After`, and nothing was stored.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;

use super::super::Queue;
use super::rows::{parse_batch, Line};
use crate::error::AppError;
use crate::server::AppState;

/// Where a batch ended up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// In ClickHouse.
    ClickHouse,
    /// In the fallback queue, because ClickHouse did not take it: `reason` says why in
    /// words a key holder may read (ClickHouse's own text is logged, under the reference
    /// `reason` gives). `queued` rows were new to the queue (a retried batch may already
    /// be there).
    Fallback { reason: String, queued: u64 },
}

/// Where an accepted batch went, as `/ingest/requests` and `/ingest/events` say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoredIn {
    /// Written to ClickHouse (200).
    Clickhouse,
    /// Parked in the PostgreSQL fallback queue, replayed into ClickHouse later (202).
    Fallback,
}

/// The answer to an accepted batch: the rows are durable in the store it names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct IngestAnswer {
    pub stored: StoredIn,
    /// Rows in the batch.
    pub rows: usize,
    /// With `fallback`: rows new to the queue (a retried batch may already be there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<u64>,
    /// With `fallback`: why ClickHouse did not take the batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Stores validated `lines` sent with key `key_id`: ClickHouse first, the fallback queue
/// if ClickHouse fails (within the key's quota and the queues' cap).
pub async fn store(
    state: &AppState,
    queue: Queue,
    lines: &[Line],
    key_id: Option<i64>,
) -> Result<Stored, AppError> {
    // While a restore has frozen ClickHouse, rows wait in the fallback queue (replayed
    // into the restored tables after). If PostgreSQL cannot say, ClickHouse is tried.
    let frozen = crate::freeze::ssr::is_frozen(&state.pg, crate::freeze::StoreKind::Clickhouse)
        .await
        .unwrap_or(false);
    // What ClickHouse said stays on this side (the log, and the queue rows for the
    // console); the caller is told what happened and a reference to it.
    let (clickhouse_error, told) = if frozen {
        let frozen = "frozen while a restore runs".to_owned();
        (frozen.clone(), frozen)
    } else {
        let insert = state.clickhouse.insert_lines(
            queue.as_str(),
            lines.iter().map(|l| l.json.as_str()),
            state.queues().ingest_timeout,
        );
        match tokio::time::timeout(state.queues().ingest_timeout, insert).await {
            Ok(Ok(())) => return Ok(Stored::ClickHouse),
            Ok(Err(error)) => {
                let reference = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
                (
                    format!("{error} (reference {reference})"),
                    format!("it refused the batch; reference {reference} in Salvage's log"),
                )
            }
            Err(_) => {
                let late = format!(
                    "no answer within {} ms",
                    state.queues().ingest_timeout.as_millis()
                );
                (late.clone(), late)
            }
        }
    };
    let error = format!("ClickHouse: {clickhouse_error}");
    let limits = Limits {
        key_id,
        per_key_quota: state.queues().per_key_quota,
        total_cap: state.queues().total_cap,
    };
    match enqueue(&state.pg, queue, lines, &error, &limits).await {
        Ok(queued) => {
            tracing::warn!(queue = queue.as_str(), rows = lines.len(), error = %clickhouse_error, "ClickHouse refused a batch; parked it in the fallback queue");
            Ok(Stored::Fallback {
                reason: format!("ClickHouse: {told}"),
                queued,
            })
        }
        Err(EnqueueError::OverQuota { waiting, quota }) => {
            tracing::warn!(
                key_id,
                waiting,
                quota,
                clickhouse = %clickhouse_error,
                "refused: the key is at its fallback quota"
            );
            Err(AppError::RateLimited {
                message: format!(
                    "ClickHouse is not taking rows ({told}), and this key already has \
                     {waiting} rows waiting in the fallback queue; its quota is {quota}. \
                     Nothing of this batch was stored: retry it once replay has drained the \
                     queue."
                ),
                retry_after_secs: 60,
            })
        }
        Err(EnqueueError::Full { depth, cap }) => {
            tracing::error!(depth, cap, clickhouse = %clickhouse_error, "refused: the fallback queues are at their cap");
            Err(AppError::QueueFull {
                message: format!(
                    "ClickHouse is not taking rows ({told}), and the fallback queues \
                     hold {depth} rows, their cap of {cap}. Nothing of this batch was stored: \
                     retry it once ClickHouse is back and replay has drained the queue."
                ),
            })
        }
        Err(EnqueueError::Store(pg_error)) => {
            tracing::error!(queue = queue.as_str(), rows = lines.len(), clickhouse = %clickhouse_error, postgres = %pg_error, "neither store accepted a batch; the caller must retry");
            Err(AppError::Unavailable {
                stores: vec![
                    crate::stores::StoreKind::Clickhouse,
                    crate::stores::StoreKind::Postgres,
                ],
                message: format!(
                    "Neither ClickHouse ({told}) nor PostgreSQL accepted the rows. Nothing was stored; retry the same batch."
                ),
            })
        }
    }
}

/// Who is queueing and the ceilings that apply.
pub struct Limits {
    /// The key that sent the rows (`None`: a tool of Salvage's own, no per-key quota).
    pub key_id: Option<i64>,
    pub per_key_quota: i64,
    pub total_cap: i64,
}

/// Why rows were not queued.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The key already has `waiting` rows queued; `quota` is its ceiling.
    #[error("the key has {waiting} rows queued; its quota is {quota}")]
    OverQuota { waiting: i64, quota: i64 },
    /// Both queues hold `depth` rows together; `cap` is their ceiling.
    #[error("the fallback queues hold {depth} rows; their cap is {cap}")]
    Full { depth: i64, cap: i64 },
    #[error("PostgreSQL: {0}")]
    Store(#[from] sqlx::Error),
}

/// Puts `lines` into `queue`'s fallback table in one transaction, and records `error`
/// as the queue's last error. Rows already queued (same organisation and id) are
/// skipped (a retried batch). A batch that would take the key past its quota or the
/// queues past their cap is refused whole: never a partial or silent drop (concurrent
/// batches may each pass the check, so a quota can be exceeded by a batch per writer).
/// Returns how many rows were new.
///
/// The rows go in with a plain INSERT first: during an outage almost every batch is new,
/// and `on conflict do nothing` costs a third more per row than a plain insert into the
/// same unique key (measured: 200k rows, 1.26 s against 0.94 s). Only a batch that meets
/// a row already queued (a retry) fails on the unique key; its transaction is rolled back
/// whole and run again with `on conflict do nothing`, so it still queues its new rows once.
pub async fn enqueue(
    pg: &PgPool,
    queue: Queue,
    lines: &[Line],
    error: &str,
    limits: &Limits,
) -> Result<u64, EnqueueError> {
    match enqueue_once(pg, queue, lines, error, limits, Duplicates::Refuse).await {
        Err(EnqueueError::Store(e)) if is_already_queued(&e, queue) => {
            enqueue_once(pg, queue, lines, error, limits, Duplicates::Skip).await
        }
        outcome => outcome,
    }
}

/// What the INSERT does with a row whose organisation and id are already queued.
#[derive(Clone, Copy)]
enum Duplicates {
    /// Fail on the unique key (the whole transaction rolls back).
    Refuse,
    /// Skip the row (`on conflict do nothing`).
    Skip,
}

/// True when `error` is `queue`'s unique key on (id, organisation) refusing a row.
fn is_already_queued(error: &sqlx::Error, queue: Queue) -> bool {
    error.as_database_error().is_some_and(|db| {
        db.is_unique_violation()
            && db.constraint() == Some(format!("{}_id_org_key", queue.table()).as_str())
    })
}

async fn enqueue_once(
    pg: &PgPool,
    queue: Queue,
    lines: &[Line],
    error: &str,
    limits: &Limits,
    duplicates: Duplicates,
) -> Result<u64, EnqueueError> {
    let organizations: Vec<&str> = lines.iter().map(|l| l.organization_id.as_str()).collect();
    let ids: Vec<uuid::Uuid> = lines.iter().map(|l| l.id).collect();
    let ts: Vec<time::OffsetDateTime> = lines.iter().map(|l| l.ts).collect();
    let json: Vec<&str> = lines.iter().map(|l| l.json.as_str()).collect();
    let batch = lines.len() as i64;
    let mut tx = pg.begin().await?;
    let depth: i64 = sqlx::query_scalar!(
        r#"select coalesce(sum(depth), 0)::bigint as "depth!" from fallback_depths"#
    )
    .fetch_one(&mut *tx)
    .await?;
    if depth + batch > limits.total_cap {
        return Err(EnqueueError::Full {
            depth,
            cap: limits.total_cap,
        });
    }
    if let Some(key_id) = limits.key_id {
        // The key's exact depth across both queues: its folded base plus the deltas the
        // queues' statement triggers appended since (a few rows, however deep the queue).
        let waiting: i64 = sqlx::query_scalar!(
            r#"select coalesce((select depth from fallback_key_depths where key_id = $1), 0)
                    + coalesce((select sum(delta) from fallback_depth_deltas
                                 where key_id = $1), 0)::bigint as "waiting!""#,
            key_id
        )
        .fetch_one(&mut *tx)
        .await?;
        if waiting + batch > limits.per_key_quota {
            return Err(EnqueueError::OverQuota {
                waiting,
                quota: limits.per_key_quota,
            });
        }
    }
    let on_conflict = match duplicates {
        Duplicates::Refuse => "",
        Duplicates::Skip => "on conflict (organization_id, id) do nothing",
    };
    // The table is one of two constants, so the statement is built, not bound.
    let inserted = sqlx::query(&format!(
        "insert into {} (organization_id, id, ts, row_json, key_id, last_error, last_attempt_at)
         select organization_id, id, ts, row_json, $5, $6, now()
           from unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::text[])
                as t(organization_id, id, ts, row_json)
         {on_conflict}",
        queue.table()
    ))
    .bind(&organizations)
    .bind(&ids)
    .bind(&ts)
    .bind(&json)
    .bind(limits.key_id)
    .bind(error)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query!(
        "update fallback_queues set last_error = $2, last_error_at = now() where queue = $1",
        queue.as_str(),
        error
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(inserted)
}

/// Reads the body once the key is known to be good: a caller without one costs no body
/// read at all (the connection closes on the 401), however slowly it sends.
async fn read_body(body: axum::body::Body) -> Result<Bytes, AppError> {
    axum::body::to_bytes(body, super::rows::MAX_BODY_BYTES)
        .await
        .map_err(|error| {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_large {
                AppError::TooLarge {
                    message: format!(
                        "the body is larger than {} MiB; split the batch",
                        super::rows::MAX_BODY_BYTES / (1024 * 1024)
                    ),
                }
            } else {
                AppError::BadRequest {
                    message: "the body could not be read (sent too slowly, or cut off)".into(),
                }
            }
        })
}

async fn ingest(state: AppState, queue: Queue, request: axum::extract::Request) -> Response {
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let headers: &HeaderMap = &parts.headers;
    // Rows of a valid batch, whether or not it was then stored.
    let mut valid_rows = 0;
    let result = async {
        let token = crate::server::tokens::bearer(headers).ok_or(AppError::Unauthorized)?;
        let key =
            crate::ingest_keys::ssr::authenticate(&state.pg, state.ingest_keys(), token).await?;
        let handled = async {
            let body = read_body(body).await?;
            let lines = parse_batch(queue, &body, &key.scope)?;
            valid_rows = lines.len();
            let stored = store(&state, queue, &lines, Some(key.key_id)).await?;
            Ok::<_, AppError>((lines.len(), stored))
        }
        .await;
        // Every request of a known key counts, refused or not: its usage is what a
        // leaked key's holder did.
        let address = crate::server::client::client_ip(&state.trusted_proxies, &parts);
        let rows = handled.as_ref().map_or(0, |(rows, _)| *rows as i64);
        state
            .key_usage()
            .record(key.key_id, address, rows, state.clock.now());
        handled
    }
    .await;
    count_ingest(&state, queue, &result, valid_rows, started.elapsed());
    match result {
        Ok((rows, Stored::ClickHouse)) => {
            let answer = IngestAnswer {
                stored: StoredIn::Clickhouse,
                rows,
                queued: None,
                reason: None,
            };
            (StatusCode::OK, axum::Json(answer)).into_response()
        }
        Ok((rows, Stored::Fallback { reason, queued })) => {
            let answer = IngestAnswer {
                stored: StoredIn::Fallback,
                rows,
                queued: Some(queued),
                reason: Some(reason),
            };
            (StatusCode::ACCEPTED, axum::Json(answer)).into_response()
        }
        Err(error @ AppError::Unavailable { .. }) => {
            let mut response = error.into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(5));
            response
        }
        Err(AppError::Unauthorized) => crate::ingest_keys::ssr::unauthorized(),
        Err(error) => error.into_response(),
    }
}

/// Adds a request's rows and duration to the process's metrics: stored rows by where
/// they went, a valid batch's rows that were not stored as `refused`.
fn count_ingest(
    state: &AppState,
    queue: Queue,
    result: &Result<(usize, Stored), AppError>,
    valid_rows: usize,
    took: std::time::Duration,
) {
    use crate::server::metrics::{INGEST_DURATION, INGEST_ROWS};
    let outcome = match result {
        Ok((_, Stored::ClickHouse)) => "clickhouse",
        Ok((_, Stored::Fallback { .. })) => "fallback",
        Err(_) => "refused",
    };
    if valid_rows > 0 {
        let labels = [queue.as_str(), outcome];
        state.metrics.add(&INGEST_ROWS, &labels, valid_rows as u64);
    }
    let seconds = took.as_secs_f64();
    state
        .metrics
        .observe(&INGEST_DURATION, &[queue.as_str()], seconds);
}

/// `POST /ingest/requests`.
pub async fn requests_handler(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Response {
    ingest(state, Queue::Requests, request).await
}

/// `POST /ingest/events`.
pub async fn events_handler(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Response {
    ingest(state, Queue::Events, request).await
}
