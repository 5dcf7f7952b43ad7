//! Prometheus metrics: the families every part of Salvage declares, the process-local
//! counters and histograms that handlers and jobs add to ([`Metrics`], one per process,
//! in `AppState`), and the text exposition format (version 0.0.4) `/metrics` writes.
//!
//! Two scopes, never mixed in one family: **process** figures (this process's requests,
//! ingested rows, replayed batches, cron runs; they start at zero when the process starts
//! and a dashboard sums them over replicas) and **store** figures (queue depths, open
//! alerts, backups, …), read from PostgreSQL on each scrape and the same on every replica
//! (a dashboard takes `max` of them). Each family's help text starts with its scope.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// What a family holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A metric family: its name (`salvage_` prefix, base unit, `_total` for a counter),
/// help text, kind and label names.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
}

/// The upper bounds (seconds) of every duration histogram's buckets.
pub const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Rows `/ingest/requests` and `/ingest/events` took in, by where they went.
pub static INGEST_ROWS: Family = Family {
    name: "salvage_ingest_rows_total",
    help: "Process: rows received on /ingest/requests and /ingest/events, by queue and outcome (clickhouse: stored in ClickHouse; fallback: parked in the PostgreSQL fallback queue; refused: a valid batch answered 429 or 503, not stored).",
    kind: Kind::Counter,
    labels: &["queue", "outcome"],
};

/// How long an ingest request took, from its first byte to its answer.
pub static INGEST_DURATION: Family = Family {
    name: "salvage_ingest_request_duration_seconds",
    help: "Process: time to answer an /ingest/requests or /ingest/events request, by queue, whatever the answer.",
    kind: Kind::Histogram,
    labels: &["queue"],
};

/// Rows replay moved from a fallback queue into ClickHouse.
pub static REPLAY_ROWS: Family = Family {
    name: "salvage_replay_rows_total",
    help: "Process: rows replayed from a fallback queue into ClickHouse (committed batches only; rows ClickHouse already held count too, they leave the queue).",
    kind: Kind::Counter,
    labels: &["queue"],
};

/// Replay batches that committed.
pub static REPLAY_BATCHES: Family = Family {
    name: "salvage_replay_batches_total",
    help: "Process: replay batches committed, by queue.",
    kind: Kind::Counter,
    labels: &["queue"],
};

/// Job runs this process finished.
pub static CRON_RUNS: Family = Family {
    name: "salvage_cron_runs_total",
    help: "Process: job runs this process finished, by job and outcome (succeeded, partial, failed, cancelled), whoever fired them (scheduler, /cron, button, CLI).",
    kind: Kind::Counter,
    labels: &["job", "outcome"],
};

/// HTTP requests answered.
pub static HTTP_REQUESTS: Family = Family {
    name: "salvage_http_requests_total",
    help: "Process: HTTP requests answered, by route (the matched route pattern; `unmatched` for static files and unknown paths) and status code.",
    kind: Kind::Counter,
    labels: &["route", "status"],
};

/// HTTP request durations.
pub static HTTP_DURATION: Family = Family {
    name: "salvage_http_request_duration_seconds",
    help: "Process: time to answer an HTTP request (until its headers), by route.",
    kind: Kind::Histogram,
    labels: &["route"],
};

/// The process-local families, in the order `/metrics` writes them.
pub static PROCESS_FAMILIES: [&Family; 7] = [
    &HTTP_REQUESTS,
    &HTTP_DURATION,
    &INGEST_ROWS,
    &INGEST_DURATION,
    &REPLAY_ROWS,
    &REPLAY_BATCHES,
    &CRON_RUNS,
];

#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Observations per bucket of [`BUCKETS`] (not cumulative), then above the last.
    buckets: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

