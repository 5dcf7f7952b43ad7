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

-- Exact depths without count(*). Statement-level triggers append what each statement
-- inserted (+n) or deleted (-n) to `fallback_depth_deltas`, in the same transaction; the
-- depth is the folded base in `fallback_queues` plus the deltas not folded yet (the view
-- `fallback_depths`). Appending instead of updating one counter row means no two writers
-- wait for each other: replayers holding a batch open while ClickHouse inserts it do not
-- block ingest or each other. `fold_fallback_depths()` moves the deltas into the base
-- (at every depth sample and replay run), so the view reads a few rows at most.
create table fallback_queues (
    queue text primary key check (queue in ('requests', 'events')),
    depth bigint not null default 0,
    last_error text,
    last_error_at timestamptz
);
insert into fallback_queues (queue) values ('requests'), ('events');

create table fallback_depth_deltas (
    id bigint generated always as identity primary key,
    queue text not null,
    delta bigint not null
);

create view fallback_depths as
select q.queue,
       q.depth + coalesce((select sum(d.delta) from fallback_depth_deltas d where d.queue = q.queue), 0)::bigint as depth,
       q.last_error,
       q.last_error_at
  from fallback_queues q;

create function fold_fallback_depths() returns void language sql as $$
    with moved as (delete from fallback_depth_deltas returning queue, delta)
    update fallback_queues q set depth = q.depth + s.total
      from (select queue, sum(delta) as total from moved group by queue) s
     where q.queue = s.queue
$$;

create function fallback_depth_inserted() returns trigger language plpgsql as $$
begin
    insert into fallback_depth_deltas (queue, delta)
    select tg_argv[0], count(*) from inserted having count(*) > 0;
    return null;
end $$;

create function fallback_depth_deleted() returns trigger language plpgsql as $$
begin
    insert into fallback_depth_deltas (queue, delta)
    select tg_argv[0], -count(*) from deleted having count(*) > 0;
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
