//! Why a backup, a verification or a restore step failed. Each variant says what
//! failed; its text is what the backup's row, the restore's row and the history record
//! (a store's failures read `PostgreSQL: …` / `ClickHouse: …`). Converted to `AppError`
//! only at a door.

use crate::stores::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A store failed a call.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `pg_dump`, `pg_restore` or `psql` could not be started, is too old, or failed
    /// (its first line of errors).
    #[error("{0}")]
    Tool(String),
    /// The backup target: a file could not be written, read or found.
    #[error("{0}")]
    Storage(String),
    /// What was read back is not what was written: a checksum, a row count, a manifest.
    #[error("{0}")]
    Integrity(String),
    /// What was asked does not fit what is there (a table the backup does not hold, a
    /// target that exists).
    #[error("{0}")]
    Refused(String),
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl From<std::io::Error> for BackupError {
    fn from(error: std::io::Error) -> Self {
        BackupError::Storage(error.to_string())
    }
}

impl BackupError {
    /// A failed call to PostgreSQL.
    pub fn postgres(error: impl std::fmt::Display) -> Self {
        StoreError::postgres(error).into()
    }

    /// A failed call to ClickHouse.
    pub fn clickhouse(error: impl std::fmt::Display) -> Self {
        StoreError::clickhouse(error).into()
    }

    /// The same failure, its text led by `what` (the file it concerns).
    pub fn about(self, what: &str) -> Self {
        let led = |message: String| format!("{what}: {message}");
        match self {
            BackupError::Store(error) => BackupError::Store(StoreError {
                message: led(error.message),
                ..error
            }),
            BackupError::Tool(message) => BackupError::Tool(led(message)),
            BackupError::Storage(message) => BackupError::Storage(led(message)),
            BackupError::Integrity(message) => BackupError::Integrity(led(message)),
            BackupError::Refused(message) => BackupError::Refused(led(message)),
            BackupError::Cancelled => BackupError::Cancelled,
        }
    }

    /// A tool that failed, by `what` it said.
    pub fn tool(what: impl std::fmt::Display) -> Self {
        BackupError::Tool(what.to_string())
    }
}
