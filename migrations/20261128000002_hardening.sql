-- Hardening: the per-person rate of notes and incidents counts a person's recent
-- entries; without this index that count would scan the whole history.
create index runbook_history_annotations_idx on runbook_history (actor_user_id, created_at)
    where kind in ('note', 'incident', 'incident_resolved');
