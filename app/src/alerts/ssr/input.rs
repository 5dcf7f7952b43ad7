//! What people type into the alert forms and the CLI, checked: selections, notes, times.

use time::OffsetDateTime;

use super::super::Seen;
use crate::error::AppError;

/// Longest note.
pub const MAX_NOTE_CHARS: usize = 2000;

/// `12@3,15@1`: alert ids with the version seen.
pub fn selection(value: &str) -> Result<Vec<Seen>, AppError> {
    let invalid = || AppError::invalid("selection", "list alerts as id@version, e.g. 12@3,15@1");
    let items: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err(AppError::invalid("selection", "select at least one alert"));
    }
    if items.len() > super::changes::MAX_BULK {
        return Err(AppError::invalid(
            "selection",
            format!("select at most {} alerts at once", super::changes::MAX_BULK),
        ));
    }
    items
        .into_iter()
        .map(|item| {
            let (id, version) = item.split_once('@').ok_or_else(invalid)?;
            Ok(Seen {
                id: id.trim().parse().map_err(|_| invalid())?,
                version: version.trim().parse().map_err(|_| invalid())?,
            })
        })
        .collect()
}

/// A note that must be given.
pub fn required_note(value: &str) -> Result<String, AppError> {
    optional_note(value)?.ok_or_else(|| AppError::invalid("note", "say what you saw or did"))
}

/// A note that may be left empty.
pub fn optional_note(value: &str) -> Result<Option<String>, AppError> {
    let value = value.trim();
    if value.chars().count() > MAX_NOTE_CHARS {
        return Err(AppError::invalid(
            "note",
            format!("keep it under {MAX_NOTE_CHARS} characters"),
        ));
    }
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

/// `30m`, `4h`, `2d` from `now`, or a UTC time (`2026-11-28T14:00`); empty is `None`.
fn time_or_span(
    field: &str,
    value: &str,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, AppError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let cut = value.char_indices().last().map_or(0, |(i, _)| i);
    let (number, unit) = value.split_at(cut);
    let span = match (number.parse::<i64>(), unit) {
        (Ok(n), "m") => Some(time::Duration::minutes(n)),
        (Ok(n), "h") => Some(time::Duration::hours(n)),
        (Ok(n), "d") => Some(time::Duration::days(n)),
        _ => None,
    };
    match span {
        Some(span) => Ok(Some(now + span)),
        None => crate::history::ssr::parse_time(field, value, false).map_err(|_| {
            AppError::invalid(
                field,
                "use a span like 30m, 4h or 2d, or a UTC time like 2026-11-28T14:00",
            )
        }),
    }
}

/// An acknowledgement's end, if any; it must be in the future.
pub fn until(value: &str, now: OffsetDateTime) -> Result<Option<OffsetDateTime>, AppError> {
    let until = time_or_span("until", value, now)?;
    if until.is_some_and(|t| t <= now) {
        return Err(AppError::invalid("until", "must be in the future"));
    }
    Ok(until)
}

/// A silence's end: required (the silence refuses a missing or past one, naming
/// `ends_at`).
pub fn ends_at(value: &str, now: OffsetDateTime) -> Result<Option<OffsetDateTime>, AppError> {
    time_or_span("ends_at", value, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_reads_ids_with_versions_and_names_the_field_when_wrong() {
        assert_eq!(
            selection("12@3, 15@1").unwrap(),
            vec![Seen { id: 12, version: 3 }, Seen { id: 15, version: 1 }]
        );
        for bad in ["", "12", "x@1", "12@"] {
            match selection(bad) {
                Err(AppError::Invalid { field, .. }) => assert_eq!(field, "selection"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn spans_and_times_read_from_now_and_a_past_until_is_refused() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        assert_eq!(
            until("4h", now).unwrap(),
            Some(now + time::Duration::hours(4))
        );
        assert_eq!(until("", now).unwrap(), None);
        assert!(matches!(until("-1h", now), Err(AppError::Invalid { .. })));
        assert!(
            matches!(ends_at("soon", now), Err(AppError::Invalid { field, .. }) if field == "ends_at")
        );
        assert_eq!(
            required_note("  ").unwrap_err(),
            AppError::invalid("note", "say what you saw or did")
        );
    }
}
