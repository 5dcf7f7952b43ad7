//! Failures the tests inject at the points where a process dies mid-way matters most. They
//! exist only in builds with the `faults` feature, which the test builds turn on (the
//! server's dev-dependency on this crate) and the release build never does: there every
//! getter answers "no fault", and no setting or variable can set one.

/// The faults this state injects. Empty (no fault) by default.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// A ClickHouse backup stops for good after writing this many files, as a process
    /// killed there would (the test drops it).
    #[cfg(feature = "faults")]
    pub backup_hang_after_files: Option<usize>,
    /// Replay fails after the ClickHouse insert of each batch and before the PostgreSQL
    /// commit, as a process killed there would.
    #[cfg(feature = "faults")]
    pub replay_crash_after_insert: bool,
    /// A drill waits after this step (`<store>:<step>`, e.g. `postgres:verify`) until its
    /// run is cancelled; a test that drops the run there stops it for good.
    #[cfg(feature = "faults")]
    pub drill_hang_after: Option<String>,
    /// Right after a backup file's private copy is checked against its manifest, this
    /// file (the first path) in the repository is overwritten with another (the second),
    /// as someone with write access to the repository would between check and restore.
    #[cfg(feature = "faults")]
    pub swap_after_check: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Faults {
    pub fn backup_hang_after_files(&self) -> Option<usize> {
        #[cfg(feature = "faults")]
        return self.backup_hang_after_files;
        #[cfg(not(feature = "faults"))]
        None
    }

    pub fn replay_crash_after_insert(&self) -> bool {
        #[cfg(feature = "faults")]
        return self.replay_crash_after_insert;
        #[cfg(not(feature = "faults"))]
        false
    }

    pub fn drill_hang_after(&self) -> Option<&str> {
        #[cfg(feature = "faults")]
        return self.drill_hang_after.as_deref();
        #[cfg(not(feature = "faults"))]
        None
    }

    pub fn swap_after_check(&self) -> Option<&(std::path::PathBuf, std::path::PathBuf)> {
        #[cfg(feature = "faults")]
        return self.swap_after_check.as_ref();
        #[cfg(not(feature = "faults"))]
        None
    }
}
