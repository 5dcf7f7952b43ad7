//! `POST /ingest/webhook-events`: the service hands Salvage an event to deliver.
//!
//! Body: `{"event_type": "order.paid", "payload": {…}, "idempotency_key": "…"}` with an
//! ingest key. The event and one delivery per subscribed webhook are written in one
//! PostgreSQL transaction before the 202, so an accepted event is never lost and never
//! half-queued. A repeated idempotency key with the same payload answers the first
//! result (200, `duplicate: true`); with another payload, 409.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use sha2::Digest as _;
use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::error::AppError;
use crate::server::AppState;

/// The largest payload (its JSON, as re-encoded) an event may carry.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// The largest request body the route reads (the payload and its envelope).
pub const MAX_BODY_BYTES: usize = MAX_PAYLOAD_BYTES + 16 * 1024;

/// What enqueueing an event did (the answer of `/ingest/webhook-events`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Enqueued {
    pub event_id: i64,
    /// Deliveries made for it (one per subscribed webhook).
    pub deliveries: i64,
    /// The idempotency key was seen before with the same payload: nothing new was written.
    pub duplicate: bool,
}

/// Writes the event and its deliveries in the caller's transaction. `Err(Conflict)`
/// when `idempotency_key` was used before with another payload.
pub async fn enqueue(
    conn: &mut PgConnection,
    event_type: &str,
    payload: &Value,
    idempotency_key: &str,
    key_id: Option<i64>,
    now: OffsetDateTime,
) -> Result<Enqueued, AppError> {
    let encoded = serde_json::to_vec(payload).unwrap_or_default();
    let digest = sha2::Sha256::digest(&encoded).to_vec();
    let inserted: Option<i64> = sqlx::query_scalar(
        "insert into webhook_events
                (event_type, payload, idempotency_key, payload_digest, key_id, created_at, payload_bytes)
         values ($1, $2, $3, $4, $5, $6, octet_length($2::text))
         on conflict (idempotency_key) do nothing
         returning id",
    )
    .bind(event_type)
    .bind(payload)
    .bind(idempotency_key)
    .bind(&digest)
    .bind(key_id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(AppError::wrap("Store a webhook event"))?;
    let Some(event_id) = inserted else {
        let seen = sqlx::query!(
            "select id, event_type, payload_digest from webhook_events where idempotency_key = $1",
            idempotency_key
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(AppError::wrap("Read a webhook event"))?;
        let (event_id, seen_type, seen_digest) = (seen.id, seen.event_type, seen.payload_digest);
        if seen_digest != digest || seen_type != event_type {
            return Err(AppError::Conflict {
                message: format!(
                    "idempotency_key `{idempotency_key}` was used for event {event_id} with another \
                     event type or payload; nothing was stored. Use a new key for a new event."
                ),
            });
        }
        let deliveries = sqlx::query_scalar!(
            r#"select count(*) as "count!" from webhook_deliveries where event_id = $1"#,
            event_id
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(AppError::wrap("Read a webhook event"))?;
        return Ok(Enqueued {
            event_id,
            deliveries,
            duplicate: true,
        });
    };
    let deliveries = sqlx::query!(
        "insert into webhook_deliveries (webhook_id, event_id, message_id, next_attempt_at, created_at)
         select w.id, $1, 'msg_' || replace(gen_random_uuid()::text, '-', ''), $3, $3
           from webhooks w
          where w.deleted_at is null and $2 = any(w.event_types)",
        event_id,
        event_type,
        now
    )
    .execute(&mut *conn)
    .await
    .map_err(AppError::wrap("Queue webhook deliveries"))?
    .rows_affected() as i64;
    Ok(Enqueued {
        event_id,
        deliveries,
        duplicate: false,
    })
}

/// An event as the service sends it, validated: each error names its field.
#[derive(Debug, PartialEq)]
pub struct EventRequest {
    pub event_type: String,
    pub payload: Value,
    pub idempotency_key: String,
}

/// Parses and checks a request body against the known event types.
pub fn parse(body: &[u8], known: &[String]) -> Result<EventRequest, AppError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| AppError::BadRequest {
        message: format!("the body is not JSON ({e})"),
    })?;
    let Value::Object(mut object) = value else {
        return Err(AppError::BadRequest {
            message: "the body must be a JSON object with event_type, payload, idempotency_key"
                .into(),
        });
    };
    let text = |object: &serde_json::Map<String, Value>, field: &str| -> Result<String, AppError> {
        match object.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            _ => Err(AppError::invalid(field, "required, a non-empty string")),
        }
    };
    let event_type = text(&object, "event_type")?;
    if !known.contains(&event_type) {
        return Err(AppError::invalid(
            "event_type",
            format!(
                "`{event_type}` is not a known event type ({})",
                known.join(", ")
            ),
        ));
    }
    let idempotency_key = text(&object, "idempotency_key")?;
    if idempotency_key.len() > 200 {
        return Err(AppError::invalid(
            "idempotency_key",
            "at most 200 characters",
        ));
    }
    let payload = object
        .remove("payload")
        .ok_or_else(|| AppError::invalid("payload", "required"))?;
    if !payload.is_object() {
        return Err(AppError::invalid("payload", "must be a JSON object"));
    }
    if serde_json::to_vec(&payload).map_or(0, |v| v.len()) > MAX_PAYLOAD_BYTES {
        return Err(AppError::TooLarge {
            message: format!("payload: larger than {} KiB", MAX_PAYLOAD_BYTES / 1024),
        });
    }
    Ok(EventRequest {
        event_type,
        payload,
        idempotency_key,
    })
}

