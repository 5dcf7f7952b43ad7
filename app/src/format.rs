//! How Salvage writes times, durations and numbers, in one place for the pages, the
//! CLI, the HTTP routes and the benchmarks: UTC with the zone named, durations the way
//! an operator says them, digits grouped.

/// What a secret's field shows in `Debug`: `<redacted>`.
pub struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// See [`Redacted`].
pub const REDACTED: Redacted = Redacted;

/// A secret a person is shown once and Salvage never again: a new ingest key, a
/// webhook's signing secret, a rotated cron secret, a temporary password. Its `Debug`
/// is [`REDACTED`]; the value is read with [`ShownOnce::reveal`] where it is shown.
///
/// On the wire it is `{"shownOnce":"…"}`, so an answer holding one says so in its own
/// bytes ([`SHOWN_ONCE_KEY`]): the plain-form layer never keeps such an answer in a
/// session, whichever function gave it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShownOnce {
    #[serde(rename = "shownOnce")]
    value: String,
}

/// The JSON key that marks a [`ShownOnce`] in a serialized answer, with its quotes and
/// colon: inside a JSON string a quote is always escaped, so these bytes occur only as
/// the key itself.
pub const SHOWN_ONCE_KEY: &str = "\"shownOnce\":";

impl ShownOnce {
    pub fn new(value: String) -> Self {
        Self { value }
    }

    /// The secret itself, for the one place that shows or prints it.
    pub fn reveal(&self) -> &str {
        &self.value
    }
}

impl std::fmt::Debug for ShownOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        REDACTED.fmt(f)
    }
}

/// Formats Unix milliseconds as `2026-11-22 10:04 UTC`.
pub fn format_utc(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "unknown".into(),
    }
}

/// Formats Unix milliseconds to the second, `2026-11-22 10:04:31 UTC`: the precision a
/// point-in-time restore is asked for in.
pub fn format_utc_secs(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => "unknown".into(),
    }
}

/// Formats a duration in milliseconds the way an operator reads it: `840 ms`, `12.4 s`,
/// `3 min 20 s`, `2 h 05 min`, `3 d 04 h` (from two days on).
pub fn format_duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1000)
    } else if ms < 2 * 86_400_000 {
        format!("{} h {:02} min", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    } else {
        format!(
            "{} d {:02} h",
            ms / 86_400_000,
            (ms % 86_400_000) / 3_600_000
        )
    }
}

/// A duration that may be unknown: [`format_duration`], or "—".
pub fn format_maybe_duration(ms: Option<i64>) -> String {
    ms.map(format_duration).unwrap_or_else(|| "—".into())
}

/// A query-string value, percent-encoded (everything but unreserved characters).
pub fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// "just now", "5 min ago", "3 h ago", "12 d ago"; for a time ahead of `now_ms`
/// (a next tick, the end of a grace window): "in 40 s", "in 5 min", "in 3 h", "in 2 d".
pub fn format_ago(ms: i64, now_ms: i64) -> String {
    let seconds = (now_ms - ms) / 1000;
    if seconds < 0 {
        let ahead = -seconds;
        if ahead < 60 {
            format!("in {ahead} s")
        } else if ahead < 3600 {
            format!("in {} min", ahead / 60)
        } else if ahead < 86_400 {
            format!("in {} h", ahead / 3600)
        } else {
            format!("in {} d", ahead / 86_400)
        }
    } else if seconds < 60 {
        "just now".into()
    } else if seconds < 3600 {
        format!("{} min ago", seconds / 60)
    } else if seconds < 86_400 {
        format!("{} h ago", seconds / 3600)
    } else {
        format!("{} d ago", seconds / 86_400)
    }
}

/// `1234567` → `1,234,567`.
pub fn group_digits(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units with one decimal: `8123456` → `7.7 MiB`.
pub fn format_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
/// RFC 3339 of Unix ms (`2026-11-22T10:04:05.123Z`); empty if out of range.
pub fn iso(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_shown_once_never_print_in_debug() {
        let key = crate::ingest_keys::CreatedKey {
            id: 1,
            secret: ShownOnce::new("sik_secret_value".into()),
        };
        let user = crate::settings::AddedUser {
            user_id: 2,
            email: "a@b.c".into(),
            temporary_password: ShownOnce::new("temporary secret value".into()),
        };
        let rotated = crate::crons::RotatedSecret {
            id: 3,
            secret: ShownOnce::new("sgc_secret_value".into()),
            previous: Some((2, 0)),
        };
        let webhook = crate::dead_letters::CreatedWebhook {
            id: 4,
            secret: ShownOnce::new("whsec_secret_value".into()),
        };
        for printed in [
            format!("{key:?}"),
            format!("{user:?}"),
            format!("{rotated:#?}"),
            format!("{webhook:?}"),
        ] {
            assert!(!printed.contains("secret_value"), "{printed}");
            assert!(!printed.contains("secret value"), "{printed}");
            assert!(printed.contains("<redacted>"), "{printed}");
        }
        assert!(format!("{user:?}").contains("a@b.c"));
    }

    #[test]
    fn an_answer_holding_a_secret_shown_once_says_so_in_its_bytes() {
        let key = crate::ingest_keys::CreatedKey {
            id: 1,
            secret: ShownOnce::new("sik_value".into()),
        };
        let json = serde_json::to_string(&key).unwrap();
        assert!(json.contains(SHOWN_ONCE_KEY), "{json}");
        let back: crate::ingest_keys::CreatedKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back.secret.reveal(), "sik_value");
        // The words inside a string value are not the key: its quotes are escaped.
        let note = serde_json::to_string(&"a note saying \"shownOnce\": x").unwrap();
        assert!(!note.contains(SHOWN_ONCE_KEY), "{note}");
    }

    #[test]
    fn durations_read_like_an_operator_would_say_them() {
        assert_eq!(format_duration(840), "840 ms");
        assert_eq!(format_duration(12_400), "12.4 s");
        assert_eq!(format_duration(200_000), "3 min 20 s");
        assert_eq!(format_duration(7_500_000), "2 h 05 min");
        assert_eq!(format_duration(47 * 3_600_000), "47 h 00 min");
        assert_eq!(
            format_duration(90 * 86_400_000 + 3 * 3_600_000),
            "90 d 03 h"
        );
    }

    #[test]
    fn times_are_shown_in_utc_with_the_zone_named() {
        assert_eq!(format_utc(1_795_000_000_000), "2026-11-18 11:06 UTC");
    }

    #[test]
    fn relative_times_count_down_to_just_now() {
        let now = 10_000_000_000;
        assert_eq!(format_ago(now - 30_000, now), "just now");
        assert_eq!(format_ago(now - 5 * 60_000, now), "5 min ago");
        assert_eq!(format_ago(now - 3 * 3_600_000, now), "3 h ago");
        assert_eq!(format_ago(now - 49 * 3_600_000, now), "2 d ago");
        assert_eq!(format_ago(now + 40_000, now), "in 40 s");
        assert_eq!(format_ago(now + 5 * 60_000, now), "in 5 min");
        assert_eq!(format_ago(now + 86_399_000, now), "in 23 h");
        assert_eq!(format_ago(now + 49 * 3_600_000, now), "in 2 d");
    }

    #[test]
    fn large_numbers_are_grouped_by_thousands() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1_000), "1,000");
        assert_eq!(group_digits(1_234_567), "1,234,567");
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(8 * 1024 * 1024), "8.0 MiB");
    }
}
