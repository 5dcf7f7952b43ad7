//! Validating the rows callers send, and turning them into the exact JSONEachRow lines
//! ClickHouse receives (directly, or later from the fallback queue).
//!
//! Validation is strict: a missing, mistyped or unknown field rejects the whole batch
//! with the row index and field name (`rows[3].ts`), so nothing of a bad request is
//! stored.

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::super::Queue;
use crate::error::AppError;
use crate::ingest_keys::ssr::Scope;

/// The most rows one request may carry.
pub const MAX_ROWS: usize = 5000;
/// The largest ingest body, in bytes.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// The longest text field (ids, names, models), in characters.
const MAX_TEXT: usize = 256;
/// The largest `error` text or serialised `attributes`, in bytes.
const MAX_BLOB: usize = 64 * 1024;

/// One validated row: its identity (organisation and id), its time (for the queue's
/// columns) and its line.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub organization_id: String,
    pub id: Uuid,
    pub ts: OffsetDateTime,
    /// The row as one JSONEachRow line (no trailing newline).
    pub json: String,
}

/// The largest single row, in bytes of JSON (its text fields and one 64 KiB blob fit
/// several times over).
pub const MAX_ROW_BYTES: usize = 256 * 1024;

/// The rows of a body as raw JSON slices, read in one pass that stops at row
/// [`MAX_ROWS`] + 1: no JSON tree of the whole body is ever built, so a body of millions
/// of tiny values costs what its bytes cost, not a hundred times that.
struct CappedRows;

/// The error text that marks "too many rows" inside serde's error.
const TOO_MANY_ROWS: &str = "salvage: too many rows";

impl<'de> serde::de::Visitor<'de> for CappedRows {
    type Value = Vec<&'de serde_json::value::RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of rows")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut rows = Vec::new();
        while let Some(row) = seq.next_element::<&'de serde_json::value::RawValue>()? {
            if rows.len() == MAX_ROWS {
                return Err(serde::de::Error::custom(TOO_MANY_ROWS));
            }
            rows.push(row);
        }
        Ok(rows)
    }
}

fn split_rows(body: &[u8]) -> Result<Vec<&serde_json::value::RawValue>, AppError> {
    use serde::Deserializer;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let rows = deserializer
        .deserialize_seq(CappedRows)
        .and_then(|rows| deserializer.end().map(|()| rows))
        .map_err(|error| {
            if error.to_string().starts_with(TOO_MANY_ROWS) {
                AppError::TooLarge {
                    message: format!(
                        "more than {MAX_ROWS} rows in one request; the limit is {MAX_ROWS}, \
                         split the batch"
                    ),
                }
            } else if error.is_data() {
                AppError::BadRequest {
                    message: "the body must be a JSON array of rows".into(),
                }
            } else {
                AppError::BadRequest {
                    message: format!("the body is not valid JSON: {error}"),
                }
            }
        })?;
    Ok(rows)
}

/// Parses and validates a request body for `queue`, one row at a time, sent with a key of
/// `scope`: a request row of another organisation is refused (403 naming it); an event
/// takes the key's organisation.
pub fn parse_batch(queue: Queue, body: &[u8], scope: &Scope) -> Result<Vec<Line>, AppError> {
    let rows = split_rows(body)?;
    if rows.is_empty() {
        return Err(AppError::invalid("rows", "send at least one row"));
    }
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let mut lines = Vec::with_capacity(rows.len());
    for (index, raw) in rows.into_iter().enumerate() {
        if raw.get().len() > MAX_ROW_BYTES {
            return Err(AppError::TooLarge {
                message: format!(
                    "rows[{index}] is larger than {} KiB; no row needs that much",
                    MAX_ROW_BYTES / 1024
                ),
            });
        }
        let row: Value = serde_json::from_str(raw.get()).map_err(|error| AppError::BadRequest {
            message: format!("rows[{index}] is not valid JSON: {error}"),
        })?;
        let line = match queue {
            Queue::Requests => request_line(index, row, scope)?,
            Queue::Events => event_line(index, row, scope)?,
        };
        if !seen.insert((line.organization_id.clone(), line.id)) {
            return Err(AppError::invalid(
                format!("rows[{index}].id"),
                "the same id appears twice in this batch",
            ));
        }
        lines.push(line);
    }
    Ok(lines)
}

