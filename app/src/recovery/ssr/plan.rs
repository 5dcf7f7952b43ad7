//! What a recovery will restore, read from the repository alone, and every reason to
//! refuse before anything changes.

use time::OffsetDateTime;

use super::progress::{ChPoint, PgSource, Plan};
use super::RecoverError;
use crate::backups::ssr::pitr::side::Target;
use crate::backups::ssr::points::{recovery_points, RecoveryPoint};
use crate::format::format_utc;
use crate::server::{unix_ms, AppState};
use crate::stores::StoreKind;

/// What `salvage recover` was asked.
#[derive(Clone, Debug)]
pub struct RecoverRequest {
    pub target: Target,
    /// When the loss happened, for the measured recovery point.
    pub lost_at: Option<OffsetDateTime>,
    pub reason: crate::reason::Reason,
    /// The target database's name, typed to recover onto a database that holds tables
    /// (they are set aside, never dropped).
    pub confirm: Option<String>,
}

/// `latest`, or the moment in RFC 3339.
pub fn asked(target: Target) -> String {
    match target {
        Target::Latest => "latest".to_owned(),
        Target::Time(at) => at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| unix_ms(at).to_string()),
    }
}

/// The plan for `request`: the newest point of each store that reaches the moment asked
/// for. Refused when the repository holds a manifest that does not verify (a person
/// decides what it is before anything is restored), when the moment is in the future,
/// and when a store has no point at or before it.
pub async fn decide(state: &AppState, request: &RecoverRequest) -> Result<Plan, RecoverError> {
    let now = state.clock.now();
    let listed = recovery_points(state)
        .await
        .map_err(|error| RecoverError::failed(None, format!("the repository: {error}")))?;
    if !listed.refused.is_empty() {
        return Err(RecoverError::Refused(format!(
            "the repository holds backups whose signed manifest does not verify ({}): move \
             them out of the repository, or set the signing key that made them, and run again",
            listed.refused.join("; ")
        )));
    }
    let until_ms = match request.target {
        Target::Latest => None,
        Target::Time(at) if at > now => {
            return Err(RecoverError::Refused(format!(
                "{} is in the future: give a moment before now, or --latest",
                format_utc(unix_ms(at))
            )))
        }
        Target::Time(at) => Some(unix_ms(at)),
    };
    let (postgres, clickhouse) = choose(&listed.points, until_ms)?;
    Ok(Plan {
        asked: asked(request.target),
        lost_at_ms: request.lost_at.map(unix_ms),
        postgres,
        clickhouse: Some(clickhouse),
        started_ms: unix_ms(now),
        reason: request.reason.as_str().to_owned(),
    })
}

