//! Backups and restores, server side. See the module list in `backups/mod.rs`.

pub mod alerts;
pub mod catalogue;
pub mod clickhouse;
pub mod create;
pub mod encryption;
mod error;
mod manifest;
mod native;
pub mod objectives;
pub mod pitr;
pub mod points;
pub mod postgres;
pub mod restore;
pub mod schedule;
pub mod signature;
pub mod storage;
pub mod sync;
pub mod verify;

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

pub use create::BACKUP;
pub use error::BackupError;
pub use storage::Storage;

/// `SALVAGE_BACKUP_*`: where backups go, how many are kept, the recovery objectives.
#[derive(Clone, Debug)]
pub struct BackupSettings {
    /// `SALVAGE_BACKUP_DIR`: the backup target. Default `.stores/backups`.
    pub storage: Storage,
    /// `SALVAGE_BACKUP_SCHEDULE_<STORE>` and `SALVAGE_BACKUP_KEEP_<STORE>` (or
    /// `SALVAGE_BACKUP_KEEP` for both): when each store is backed up and how many of its
    /// complete backups are kept (PostgreSQL hourly, 168; ClickHouse daily at 03:00, 30).
    pub policy_postgres: schedule::StorePolicy,
    pub policy_clickhouse: schedule::StorePolicy,
    /// `SALVAGE_RPO_POSTGRES_HOURS`, `SALVAGE_RPO_CLICKHOUSE_HOURS`: the recovery point
    /// objective of each store (default 24 h): `backup_stale` is measured against it.
    pub rpo_postgres: Duration,
    pub rpo_clickhouse: Duration,
    /// The recovery time objective of each store until an admin sets one (1 h).
    pub rto_default: Duration,
    /// `DATABASE_URL`, for `pg_dump` (the database backed up).
    pub database_url: SecretString,
    /// `SALVAGE_MIGRATE_DATABASE_URL`: restores connect as the schema's owner when set.
    pub owner_url: Option<SecretString>,
    /// `SALVAGE_PG_BIN_DIR`: where `pg_dump` and `pg_restore` are; default the `PATH`.
    pub pg_bin_dir: Option<PathBuf>,
    /// Continuous archiving through pgBackRest, when it is set up (`SALVAGE_PGBACKREST_*`).
    pub pitr: Option<pitr::PitrSettings>,
    /// `SALVAGE_BACKUP_SIGNING_KEYS`: the keys manifests are signed with (the first) and
    /// checked against (any), kept outside the repository. Without one, backups fail and
    /// restores refuse: nothing unsigned is trusted.
    pub signing_keys: crate::server::sealed::KeyRing,
    /// `SALVAGE_BACKUP_AGE_IDENTITY`: the age key backup files are encrypted to and
    /// decrypted with. Unset, new backups are written plain.
    pub encryption: Option<encryption::Encryption>,
}

impl BackupSettings {
    /// The settings for `database_url` with every default.
    pub fn with_defaults(database_url: SecretString, owner_url: Option<SecretString>) -> Self {
        Self {
            storage: Storage::Directory(PathBuf::from(".stores/backups")),
            policy_postgres: schedule::StorePolicy::default_for(super::StoreKind::Postgres),
            policy_clickhouse: schedule::StorePolicy::default_for(super::StoreKind::Clickhouse),
            rpo_postgres: Duration::from_secs(24 * 3600),
            rpo_clickhouse: Duration::from_secs(24 * 3600),
            rto_default: Duration::from_secs(3600),
            database_url,
            owner_url,
            pg_bin_dir: None,
            pitr: None,
            signing_keys: Default::default(),
            encryption: None,
        }
    }

    /// The backup schedule and retention of `store`.
    pub fn policy(&self, store: super::StoreKind) -> &schedule::StorePolicy {
        match store {
            super::StoreKind::Postgres => &self.policy_postgres,
            super::StoreKind::Clickhouse => &self.policy_clickhouse,
        }
    }

    /// The recovery point objective of `store`.
    pub fn rpo(&self, store: super::StoreKind) -> Duration {
        match store {
            super::StoreKind::Postgres => self.rpo_postgres,
            super::StoreKind::Clickhouse => self.rpo_clickhouse,
        }
    }
}

pub use crate::server::postgres::lock_class;

/// The job that moves the rows parked while an in-place ClickHouse restore froze writes
/// into the restored tables. The composition root names it (the queues' replay): one
/// feature does not reach into another's jobs by name.
#[derive(Clone, Copy)]
pub struct ReplayParked(pub &'static crate::jobs::ssr::Job);

impl crate::server::AppState {
    /// The backup settings (the state's part for the backups).
    pub fn backups(&self) -> &BackupSettings {
        self.part()
    }

    /// See [`ReplayParked`].
    pub fn replay_parked(&self) -> &'static crate::jobs::ssr::Job {
        self.part::<ReplayParked>().0
    }
}
