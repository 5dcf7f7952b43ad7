//! The OpenAPI 3.1 description of the plain HTTP routes (`/ingest/*`, `/cron/*`,
//! `/health/*`, `/metrics`), served at `/api/openapi.json`, printed by `salvage openapi`
//! and committed as `docs/openapi.json` (a test fails when they differ, so a changed
//! route or field shows in review).
//!
//! The answers of the ingest routes are the handlers' own types
//! (`IngestAnswer`, `Enqueued`, `SchemaEventAnswer`); the request rows, whose validation is hand-written in
//! `queues::ssr::rows`, and the JSON the health and cron routes assemble are described
//! by the types below, and tests post these examples to the real routes and compare the
//! real answers' fields with these schemas, so the two cannot drift apart unnoticed.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use app::dead_letters::ssr::ingest::Enqueued;
use app::drills::ssr::schema_events::SchemaEventAnswer;
use app::queues::ssr::ingest::{IngestAnswer, StoredIn};
use app::server::AppState;

/// One LLM request log row (`POST /ingest/requests`). Every field is required unless it
/// says otherwise; an unknown field rejects the batch.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "0b9e6c1e-3f7a-4c55-9d0e-2f4f0f6f2a11",
    "ts": "2026-11-22T10:00:00.123Z", "organization_id": "org_1", "project": "chat",
    "provider": "openai", "model": "gpt-4o-mini", "status": 200, "latency_ms": 812,
    "prompt_tokens": 412, "completion_tokens": 96, "cost_usd": 0.00031, "error": null}))]
pub struct RequestRow {
    /// The row's identity within its organisation: a retried batch is stored once.
    pub id: uuid::Uuid,
    /// RFC 3339, between 1970 and 2105.
    pub ts: time::OffsetDateTime,
    /// Must be the key's organisation, unless the key sends for every one (`*`).
    #[schema(max_length = 256, min_length = 1)]
    pub organization_id: String,
    /// May be empty.
    #[schema(max_length = 256)]
    pub project: String,
    #[schema(max_length = 256, min_length = 1)]
    pub provider: String,
    #[schema(max_length = 256, min_length = 1)]
    pub model: String,
    /// The HTTP status the provider answered.
    #[schema(maximum = 999)]
    pub status: u32,
    pub latency_ms: u32,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    #[schema(minimum = 0)]
    pub cost_usd: f64,
    /// Optional; at most 64 KiB.
    #[schema(max_length = 65536)]
    pub error: Option<String>,
}

/// One trace event (`POST /ingest/events`).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "5d0c2b8a-8c1e-4a4e-b0d4-8f6f7b2c9e01",
    "ts": "2026-11-22T10:00:00.500Z", "organization_id": "org_1", "trace_id": "t-81",
    "span_id": "s-3", "parent_span_id": "s-1", "event_type": "span", "name": "retrieve",
    "duration_ms": 42, "attributes": {"documents": 8}}))]
pub struct EventRow {
    pub id: uuid::Uuid,
    /// RFC 3339, between 1970 and 2105.
    pub ts: time::OffsetDateTime,
    /// Optional: the key's organisation is used when it is absent; a key for every
    /// organisation may name one per event.
    #[schema(max_length = 256)]
    pub organization_id: Option<String>,
    #[schema(max_length = 256, min_length = 1)]
    pub trace_id: String,
    #[schema(max_length = 256, min_length = 1)]
    pub span_id: String,
    #[schema(max_length = 256)]
    pub parent_span_id: Option<String>,
    pub event_type: EventType,
    #[schema(max_length = 256, min_length = 1)]
    pub name: String,
    pub duration_ms: Option<u32>,
    /// A JSON object, at most 64 KiB serialised; `{}` when absent.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Value>,
}

/// What an event is.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Generation,
    Trace,
    Span,
}

/// An event to deliver to the webhooks subscribed to its type (`POST
/// /ingest/webhook-events`).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"event_type": "order.paid", "payload": {"order": 1042},
    "idempotency_key": "order-1042-paid"}))]
pub struct WebhookEventRequest {
    /// One of `SALVAGE_WEBHOOK_EVENT_TYPES` (422 otherwise).
    pub event_type: String,
    /// A JSON object, at most 256 KiB (413 beyond).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Repeated with the same event: the first answer (200, `duplicate`); with another,
    /// 409. At most 200 characters.
    #[schema(max_length = 200, min_length = 1)]
    pub idempotency_key: String,
}

/// A change of the guarded service's schema (`POST /ingest/schema-events`): a passing
/// restore drill is due within a week of it.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"name": "billing", "version": "2026_12_01_add_refunds",
    "changed_at": "2026-12-07T10:00:00Z"}))]
