-- Accounts, sessions, sign-in throttling and the append-only runbook history.

-- People who may use the console. Emails are stored lower-cased; uniqueness is
-- case-insensitive. `session_generation` is part of every session: bumping it (disable,
-- role change, password change) ends every session of the user at once.
create table users (
    id bigint generated always as identity primary key,
    email text not null,
    password_hash text not null,
    role text not null,
    disabled boolean not null default false,
    must_change_password boolean not null default false,
    session_generation integer not null default 0,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    last_login_at timestamptz,
    constraint users_role_check check (role in ('operator', 'manager', 'admin')),
    constraint users_email_lowercase check (email = lower(email)),
    constraint users_email_format check (email ~ '^[^@\s]+@[^@\s]+$' and length(email) <= 254)
);
create unique index users_email_key on users (lower(email));

-- One-time links that create the first admin. Only a SHA-256 of the token is kept.
create table setup_tokens (
    token_hash bytea primary key,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null
);

-- Failed sign-ins, counted per email and per client address to throttle guessing. The
-- email is recorded whether or not an account has it, so throttling reveals nothing.
create table sign_in_failures (
    id bigint generated always as identity primary key,
    email text not null,
    client_addr text not null,
    created_at timestamptz not null default now()
);
create index sign_in_failures_email_idx on sign_in_failures (email, created_at);
create index sign_in_failures_client_idx on sign_in_failures (client_addr, created_at);

-- tower-sessions' PostgreSQL store (the column set its `migrate()` would create).
create table sessions (
    id text primary key not null,
    data bytea not null,
    expiry_date timestamptz not null
);
create index sessions_expiry_idx on sessions (expiry_date);

-- The runbook history: every action, drill, incident and note, append-only and
-- hash-chained. `id` is assigned by the insert trigger under a lock, so ids are gapless
-- and in chain order; `hash` = sha256(prev_hash || the entry's canonical JSON).
create table runbook_history (
    id bigint primary key,
    kind text not null,
    title text not null,
    body text not null default '',
    actor text not null,
    actor_user_id bigint references users (id),
    started_at timestamptz not null,
    finished_at timestamptz,
    outcome text not null,
    reason text,
    details jsonb not null default '{}'::jsonb,
    incident_id bigint references runbook_history (id),
    severity text,
    created_at timestamptz not null default now(),
    prev_hash bytea not null default ''::bytea,
    hash bytea not null default ''::bytea,
    search tsvector generated always as (
        to_tsvector('simple', title || ' ' || body || ' ' || coalesce(reason, '') || ' ' || actor)
    ) stored,
    constraint runbook_history_kind_check check (kind ~ '^[a-z_]{1,40}$'),
    constraint runbook_history_outcome_check
        check (outcome in ('succeeded', 'failed', 'partial', 'info')),
    constraint runbook_history_severity_check
        check (severity is null or severity in ('sev1', 'sev2', 'sev3', 'sev4')),
    constraint runbook_history_finished_check
        check (finished_at is null or finished_at >= started_at),
    constraint runbook_history_title_check check (length(title) between 1 and 200)
);
create index runbook_history_started_idx on runbook_history (started_at desc, id desc);
create index runbook_history_kind_idx on runbook_history (kind, started_at desc, id desc);
create index runbook_history_actor_idx on runbook_history (actor, started_at desc, id desc);
create index runbook_history_outcome_idx on runbook_history (outcome, started_at desc, id desc);
create index runbook_history_incident_idx on runbook_history (incident_id) where incident_id is not null;
create index runbook_history_search_idx on runbook_history using gin (search);

-- The canonical digest of an entry. Timestamps enter as integer microseconds so the
-- digest does not depend on the session's TimeZone; `details` as jsonb's normalised text.
create function runbook_history_digest(h runbook_history) returns bytea
language sql stable as $$
    select sha256(h.prev_hash || convert_to(jsonb_build_array(
        h.id, h.kind, h.title, h.body, h.actor, h.actor_user_id,
        (extract(epoch from h.started_at) * 1000000)::bigint,
        (extract(epoch from h.finished_at) * 1000000)::bigint,
        h.outcome, h.reason, h.details, h.incident_id, h.severity,
        (extract(epoch from h.created_at) * 1000000)::bigint
    )::text, 'UTF8'))
$$;

-- Chains every new entry to the last one. The advisory lock is held to the end of the
-- inserting transaction, so appends are serialised and a rolled-back entry leaves no
-- gap. Under REPEATABLE READ the last entry could be invisible, so that is refused.
create function runbook_history_chain() returns trigger
language plpgsql as $$
declare
    last_entry record;
begin
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception 'runbook_history entries must be appended under READ COMMITTED';
    end if;
    perform pg_advisory_xact_lock(7368277180913481001);
    select id, hash into last_entry from runbook_history order by id desc limit 1;
    new.id := coalesce(last_entry.id, 0) + 1;
    new.prev_hash := coalesce(last_entry.hash, ''::bytea);
    new.created_at := now();
    -- Millisecond precision everywhere: the console's keyset cursor carries milliseconds.
    new.started_at := date_trunc('milliseconds', new.started_at);
    new.finished_at := date_trunc('milliseconds', new.finished_at);
    new.hash := runbook_history_digest(new);
    return new;
end
$$;

create trigger runbook_history_chain before insert on runbook_history
    for each row execute function runbook_history_chain();

create function runbook_history_refuse_change() returns trigger
language plpgsql as $$
begin
    raise exception 'runbook_history is append-only: % refused', tg_op
        using errcode = 'P0001', hint = 'add a new entry instead';
end
$$;

create trigger runbook_history_append_only before update or delete on runbook_history
    for each row execute function runbook_history_refuse_change();
create trigger runbook_history_no_truncate before truncate on runbook_history
    for each statement execute function runbook_history_refuse_change();
