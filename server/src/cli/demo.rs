//! `salvage demo`: one account per role and about four months of realistic history, so
//! the console is worth looking at after `make run`. Idempotent: accounts that exist are
//! left alone (their passwords were printed when they were created), and the history is
//! only seeded when it holds no demo entries yet.
//!
//! One file over 500 lines on purpose: most of it is the demo history itself, a list of
//! entries read top to bottom like the months they stand for.

use anyhow::Context;
use secrecy::SecretString;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use app::auth::ssr::{self, Actor};
use app::auth::Role;
use app::history::ssr::{append, NewEntry};
use app::history::EntryKind;
use app::history::Outcome;

use crate::config::Settings;

/// The demo accounts, one per role.
pub const DEMO_USERS: [(&str, Role); 3] = [
    ("operator@salvage.demo", Role::Operator),
    ("manager@salvage.demo", Role::Manager),
    ("admin@salvage.demo", Role::Admin),
];

/// Creates what is missing of the demo.
pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let state = super::common::current_state(settings).await?;
    let cli = Actor::cli();
    let mut created = Vec::new();
    for (email, role) in DEMO_USERS {
        if ssr::user_id_by_email(&state.pg, email).await.is_ok() {
            continue;
        }
        let password = app::server::tokens::temporary_password();
        app::settings::ssr::add_user(
            &state.pg,
            &cli,
            email,
            role,
            Some(SecretString::from(password.clone())),
            Some(app::reason::Reason::own("demo account")),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        created.push((email, role, password));
    }
    if created.is_empty() {
        println!(
            "Demo accounts exist already (their passwords were shown when they were created)."
        );
    } else {
        println!("\nDemo accounts (passwords shown only now):");
        for (email, role, password) in &created {
            println!("  {:<9} {email:<24} {password}", role.as_str());
        }
        println!();
    }
    let seeded: bool = sqlx::query_scalar!(
        r#"select exists (select 1 from runbook_history where details ? 'demo') as "exists!""#
    )
    .fetch_one(&state.pg)
    .await
    .context("Failed to look for demo history")?;
    if !seeded {
        let count = seed_history(&state.pg, OffsetDateTime::now_utc()).await?;
        println!("Demo history: {count} entries over the last 120 days.");
    }
    let alerts =
        super::demo_alerts::seed(&state.pg, state.alert_kinds(), OffsetDateTime::now_utc()).await?;
    if alerts > 0 {
        println!("Demo alerts: {alerts} resolved over the last four weeks, with notes.");
    }
    let runs = seed_cron_runs(&state.pg, OffsetDateTime::now_utc()).await?;
    if runs > 0 {
        println!("Demo cron runs: {runs} over the last 24 hours, with a 3-hour scheduler dropout.");
    }
    let rows = super::demo_backups::application_data(&state, 40).await?;
    println!("Demo application data: {rows} rows in organizations, projects and api_keys.");
    if let Some(line) = super::demo_backups::first_backup(&state).await? {
        println!("{line}");
    }
    if let Some(line) = super::demo_backups::first_drill(&state).await? {
        println!("{line}");
    }
    if let Some(line) = super::demo_webhooks::dead_letters(&state, settings).await? {
        println!("{line}");
    }
    if let Some(line) = super::demo_webhooks::older_events(&state, 60_000).await? {
        println!("{line}");
    }
    Ok(())
}