type Key = (&'static str, Vec<String>);

#[derive(Debug, Default)]
struct Samples {
    counters: BTreeMap<Key, u64>,
    histograms: BTreeMap<Key, Histogram>,
}

/// This process's counters and histograms. Cheap to clone (one `Arc`); adding takes a
/// short lock and never waits on I/O.
#[derive(Clone, Debug, Default)]
pub struct Metrics(Arc<Mutex<Samples>>);

impl Metrics {
    /// Adds `by` to the counter of `family` with `labels` (in the family's label order).
    pub fn add(&self, family: &'static Family, labels: &[&str], by: u64) {
        debug_assert_eq!(family.kind, Kind::Counter, "{}", family.name);
        debug_assert_eq!(family.labels.len(), labels.len(), "{}", family.name);
        let key = (
            family.name,
            labels.iter().map(|l| (*l).to_owned()).collect(),
        );
        let mut samples = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        *samples.counters.entry(key).or_default() += by;
    }

    /// Records one observation of `seconds` in the histogram of `family` with `labels`.
    pub fn observe(&self, family: &'static Family, labels: &[&str], seconds: f64) {
        debug_assert_eq!(family.kind, Kind::Histogram, "{}", family.name);
        debug_assert_eq!(family.labels.len(), labels.len(), "{}", family.name);
        let key = (
            family.name,
            labels.iter().map(|l| (*l).to_owned()).collect(),
        );
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        let mut samples = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        let histogram = samples.histograms.entry(key).or_default();
        histogram.buckets[bucket] += 1;
        histogram.sum += seconds;
        histogram.count += 1;
    }

    /// Writes every process family (help and type even before its first sample).
    pub fn write(&self, out: &mut Exposition) {
        let samples = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        for family in PROCESS_FAMILIES {
            out.family(family);
            for ((name, labels), value) in &samples.counters {
                if *name == family.name {
                    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                    out.sample(family, &labels, *value as f64);
                }
            }
            for ((name, labels), histogram) in &samples.histograms {
                if *name == family.name {
                    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                    out.histogram(family, &labels, histogram);
                }
            }
        }
    }
}

/// A scrape's text, family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts `family`: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, family: &Family) {
        let help = family.help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {} {help}", family.name);
        let _ = writeln!(self.text, "# TYPE {} {}", family.name, family.kind.as_str());
    }

    /// One sample of `family` (a counter or gauge) with `labels` in the family's order.
    pub fn sample(&mut self, family: &Family, labels: &[&str], value: f64) {
        debug_assert_eq!(family.labels.len(), labels.len(), "{}", family.name);
        self.line(family.name, "", family.labels, labels, None, value);
    }

    fn histogram(&mut self, family: &Family, labels: &[&str], histogram: &Histogram) {
        let mut cumulative = 0;
        for (i, count) in histogram.buckets.iter().enumerate() {
            cumulative += count;
            let bound = BUCKETS.get(i).map_or("+Inf".to_owned(), |b| number(*b));
            let le = Some(bound.as_str());
            self.line(
                family.name,
                "_bucket",
                family.labels,
                labels,
                le,
                cumulative as f64,
            );
        }
        self.line(
            family.name,
            "_sum",
            family.labels,
            labels,
            None,
            histogram.sum,
        );
        let count = histogram.count as f64;
        self.line(family.name, "_count", family.labels, labels, None, count);
    }

    fn line(
        &mut self,
        name: &str,
        suffix: &str,
        names: &[&str],
        values: &[&str],
        le: Option<&str>,
        value: f64,
    ) {
        let mut pairs: Vec<(&str, &str)> =
            names.iter().copied().zip(values.iter().copied()).collect();
        if let Some(le) = le {
            pairs.push(("le", le));
        }
        self.text.push_str(name);
        self.text.push_str(suffix);
        if !pairs.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in pairs.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    /// The text, ready to send as `text/plain; version=0.0.4`.
    pub fn finish(self) -> String {
        self.text
    }
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: integers without a fraction, the format's spellings of infinities
/// and NaN.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static GAUGE: Family = Family {
        name: "salvage_test_value",
        help: "Store: a test figure.\nSecond line with a \\.",
        kind: Kind::Gauge,
        labels: &["name"],
    };

    #[test]
    fn counters_add_up_per_label_set_and_histograms_are_cumulative() {
        let metrics = Metrics::default();
        metrics.add(&INGEST_ROWS, &["requests", "clickhouse"], 5);
        metrics.add(&INGEST_ROWS, &["requests", "clickhouse"], 2);
        metrics.add(&INGEST_ROWS, &["events", "fallback"], 1);
        metrics.observe(&INGEST_DURATION, &["requests"], 0.003_906_25);
        metrics.observe(&INGEST_DURATION, &["requests"], 0.125);
        metrics.observe(&INGEST_DURATION, &["requests"], 99.0);
        let mut out = Exposition::default();
        metrics.write(&mut out);
        let text = out.finish();

        assert!(
            text.contains(
                "salvage_ingest_rows_total{queue=\"requests\",outcome=\"clickhouse\"} 7\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("salvage_ingest_rows_total{queue=\"events\",outcome=\"fallback\"} 1\n")
        );
        let bucket = |le: &str| {
            format!(
                "salvage_ingest_request_duration_seconds_bucket{{queue=\"requests\",le=\"{le}\"}}"
            )
        };
        assert!(text.contains(&format!("{} 1\n", bucket("0.005"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", bucket("0.1"))));
        assert!(text.contains(&format!("{} 2\n", bucket("0.25"))));
        assert!(text.contains(&format!("{} 2\n", bucket("30"))));
        assert!(text.contains(&format!("{} 3\n", bucket("+Inf"))));
        assert!(text.contains(
            "salvage_ingest_request_duration_seconds_sum{queue=\"requests\"} 99.12890625\n"
        ));
        assert!(
            text.contains("salvage_ingest_request_duration_seconds_count{queue=\"requests\"} 3\n")
        );
        // Every process family is declared, even one with no sample yet.
        for family in PROCESS_FAMILIES {
            assert!(text.contains(&format!(
                "# TYPE {} {}\n",
                family.name,
                family.kind.as_str()
            )));
        }
        assert!(!text.contains("salvage_cron_runs_total{"));
    }

    #[test]
    fn help_and_label_values_are_escaped() {
        let mut out = Exposition::default();
        out.family(&GAUGE);
        out.sample(&GAUGE, &["a \"quoted\" \\ name\nnext"], 1.5);
        out.sample(&GAUGE, &["nan"], f64::NAN);
        let text = out.finish();
        assert_eq!(
            text,
            "# HELP salvage_test_value Store: a test figure.\\nSecond line with a \\\\.\n\
             # TYPE salvage_test_value gauge\n\
             salvage_test_value{name=\"a \\\"quoted\\\" \\\\ name\\nnext\"} 1.5\n\
             salvage_test_value{name=\"nan\"} NaN\n"
        );
    }
}
