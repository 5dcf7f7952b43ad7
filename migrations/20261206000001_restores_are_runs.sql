-- A restore is a run of the job runner's `restore` job (or a step of a drill's run):
-- `restores.run_id` (kept since the backups migration, unused until now) points at it,
-- and the run holds the heartbeat, the progress and the cancel. The restore keeps what
-- is its own.
create index restores_run_id on restores (run_id);
alter table restores drop column cancel_requested;

-- A redrive likewise: a run of the on-demand `redrive` job, whose run holds the heartbeat
-- and the cancel; the redrive keeps its filter, bounds, cursor and counts.
alter table webhook_redrives add column run_id bigint;
alter table webhook_redrives drop column cancel_requested;
alter table webhook_redrives drop column heartbeat_at;