/// Reads the fields of one row object, remembering which were read, so that any field
/// left over is reported as unknown.
struct Fields {
    index: usize,
    map: Map<String, Value>,
}

impl Fields {
    fn new(index: usize, row: Value) -> Result<Self, AppError> {
        match row {
            Value::Object(map) => Ok(Self { index, map }),
            _ => Err(AppError::invalid(
                format!("rows[{index}]"),
                "each row must be a JSON object",
            )),
        }
    }

    fn error(&self, field: &str, message: &str) -> AppError {
        AppError::invalid(format!("rows[{}].{field}", self.index), message)
    }

    fn take(&mut self, field: &str) -> Result<Value, AppError> {
        self.map
            .remove(field)
            .ok_or_else(|| self.error(field, "is required"))
    }

    fn optional(&mut self, field: &str) -> Option<Value> {
        self.map.remove(field).filter(|v| !v.is_null())
    }

    fn text(&mut self, field: &str, allow_empty: bool) -> Result<String, AppError> {
        let value = self.take(field)?;
        self.check_text(field, value, allow_empty, MAX_TEXT)
    }

    fn optional_text(&mut self, field: &str, max: usize) -> Result<Option<String>, AppError> {
        match self.optional(field) {
            None => Ok(None),
            Some(value) => self.check_text(field, value, true, max).map(Some),
        }
    }

    fn check_text(
        &self,
        field: &str,
        value: Value,
        allow_empty: bool,
        max: usize,
    ) -> Result<String, AppError> {
        let Value::String(text) = value else {
            return Err(self.error(field, "must be a string"));
        };
        if !allow_empty && text.trim().is_empty() {
            return Err(self.error(field, "must not be empty"));
        }
        if text.len() > max {
            return Err(self.error(field, &format!("is longer than {max} bytes")));
        }
        Ok(text)
    }

    fn integer(&mut self, field: &str, max: u64) -> Result<u64, AppError> {
        let value = self.take(field)?;
        self.check_integer(field, &value, max)
    }

    fn optional_integer(&mut self, field: &str, max: u64) -> Result<Option<u64>, AppError> {
        match self.optional(field) {
            None => Ok(None),
            Some(value) => self.check_integer(field, &value, max).map(Some),
        }
    }

    fn check_integer(&self, field: &str, value: &Value, max: u64) -> Result<u64, AppError> {
        match value.as_u64() {
            Some(n) if n <= max => Ok(n),
            Some(_) => Err(self.error(field, &format!("must be at most {max}"))),
            None => Err(self.error(field, "must be a whole number, 0 or more")),
        }
    }

    fn id(&mut self) -> Result<Uuid, AppError> {
        let text = self.text("id", false)?;
        Uuid::parse_str(&text).map_err(|_| self.error("id", "must be a UUID"))
    }

    fn ts(&mut self) -> Result<OffsetDateTime, AppError> {
        let value = self.take("ts")?;
        let Value::String(text) = value else {
            return Err(self.error("ts", "must be an RFC 3339 timestamp string"));
        };
        let ts = OffsetDateTime::parse(&text, &Rfc3339)
            .map_err(|_| {
                self.error(
                    "ts",
                    "must be an RFC 3339 timestamp like 2026-11-22T10:00:00.123Z",
                )
            })?
            .to_offset(time::UtcOffset::UTC);
        // ClickHouse's DateTime holds 1970-01-01 to 2106-02-07.
        if ts.year() < 1970 || ts.year() > 2105 {
            return Err(self.error("ts", "must be between 1970 and 2105"));
        }
        Ok(ts)
    }

    /// Fails on the first field nobody read: extra fields are an error, not dropped.
    fn finish(self) -> Result<(), AppError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(field) => Err(self.error(field, "is not a known field")),
        }
    }
}

/// `2026-11-22 10:00:00` and the milliseconds, as the ClickHouse columns hold them.
fn clickhouse_time(ts: OffsetDateTime) -> (String, u16) {
    let date: Date = ts.date();
    (
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            date.year(),
            u8::from(date.month()),
            date.day(),
            ts.hour(),
            ts.minute(),
            ts.second()
        ),
        ts.millisecond(),
    )
}

