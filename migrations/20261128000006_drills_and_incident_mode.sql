-- Restore drills: timed restores of the latest backups into throwaway databases, the
-- databases they made, and the recovery objectives they are measured against. Incident
-- mode: a freeze with an incident scope, the post-recovery checklist, the RCA owner.

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
    -- Its entry in the history (no foreign key: the history is append-only and a
    -- reference to it would stand in the way of its own refusal to be truncated).
    history_id bigint,
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

-- An incident freeze: while one is open, the risky mutations wait (expiry, backup
-- retention, in-place restores unless an admin confirms the incident); ingest and replay
-- go on. It covers both stores (no `store`) and belongs to an incident. One at a time.
alter table write_freezes alter column store drop not null;
alter table write_freezes drop constraint write_freezes_scope_check;
alter table write_freezes add constraint write_freezes_scope_check
    check (scope in ('restore', 'incident'));
alter table write_freezes add column incident_id bigint;
alter table write_freezes add constraint write_freezes_scope_fields check (
    (scope = 'restore' and store is not null)
    or (scope = 'incident' and store is null and incident_id is not null));
create unique index write_freezes_one_incident on write_freezes (scope)
    where ended_at is null and scope = 'incident';

-- The manual items of an incident's post-recovery checklist, each tick with who and when
-- (the live checks are computed, never stored).
create table incident_checklist (
    incident_id bigint not null,
    item text not null check (item ~ '^[a-z_]{1,40}$'),
    checked_by text not null,
    checked_at timestamptz not null,
    primary key (incident_id, item)
);

-- Who owns an incident's root-cause analysis.
create table incident_owners (
    incident_id bigint primary key,
    rca_owner text not null,
    set_by text not null,
    set_at timestamptz not null
);