/// A day of cron runs, so `/admin/crons` has a story: replay every 5 minutes as the
/// in-process scheduler fires it, except for a stretch 6 to 3 hours ago when only one
/// tick in four fired (the platform scheduler dropping runs) and an outside monitor
/// covered a few; expiry hourly; pruning daily. Only when no run exists yet.
async fn seed_cron_runs(pg: &sqlx::PgPool, now: OffsetDateTime) -> anyhow::Result<usize> {
    use app::jobs::RunStatus;
    use app::registry::JOBS;
    let any = sqlx::query_scalar!(r#"select exists (select 1 from cron_job_runs) as "any!""#)
        .fetch_one(pg)
        .await?;
    if any {
        return Ok(0);
    }
    let since = now - time::Duration::days(3);
    app::jobs::ssr::records::register_jobs(pg, JOBS, since).await?;
    sqlx::query!(
        "update cron_jobs set first_seen_at = least(first_seen_at, $1)",
        since
    )
    .execute(pg)
    .await?;
    let mut rng = Lcg(5);
    let (mut at, mut trigger, mut agent, mut job, mut ms, mut rows, mut outcome) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for spec in JOBS {
        let schedule = spec.default_schedule();
        // Through now: the console's scheduler, started next, runs the tick after it.
        for tick in schedule.ticks(now - time::Duration::DAY, now) {
            let hours_ago = (now - tick).whole_hours();
            let dropping = spec.name == "replay-fallback" && (3..6).contains(&hours_ago);
            let (fired, by) = if !dropping || rng.next(4) == 0 {
                (true, "scheduler")
            } else if rng.next(5) == 0 {
                (true, "external")
            } else {
                (false, "")
            };
            if !fired {
                continue;
            }
            let delay = if by == "external" {
                60 + rng.next(120)
            } else {
                rng.next(3)
            };
            at.push(tick + time::Duration::seconds(delay as i64));
            trigger.push(by.to_owned());
            agent.push(if by == "external" {
                "uptime-monitor/2.1 (demo)".to_owned()
            } else {
                "salvage scheduler on demo-host".to_owned()
            });
            job.push(spec.name.to_owned());
            let (base, spread) = match spec.name {
                "replay-fallback" => (180, 900),
                "expire-fallback" => (40, 120),
                _ => (20, 60),
            };
            ms.push((base + rng.next(spread)) as i64);
            rows.push(if spec.name == "replay-fallback" {
                rng.next(400) as i64
            } else {
                0
            });
            outcome.push(
                if spec.name == "replay-fallback" && hours_ago == 9 && rng.next(3) == 0 {
                    RunStatus::Failed.as_str().to_owned()
                } else {
                    RunStatus::Succeeded.as_str().to_owned()
                },
            );
        }
    }
    sqlx::query!(
        "insert into cron_job_runs (job_name, ran_at, finished_at, heartbeat_at, duration_ms,
                                    trigger, actor, outcome, rows_processed, progress_done,
                                    progress_total, caller_agent, error, details)
         select j, t, t + make_interval(secs => d / 1000.0), t + make_interval(secs => d / 1000.0),
                d, tr, 'system:' || j, o, r, r, r, a,
                case when o = 'failed' then 'ClickHouse: connection refused (demo)' end,
                -- A replay's report, as the replay job writes it.
                case when j = 'replay-fallback' then jsonb_build_object(
                    'status', o, 'rowsAtStart', r, 'rowsDone', r, 'rowsInserted', r,
                    'rowsAlreadyPresent', 0, 'rowsLeft', 0, 'batch', 5000)
                else '{}'::jsonb end
           from unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::text[], $5::text[],
                       $6::bigint[], $7::text[]) as u(j, t, d, tr, a, r, o)",
        &job,
        &at,
        &ms,
        &trigger,
        &agent,
        &rows,
        &outcome
    )
    .execute(pg)
    .await?;
    Ok(at.len())
}

/// A small deterministic generator, so every demo looks the same.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

fn person(email: &str, role: Role) -> Actor {
    Actor {
        user_id: None,
        name: email.to_owned(),
        role,
        must_change_password: false,
    }
}

/// The details of the demo's made-up entries: each marked `demo`, steps of an incident
/// linked to it by its title, and the figures a real entry of the kind would show.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Demo {
    #[serde(skip)]
    kind: EntryKind,
    demo: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    incident_title: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grace_hours: Option<i64>,
    /// A resolution's post-recovery checklist as it stood then.
    #[serde(skip_serializing_if = "Option::is_none")]
    checklist: Option<Vec<app::incidents::CheckItem>>,
}

