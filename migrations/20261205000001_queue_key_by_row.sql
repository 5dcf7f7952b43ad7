-- Fallback ingest pays for every index of a queue table on every row it queues, and
-- ingest is on the fallback path for every row while ClickHouse is down. The queues had
-- three indexes: the `seq` primary key, which did nothing but order replay's claim; the
-- unique (id, organisation) key, which makes a retried batch queue each row once; and
-- the `queued_at` index behind expiry and the oldest-row figure. Replay now claims the
-- oldest rows by `queued_at` (the order they were queued in), so the `seq` key goes and
-- the unique key becomes the primary key. It keeps its name: ingest recognises a retried
-- batch by the constraint that refused it. Measured on 200,000 rows, one index fewer
-- takes about 130 ms off the 730-970 ms the queue's INSERT costs.
--
-- `seq` stays as a column: it still numbers rows in the order they arrived, for anyone
-- reading a queue by hand.

lock table requests_fallback, events_fallback in access exclusive mode;

alter table requests_fallback
    drop constraint requests_fallback_pkey,
    drop constraint requests_fallback_id_org_key,
    add constraint requests_fallback_id_org_key primary key (id, organization_id);

alter table events_fallback
    drop constraint events_fallback_pkey,
    drop constraint events_fallback_id_org_key,
    add constraint events_fallback_id_org_key primary key (id, organization_id);