/// Each store's point for a recovery to `until_ms` (`None`: the latest): PostgreSQL's
/// point-in-time window when its oldest base backup reaches back that far, else its
/// newest dump at or before the moment; ClickHouse's newest backup at or before it.
fn choose(
    points: &[RecoveryPoint],
    until_ms: Option<i64>,
) -> Result<(PgSource, ChPoint), RecoverError> {
    let reaches = |at_ms: i64| until_ms.is_none_or(|until| at_ms <= until);
    let window = points
        .iter()
        .find(|p| p.store == StoreKind::Postgres && p.kind == "point-in-time")
        .filter(|p| reaches(p.oldest_ms.unwrap_or(p.at_ms)));
    let dump = points
        .iter()
        .filter(|p| p.store == StoreKind::Postgres && p.kind == "dump" && reaches(p.at_ms))
        .max_by_key(|p| (p.at_ms, p.backup_id));
    let wanted = || {
        until_ms
            .map(|ms| format!("at or before {}", format_utc(ms)))
            .unwrap_or_else(|| "at all".to_owned())
    };
    let postgres = match (window, dump) {
        (Some(_), _) => PgSource::PointInTime,
        (None, Some(dump)) => PgSource::Dump {
            backup_id: dump.backup_id.unwrap_or_default(),
            at_ms: dump.at_ms,
        },
        (None, None) => {
            return Err(RecoverError::Refused(format!(
                "no recovery point of PostgreSQL {}: neither pgBackRest's window nor a \
                 logical backup reaches it (salvage recover --list shows what there is)",
                wanted()
            )))
        }
    };
    let clickhouse = points
        .iter()
        .filter(|p| p.store == StoreKind::Clickhouse && reaches(p.at_ms))
        .max_by_key(|p| (p.at_ms, p.backup_id))
        .map(|p| ChPoint {
            backup_id: p.backup_id.unwrap_or_default(),
            at_ms: p.at_ms,
        });
    let clickhouse = clickhouse.ok_or_else(|| {
        RecoverError::Refused(format!(
            "no ClickHouse backup {} (salvage recover --list shows what there is)",
            wanted()
        ))
    })?;
    Ok((postgres, clickhouse))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(store: StoreKind, kind: &str, id: Option<i64>, at_ms: i64) -> RecoveryPoint {
        RecoveryPoint {
            store,
            kind: kind.to_owned(),
            backup_id: id,
            at_ms,
            oldest_ms: (kind == "point-in-time").then_some(at_ms - 1_000),
            age_secs: 0,
            brings_back: String::new(),
            encrypted: Some(true),
        }
    }

    fn refused(result: Result<(PgSource, ChPoint), RecoverError>) -> String {
        match result {
            Err(RecoverError::Refused(why)) => why,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn the_window_is_preferred_when_it_reaches_back_to_the_moment() {
        let points = [
            point(StoreKind::Postgres, "point-in-time", None, 5_000),
            point(StoreKind::Postgres, "dump", Some(3), 4_500),
            point(StoreKind::Clickhouse, "backup", Some(4), 4_600),
            point(StoreKind::Clickhouse, "backup", Some(2), 3_000),
        ];
        let (pg, ch) = choose(&points, None).unwrap();
        assert_eq!(pg, PgSource::PointInTime);
        assert_eq!(ch.backup_id, 4);
        // 4,200: after the window's oldest base backup (4,000); ClickHouse's 4,600 is too new.
        let (pg, ch) = choose(&points, Some(4_200)).unwrap();
        assert_eq!(pg, PgSource::PointInTime);
        assert_eq!(ch.backup_id, 2);
    }

    #[test]
    fn before_the_window_the_newest_dump_at_or_before_the_moment_is_used() {
        let points = [
            point(StoreKind::Postgres, "point-in-time", None, 9_000),
            point(StoreKind::Postgres, "dump", Some(7), 6_000),
            point(StoreKind::Postgres, "dump", Some(5), 3_000),
            point(StoreKind::Clickhouse, "backup", Some(6), 2_000),
        ];
        let (pg, _) = choose(&points, Some(6_000)).unwrap();
        assert_eq!(
            pg,
            PgSource::Dump {
                backup_id: 7,
                at_ms: 6_000
            }
        );
        let (pg, _) = choose(&points, Some(5_999)).unwrap();
        assert_eq!(
            pg,
            PgSource::Dump {
                backup_id: 5,
                at_ms: 3_000
            }
        );
    }

    #[test]
    fn a_moment_no_point_reaches_is_refused_naming_the_store() {
        let points = [
            point(StoreKind::Postgres, "dump", Some(5), 3_000),
            point(StoreKind::Clickhouse, "backup", Some(6), 2_500),
        ];
        assert!(refused(choose(&points, Some(2_999))).contains("PostgreSQL"));
        assert!(refused(choose(&points, Some(2_000))).contains("PostgreSQL"));
        let points = [
            point(StoreKind::Postgres, "dump", Some(5), 3_000),
            point(StoreKind::Clickhouse, "backup", Some(6), 3_500),
        ];
        assert!(refused(choose(&points, Some(3_200))).contains("ClickHouse"));
        assert!(refused(choose(&[], None)).contains("PostgreSQL"));
    }
}