/// Refuses `organization_id` when `scope` does not cover it.
fn check_scope(index: usize, organization_id: &str, scope: &Scope) -> Result<(), AppError> {
    match scope {
        Scope::Organization(own) if own != organization_id => Err(AppError::Forbidden {
            message: format!(
                "rows[{index}].organization_id is {organization_id:?}, but this key may only \
                 send rows of {own:?}"
            ),
        }),
        _ => Ok(()),
    }
}

fn request_line(index: usize, row: Value, scope: &Scope) -> Result<Line, AppError> {
    let mut f = Fields::new(index, row)?;
    let id = f.id()?;
    let ts = f.ts()?;
    let organization_id = f.text("organization_id", false)?;
    check_scope(index, &organization_id, scope)?;
    let project = f.text("project", true)?;
    let provider = f.text("provider", false)?;
    let model = f.text("model", false)?;
    let status = f.integer("status", 999)?;
    let latency_ms = f.integer("latency_ms", u64::from(u32::MAX))?;
    let prompt_tokens = f.integer("prompt_tokens", u64::from(u32::MAX))?;
    let completion_tokens = f.integer("completion_tokens", u64::from(u32::MAX))?;
    let cost_usd = match f.take("cost_usd")?.as_f64() {
        Some(cost) if cost.is_finite() && cost >= 0.0 => cost,
        _ => return Err(f.error("cost_usd", "must be a number, 0 or more")),
    };
    let error = f.optional_text("error", MAX_BLOB)?;
    f.finish()?;
    let (time, ts_ms) = clickhouse_time(ts);
    let json = json!({
        "id": id, "ts": time, "ts_ms": ts_ms, "organization_id": organization_id,
        "project": project, "provider": provider, "model": model, "status": status,
        "latency_ms": latency_ms, "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens, "cost_usd": cost_usd, "error": error,
    })
    .to_string();
    Ok(Line {
        organization_id,
        id,
        ts,
        json,
    })
}

/// `event_type` values ClickHouse's Enum8 accepts.
pub const EVENT_TYPES: &[&str] = &["generation", "trace", "span"];

