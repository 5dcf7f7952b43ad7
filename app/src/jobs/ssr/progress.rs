//! A run's progress and its stop signal: what the page's live progress, the terminal's
//! bar and the heartbeat all read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::error::AppError;
use crate::server::AppState;

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    pub run_id: i64,
    /// Units of work done (rows, for replay).
    pub done: i64,
    /// Units of work known at the start (can be passed: rows keep arriving).
    pub total: i64,
    pub elapsed: Duration,
}

impl Progress {
    /// Units per second so far.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(0.001)
    }
}

/// A door's progress callback (the terminal's bar).
pub type OnProgress = Arc<dyn Fn(Progress) + Send + Sync>;

/// A run's handle on its own record: progress reports, heartbeats, the stop signal.
#[derive(Clone)]
pub struct Tracker {
    state: AppState,
    run_id: i64,
    cancel: CancellationToken,
    on_progress: Option<OnProgress>,
    started: Instant,
}

impl Tracker {
    /// The tracker of run `run_id`; its token is a child of the process's shutdown token.
    pub fn new(state: &AppState, run_id: i64, on_progress: Option<OnProgress>) -> Self {
        Self {
            state: state.clone(),
            run_id,
            cancel: state.shutdown.child_token(),
            on_progress,
            started: Instant::now(),
        }
    }

    /// A tracker of work that is not a job run (the backup before an upgrade): it stops
    /// on shutdown like a run, and records nothing (its run id is 0).
    pub fn detached(state: &AppState) -> Self {
        Self::new(state, 0, None)
    }

    /// A tracker of a step inside this run (a drill's restore): it stops when the run
    /// does, and records no progress of its own (the run reports its steps).
    pub fn step(&self) -> Self {
        Self {
            run_id: 0,
            on_progress: None,
            ..self.clone()
        }
    }

    /// Whether the run should stop after its current step (Cancel, Ctrl-C, shutdown).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The run's stop signal, for work that checks it itself (a restore inside a drill).
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Resolves when the run is asked to stop.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Records how far the run is (`done` of `total`) with a heartbeat, tells the door,
    /// and picks up a Cancel pressed on any replica.
    pub async fn report(&self, done: i64, total: i64) -> Result<(), AppError> {
        if self.run_id == 0 {
            return Ok(());
        }
        let cancel_requested = sqlx::query_scalar!(
            "update cron_job_runs set progress_done = $2, progress_total = $3, heartbeat_at = $4
              where id = $1 returning cancel_requested",
            self.run_id,
            done,
            total,
            self.state.clock.now()
        )
        .fetch_one(&self.state.pg)
        .await
        .map_err(AppError::wrap("Failed to record a run's progress"))?;
        if cancel_requested {
            self.cancel.cancel();
        }
        if let Some(on_progress) = &self.on_progress {
            on_progress(Progress {
                run_id: self.run_id,
                done,
                total,
                elapsed: self.started.elapsed(),
            });
        }
        Ok(())
    }

    /// Beats the heartbeat alone (the runner does this every few seconds while the job
    /// works, progress or not). A store that does not answer costs one beat, no more.
    pub(crate) async fn beat(&self) {
        let beat = sqlx::query_scalar!(
            "update cron_job_runs set heartbeat_at = $2 where id = $1 returning cancel_requested",
            self.run_id,
            self.state.clock.now()
        )
        .fetch_one(&self.state.pg)
        .await;
        match beat {
            Ok(true) => self.cancel.cancel(),
            Ok(false) => {}
            Err(error) => tracing::debug!(run_id = self.run_id, %error, "heartbeat missed"),
        }
    }
}
