//! The terminal's progress bar for every command that runs a long job through the
//! runner (`salvage replay`, `salvage backup restore`, `salvage dlq redrive`): fed by the same progress reports
//! the console's pages read (the run's `progress_done` of `progress_total`).

use std::io::Write;
use std::sync::Arc;

use app::format::{format_bytes, format_duration, group_digits};
use app::jobs::ssr::{OnProgress, Progress};

/// What a run's progress counts.
#[derive(Clone, Copy, Debug)]
pub enum Unit {
    Rows,
    Bytes,
    /// Dead letters (a redrive).
    Letters,
}

impl Unit {
    fn amount(self, n: i64) -> String {
        match self {
            Unit::Rows => format!("{} rows", group_digits(n.max(0) as u64)),
            Unit::Bytes => format_bytes(n),
            Unit::Letters => format!("{} letters", group_digits(n.max(0) as u64)),
        }
    }
}

/// One line of the bar: `[#####-----] done / total  rate/s  ETA`.
pub fn line(p: &Progress, unit: Unit) -> String {
    let total = p.total.max(p.done).max(1);
    let filled = ((p.done * 30 / total) as usize).min(30);
    let rate = p.rate();
    let eta = if rate > 0.0 && p.total > p.done {
        format_duration((((p.total - p.done) as f64 / rate) * 1000.0) as i64)
    } else {
        "—".to_owned()
    };
    format!(
        "[{}{}] {} / {}  {}/s  ETA {eta}",
        "#".repeat(filled),
        "-".repeat(30 - filled),
        unit.amount(p.done),
        unit.amount(p.total),
        unit.amount(rate as i64),
    )
}

/// The bar on standard error: redrawn in place on a terminal, one line per report
/// otherwise (a log keeps every line).
pub struct Bar {
    interactive: bool,
}

impl Bar {
    pub fn new() -> Self {
        Self {
            interactive: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }

    /// The callback the runner calls with each progress report.
    pub fn on_progress(&self, unit: Unit) -> OnProgress {
        let interactive = self.interactive;
        Arc::new(move |p: Progress| {
            let line = line(&p, unit);
            if interactive {
                eprint!("\r{line}");
            } else {
                eprintln!("{line}");
            }
            let _ = std::io::stderr().flush();
        })
    }

    /// Ends the bar's line, once the run is over.
    pub fn finish(&self) {
        if self.interactive {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_how_far_the_rate_and_what_is_left() {
        let p = Progress {
            run_id: 1,
            done: 1_000,
            total: 4_000,
            elapsed: std::time::Duration::from_secs(10),
        };
        let text = line(&p, Unit::Rows);
        assert!(
            text.starts_with(&format!("[{}{}]", "#".repeat(7), "-".repeat(23))),
            "{text}"
        );
        assert!(text.contains("1,000 rows / 4,000 rows"), "{text}");
        assert!(text.contains("100 rows/s"), "{text}");
        assert!(text.ends_with("ETA 30.0 s"), "{text}");
    }
}
