-- The cron plane: the jobs Salvage knows, every run of every job, and the cron secrets.

-- Each registered job, with when this installation first knew it. Dropout detection
-- counts expected runs from then, so a job added an hour ago is not "missing" 23 hours
-- of runs. Rows are added at start-up by `salvage serve` and `salvage migrate`.
create table cron_jobs (
    job_name text primary key,
    first_seen_at timestamptz not null default now()
);

-- Every run of every job, whoever fired it. The runbook's SQL reads `job_name` and
-- `ran_at` (when the run started).
create table cron_job_runs (
    id bigint generated always as identity primary key,
    job_name text not null,
    ran_at timestamptz not null,
    finished_at timestamptz,
    duration_ms bigint,
    trigger text not null check (trigger in ('scheduler', 'external', 'manual', 'cli')),
    outcome text not null default 'running'
        check (outcome in ('running', 'succeeded', 'partial', 'failed')),
    rows_processed bigint,
    error text,
    -- Who: the signed-in person (manual), cli:$USER, or system:<job>.
    actor text not null,
    reason text,
    -- Where the call came from: the client address and User-Agent of an HTTP call, the
    -- host and process of the scheduler.
    caller_addr text,
    caller_agent text,
    -- The cron secret an external call presented.
    secret_id bigint,
    -- The schedule tick a scheduler run belongs to. Unique per job: with several
    -- replicas, the first to insert the tick's row runs it and the others skip it.
    tick_at timestamptz,
    details jsonb not null default '{}'
);
create index cron_job_runs_job_idx on cron_job_runs (job_name, ran_at desc);
create index cron_job_runs_ran_at_idx on cron_job_runs (ran_at);
create unique index cron_job_runs_tick_idx on cron_job_runs (job_name, tick_at)
    where tick_at is not null;
create index cron_job_runs_secret_idx on cron_job_runs (secret_id, ran_at desc)
    where secret_id is not null;

-- Cron secrets, stored as SHA-256 digests. At most one is current (`retired_at` null);
-- a retired secret keeps working until `expires_at` (the grace window of a rotation).
create table cron_secrets (
    id bigint generated always as identity primary key,
    secret_hash bytea not null unique,
    source text not null check (source in ('environment', 'console', 'cli')),
    created_at timestamptz not null,
    created_by text not null,
    retired_at timestamptz,
    expires_at timestamptz,
    last_used_at timestamptz,
    last_used_addr text,
    last_used_agent text,
    check ((retired_at is null) = (expires_at is null))
);
create unique index cron_secrets_one_current on cron_secrets ((true)) where retired_at is null;

-- The scheduler replays every 5 minutes, mostly finding nothing. /admin/queues lists the
-- replays that did something (or failed, or were started by a person); this index keeps
-- that list a short index walk however many empty scheduled runs pile up.
create index replay_runs_worked_idx on replay_runs (id desc)
    where not (trigger in ('scheduler', 'external') and status = 'succeeded' and rows_done = 0);