impl Demo {
    fn of(kind: EntryKind) -> Self {
        Self {
            kind,
            demo: true,
            incident_title: None,
            deleted: None,
            table: None,
            grace_hours: None,
            checklist: None,
        }
    }

    fn in_incident(kind: EntryKind, title: &'static str) -> Self {
        Self {
            incident_title: Some(title),
            ..Self::of(kind)
        }
    }
}

impl app::history::ssr::Details for Demo {
    fn kind(&self) -> EntryKind {
        self.kind
    }
}

/// Writes the demo history, oldest first (so ids follow time), in one transaction.
async fn seed_history(pg: &sqlx::PgPool, now: OffsetDateTime) -> anyhow::Result<usize> {
    let operator = person("operator@salvage.demo", Role::Operator);
    let manager = person("manager@salvage.demo", Role::Manager);
    let admin = person("admin@salvage.demo", Role::Admin);
    let scheduler = Actor::system("scheduler");
    let mut entries: Vec<NewEntry> = Vec::new();

    // Drills are real: `demo_backups::first_drill` runs one on the demo's backups.

    // Incidents, each with its timeline and the checklist recorded with its resolution.
    let incidents = super::demo_incidents::INCIDENTS;
    for incident in &incidents {
        let at = (now - Duration::days(incident.days_ago)).replace_time(time::macros::time!(06:40));
        entries.push(
            NewEntry::new(
                Demo::of(EntryKind::Incident),
                incident.title,
                &operator,
                Outcome::Info,
            )
            .with_times(at, None)
            .with_severity(Some(incident.severity.to_owned()))
            .with_body(incident.body),
        );
        // Linked entries are filled in after the incident gets its id (below).
        for (kind, minutes, title, who) in incident.steps {
            let actor = match *who {
                "manager" => &manager,
                "admin" => &admin,
                _ => &operator,
            };
            let outcome = if *kind == EntryKind::Note {
                Outcome::Info
            } else {
                Outcome::Succeeded
            };
            let step_at = at + Duration::minutes(*minutes);
            entries.push(
                NewEntry::new(
                    Demo::in_incident(*kind, incident.title),
                    *title,
                    actor,
                    outcome,
                )
                .with_times(
                    step_at,
                    Some(
                        step_at + Duration::seconds(if *kind == EntryKind::Note { 0 } else { 95 }),
                    ),
                )
                .with_reason(
                    (*kind != EntryKind::Note)
                        .then(|| app::reason::Reason::own(format!("incident: {}", incident.title))),
                ),
            );
        }
        let end = at + Duration::minutes(incident.minutes);
        entries.push(
            NewEntry::new(
                Demo {
                    checklist: Some(super::demo_incidents::checklist(
                        end,
                        incident.minutes,
                        &operator.name,
                    )),
                    ..Demo::in_incident(EntryKind::IncidentResolved, incident.title)
                },
                format!("Resolved: {}", incident.title),
                &operator,
                Outcome::Succeeded,
            )
            .with_times(end, Some(end)),
        );
    }

    // Routine work: expiry runs, secret rotations, handover notes.
    for days_ago in [88, 44] {
        let at = (now - Duration::days(days_ago)).replace_time(time::macros::time!(04:00));
        entries.push(
            NewEntry::new(
                Demo {
                    deleted: Some(2310),
                    table: Some("events_fallback"),
                    ..Demo::of(EntryKind::Expiry)
                },
                "Expired 2,310 fallback rows older than 7 days",
                &scheduler,
                Outcome::Partial,
            )
            .with_times(at, Some(at + Duration::seconds(4)))
            .with_reason(Some(app::reason::Reason::own(
                "TTL 7 days; ClickHouse was down past the TTL for these rows",
            ))),
        );
    }
    for days_ago in [110, 20] {
        let at = (now - Duration::days(days_ago)).replace_time(time::macros::time!(10:15));
        entries.push(
            NewEntry::new(
                Demo {
                    grace_hours: Some(24),
                    ..Demo::of(EntryKind::SecretRotation)
                },
                "Rotated the cron secret",
                &admin,
                Outcome::Succeeded,
            )
            .with_reason(Some(app::reason::Reason::own("quarterly rotation")))
            .with_times(at, Some(at)),
        );
    }
    for days_ago in (3..120).step_by(14) {
        let at = (now - Duration::days(days_ago)).replace_time(time::macros::time!(17:30));
        entries.push(
            NewEntry::new(
                Demo::of(EntryKind::Note),
                "On-call handover",
                &manager,
                Outcome::Info,
            )
            .with_body(
                "Queues empty, drills green, no open alerts. Next rotation: see the calendar.",
            )
            .with_times(at, Some(at)),
        );
    }

    entries.sort_by_key(|entry| entry.started_at);
    let mut tx = pg.begin().await?;
    // Link incident steps to the incident's id as it is written.
    let mut incident_ids = std::collections::HashMap::new();
    for entry in &mut entries {
        if let Some(title) = entry
            .details()
            .get("incidentTitle")
            .and_then(|t| t.as_str())
        {
            entry.incident_id = incident_ids.get(title).copied();
        }
        let id = append(&mut tx, entry).await?;
        if entry.kind() == EntryKind::Incident {
            incident_ids.insert(entry.title.clone(), id);
        }
    }
    tx.commit().await?;
    Ok(entries.len())
}