fn event_line(index: usize, row: Value, scope: &Scope) -> Result<Line, AppError> {
    let mut f = Fields::new(index, row)?;
    let id = f.id()?;
    let ts = f.ts()?;
    // The key's organisation; a key for every organisation may name one per event.
    let named = f.optional_text("organization_id", MAX_TEXT)?;
    let organization_id = match (scope, named) {
        (Scope::Organization(own), Some(named)) => {
            check_scope(index, &named, scope)?;
            drop(named);
            own.clone()
        }
        (Scope::Organization(own), None) => own.clone(),
        (Scope::All, named) => named.unwrap_or_default(),
    };
    let trace_id = f.text("trace_id", false)?;
    let span_id = f.text("span_id", false)?;
    let parent_span_id = f.optional_text("parent_span_id", MAX_TEXT)?;
    let event_type = f.text("event_type", false)?;
    if !EVENT_TYPES.contains(&event_type.as_str()) {
        return Err(f.error("event_type", "must be generation, trace or span"));
    }
    let name = f.text("name", false)?;
    let duration_ms = f.optional_integer("duration_ms", u64::from(u32::MAX))?;
    let attributes = match f.optional("attributes") {
        None => "{}".to_owned(),
        Some(value @ Value::Object(_)) => value.to_string(),
        Some(_) => return Err(f.error("attributes", "must be a JSON object")),
    };
    if attributes.len() > MAX_BLOB {
        return Err(f.error("attributes", &format!("is larger than {MAX_BLOB} bytes")));
    }
    f.finish()?;
    let (time, ts_ms) = clickhouse_time(ts);
    let json = json!({
        "id": id, "ts": time, "ts_ms": ts_ms, "organization_id": organization_id,
        "trace_id": trace_id, "span_id": span_id,
        "parent_span_id": parent_span_id, "event_type": event_type, "name": name,
        "duration_ms": duration_ms, "attributes": attributes,
    })
    .to_string();
    Ok(Line {
        organization_id,
        id,
        ts,
        json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Value {
        json!({"id": "0b6c7a4e-1111-4a3b-9c1d-000000000001", "ts": "2026-11-22T10:00:00.123Z",
            "organization_id": "org_1", "project": "chat", "provider": "openai",
            "model": "gpt-4o-mini", "status": 200, "latency_ms": 812, "prompt_tokens": 412,
            "completion_tokens": 96, "cost_usd": 0.00031, "error": null})
    }

    fn field_of(result: Result<Vec<Line>, AppError>) -> String {
        match result {
            Err(AppError::Invalid { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_request_becomes_a_clickhouse_line_in_utc_with_milliseconds() {
        let mut row = request();
        row["ts"] = json!("2026-11-22T11:00:00.123+01:00");
        let body = serde_json::to_vec(&json!([row])).unwrap();
        let lines = parse_batch(Queue::Requests, &body, &Scope::All).unwrap();
        let line: Value = serde_json::from_str(&lines[0].json).unwrap();
        assert_eq!(line["ts"], "2026-11-22 10:00:00");
        assert_eq!(line["ts_ms"], 123);
        assert_eq!(line["model"], "gpt-4o-mini");
        assert!(line["error"].is_null());
    }

    #[test]
    fn each_rule_names_the_row_and_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("id", json!("not-a-uuid"), "rows[1].id"),
            ("ts", json!("yesterday"), "rows[1].ts"),
            ("ts", json!("1969-12-31T23:59:59Z"), "rows[1].ts"),
            ("status", json!(-1), "rows[1].status"),
            ("status", json!("200"), "rows[1].status"),
            ("cost_usd", json!(-0.5), "rows[1].cost_usd"),
            ("model", json!(""), "rows[1].model"),
            ("extra", json!(1), "rows[1].extra"),
        ];
        for (field, value, expected) in cases {
            let mut bad = request();
            bad[field] = value;
            bad["id"] = if field == "id" {
                bad["id"].clone()
            } else {
                json!("0b6c7a4e-1111-4a3b-9c1d-000000000002")
            };
            let body = serde_json::to_vec(&json!([request(), bad])).unwrap();
            assert_eq!(
                field_of(parse_batch(Queue::Requests, &body, &Scope::All)),
                expected,
                "{field}"
            );
        }
        let mut missing = request();
        missing.as_object_mut().unwrap().remove("provider");
        let body = serde_json::to_vec(&json!([missing])).unwrap();
        assert_eq!(
            field_of(parse_batch(Queue::Requests, &body, &Scope::All)),
            "rows[0].provider"
        );
    }

    #[test]
    fn duplicate_ids_in_one_batch_are_refused() {
        let body = serde_json::to_vec(&json!([request(), request()])).unwrap();
        assert_eq!(
            field_of(parse_batch(Queue::Requests, &body, &Scope::All)),
            "rows[1].id"
        );
    }

    #[test]
    fn the_shape_of_the_body_is_checked_before_any_row() {
        assert!(matches!(
            parse_batch(Queue::Requests, b"{not json", &Scope::All),
            Err(AppError::BadRequest { .. })
        ));
        assert!(matches!(
            parse_batch(Queue::Requests, b"{\"id\": 1}", &Scope::All),
            Err(AppError::BadRequest { .. })
        ));
        assert_eq!(
            field_of(parse_batch(Queue::Requests, b"[]", &Scope::All)),
            "rows"
        );
        let many = serde_json::to_vec(&vec![request(); MAX_ROWS + 1]).unwrap();
        assert!(matches!(
            parse_batch(Queue::Requests, &many, &Scope::All),
            Err(AppError::TooLarge { .. })
        ));
    }

    #[test]
    fn events_check_their_type_and_keep_attributes_as_a_json_string() {
        let event = json!({"id": "0b6c7a4e-1111-4a3b-9c1d-000000000003",
            "ts": "2026-11-22T10:00:00Z", "trace_id": "t-1", "span_id": "s-1",
            "parent_span_id": null, "event_type": "generation", "name": "llm.call",
            "duration_ms": 840, "attributes": {"model": "gpt-4o-mini"}});
        let body = serde_json::to_vec(&json!([event.clone()])).unwrap();
        let lines = parse_batch(Queue::Events, &body, &Scope::All).unwrap();
        let line: Value = serde_json::from_str(&lines[0].json).unwrap();
        assert_eq!(line["attributes"], "{\"model\":\"gpt-4o-mini\"}");

        let mut bad = event;
        bad["event_type"] = json!("log");
        let body = serde_json::to_vec(&json!([bad])).unwrap();
        assert_eq!(
            field_of(parse_batch(Queue::Events, &body, &Scope::All)),
            "rows[0].event_type"
        );
    }
}
