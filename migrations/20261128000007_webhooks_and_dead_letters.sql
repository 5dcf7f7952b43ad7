-- Webhooks: the endpoints the guarded service's customers registered, the events the
-- service enqueues, one delivery per subscribed endpoint and event, every attempt, and
-- the redrives of dead letters. Durable in PostgreSQL from the first moment: nothing is
-- held in memory between a 2xx to the service and a delivery row.

create table webhooks (
    id bigserial primary key,
    url text not null,
    description text not null default '',
    -- The event types it receives (`salvage.alert` for the console's own alerts).
    event_types text[] not null check (cardinality(event_types) > 0),
    -- `whsec_<base64>`: shown once, kept to sign each delivery.
    secret text not null,
    enabled boolean not null default true,
    max_retries int not null default 5 check (max_retries between 0 and 20),
    -- Deliveries to it in flight at once, across every worker and replica.
    max_in_flight int not null default 4 check (max_in_flight between 1 and 64),
    -- The circuit: failures in a row, since when, and when it opened (paused).
    consecutive_failures int not null default 0,
    failing_since timestamptz,
    paused_at timestamptz,
    next_probe_at timestamptz,
    created_at timestamptz not null default now(),
    created_by text not null,
    deleted_at timestamptz
);

create table webhook_events (
    id bigserial primary key,
    event_type text not null,
    -- Null once retention removed it; a delivery still pending then dead-letters as
    -- `payload_missing`.
    payload jsonb,
    idempotency_key text not null unique,
    -- SHA-256 of the payload as received, to tell a retry from a conflicting reuse.
    payload_digest bytea not null,
    -- The ingest key that sent it; null for Salvage's own (alert notifications).
    key_id bigint,
    created_at timestamptz not null
);
create index webhook_events_created_idx on webhook_events (created_at);

create table webhook_deliveries (
    id bigserial primary key,
    webhook_id bigint not null references webhooks (id),
    event_id bigint not null references webhook_events (id),
    -- The `webhook-id` header: the same on every attempt and redrive.
    message_id text not null unique,
    status text not null default 'pending' check (status in ('pending', 'delivered', 'dead')),
    -- Attempts since it was created or last redriven (every attempt is kept in
    -- webhook_attempts).
    attempts int not null default 0,
    next_attempt_at timestamptz not null,
    -- A worker's claim: until then no other worker takes it. A worker that died
    -- mid-send leaves it to be claimed again once the lease has passed.
    lease_until timestamptz,
    last_attempt_at timestamptz,
    last_status int,
    last_error text,
    delivered_at timestamptz,
    dlq_at timestamptz,
    dlq_reason text check (dlq_reason in ('exhausted', 'rejected', 'webhook_deleted', 'payload_missing')),
    redrives int not null default 0,
    last_redrive_id bigint,
    created_at timestamptz not null,
    check ((status = 'dead') = (dlq_at is not null)),
    check ((dlq_at is null) = (dlq_reason is null))
);
-- The workers' claim: due deliveries of one endpoint, oldest first.
create index webhook_deliveries_due_idx on webhook_deliveries (webhook_id, next_attempt_at, id)
    where status = 'pending';
-- The dead letters: the breakdown, the filters and the keyset of redrive and purge.
create index webhook_deliveries_dlq_idx on webhook_deliveries (webhook_id, dlq_reason, dlq_at)
    where dlq_at is not null;
create index webhook_deliveries_dlq_at_idx on webhook_deliveries (dlq_at, id)
    where dlq_at is not null;
-- The deliveries in flight (leased), counted against an endpoint's limit at each claim.
create index webhook_deliveries_leased_idx on webhook_deliveries (webhook_id)
    where lease_until is not null;
create index webhook_deliveries_event_idx on webhook_deliveries (event_id);
create index webhook_deliveries_redrive_idx on webhook_deliveries (last_redrive_id)
    where last_redrive_id is not null;

create table webhook_attempts (
    id bigserial primary key,
    delivery_id bigint not null references webhook_deliveries (id) on delete cascade,
    attempt int not null,
    started_at timestamptz not null,
    duration_ms int not null,
    status_code int,
    error text,
    -- The start of the response body, at most 1 KiB.
    response_snippet text,
    -- Sent while the endpoint's circuit was open, to see whether it is back.
    probe boolean not null default false,
    redrive_id bigint
);
create index webhook_attempts_delivery_idx on webhook_attempts (delivery_id, id);

create table webhook_redrives (
    id bigserial primary key,
    -- The filter as the console shows it, and the selection when one was made.
    filter jsonb not null,
    status text not null default 'running'
        check (status in ('running', 'finished', 'cancelled', 'failed', 'abandoned')),
    -- Dead letters matching when it started; it never takes more (no row newer than
    -- max_id or dead-lettered after cutoff).
    total bigint not null,
    done bigint not null default 0,
    cursor_id bigint not null default 0,
    max_id bigint not null,
    cutoff timestamptz not null,
    actor text not null,
    reason text not null,
    cancel_requested boolean not null default false,
    started_at timestamptz not null,
    heartbeat_at timestamptz not null,
    finished_at timestamptz,
    error text,
    history_id bigint
);