// ---------------------------------------------------------------------------------------
// Live traffic and an outage, for watching the queues work

/// A small deterministic generator (xorshift), so the demo needs no extra dependency
/// and a run can be reproduced.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const MODELS: [(&str, &str, f64); 5] = [
    ("openai", "gpt-4o-mini", 0.15),
    ("openai", "gpt-4o", 2.5),
    ("anthropic", "claude-3-5-haiku", 0.8),
    ("anthropic", "claude-3-5-sonnet", 3.0),
    ("mistral", "mistral-small", 0.2),
];

/// One LLM request log row and the trace events around it, as a gateway would send.
fn demo_rows(dice: &mut Dice, now: OffsetDateTime) -> (serde_json::Value, Vec<serde_json::Value>) {
    let (provider, model, price) = MODELS[dice.below(MODELS.len() as u64) as usize];
    let prompt = 50 + dice.below(3000);
    let completion = 10 + dice.below(800);
    let failed = dice.below(50) == 0;
    let latency = 200 + dice.below(2500);
    let ts = now - Duration::milliseconds(dice.below(1000) as i64);
    let ts_text = ts
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let request = json!({
        "id": uuid::Uuid::new_v4(), "ts": ts_text,
        "organization_id": dice.pick(&["org_acme", "org_globex", "org_initech"]),
        "project": dice.pick(&["chat", "search", "support-bot", "summaries"]),
        "provider": provider, "model": model,
        "status": if failed { 429 } else { 200 },
        "latency_ms": latency, "prompt_tokens": prompt, "completion_tokens": completion,
        "cost_usd": (prompt + completion) as f64 * price / 1_000_000.0,
        "error": if failed { json!("rate limited by provider") } else { json!(null) },
    });
    let trace = format!("t-{:016x}", dice.next());
    let root = format!("s-{:08x}", dice.next() as u32);
    let events = vec![
        json!({"id": uuid::Uuid::new_v4(), "ts": ts_text, "trace_id": trace, "span_id": root,
            "parent_span_id": null, "event_type": "trace", "name": "http.request",
            "duration_ms": latency + 40, "attributes": {"route": "/v1/chat"}}),
        json!({"id": uuid::Uuid::new_v4(), "ts": ts_text, "trace_id": trace,
            "span_id": format!("s-{:08x}", dice.next() as u32), "parent_span_id": root,
            "event_type": "generation", "name": "llm.call", "duration_ms": latency,
            "attributes": {"model": model, "provider": provider}}),
    ];
    (request, events)
}

