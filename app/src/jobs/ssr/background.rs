//! What a background migration is: a long data change done in chunks, each chunk in one
//! transaction with the cursor that says where the next one starts. The features that
//! own the data declare them (a backfill of a new column, say); the composition root
//! lists them (`registry::BACKGROUND_MIGRATIONS`, handed to the code as
//! `AppState::background_migrations`); the migrations feature runs them with the
//! `run-background-migrations` job, one worker per migration across every replica.

use std::future::Future;
use std::pin::Pin;

use sqlx::PgConnection;

/// What one chunk did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The last key done: the next chunk starts after it.
    pub cursor: i64,
    /// Rows this chunk changed (they count towards the progress).
    pub rows: i64,
    /// Nothing is left after `cursor`.
    pub done: bool,
}

/// The future of a count or a chunk, borrowing the transaction it runs in.
pub type StepFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, sqlx::Error>> + Send + 'c>>;

/// One background migration.
pub struct BackgroundMigration {
    /// The stored name (`background_migrations.name`): lower case, digits and `_`.
    pub name: &'static str,
    /// What it does and why, as the console shows it.
    pub description: &'static str,
    /// How many rows are left to change (its progress total, counted when it first
    /// runs). Must be a bounded query: it runs once per migration.
    pub count: for<'c> fn(&'c mut PgConnection) -> StepFuture<'c, i64>,
    /// One chunk of at most `limit` rows after `cursor` (`None` before the first),
    /// inside the transaction the runner commits with the new cursor. It must make its
    /// change only to rows after `cursor`, so a chunk rolled back is redone whole and a
    /// chunk committed is never redone.
    pub step: for<'c> fn(&'c mut PgConnection, Option<i64>, i64) -> StepFuture<'c, Chunk>,
}

impl std::fmt::Debug for BackgroundMigration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundMigration")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Every background migration: the composition root's `registry::BACKGROUND_MIGRATIONS`
/// (a test may hand the state others).
#[derive(Clone, Copy)]
pub struct BackgroundMigrations(pub &'static [&'static BackgroundMigration]);

impl crate::server::AppState {
    /// Every background migration (see `BackgroundMigrations`).
    pub fn background_migrations(&self) -> &'static [&'static BackgroundMigration] {
        self.part::<BackgroundMigrations>().0
    }
}
