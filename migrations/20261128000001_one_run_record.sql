-- One run, one record. Every run of every job (replay included) is one `cron_job_runs`
-- row: its id is what a start returns and what cancel, the pages and the CLI take.
-- Replay's own `replay_runs` table goes; its live figures are the run's generic
-- progress (`progress_done` of `progress_total`) and its final figures the run's
-- `details`.

-- Outcomes a run can end with: `cancelled` (someone pressed Cancel, Ctrl-C, or the
-- process was asked to stop) and `abandoned` (its heartbeat stopped: the process died).
alter table cron_job_runs drop constraint cron_job_runs_outcome_check;
update cron_job_runs set outcome = 'abandoned'
 where outcome = 'failed' and error like 'abandoned:%';
alter table cron_job_runs add constraint cron_job_runs_outcome_check
    check (outcome in ('running', 'succeeded', 'partial', 'cancelled', 'failed', 'abandoned'));

-- The runner beats `heartbeat_at` every few seconds while a run works; a `running` row
-- whose heartbeat is stale belongs to a process that died. `cancel_requested` is how a
-- Cancel pressed on any replica reaches the one running the job.
alter table cron_job_runs
    add column heartbeat_at timestamptz,
    add column cancel_requested boolean not null default false,
    add column progress_done bigint,
    add column progress_total bigint;
update cron_job_runs set heartbeat_at = coalesce(finished_at, ran_at);
alter table cron_job_runs alter column heartbeat_at set not null,
                          alter column heartbeat_at set default now();

-- Replays recorded before runs were unified and that have no cron run of their own
-- (the cron plane came later) keep their place in the queues page's history.
insert into cron_job_runs
    (job_name, ran_at, finished_at, duration_ms, trigger, outcome, rows_processed, error,
     actor, reason, heartbeat_at, progress_done, progress_total, details)
select 'replay-fallback', r.started_at, r.finished_at,
       (extract(epoch from (r.finished_at - r.started_at)) * 1000)::bigint,
       r.trigger,
       case when r.status = 'running' then 'abandoned' else r.status end,
       r.rows_done, r.error, r.actor, r.reason, r.heartbeat_at, r.rows_done, r.rows_at_start,
       jsonb_build_object('rowsAtStart', r.rows_at_start, 'rowsDone', r.rows_done,
                          'rowsInserted', r.rows_inserted,
                          'rowsAlreadyPresent', r.rows_already_present,
                          'rowsLeft', r.rows_left)
  from replay_runs r
 where r.trigger <> 'bench'
   and not exists (select 1 from cron_job_runs c
                    where c.job_name = 'replay-fallback'
                      and (c.details ->> 'runId')::bigint = r.id);

-- Replay cron runs already carry their figures in `details`; their progress columns
-- are filled from it.
update cron_job_runs
   set progress_done = (details ->> 'rowsDone')::bigint,
       progress_total = (details ->> 'rowsAtStart')::bigint
 where job_name = 'replay-fallback' and details ? 'rowsDone';

drop table replay_runs;

-- The queues page lists the replays that moved rows or did not succeed.
create index cron_job_runs_replays_idx on cron_job_runs (id desc)
    where job_name = 'replay-fallback'
      and not (trigger in ('scheduler', 'external') and outcome = 'succeeded'
               and coalesce(rows_processed, 0) = 0);
