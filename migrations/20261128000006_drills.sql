-- Restore drills: timed restores of the latest backups into throwaway databases, the
-- databases they made, and the recovery objectives they are measured against.

-- One row per drill. A functional drill is a run of the `restore-drill` job (`run_id`);
-- a tabletop exercise is logged by hand. `steps` grows while the drill runs (the page
-- and the terminal follow it); `stores` holds each store's backup, timings and checks.
create table drills (
    id bigserial primary key,
    kind text not null check (kind in ('functional', 'tabletop')),
    status text not null default 'running'
        check (status in ('running', 'passed', 'failed', 'cancelled')),
    run_id bigint references cron_job_runs (id) on delete set null,
    trigger text not null,
    actor text not null,
    actor_user_id bigint references users (id) on delete set null,
    reason text,
    started_at timestamptz not null,
    finished_at timestamptz,
    duration_ms bigint,
    steps jsonb not null default '[]',
    stores jsonb not null default '[]',
    error text,
    history_id bigint references runbook_history (id),
    -- A tabletop exercise: what was talked through, by whom, and what came of it.
    scenario text,
    participants text,
    findings text,
    follow_ups text,
    check (status <> 'failed' or error is not null),
    check (kind <> 'tabletop' or scenario is not null)
);
create index drills_started_idx on drills (started_at desc, id desc);
create index drills_running_idx on drills (id) where status = 'running';

-- Every throwaway database a drill makes, recorded before it is created (neither store
-- records when a database was created): the janitor drops any whose drill is no longer
-- running and that is older than an hour.
create table drill_databases (
    id bigserial primary key,
    drill_id bigint not null references drills (id),
    store text not null check (store in ('postgres', 'clickhouse')),
    name text not null,
    created_at timestamptz not null,
    dropped_at timestamptz,
    unique (store, name)
);
create index drill_databases_live_idx on drill_databases (drill_id) where dropped_at is null;

-- The recovery objectives per store, as admins set them (a store without a row has the
-- defaults: RPO 24 h, RTO 1 h). Every change is also a history entry.
create table recovery_objectives (
    store text primary key check (store in ('postgres', 'clickhouse')),
    rpo_seconds bigint not null check (rpo_seconds > 0),
    rto_seconds bigint not null check (rto_seconds > 0),
    updated_at timestamptz not null,
    updated_by text not null,
    reason text not null
);
