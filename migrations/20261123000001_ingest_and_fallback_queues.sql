-- The safe write path: ingest keys, the two fallback queues, their exact depth counters,
-- replay runs and depth samples.

-- Keys that authenticate POST /ingest/*. The secret is shown once; only its SHA-256 is
-- kept. `prefix` (the key's first characters, not secret) finds the row; the digest is
-- then compared in constant time.
create table ingest_keys (
    id bigint generated always as identity primary key,
    name text not null check (length(name) between 1 and 100),
    prefix text not null unique,
    secret_hash bytea not null,
    created_at timestamptz not null default now(),
    created_by text not null,
    revoked_at timestamptz,
    revoked_by text,
    last_used_at timestamptz
);

-- Rows meant for ClickHouse that could not be written there. `row_json` is the row
-- exactly as it will be sent (one JSONEachRow line), so a replay re-sends bytes and
-- never re-encodes. `seq` gives oldest-first draining from the primary key; `id` is
-- unique, so a caller retrying a batch during an outage queues each row once.
create table requests_fallback (
    seq bigint generated always as identity primary key,
    id uuid not null unique,
    ts timestamptz not null,
    row_json text not null,
    queued_at timestamptz not null default now(),
    attempts integer not null default 0,
    last_error text,
    last_attempt_at timestamptz
);
create index requests_fallback_queued_at_idx on requests_fallback (queued_at);

create table events_fallback (like requests_fallback including all);

-- Exact depths without count(*): statement-level triggers add what each statement
-- inserted and subtract what it deleted, in the same transaction. The queue's last
-- error (from ingest or replay) is kept here too, so the page reads one small table.
create table fallback_queues (
    queue text primary key check (queue in ('requests', 'events')),
    depth bigint not null default 0 check (depth >= 0),
    last_error text,
    last_error_at timestamptz
);
insert into fallback_queues (queue) values ('requests'), ('events');

create function fallback_depth_inserted() returns trigger language plpgsql as $$
begin
    update fallback_queues set depth = depth + (select count(*) from inserted)
     where queue = tg_argv[0];
    return null;
end $$;

create function fallback_depth_deleted() returns trigger language plpgsql as $$
begin
    update fallback_queues set depth = depth - (select count(*) from deleted)
     where queue = tg_argv[0];
    return null;
end $$;

create function fallback_refuse_truncate() returns trigger language plpgsql as $$
begin
    raise exception 'TRUNCATE of a fallback queue would desynchronise its depth counter; use DELETE';
end $$;

create trigger requests_fallback_inserted after insert on requests_fallback
    referencing new table as inserted for each statement
    execute function fallback_depth_inserted('requests');
create trigger requests_fallback_deleted after delete on requests_fallback
    referencing old table as deleted for each statement
    execute function fallback_depth_deleted('requests');
create trigger requests_fallback_no_truncate before truncate on requests_fallback
    for each statement execute function fallback_refuse_truncate();
create trigger events_fallback_inserted after insert on events_fallback
    referencing new table as inserted for each statement
    execute function fallback_depth_inserted('events');
create trigger events_fallback_deleted after delete on events_fallback
    referencing old table as deleted for each statement
    execute function fallback_depth_deleted('events');
create trigger events_fallback_no_truncate before truncate on events_fallback
    for each statement execute function fallback_refuse_truncate();

-- Every replay, whichever door started it. Progress is written after each batch, so
-- any replica's console can show a run another replica is doing; `cancel_requested`
-- is read between batches.
create table replay_runs (
    id bigint generated always as identity primary key,
    trigger text not null check (trigger in ('manual', 'cli', 'external', 'scheduler', 'bench')),
    actor text not null,
    reason text,
    status text not null default 'running'
        check (status in ('running', 'succeeded', 'partial', 'failed', 'cancelled')),
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    heartbeat_at timestamptz not null default now(),
    rows_at_start bigint not null,
    rows_done bigint not null default 0,
    rows_inserted bigint not null default 0,
    rows_already_present bigint not null default 0,
    rows_left bigint,
    error text,
    cancel_requested boolean not null default false
);
create index replay_runs_started_idx on replay_runs (started_at desc);

-- Queue depths over time, for the charts: one sample per queue at every replay run and
-- every few minutes. Pruned after 8 days.
create table fallback_depth_samples (
    sampled_at timestamptz not null default now(),
    queue text not null,
    depth bigint not null
);
create index fallback_depth_samples_idx on fallback_depth_samples (sampled_at);