/// `POST /ingest/webhook-events`.
pub async fn handler(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let result = async {
        // Webhooks are the service's own: an endpoint subscribes to event types, not to
        // an organisation, and every subscriber is sent every event of its types, signed
        // with its secret. A key scoped to one organisation (one tenant's) could
        // otherwise make Salvage sign and send its events to every subscriber, and would
        // share the idempotency keys of the others.
        let key = crate::ingest_keys::ssr::service_key(
            &state.pg,
            state.ingest_keys(),
            &parts.headers,
            "webhook events are sent to every subscriber of their type",
        )
        .await?;
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| AppError::TooLarge {
                message: format!(
                    "the body is larger than {} KiB (payload: at most {} KiB)",
                    MAX_BODY_BYTES / 1024,
                    MAX_PAYLOAD_BYTES / 1024
                ),
            })?;
        let event = parse(&body, &state.webhooks().event_types)?;
        let mut tx = state
            .pg
            .begin()
            .await
            .map_err(AppError::wrap("Store a webhook event"))?;
        let enqueued = enqueue(
            &mut tx,
            &event.event_type,
            &event.payload,
            &event.idempotency_key,
            Some(key.key_id),
            state.clock.now(),
        )
        .await?;
        tx.commit()
            .await
            .map_err(AppError::wrap("Store a webhook event"))?;
        let address = crate::server::client::client_ip(&state.trusted_proxies, &parts);
        let rows = i64::from(!enqueued.duplicate);
        state
            .key_usage()
            .record(key.key_id, address, rows, state.clock.now());
        Ok::<_, AppError>(enqueued)
    }
    .await;
    let accepted = |enqueued: Enqueued| match enqueued.duplicate {
        true => (StatusCode::OK, enqueued),
        false => (StatusCode::ACCEPTED, enqueued),
    };
    crate::ingest_keys::ssr::answer(result.map(accepted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        vec!["order.paid".to_owned()]
    }

    #[test]
    fn a_good_event_parses_and_each_bad_field_is_named() {
        let ok = parse(
            br#"{"event_type":"order.paid","payload":{"id":1},"idempotency_key":"k1"}"#,
            &known(),
        )
        .unwrap();
        assert_eq!(ok.event_type, "order.paid");
        for (body, field) in [
            (r#"{"payload":{},"idempotency_key":"k"}"#, "event_type"),
            (
                r#"{"event_type":"order.lost","payload":{},"idempotency_key":"k"}"#,
                "event_type",
            ),
            (
                r#"{"event_type":"order.paid","payload":{}}"#,
                "idempotency_key",
            ),
            (
                r#"{"event_type":"order.paid","idempotency_key":"k"}"#,
                "payload",
            ),
            (
                r#"{"event_type":"order.paid","payload":[1],"idempotency_key":"k"}"#,
                "payload",
            ),
        ] {
            match parse(body.as_bytes(), &known()) {
                Err(AppError::Invalid { field: f, .. }) => assert_eq!(f, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        assert!(matches!(
            parse(b"not json", &known()),
            Err(AppError::BadRequest { .. })
        ));
    }

    #[test]
    fn a_payload_over_the_limit_is_too_large() {
        let big = "x".repeat(MAX_PAYLOAD_BYTES);
        let body = format!(
            r#"{{"event_type":"order.paid","payload":{{"blob":"{big}"}},"idempotency_key":"k"}}"#
        );
        assert!(matches!(
            parse(body.as_bytes(), &known()),
            Err(AppError::TooLarge { .. })
        ));
    }
}
