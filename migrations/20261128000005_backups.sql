-- Backups of both stores, their files, restores, and the write freeze a restore holds.

-- The catalogue: one row per backup of one store. A backup is `running` until its
-- manifest is written (the commit point); `failed` backups keep their error. Verification
-- is recorded on the row, so it is visible and not repeated blindly.
create table backups (
    id bigserial primary key,
    store text not null check (store in ('postgres', 'clickhouse')),
    status text not null default 'running'
        check (status in ('running', 'completed', 'failed', 'verified', 'verify_failed')),
    -- Where its files live under the backup target (`<store>/<id>`).
    location text not null,
    trigger text not null,
    actor text not null,
    actor_user_id bigint references users (id) on delete set null,
    reason text,
    run_id bigint,
    started_at timestamptz not null,
    finished_at timestamptz,
    duration_ms bigint,
    size_bytes bigint not null default 0,
    row_count bigint not null default 0,
    table_count integer not null default 0,
    server_version text,
    -- Rows still queued in PostgreSQL for ClickHouse when the backup was taken: they are
    -- not in a ClickHouse backup yet, so its recovery point does not include them.
    queued_rows bigint,
    error text,
    verified_at timestamptz,
    verified_by text,
    verify_error text,
    -- Retention deletes the files and keeps the row (and its history entry).
    deleted_at timestamptz,
    check (status <> 'failed' or error is not null)
);
create index backups_store_idx on backups (store, started_at desc, id desc);

create table backup_files (
    backup_id bigint not null references backups (id) on delete cascade,
    path text not null,
    table_name text,
    partition text,
    size_bytes bigint not null,
    sha256 text not null,
    row_count bigint,
    primary key (backup_id, path)
);

-- Restores: into a side database (default) or in place (application data only).
create table restores (
    id bigserial primary key,
    backup_id bigint not null references backups (id),
    store text not null check (store in ('postgres', 'clickhouse')),
    mode text not null check (mode in ('side', 'in_place')),
    target text not null,
    tables text[] not null,
    status text not null default 'running'
        check (status in ('running', 'verified', 'verify_failed', 'failed', 'cancelled', 'rolled_back')),
    -- In place: where the live tables were kept until a rollback or a later restore.
    aside text,
    actor text not null,
    actor_user_id bigint references users (id) on delete set null,
    reason text,
    run_id bigint,
    started_at timestamptz not null,
    finished_at timestamptz,
    duration_ms bigint,
    row_count bigint not null default 0,
    size_bytes bigint not null default 0,
    verification jsonb,
    error text,
    -- Live progress (the page polls it) and a cancel pressed on any replica.
    progress_bytes bigint not null default 0,
    total_bytes bigint not null default 0,
    cancel_requested boolean not null default false
);
create index restores_backup_idx on restores (backup_id);
create index restores_started_idx on restores (started_at desc);

-- A write freeze: while one is open for a store, replay, expiry and retention wait, and
-- ingest parks ClickHouse rows in the fallback queue. One open freeze per store.
create table write_freezes (
    id bigserial primary key,
    store text not null check (store in ('postgres', 'clickhouse')),
    scope text not null check (scope in ('restore')),
    reason text not null,
    restore_id bigint references restores (id),
    started_by text not null,
    started_at timestamptz not null default now(),
    ended_at timestamptz
);
create unique index write_freezes_one_open on write_freezes (store) where ended_at is null;
