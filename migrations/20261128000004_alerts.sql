-- Alerts: what the self-monitor (and expiry) raise, what operators acknowledge and
-- resolve, the silences that mute them, and the notification seam.

-- One row per alert. At most one open (firing or acknowledged) alert per kind and key;
-- a condition that fires again after its alert was resolved opens a new row that points
-- back at the resolved one (`regressed_from`).
create table internal_alerts (
    id bigserial primary key,
    kind text not null check (kind ~ '^[a-z_]{1,40}$'),
    dedup_key text not null check (length(dedup_key) between 1 and 200),
    severity text not null check (severity in ('critical', 'warning', 'info')),
    title text not null,
    -- The figure that raised it and the threshold it crossed (in `unit`).
    figure double precision,
    threshold double precision,
    unit text,
    details jsonb not null default '{}',
    status text not null check (status in ('firing', 'acknowledged', 'resolved')),
    first_seen_at timestamptz not null,
    last_seen_at timestamptz not null,
    occurrences bigint not null default 1,
    -- Bumped by every change a person could be racing (status, severity, flapping),
    -- not by a re-evaluation that only counts an occurrence.
    version integer not null default 1,
    regressed_from bigint references internal_alerts (id),
    flapping boolean not null default false,
    acknowledged_by text,
    acknowledged_at timestamptz,
    acknowledged_until timestamptz,
    resolved_at timestamptz,
    resolved_by text,
    resolution_note text,
    check ((status = 'resolved') = (resolved_at is not null))
);
create unique index internal_alerts_one_open on internal_alerts (kind, dedup_key)
    where status <> 'resolved';
create index internal_alerts_open_idx on internal_alerts (severity, first_seen_at)
    where status <> 'resolved';
create index internal_alerts_resolved_idx on internal_alerts (resolved_at desc)
    where status = 'resolved';
create index internal_alerts_key_idx on internal_alerts (kind, dedup_key, first_seen_at desc);

-- The timeline of each alert: every change, by whom, with the note.
create table internal_alert_events (
    id bigserial primary key,
    alert_id bigint not null references internal_alerts (id),
    at timestamptz not null,
    event text not null check (event ~ '^[a-z_]{1,40}$'),
    actor text not null,
    note text,
    details jsonb not null default '{}',
    history_id bigint
);
create index internal_alert_events_alert_idx on internal_alert_events (alert_id, at, id);

-- What the self-monitor saw of each condition at its last evaluations: how many in a row
-- it fired or was clear (for "two consecutive evaluations" and the recovering window).
create table internal_alert_conditions (
    kind text not null,
    dedup_key text not null,
    firing_streak integer not null default 0,
    clear_streak integer not null default 0,
    evaluated_at timestamptz not null,
    primary key (kind, dedup_key)
);

-- Silences: a kind and optionally a key pattern (`*` matches anything), until `ends_at`.
create table alert_silences (
    id bigserial primary key,
    kind text not null,
    key_pattern text,
    -- `key_pattern` as a LIKE pattern (`*` -> `%`, the rest escaped).
    key_like text not null default '%',
    starts_at timestamptz not null,
    ends_at timestamptz not null check (ends_at > starts_at),
    created_by text not null,
    reason text not null,
    ended_at timestamptz,
    ended_by text,
    end_reason text,
    last_matched_at timestamptz
);
create index alert_silences_active_idx on alert_silences (kind, ends_at) where ended_at is null;

-- Which silences muted which alerts, so an alert shows them after they expired.
create table alert_silence_matches (
    silence_id bigint not null references alert_silences (id),
    alert_id bigint not null references internal_alerts (id),
    matched_at timestamptz not null,
    primary key (silence_id, alert_id)
);
create index alert_silence_matches_alert_idx on alert_silence_matches (alert_id);

-- The notification seam: one row per raise, severity rise, un-acknowledge and resolve.
-- Nothing sends them yet; `quiet_reason` says why one would stay quiet (silenced,
-- flapping).
create table alert_notifications (
    id bigserial primary key,
    alert_id bigint not null references internal_alerts (id),
    event text not null check (event in ('raised', 'severity_rise', 'unacknowledged', 'resolved')),
    severity text not null,
    created_at timestamptz not null,
    quiet_reason text,
    sent_at timestamptz
);
create index alert_notifications_unsent_idx on alert_notifications (created_at)
    where sent_at is null and quiet_reason is null;

-- `replay_failing` looks for queued rows that failed 3+ replay attempts; rows that never
-- failed (nearly all) stay out of these indexes.
create index requests_fallback_attempts_idx on requests_fallback (attempts) where attempts > 0;
create index events_fallback_attempts_idx on events_fallback (attempts) where attempts > 0;
