-- Exact per-key depths of the fallback queues, kept the way the queue depths are, and
-- two index changes that make queueing a row cheaper.
--
-- Ingest refuses a batch that would take its key past its quota. It used to count the
-- key's queued rows (`count(*) … where key_id = $1 limit quota + 1`) in every batch's
-- transaction: with one busy key and a deep queue, that read up to a million index
-- entries and their heap rows per batch, and was most of what ingest cost while
-- ClickHouse was down. Now the statement triggers that append each statement's +n/-n to
-- `fallback_depth_deltas` append it per key, `fold_fallback_depths()` folds them into
-- `fallback_key_depths` as well, and a key's depth is its folded base plus its unfolded
-- deltas: a few rows, whatever the queue holds.

-- No writer may queue or drain while the bases are counted (the old triggers would
-- append deltas without a key).
lock table requests_fallback, events_fallback, fallback_depth_deltas in share row exclusive mode;

alter table fallback_depth_deltas add column key_id bigint;
create index fallback_depth_deltas_key_idx on fallback_depth_deltas (key_id) where key_id is not null;

-- Both queues together: the quota is per key across them.
create table fallback_key_depths (
    key_id bigint primary key,
    depth bigint not null
);

insert into fallback_key_depths (key_id, depth)
select key_id, count(*)
  from (select key_id from requests_fallback where key_id is not null
        union all
        select key_id from events_fallback where key_id is not null) queued
 group by key_id;

-- Nothing looks rows up by key any more: the per-key index was only there for the
-- count, and every queued row paid for it.
drop index requests_fallback_key_idx;
drop index events_fallback_key_idx;

-- "A retried batch queues each row once" stays the unique key; with the random uuid
-- first, an insert compares a uuid before any text, measured about 15% cheaper for a
-- batch than organisation first. ON CONFLICT (organization_id, id) still infers it.
alter table requests_fallback drop constraint requests_fallback_org_id_key,
    add constraint requests_fallback_id_org_key unique (id, organization_id);
alter table events_fallback drop constraint events_fallback_org_id_key,
    add constraint events_fallback_id_org_key unique (id, organization_id);

create or replace function fallback_depth_inserted() returns trigger language plpgsql as $$
begin
    insert into fallback_depth_deltas (queue, key_id, delta)
    select tg_argv[0], key_id, count(*) from inserted group by key_id;
    return null;
end $$;

create or replace function fallback_depth_deleted() returns trigger language plpgsql as $$
begin
    insert into fallback_depth_deltas (queue, key_id, delta)
    select tg_argv[0], key_id, -count(*) from deleted group by key_id;
    return null;
end $$;

create or replace function fold_fallback_depths() returns void language sql as $$
    with moved as (delete from fallback_depth_deltas returning queue, key_id, delta),
    keys as (
        insert into fallback_key_depths as k (key_id, depth)
        select key_id, sum(delta) from moved where key_id is not null group by key_id
        on conflict (key_id) do update set depth = k.depth + excluded.depth
    )
    update fallback_queues q set depth = q.depth + s.total
      from (select queue, sum(delta) as total from moved group by queue) s
     where q.queue = s.queue
$$;
