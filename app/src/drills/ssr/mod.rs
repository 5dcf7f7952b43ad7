//! Drills on the server: the drill itself (`run`, the `restore-drill` job) and the
//! console's queries it runs on what it restored (`queries`), the records of drills and
//! of the throwaway databases they make (`records`), the janitor that drops those a drill
//! left behind (`janitor`, the `drill-janitor` job), the alert kinds (`alerts`), when
//! each store's drills and tabletops are due (`cadence`), and the page's figures, tabletop log and objectives (`overview`).

pub mod alerts;
pub mod cadence;
mod janitor;
pub mod overview;
mod pitr;
mod queries;
pub mod records;
pub mod run;
pub mod schema_events;
mod steps;

use std::time::Duration;

pub use janitor::DRILL_JANITOR;
pub use run::RESTORE_DRILL;

use super::StoreKind;
use crate::server::AppState;

/// How drills run.
#[derive(Clone, Debug)]
pub struct DrillSettings {
    /// How old a throwaway database of a drill that is no longer running must be before
    /// the janitor drops it (1 h).
    pub janitor_after: Duration,
    /// `SALVAGE_DRILL_PITR` (default on): when pgBackRest is set up, a drill also
    /// restores PostgreSQL through the point-in-time path, to latest and to a random
    /// moment of the window, and measures PostgreSQL's recovery time on it.
    pub pitr: bool,
    /// `SALVAGE_DRILL_TREND_FLOOR_SECS` (60): how far over its 90-day median a drill's
    /// recovery time must also be, besides [`alerts::TREND_FACTOR`] times it, to raise
    /// `rto_exceeded`; a sub-second difference on small data is not a trend.
    pub trend_floor: Duration,
}

impl Default for DrillSettings {
    fn default() -> Self {
        Self {
            pitr: true,
            trend_floor: Duration::from_secs(60),
            janitor_after: Duration::from_secs(3600),
        }
    }
}

/// The throwaway database of drill `id` in a store whose live database is `live`:
/// `<live>_drill_<id>` (`salvage_drill_12` for the default `salvage`), so that two
/// installations on one server never pick the same name. Cut to PostgreSQL's 63 bytes
/// from the live name's end, never from the id.
pub fn database_name(live: &str, id: i64) -> String {
    let suffix = format!("_drill_{id}");
    let room = 63 - suffix.len();
    let mut base: String = live
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    base.truncate(room);
    if base.is_empty() || base.starts_with(|c: char| c.is_ascii_digit()) {
        base = format!("s{base}");
        base.truncate(room);
    }
    format!("{base}{suffix}")
}

/// The live database of `store`.
pub fn live_database(state: &AppState, store: StoreKind) -> String {
    match store {
        StoreKind::Postgres => {
            crate::backups::ssr::postgres::database_name(&state.backups().database_url)
        }
        StoreKind::Clickhouse => state.clickhouse.database().to_owned(),
    }
}

impl crate::server::AppState {
    /// The drill settings (the state's part for the drills).
    pub fn drills(&self) -> &DrillSettings {
        self.part()
    }
}

#[cfg(test)]
mod tests {
    use super::database_name;

    #[test]
    fn drill_databases_are_named_after_the_live_one_and_fit_postgres() {
        assert_eq!(database_name("salvage", 12), "salvage_drill_12");
        assert_eq!(database_name("Salvage-Prod", 3), "salvage_prod_drill_3");
        let long = database_name(&"x".repeat(80), 123_456);
        assert_eq!(long.len(), 63);
        assert!(long.ends_with("_drill_123456"));
        assert_eq!(database_name("", 1), "s_drill_1");
        assert!(crate::backups::ssr::restore::valid_database_name(
            &database_name("9lives", 1)
        ));
    }
}
