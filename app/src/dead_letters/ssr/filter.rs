//! A dead-letter filter: parsed from the page's query string (`webhook=3&reason=exhausted`)
//! with an error naming the wrong field, and turned into one SQL condition that the
//! breakdown, the list, the dry run, the redrive and the purge all use, so what a person
//! saw counted is what is redriven or purged.

use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;

use super::super::DlqReason;
use crate::error::AppError;

/// Which dead letters. Every field narrows; empty matches them all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DlqFilter {
    pub webhook_id: Option<i64>,
    pub reason: Option<DlqReason>,
    pub event_type: Option<String>,
    /// Dead-lettered at or after.
    pub since: Option<OffsetDateTime>,
    /// Dead-lettered before.
    pub until: Option<OffsetDateTime>,
    /// With at least this many attempts.
    pub min_attempts: Option<i32>,
    /// Only these deliveries (a selection on the page).
    pub ids: Vec<i64>,
}

/// The most deliveries a selection may name.
pub const MAX_SELECTION: usize = 1000;

impl DlqFilter {
    /// Reads `query` (the page's query string, `?` optional). Unknown keys are ignored
    /// (the page's own, such as `after`); a malformed value is an error naming its field.
    pub fn parse(query: &str) -> Result<Self, AppError> {
        let mut filter = Self::default();
        let query = query.trim().trim_start_matches('?');
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            match key.as_ref() {
                "webhook" => {
                    filter.webhook_id = Some(
                        value
                            .parse()
                            .map_err(|_| AppError::invalid("webhook", "a webhook's number"))?,
                    )
                }
                "reason" => {
                    filter.reason = Some(DlqReason::parse(value).ok_or_else(|| {
                        AppError::invalid(
                            "reason",
                            "one of exhausted, rejected, webhook_deleted, payload_missing",
                        )
                    })?)
                }
                "event_type" => {
                    if value.len() > 100 {
                        return Err(AppError::invalid("event_type", "at most 100 characters"));
                    }
                    filter.event_type = Some(value.to_owned())
                }
                "since" => filter.since = Some(time_field("since", value)?),
                "until" => filter.until = Some(time_field("until", value)?),
                "min_attempts" => {
                    filter.min_attempts = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|n| (0..=1000).contains(n))
                            .ok_or_else(|| {
                                AppError::invalid("min_attempts", "a whole number from 0 to 1000")
                            })?,
                    )
                }
                "ids" => {
                    for id in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        filter.ids.push(id.parse().map_err(|_| {
                            AppError::invalid("ids", "delivery numbers separated by commas")
                        })?);
                    }
                    if filter.ids.len() > MAX_SELECTION {
                        return Err(AppError::invalid(
                            "ids",
                            format!("select at most {MAX_SELECTION}; use a filter for more"),
                        ));
                    }
                }
                _ => {}
            }
        }
        if let (Some(since), Some(until)) = (filter.since, filter.until) {
            if since >= until {
                return Err(AppError::invalid("until", "must be after since"));
            }
        }
        Ok(filter)
    }

    /// The filter as a query string (the form `parse` reads).
    pub fn to_query(&self) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        if let Some(id) = self.webhook_id {
            out.append_pair("webhook", &id.to_string());
        }
        if let Some(reason) = self.reason {
            out.append_pair("reason", reason.as_str());
        }
        if let Some(t) = &self.event_type {
            out.append_pair("event_type", t);
        }
        if let Some(at) = self.since {
            out.append_pair("since", &crate::format::iso(crate::server::unix_ms(at)));
        }
        if let Some(at) = self.until {
            out.append_pair("until", &crate::format::iso(crate::server::unix_ms(at)));
        }
        if let Some(n) = self.min_attempts {
            out.append_pair("min_attempts", &n.to_string());
        }
        if !self.ids.is_empty() {
            let ids: Vec<String> = self.ids.iter().map(i64::to_string).collect();
            out.append_pair("ids", &ids.join(","));
        }
        out.finish()
    }

    /// The filter in words, for the page and the history.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if let Some(id) = self.webhook_id {
            parts.push(format!("webhook {id}"));
        }
        if let Some(reason) = self.reason {
            parts.push(format!("reason {}", reason.as_str()));
        }
        if let Some(t) = &self.event_type {
            parts.push(format!("event type {t}"));
        }
        if let Some(at) = self.since {
            parts.push(format!(
                "since {}",
                crate::format::iso(crate::server::unix_ms(at))
            ));
        }
        if let Some(at) = self.until {
            parts.push(format!(
                "before {}",
                crate::format::iso(crate::server::unix_ms(at))
            ));
        }
        if let Some(n) = self.min_attempts {
            parts.push(format!("{n}+ attempts"));
        }
        if !self.ids.is_empty() {
            parts.push(format!("{} selected", self.ids.len()));
        }
        if parts.is_empty() {
            "every dead letter".to_owned()
        } else {
            parts.join(", ")
        }
    }

    /// Appends ` and …` conditions on the dead letters `d` (joined to their event `e`) to
    /// `query`. Always restricted to dead letters.
    pub fn push_conditions(&self, query: &mut QueryBuilder<'_, Postgres>) {
        query.push(" d.dlq_at is not null");
        if let Some(id) = self.webhook_id {
            query.push(" and d.webhook_id = ").push_bind(id);
        }
        if let Some(reason) = self.reason {
            query
                .push(" and d.dlq_reason = ")
                .push_bind(reason.as_str());
        }
        if let Some(t) = &self.event_type {
            query.push(" and e.event_type = ").push_bind(t.clone());
        }
        if let Some(at) = self.since {
            query.push(" and d.dlq_at >= ").push_bind(at);
        }
        if let Some(at) = self.until {
            query.push(" and d.dlq_at < ").push_bind(at);
        }
        if let Some(n) = self.min_attempts {
            query.push(" and d.attempts >= ").push_bind(n);
        }
        if !self.ids.is_empty() {
            query
                .push(" and d.id = any(")
                .push_bind(self.ids.clone())
                .push(")");
        }
    }
}

