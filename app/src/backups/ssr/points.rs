//! The recovery points the repository holds, read from the repository alone: each
//! backup's signed manifest and pgBackRest's own account of its archive. No database is
//! read, so this answers on a machine whose stores are empty (`salvage recover --list`).

use serde::{Deserialize, Serialize};

use super::super::StoreKind;
use super::manifest::Manifest;
use super::verify::read_manifest_in;
use super::BackupError;
use crate::server::{unix_ms, AppState};

/// One point a store can be brought back to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryPoint {
    pub store: StoreKind,
    /// `point-in-time` (pgBackRest: any moment from `oldest_ms` to the end of the archive),
    /// `dump` (a logical PostgreSQL backup) or `backup` (a ClickHouse backup).
    pub kind: String,
    /// The catalogue's id of a logical or ClickHouse backup.
    pub backup_id: Option<i64>,
    /// The newest moment known to be brought back: a backup's start (its snapshot), the
    /// archive's newest base backup's end (WAL archived since reaches further).
    pub at_ms: i64,
    /// The oldest moment of a point-in-time window.
    pub oldest_ms: Option<i64>,
    /// Seconds between `at_ms` and now.
    pub age_secs: i64,
    /// What it brings back, for a person: tables and rows, or the archive's extent.
    pub brings_back: String,
    /// Whether its files are encrypted at rest; `None` for pgBackRest's repository, whose
    /// own cipher setting decides.
    pub encrypted: Option<bool>,
}

/// The recovery points, newest first, and the backups whose manifests were refused (each
/// `<folder>: why`): those are never offered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryPoints {
    pub points: Vec<RecoveryPoint>,
    pub refused: Vec<String>,
}

/// Reads the repository (and pgBackRest's, when archiving is set up).
pub async fn recovery_points(state: &AppState) -> Result<RecoveryPoints, BackupError> {
    let now_ms = unix_ms(state.clock.now());
    let age = |at_ms: i64| ((now_ms - at_ms) / 1000).max(0);
    let mut out = RecoveryPoints::default();
    if let Some(pitr) = &state.backups().pitr {
        let repository = super::pitr::PgBackRest::new(pitr).info().await?;
        if let (Some(oldest), Some(newest)) =
            (repository.backups.first(), repository.backups.last())
        {
            let archive = repository
                .archive
                .as_ref()
                .map(|(_, last)| format!(", WAL archived up to segment {last}"))
                .unwrap_or_default();
            out.points.push(RecoveryPoint {
                store: StoreKind::Postgres,
                kind: "point-in-time".into(),
                backup_id: None,
                at_ms: newest.stopped_ms,
                oldest_ms: Some(oldest.stopped_ms),
                age_secs: age(newest.stopped_ms),
                brings_back: format!(
                    "the whole cluster ({} base backups{archive}; latest reaches the last \
                     archived segment)",
                    repository.backups.len()
                ),
                encrypted: None,
            });
        }
    }
    let listing = read_repository(state).await?;
    out.refused = listing.refused;
    for (_, manifest) in listing.manifests {
        let at_ms = unix_ms(manifest.started_at);
        out.points.push(RecoveryPoint {
            store: manifest.store,
            kind: match manifest.store {
                StoreKind::Postgres => "dump".into(),
                StoreKind::Clickhouse => "backup".into(),
            },
            backup_id: Some(manifest.backup_id),
            at_ms,
            oldest_ms: None,
            age_secs: age(at_ms),
            brings_back: format!(
                "{} tables, {} rows, {}",
                manifest.tables.len(),
                crate::format::group_digits(manifest.total_rows().max(0) as u64),
                crate::format::format_bytes(manifest.total_bytes())
            ),
            encrypted: Some(manifest.encrypted),
        });
    }
    out.points
        .sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then(b.backup_id.cmp(&a.backup_id)));
    Ok(out)
}

/// What the repository holds: every backup's manifest that verifies (with its folder),
/// the ids of every folder with a manifest (trusted or not), and the folders refused,
/// each `<folder>: why`.
#[derive(Default)]
pub struct Listing {
    pub manifests: Vec<(String, Manifest)>,
    pub present: Vec<i64>,
    pub refused: Vec<String>,
}

/// Reads every backup's manifest in the repository, checking each (see
/// [`super::verify::read_manifest`]); sorted by backup id.
pub async fn read_repository(state: &AppState) -> Result<Listing, BackupError> {
    let storage = &state.backups().storage;
    let mut listing = Listing::default();
    for store in StoreKind::ALL {
        let folders = storage
            .folders_with(store.as_str(), super::manifest::FILE_NAME)
            .await
            .map_err(|e| {
                BackupError::Storage(format!(
                    "the backup target {} cannot be read: {e}",
                    storage.describe()
                ))
            })?;
        for location in folders {
            let Some((found, id)) = folder(&location).filter(|(found, _)| *found == store) else {
                listing
                    .refused
                    .push(format!("{location}: not a backup's folder"));
                continue;
            };
            listing.present.push(id);
            match read_manifest_in(state, &location, found, id).await {
                Ok(manifest) => listing.manifests.push((location, manifest)),
                Err(error) => listing.refused.push(format!("{location}: {error}")),
            }
        }
    }
    listing
        .manifests
        .sort_by_key(|(_, manifest)| manifest.backup_id);
    listing.refused.sort();
    Ok(listing)
}

/// A backup's folder, `<store>/<id>`, read back.
fn folder(location: &str) -> Option<(StoreKind, i64)> {
    let (store, id) = location.split_once('/')?;
    let id: i64 = id.parse().ok().filter(|id| *id > 0)?;
    Some((StoreKind::parse(store)?, id))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_store_and_a_positive_id_name_a_backup_folder() {
        use super::folder;
        use crate::backups::StoreKind;
        assert_eq!(folder("postgres/12"), Some((StoreKind::Postgres, 12)));
        assert_eq!(folder("clickhouse/3"), Some((StoreKind::Clickhouse, 3)));
        for bad in [
            "postgres/0",
            "postgres/-1",
            "mysql/2",
            "postgres/x",
            "postgres",
        ] {
            assert_eq!(folder(bad), None, "{bad}");
        }
    }
}