pub struct SchemaEventRequest {
    /// The schema (or service) that changed. At most 200 characters.
    #[schema(max_length = 200, min_length = 1)]
    pub name: String,
    /// Its new version: one `(name, version)` is one change. At most 200 characters.
    #[schema(max_length = 200, min_length = 1)]
    pub version: String,
    /// When the change was applied (RFC 3339; at most 5 minutes ahead of Salvage's
    /// clock). Left out: now.
    #[schema(format = DateTime)]
    pub changed_at: Option<String>,
}

/// Every error answer: `kind` says what went wrong, `error` says it in a sentence a
/// person can act on; the other fields come with some kinds.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub kind: ErrorKind,
    pub error: String,
    /// With `invalid`: the field that is wrong, e.g. `rows[3].ts`.
    pub field: Option<String>,
    /// With most kinds: the sentence without its field.
    pub message: Option<String>,
    /// With `rate_limited` and `too_many_requests`: when to try again (also `Retry-After`).
    pub retry_after_secs: Option<u64>,
    /// With `not_found`: what was not found.
    pub what: Option<String>,
    /// With `internal`: the reference to quote to whoever reads the server's logs.
    pub reference: Option<String>,
    /// With `not_found` from `/cron/{job}`: the jobs there are.
    pub jobs: Option<Vec<String>>,
}

/// The kinds of [`ErrorBody`].
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    TooLarge,
    Invalid,
    RateLimited,
    QueueFull,
    Unavailable,
    Internal,
}

/// One store's probe.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreCheck {
    /// It answered a trivial query within the probe timeout.
    pub ok: bool,
    /// The probe's round trip; null when the store did not answer.
    pub latency_ms: Option<f64>,
    /// Why it failed (signed-in callers and holders of the health token only).
    pub error: Option<String>,
}

/// Both stores' probes.
#[derive(Serialize, ToSchema)]
pub struct Checks {
    pub postgres: StoreCheck,
    pub clickhouse: StoreCheck,
}

/// `ok` or `unavailable`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ok,
    Unavailable,
}

/// `GET /health/ready`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ready {
    pub status: ReadyStatus,
    /// The stores that did not answer (`postgres`, `clickhouse`).
    pub failing: Vec<String>,
    pub checks: Checks,
    /// When the probes ran (RFC 3339, UTC); answers are shared for 2 s.
    #[schema(format = DateTime)]
    pub checked_at: String,
}

/// `ok` or `degraded`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeepStatus {
    Ok,
    Degraded,
}

/// `GET /health/deep`: always 200 while Salvage runs. A figure whose lookup failed is
/// null, with an `error` beside it (signed-in callers and holders of the health token
/// only), never a made-up zero. README's "Health" section describes each part.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deep {
    pub status: DeepStatus,
    /// `{applied, expected, ok, problem}`: the newest schema migration applied against
    /// the newest this binary has.
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
    /// `{running, stuck}`.
    #[schema(value_type = Object)]
    pub background_migrations: serde_json::Value,
    /// `{queue, eventsQueue, queueOldestAgeSeconds, eventsQueueOldestAgeSeconds}`.
    #[schema(value_type = Object)]
    pub fallback: serde_json::Value,
    /// `{flagged, jobs: {<job>: {lastRun, lastOutcome, lastSuccess, fireRate, runs24h,
    /// expected24h, missed24h, maxDurationMs24h, flags}}}`.
    #[schema(value_type = Object)]
    pub crons: serde_json::Value,
    /// `{open, critical, byKind}`.
    #[schema(value_type = Object)]
    pub alerts: serde_json::Value,
    /// `{backlog_count, dlq_count, paused}`.
    #[schema(value_type = Object)]
    pub webhooks: serde_json::Value,
    /// Signed-in callers and holders of the health token only.
    pub version: Option<String>,
    #[schema(format = DateTime)]
    pub checked_at: String,
    pub postgres: StoreCheck,
    pub clickhouse: StoreCheck,
}

/// How a run ended.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Succeeded,
    Partial,
    Failed,
    Cancelled,
}

/// `POST /cron/<job>`: the run's outcome (200; 503 when it failed, so a monitor calling
/// it alerts), then the job's own report fields (e.g. a replay's `rowsLeft`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronAnswer {
    pub job: String,
    /// The run's id (`/admin/crons`, `salvage cron list`).
    pub cron_run_id: i64,
    pub outcome: RunOutcome,
    pub rows_processed: i64,
    pub error: Option<String>,
    pub duration_ms: i64,
}

