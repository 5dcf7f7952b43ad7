-- Background migrations (long data changes run in chunks by the
-- `run-background-migrations` job), the record of schema upgrades with their pre-upgrade
-- backups, and the first background migration's column.

-- One row per background migration the binary knows (its registry), made on start-up.
-- The runbook's columns first: its query
--   select name, status, progress_current, progress_total, last_heartbeat_at,
--          now() - last_heartbeat_at as since_heartbeat
--     from background_migrations where status in ('running', 'pending')
-- runs as written.
create table background_migrations (
    name text primary key check (name ~ '^[a-z0-9_]{1,80}$'),
    status text not null default 'pending'
        check (status in ('pending', 'running', 'paused', 'succeeded', 'failed', 'cancelled')),
    progress_current bigint not null default 0 check (progress_current >= 0),
    -- Counted when it first runs; null until then.
    progress_total bigint check (progress_total >= 0),
    last_heartbeat_at timestamptz,
    created_at timestamptz not null default now(),
    -- Where the next chunk starts (the last key done). Saved in the transaction of the
    -- chunk that moved it, so a chunk is never applied twice.
    cursor bigint,
    -- Runs that worked on it (a resumed or retried migration counts again).
    attempts int not null default 0,
    last_error text,
    started_at timestamptz,
    finished_at timestamptz,
    -- The current (or last) run: when it took the migration and the progress then, for
    -- the rate and the ETA.
    run_started_at timestamptz,
    run_started_progress bigint,
    -- Who paused (or cancelled) it, and why.
    paused_by text,
    paused_reason text,
    paused_at timestamptz,
    -- The last person to resume, retry or cancel it, and why.
    changed_by text,
    change_reason text,
    check (status <> 'failed' or last_error is not null),
    check (status not in ('paused', 'cancelled') or paused_by is not null)
);

-- Every run of the schema migrations that applied something: which versions, the
-- PostgreSQL backup taken first (the pre-upgrade backup of `to_version`), or why none.
create table schema_upgrades (
    id bigserial primary key,
    from_version bigint,
    to_version bigint not null,
    applied bigint[] not null,
    backup_id bigint references backups (id),
    -- Set when no backup was taken: `fresh database`, or the reason given with
    -- --no-backup / SALVAGE_MIGRATE_BACKUP=off.
    backup_skipped text,
    actor text not null,
    binary_version text not null,
    started_at timestamptz not null,
    finished_at timestamptz not null,
    check ((backup_id is null) <> (backup_skipped is null))
);
create index schema_upgrades_backup_idx on schema_upgrades (backup_id) where backup_id is not null;

-- The first background migration: each event's payload size, so the dead letters' dry
-- run can say how many bytes a redrive sends to an endpoint that is recovering. New
-- events get it on ingest; `webhook_event_payload_bytes` fills the events written
-- before this version, in chunks.
alter table webhook_events add column payload_bytes bigint;
