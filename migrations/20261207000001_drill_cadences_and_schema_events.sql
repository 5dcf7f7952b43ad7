-- Drill cadences per store, set with its recovery objectives (the seeds' defaults:
-- a functional drill every 90 days, a tabletop exercise every 30).
alter table recovery_objectives
    add column functional_days integer not null default 90
        check (functional_days between 1 and 3650),
    add column tabletop_days integer not null default 30
        check (tabletop_days between 1 and 3650);

-- Changes of the guarded service's schema as it reports them
-- (`POST /ingest/schema-events`): a passing restore drill is due within a week of each.
-- A (name, version) is one change: sending it again changes nothing.
create table schema_events (
    id bigserial primary key,
    name text not null,
    version text not null,
    changed_at timestamptz not null,
    received_at timestamptz not null,
    key_id bigint,
    unique (name, version)
);
create index schema_events_changed_idx on schema_events (changed_at);
