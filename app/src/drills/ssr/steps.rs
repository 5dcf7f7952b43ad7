//! A drill's steps: each saved as it ends and reported as the run's progress.

use std::time::Instant;

use super::super::{DrillStep, StoreKind};
use super::records;
use crate::error::AppError;
use crate::jobs::ssr::JobContext;

/// The steps so far, saved after each one and reported as the run's progress.
pub(super) struct Steps<'a> {
    pub(super) ctx: &'a JobContext,
    pub(super) drill_id: i64,
    pub(super) done: Vec<DrillStep>,
    /// Steps a drill of both stores takes.
    pub(super) total: i64,
}

impl Steps<'_> {
    pub(super) async fn push(&mut self, step: DrillStep) -> Result<(), AppError> {
        let hang = self.ctx.state.faults.drill_hang_after().map(str::to_owned);
        let name = format!(
            "{}:{}",
            step.store.map_or("drill", StoreKind::as_str),
            step.name
        );
        self.done.push(step);
        records::save_steps(&self.ctx.state.pg, self.drill_id, &self.done)
            .await
            .map_err(AppError::wrap("Record a drill's step"))?;
        self.ctx
            .tracker
            .report(self.done.len() as i64, self.total)
            .await?;
        if hang.as_deref() == Some(name.as_str()) {
            // Tests: wait here until the run is cancelled (a test that drops the run
            // meanwhile stops it for good, as a killed process would).
            self.ctx.tracker.cancelled().await;
        }
        Ok(())
    }
}

pub(super) fn step(
    store: Option<StoreKind>,
    name: &str,
    ms: i64,
    ok: bool,
    detail: Option<String>,
) -> DrillStep {
    DrillStep {
        store,
        name: name.to_owned(),
        ms,
        ok,
        detail,
    }
}

pub(super) fn ms(since: Instant) -> i64 {
    since.elapsed().as_millis() as i64
}