/// `salvage demo traffic`: posts to this Salvage's ingest endpoints until stopped. A
/// batch the server refuses with 503 (both stores down) or cannot be reached for is
/// kept and sent again, as a well-behaved caller does.
pub async fn traffic(settings: &Settings, rate: u32) -> anyhow::Result<()> {
    let state = super::common::current_state(settings).await?;
    let (key_id, key) =
        // A gateway's key: it forwards rows for every organisation.
        app::ingest_keys::ssr::create(&state.pg, &Actor::cli(), "demo traffic generator", "*")
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = settings.public_url.clone();
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()?;
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15 ^ OffsetDateTime::now_utc().unix_timestamp() as u64);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(
        1000 / u64::from(rate.clamp(1, 50)),
    ));
    let mut pending: Vec<(&str, serde_json::Value)> = Vec::new();
    let (mut to_clickhouse, mut to_fallback, mut retries) = (0u64, 0u64, 0u64);
    let mut last_report = std::time::Instant::now();
    println!("demo traffic: posting to {base} with ingest key #{key_id}; Ctrl-C stops.");
    loop {
        tick.tick().await;
        if pending.is_empty() {
            let now = OffsetDateTime::now_utc();
            let (mut requests, mut events) = (Vec::new(), Vec::new());
            for _ in 0..(3 + dice.below(10)) {
                let (request, more) = demo_rows(&mut dice, now);
                requests.push(request);
                events.extend(more);
            }
            pending.push(("ingest/requests", json!(requests)));
            pending.push(("ingest/events", json!(events)));
        }
        while let Some((path, body)) = pending.first() {
            let rows = body.as_array().map_or(0, Vec::len) as u64;
            let sent = http
                .post(base.join(path)?)
                .bearer_auth(&key)
                .json(body)
                .send()
                .await;
            match sent.map(|r| r.status().as_u16()) {
                Ok(200) => to_clickhouse += rows,
                Ok(202) => to_fallback += rows,
                Ok(status) if status >= 500 => {
                    retries += 1;
                    break;
                }
                Ok(status) => anyhow::bail!("the server refused a demo batch with {status}"),
                Err(_) => {
                    retries += 1;
                    break;
                }
            }
            pending.remove(0);
        }
        if last_report.elapsed() >= std::time::Duration::from_secs(30) {
            println!(
                "demo traffic: {to_clickhouse} rows straight to ClickHouse, {to_fallback} parked in the fallback queues, {retries} retries"
            );
            last_report = std::time::Instant::now();
        }
    }
}

/// `salvage demo outage --seconds N`: stops the local ClickHouse with
/// `scripts/stores.sh` (run from the repository), waits, starts it again.
pub async fn outage(seconds: u64) -> anyhow::Result<()> {
    let script = std::path::Path::new("scripts/stores.sh");
    anyhow::ensure!(
        script.exists(),
        "run this from the Salvage repository: it stops the local ClickHouse with scripts/stores.sh"
    );
    let run = |action: &str| {
        std::process::Command::new(script)
            .args([action, "clickhouse"])
            .status()
            .with_context(|| format!("scripts/stores.sh {action} clickhouse"))
    };
    anyhow::ensure!(run("stop")?.success(), "ClickHouse did not stop");
    println!("ClickHouse is down for {seconds} s: new rows go to the fallback queues (watch /admin/queues); the self-monitor raises clickhouse_down after two evaluations (watch /admin/alerts).");
    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    anyhow::ensure!(run("start")?.success(), "ClickHouse did not start again");
    println!("ClickHouse is back. Press Replay on /admin/queues (or run `salvage replay`) to drain the queues; the alerts clear after two clear evaluations.");
    Ok(())
}