/// A time in a filter: RFC 3339, or `YYYY-MM-DDTHH:MM` as a browser's datetime field
/// sends it (UTC).
fn time_field(field: &str, value: &str) -> Result<OffsetDateTime, AppError> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(at) = OffsetDateTime::parse(value, &Rfc3339) {
        return Ok(at);
    }
    let with_seconds = if value.len() == 16 {
        format!("{value}:00Z")
    } else {
        format!("{value}Z")
    };
    OffsetDateTime::parse(&with_seconds, &Rfc3339)
        .map_err(|_| AppError::invalid(field, "a time such as 2026-11-28T09:30 (UTC)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_round_trips_and_names_each_bad_field() {
        let filter =
            DlqFilter::parse("?webhook=3&reason=exhausted&event_type=order.paid&since=2026-11-01T00:00&min_attempts=2&ids=4,5&after=9")
                .unwrap();
        assert_eq!(filter.webhook_id, Some(3));
        assert_eq!(filter.reason, Some(DlqReason::Exhausted));
        assert_eq!(filter.ids, vec![4, 5]);
        assert_eq!(DlqFilter::parse(&filter.to_query()).unwrap(), filter);
        assert_eq!(DlqFilter::parse("").unwrap(), DlqFilter::default());
        for (query, field) in [
            ("webhook=x", "webhook"),
            ("reason=gone", "reason"),
            ("since=yesterday", "since"),
            ("min_attempts=-1", "min_attempts"),
            ("ids=1,a", "ids"),
            ("since=2026-11-02T00:00&until=2026-11-01T00:00", "until"),
        ] {
            match DlqFilter::parse(query) {
                Err(AppError::Invalid { field: f, .. }) => assert_eq!(f, field, "{query}"),
                other => panic!("{query}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_label_says_what_is_selected() {
        assert_eq!(DlqFilter::default().label(), "every dead letter");
        let filter = DlqFilter::parse("webhook=2&reason=rejected").unwrap();
        assert_eq!(filter.label(), "webhook 2, reason rejected");
    }
}
