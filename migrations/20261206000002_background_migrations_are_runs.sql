-- A background migration's turn is a run of the job runner's `run-background-migrations`
-- job: `run_id` points at the run that works it now (or worked it last), and that run's
-- heartbeat is the one heartbeat. A `running` migration whose run has ended, or gone
-- quiet past the runner's abandoned rule, is stuck, and the next tick takes it over.
alter table background_migrations add column run_id bigint;
create index background_migrations_run_id on background_migrations (run_id);

-- `last_heartbeat_at` stays for the runbook's query (`select name, status, ...,
-- last_heartbeat_at from background_migrations`): it is the working run's heartbeat,
-- copied here whenever the runner writes it, not a clock of its own. The copy never
-- waits: while a chunk's transaction holds the row it is skipped, and the progress
-- report that follows the chunk's commit copies the next beat.
create function background_migration_heartbeat() returns trigger language plpgsql as $$
begin
    update background_migrations m set last_heartbeat_at = new.heartbeat_at
      from (select name from background_migrations
             where run_id = new.id and status = 'running'
               for update skip locked) free
     where m.name = free.name;
    return null;
end $$;

create trigger background_migration_heartbeat
    after update of heartbeat_at on cron_job_runs
    for each row when (new.job_name = 'run-background-migrations')
    execute function background_migration_heartbeat();
