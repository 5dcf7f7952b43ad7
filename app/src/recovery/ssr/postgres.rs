//! The first step: PostgreSQL to the point, Salvage's own tables with it (accounts,
//! history, catalogue, queues: the one path that brings them back).
//!
//! From pgBackRest, the point is replayed into a side cluster on this machine, dumped
//! and restored into the new server: the new server need not be one Salvage can stop,
//! start or write files on (a managed PostgreSQL, another host). From a logical backup,
//! its dump is copied privately, checked against its signed manifest, and restored.
//! Either way the new `public` schema comes in one `pg_restore --single-transaction`,
//! and every table is counted against its source.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::progress::{PgSource, Plan};
use crate::backups::ssr::pitr::side::{self, Target};
use crate::backups::ssr::pitr::sides;
use crate::backups::ssr::postgres::{self as pg, DATA_LEFT_OUT};
use crate::backups::ssr::restore::{replace_schema_from, TableCheck};
use crate::backups::ssr::verify::{checked_copy_at, read_manifest_in};
use crate::backups::ssr::{storage, BackupError};
use crate::server::{unix_ms, AppState};
use crate::stores::StoreKind;

/// How long a side cluster may replay before the step gives up.
const REPLAY_WAIT: Duration = Duration::from_secs(6 * 3600);

/// What the step brought back.
pub struct Restored {
    /// The last transaction replayed, or the dump's snapshot.
    pub reached_ms: Option<i64>,
    pub checks: Vec<TableCheck>,
    /// A schema that held tables before and was set aside (never dropped).
    pub aside: Option<String>,
}

/// Restores PostgreSQL as `plan` says, to `target`.
pub async fn restore(
    state: &AppState,
    plan: &Plan,
    target: Target,
) -> Result<Restored, BackupError> {
    let (reached_ms, replaced) = match &plan.postgres {
        PgSource::PointInTime => from_window(state, target).await?,
        PgSource::Dump { backup_id, at_ms } => {
            let location = format!("{}/{backup_id}", StoreKind::Postgres.as_str());
            let manifest =
                read_manifest_in(state, &location, StoreKind::Postgres, *backup_id).await?;
            let file = manifest
                .files
                .first()
                .ok_or_else(|| BackupError::Integrity("the manifest lists no dump".into()))?;
            let copy = checked_copy_at(state, &location, &manifest, file).await?;
            let replaced = replace_schema_from(state, copy.path(), &manifest.tables).await?;
            (Some(*at_ms), replaced)
        }
    };
    // The schema set aside was the new server's empty `public`: it goes. One that held
    // tables (a resumed run, or a database named with --confirm) stays for a person.
    let mut conn = pg::connect(pg::working_url(state.backups()), None)
        .await
        .map_err(BackupError::postgres)?;
    let emptied = sqlx::query(&format!("drop schema {}", pg::quote(&replaced.aside)))
        .execute(&mut conn)
        .await
        .is_ok();
    if let Some(bad) = replaced.checks.iter().find(|check| !check.ok()) {
        return Err(BackupError::Integrity(format!(
            "{}: {} rows after the restore, its source held {}{}",
            bad.name,
            bad.rows,
            bad.expected_rows,
            if bad.schema_matches {
                ""
            } else {
                ", and its structure differs"
            }
        )));
    }
    Ok(Restored {
        reached_ms,
        checks: replaced.checks,
        aside: (!emptied).then_some(replaced.aside),
    })
}

/// pgBackRest's repository replayed to `target` in a side cluster, dumped, and the side
/// cluster removed; the dump restored into the new server.
async fn from_window(
    state: &AppState,
    target: Target,
) -> Result<(Option<i64>, crate::backups::ssr::restore::Replaced), BackupError> {
    let settings = state.backups();
    let pitr = settings.pitr.as_ref().ok_or_else(|| {
        BackupError::Refused("pgBackRest is not configured on this machine".to_owned())
    })?;
    let live: url::Url = settings
        .owner_url
        .as_ref()
        .unwrap_or(&settings.database_url)
        .expose_secret()
        .parse()
        .map_err(|_| BackupError::tool("the database URL cannot be read"))?;
    let port = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .and_then(|listener| listener.local_addr())
        .map_err(|error| BackupError::tool(format!("no free port for the side cluster: {error}")))?
        .port();
    let data_dir = sides::data_dir(pitr, port);
    let started = side::start(settings, pitr, &data_dir, port, target, &live, REPLAY_WAIT).await;
    let dumped = async {
        let side = started?;
        let mut url = live.clone();
        url.set_port(Some(port))
            .map_err(|()| BackupError::tool("the database URL has no port to change"))?;
        let url = SecretString::from(url.to_string());
        let mut conn = pg::connect(&url, None)
            .await
            .map_err(BackupError::postgres)?;
        let mut expected = pg::tables(&mut conn).await.map_err(BackupError::postgres)?;
        for table in &mut expected {
            if DATA_LEFT_OUT.contains(&table.name.as_str()) {
                table.rows = 0;
            }
        }
        let copy = storage::private_text("recovery.dump", "")?;
        pg::dump_to_file(settings, &url, copy.path()).await?;
        Ok::<_, BackupError>((side.reached.map(unix_ms), expected, copy))
    }
    .await;
    let stopped = side::stop(settings, pitr, &data_dir).await;
    let (reached_ms, expected, copy) = dumped?;
    stopped?;
    let replaced = replace_schema_from(state, copy.path(), &expected).await?;
    Ok((reached_ms, replaced))
}
