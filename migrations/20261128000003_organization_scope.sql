-- Ingest keys belong to one organisation: rows they send for another are refused, and
-- events take the key's organisation. '*' is a key for every organisation (a gateway
-- that forwards for all of them); keys made before this version keep working as '*'.
alter table ingest_keys add column organization_id text not null default '*'
    constraint ingest_keys_organization_check
    check (organization_id = '*'
           or (organization_id ~ '^[A-Za-z0-9_.:-]+$' and length(organization_id) <= 256));
alter table ingest_keys alter column organization_id drop default;

-- A queued row is identified by its organisation and its id, as in ClickHouse: one
-- organisation's id can never stand in for (or be skipped as a retry of) another's.
-- `key_id` says which key queued a row, for the per-key quota of queued rows.
alter table requests_fallback add column organization_id text not null default '';
update requests_fallback set organization_id = coalesce(row_json::jsonb ->> 'organization_id', '');
alter table requests_fallback drop constraint requests_fallback_id_key;
alter table requests_fallback add constraint requests_fallback_org_id_key unique (organization_id, id);
alter table requests_fallback add column key_id bigint;
create index requests_fallback_key_idx on requests_fallback (key_id) where key_id is not null;

alter table events_fallback add column organization_id text not null default '';
alter table events_fallback drop constraint events_fallback_id_key;
alter table events_fallback add constraint events_fallback_org_id_key unique (organization_id, id);
alter table events_fallback add column key_id bigint;
create index events_fallback_key_idx on events_fallback (key_id) where key_id is not null;