#[utoipa::path(post, path = "/ingest/requests", tag = "ingest",
    description = "Store a batch of LLM request logs: ClickHouse first; when it does not take them in time, the PostgreSQL fallback queue (replayed later, exactly once). A 2xx means the rows are durable; anything else means nothing was stored. At most 5,000 rows and 8 MiB.",
    request_body(content = Vec<RequestRow>, description = "The rows, as a JSON array."),
    responses(
        (status = 200, description = "Stored in ClickHouse.", body = IngestAnswer),
        (status = 202, description = "Stored in the fallback queue; replayed into ClickHouse later.", body = IngestAnswer),
        (status = 400, description = "The body is not a JSON array of rows.", body = ErrorBody),
        (status = 401, description = "No active ingest key.", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 403, description = "A row names an organisation the key may not send for.", body = ErrorBody),
        (status = 413, description = "Over 8 MiB.", body = ErrorBody),
        (status = 422, description = "A row or field is wrong; `field` names it (`rows[3].ts`).", body = ErrorBody),
        (status = 429, description = "The key is at its fallback quota.", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, description = "Neither store took the rows, or a restore froze them; nothing was stored.", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 507, description = "The fallback queues are at their cap.", body = ErrorBody, headers(("Retry-After" = u64))),
    ),
    security(("ingest_key" = [])))]
#[allow(dead_code)]
fn ingest_requests() {}

#[utoipa::path(post, path = "/ingest/events", tag = "ingest",
    description = "Store a batch of trace events, as `/ingest/requests` does.",
    request_body(content = Vec<EventRow>, description = "The events, as a JSON array."),
    responses(
        (status = 200, description = "Stored in ClickHouse.", body = IngestAnswer),
        (status = 202, description = "Stored in the fallback queue.", body = IngestAnswer),
        (status = 400, description = "The body is not a JSON array of events.", body = ErrorBody),
        (status = 401, description = "No active ingest key.", body = ErrorBody),
        (status = 403, description = "An event names an organisation the key may not send for.", body = ErrorBody),
        (status = 413, description = "Over 8 MiB.", body = ErrorBody),
        (status = 422, description = "An event or field is wrong; `field` names it.", body = ErrorBody),
        (status = 429, description = "The key is at its fallback quota.", body = ErrorBody),
        (status = 503, description = "Nothing was stored; try again.", body = ErrorBody),
        (status = 507, description = "The fallback queues are at their cap.", body = ErrorBody),
    ),
    security(("ingest_key" = [])))]
#[allow(dead_code)]
fn ingest_events() {}

#[utoipa::path(post, path = "/ingest/webhook-events", tag = "ingest",
    description = "Queue an event for the webhooks subscribed to its type: the event and its deliveries are written in one PostgreSQL transaction before the answer.",
    request_body(content = WebhookEventRequest),
    responses(
        (status = 202, description = "Queued: one delivery per subscribed webhook.", body = Enqueued),
        (status = 200, description = "This idempotency key was seen with the same event: the first answer, nothing new written.", body = Enqueued),
        (status = 400, description = "The body is not a JSON object.", body = ErrorBody),
        (status = 401, description = "No active ingest key.", body = ErrorBody),
        (status = 403, description = "The key sends for one organisation only; webhook events need a key for every organisation (`*`).", body = ErrorBody),
        (status = 409, description = "The idempotency key was used for another event.", body = ErrorBody),
        (status = 413, description = "The payload is over 256 KiB.", body = ErrorBody),
        (status = 422, description = "A field is wrong (an unknown event type, a missing payload); `field` names it.", body = ErrorBody),
        (status = 503, description = "PostgreSQL did not answer; nothing was stored.", body = ErrorBody),
    ),
    security(("ingest_key" = [])))]
#[allow(dead_code)]
fn ingest_webhook_events() {}

#[utoipa::path(post, path = "/ingest/schema-events", tag = "ingest",
    description = "Record a change of the guarded service's schema: a passing restore drill of each store becomes due within 7 days (`drill_overdue` counts from it).",
    request_body(content = SchemaEventRequest),
    responses(
        (status = 201, description = "Recorded.", body = SchemaEventAnswer),
        (status = 200, description = "This name and version were recorded with the same time: the first record, nothing new written.", body = SchemaEventAnswer),
        (status = 400, description = "The body is not a JSON object.", body = ErrorBody),
        (status = 401, description = "No active ingest key.", body = ErrorBody),
        (status = 403, description = "The key sends for one organisation only; schema changes need a key for every organisation (`*`).", body = ErrorBody),
        (status = 409, description = "This name and version were recorded with another time.", body = ErrorBody),
        (status = 413, description = "The body is over 4 KiB.", body = ErrorBody),
        (status = 422, description = "A field is wrong (a missing name, a time in the future); `field` names it.", body = ErrorBody),
        (status = 503, description = "PostgreSQL did not answer; nothing was stored.", body = ErrorBody),
    ),
    security(("ingest_key" = [])))]
