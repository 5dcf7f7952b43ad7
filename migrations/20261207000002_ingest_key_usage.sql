-- What each ingest key did, kept small so a leaked key's blast radius can be read:
-- requests and rows per key and hour, and each source address with its counts. Each
-- process adds its counts every few seconds; both are pruned after 7 days.
alter table ingest_keys add column first_used_at timestamptz;

create table ingest_key_usage (
    key_id bigint not null references ingest_keys (id) on delete cascade,
    hour timestamptz not null,
    requests bigint not null,
    rows bigint not null,
    primary key (key_id, hour)
);
create index ingest_key_usage_hour_idx on ingest_key_usage (hour);

create table ingest_key_sources (
    key_id bigint not null references ingest_keys (id) on delete cascade,
    address text not null,
    requests bigint not null,
    rows bigint not null,
    first_seen timestamptz not null,
    last_seen timestamptz not null,
    primary key (key_id, address)
);
create index ingest_key_sources_seen_idx on ingest_key_sources (key_id, last_seen desc);
create index ingest_key_sources_last_seen_idx on ingest_key_sources (last_seen);