#[allow(dead_code)]
fn ingest_schema_events() {}

#[utoipa::path(post, path = "/cron/{job}", tag = "cron",
    description = "Run a job now for an external scheduler (also `GET`): the same function as the in-process scheduler, the console's Run now and `salvage cron run`. Answers when the run ends.",
    params(("job" = String, Path, description = "The job, e.g. `replay-fallback` (`salvage cron list`).")),
    responses(
        (status = 200, description = "The run ended and did not fail.", body = CronAnswer),
        (status = 401, description = "No working cron secret.", body = ErrorBody),
        (status = 404, description = "No job has that name; `jobs` lists them.", body = ErrorBody),
        (status = 503, description = "The run failed (the body says why), or PostgreSQL did not answer.", body = CronAnswer),
    ),
    security(("cron_secret" = [])))]
#[allow(dead_code)]
fn cron_job() {}

#[utoipa::path(get, path = "/health/ready", tag = "health",
    description = "Up or down: 200 when PostgreSQL and ClickHouse both answer within the probe timeout, 503 otherwise. Anonymous callers get no driver messages.",
    responses(
        (status = 200, description = "Both stores answer.", body = Ready),
        (status = 503, description = "A store did not answer; `failing` names it.", body = Ready),
    ),
    security((), ("health_token" = [])))]
#[allow(dead_code)]
fn health_ready() {}

#[utoipa::path(get, path = "/health/deep", tag = "health",
    description = "The detailed state, for people and dashboards; always 200 while Salvage runs.",
    responses((status = 200, description = "The state.", body = Deep)),
    security((), ("health_token" = [])))]
#[allow(dead_code)]
fn health_deep() {}

#[utoipa::path(get, path = "/metrics", tag = "metrics",
    description = "Prometheus' text format (README's Metrics section lists every family).",
    responses(
        (status = 200, description = "The figures.", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "SALVAGE_METRICS_TOKEN is set and was not presented.", content_type = "text/plain", body = String),
    ),
    security((), ("metrics_token" = [])))]
#[allow(dead_code)]
fn metrics() {}

#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    description = "This description.",
    responses((status = 200, description = "OpenAPI 3.1, JSON.", content_type = "application/json", body = serde_json::Value)))]
#[allow(dead_code)]
fn openapi_json() {}

/// The bearer tokens each route takes.
struct Tokens;

impl Modify for Tokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, what) in [
            ("ingest_key", "An ingest key (`salvage ingest-key create`)."),
            (
                "cron_secret",
                "The cron secret (`salvage cron-secret rotate`).",
            ),
            (
                "health_token",
                "`SALVAGE_HEALTH_TOKEN`: the health answers' full details without signing in.",
            ),
            ("metrics_token", "`SALVAGE_METRICS_TOKEN`, when it is set."),
        ] {
            let scheme = HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(what))
                .build();
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Salvage",
        description = "The plain HTTP routes of Salvage, the disaster-recovery console: ingest with a fallback queue, cron triggers, health and metrics. The console's own server functions (`/api/*`) are not part of this description.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(ingest_requests, ingest_events, ingest_webhook_events, ingest_schema_events,
        cron_job, health_ready, health_deep, metrics, openapi_json),
    components(schemas(RequestRow, EventRow, EventType, WebhookEventRequest,
        SchemaEventRequest, SchemaEventAnswer, IngestAnswer, StoredIn, Enqueued, ErrorBody, ErrorKind, Ready, ReadyStatus, Deep, DeepStatus, Checks,
        StoreCheck, CronAnswer, RunOutcome)),
    modifiers(&Tokens),
    tags(
        (name = "ingest", description = "Callers send rows and events with an ingest key."),
        (name = "cron", description = "External schedulers run jobs with the cron secret."),
        (name = "health", description = "Load balancers and monitors."),
        (name = "metrics", description = "Prometheus."),
        (name = "meta", description = "This description."),
    )
)]
struct ApiDoc;

/// The description, as committed in `docs/openapi.json` (pretty JSON and a newline).
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the description serialises");
    text.push('\n');
    text
}

/// `GET /api/openapi.json`.
pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/openapi.json",
        get(|| async {
            ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
        }),
    )
}
