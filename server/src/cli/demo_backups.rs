//! Demo data for the backups: the application tables of the service Salvage guards
//! (organisations, their projects, their API keys) so backups, restores and drills have
//! real data to protect, and a first real backup of both stores.

use anyhow::Context;
use sqlx::PgPool;

/// The application tables the demo (and the tests) create beside Salvage's own.
pub const APPLICATION_DDL: &str = "
create table if not exists organizations (
    id bigserial primary key,
    slug text not null unique,
    name text not null,
    plan text not null default 'team' check (plan in ('free', 'team', 'enterprise')),
    created_at timestamptz not null default now()
);
create table if not exists projects (
    id bigserial primary key,
    organization_id bigint not null references organizations (id),
    name text not null,
    region text not null,
    created_at timestamptz not null default now(),
    unique (organization_id, name)
);
create index if not exists projects_region_idx on projects (region);
create table if not exists api_keys (
    id bigserial primary key,
    project_id bigint not null references projects (id),
    prefix text not null unique,
    label text not null,
    created_at timestamptz not null default now(),
    revoked_at timestamptz
);";

/// Creates the application tables (as the schema's owner when there is one, then grants
/// the application role its usual rights) and fills them with `organizations`
/// organisations, three projects each and two keys per project. Idempotent: rows that
/// exist are kept.
pub async fn application_data(
    state: &app::server::AppState,
    organizations: usize,
) -> anyhow::Result<i64> {
    let owner = state
        .schema_owner
        .as_ref()
        .map(|o| &o.pool)
        .unwrap_or(&state.pg);
    sqlx::raw_sql(APPLICATION_DDL)
        .execute(owner)
        .await
        .context("Failed to create the demo application tables")?;
    if let Some(schema_owner) = &state.schema_owner {
        app::server::postgres::grant_application_role(&schema_owner.pool, &schema_owner.app_role)
            .await
            .context("Failed to grant the application role")?;
    }
    fill(owner, organizations).await
}

async fn fill(pg: &PgPool, organizations: usize) -> anyhow::Result<i64> {
    const PLANS: [&str; 3] = ["free", "team", "enterprise"];
    const REGIONS: [&str; 4] = ["eu-west-1", "us-east-1", "ap-southeast-2", "eu-central-1"];
    let slugs: Vec<String> = (1..=organizations).map(|i| format!("org-{i:04}")).collect();
    let names: Vec<String> = (1..=organizations)
        .map(|i| format!("Organisation {i}"))
        .collect();
    let plans: Vec<String> = (0..organizations)
        .map(|i| PLANS[i % 3].to_owned())
        .collect();
    sqlx::query(
        "insert into organizations (slug, name, plan)
         select * from unnest($1::text[], $2::text[], $3::text[])
         on conflict (slug) do nothing",
    )
    .bind(&slugs)
    .bind(&names)
    .bind(&plans)
    .execute(pg)
    .await?;
    sqlx::query(
        "insert into projects (organization_id, name, region)
         select o.id, p.name, ($1::text[])[1 + (o.id + p.n) % 4]
         from organizations o
         cross join (values (1, 'web'), (2, 'mobile'), (3, 'batch')) as p(n, name)
         on conflict (organization_id, name) do nothing",
    )
    .bind(REGIONS.map(str::to_owned).to_vec())
    .execute(pg)
    .await?;
    sqlx::query(
        "insert into api_keys (project_id, prefix, label, revoked_at)
         select p.id, 'sk_' || p.id || '_' || k.n, k.label,
                case when (p.id + k.n) % 7 = 0 then now() - interval '3 days' end
         from projects p cross join (values (1, 'production'), (2, 'staging')) as k(n, label)
         on conflict (prefix) do nothing",
    )
    .execute(pg)
    .await?;
    let rows: i64 = sqlx::query_scalar(
        "select (select count(*) from organizations) + (select count(*) from projects)
              + (select count(*) from api_keys)",
    )
    .fetch_one(pg)
    .await?;
    Ok(rows)
}

/// Takes a first real backup of both stores (through the `backup` job, as the CLI does)
/// when the catalogue is empty.
pub async fn first_backup(state: &app::server::AppState) -> anyhow::Result<Option<String>> {
    let any = sqlx::query_scalar!(r#"select exists (select 1 from backups) as "any!""#)
        .fetch_one(&state.pg)
        .await?;
    if any {
        return Ok(None);
    }
    let firing = super::common::cli_firing(Some(app::reason::Reason::own(
        "demo: a first backup of both stores",
    )));
    let finished = app::jobs::ssr::run(
        state,
        &app::backups::ssr::BACKUP,
        firing,
        Default::default(),
    )
    .await
    .map_err(super::common::app_error)?
    .context("a run without a tick always starts")?;
    Ok(Some(format!(
        "Demo backup: run #{} {} ({} rows) into {}.",
        finished.run_id,
        finished.status,
        finished.rows,
        state.backups().storage.describe()
    )))
}

/// A first real drill of the demo's backups, a tabletop exercise logged and a schema
/// change of the guarded service reported, so `/admin/drills` has a story on a fresh
/// `make run`. Only when no drill exists yet.
pub async fn first_drill(state: &app::server::AppState) -> anyhow::Result<Option<String>> {
    let any = sqlx::query_scalar!(r#"select exists (select 1 from drills) as "any!""#)
        .fetch_one(&state.pg)
        .await?;
    if any {
        return Ok(None);
    }
    let firing = super::common::cli_firing(Some(app::reason::Reason::own(
        "demo: a first restore drill",
    )));
    let finished = app::jobs::ssr::run(
        state,
        &app::drills::ssr::RESTORE_DRILL,
        firing,
        Default::default(),
    )
    .await
    .map_err(super::common::app_error)?
    .context("a run without a tick always starts")?;
    let report = finished
        .report::<app::drills::ssr::run::DrillReport>()
        .context("the drill reports")?;
    let tabletop = app::drills::Tabletop {
        scenario: "ClickHouse loses its disk during the evening peak".into(),
        participants: "on-call engineer, DBA, support lead".into(),
        findings: "Ingest parked rows in the fallback queue as designed; nobody knew where the restore runbook lives.".into(),
        follow_ups: "Link the drill page from the on-call handbook.".into(),
    };
    app::drills::ssr::overview::log_tabletop(state, &app::auth::ssr::Actor::cli(), &tabletop)
        .await
        .map_err(super::common::app_error)?;
    // The guarded service's deploy reporting a schema change after the drill: the
    // drills page shows a drill due within the week (as `POST /ingest/schema-events`).
    let change = app::drills::ssr::schema_events::SchemaEvent {
        name: "billing".into(),
        version: "2026_12_07_add_refunds".into(),
        changed_at: state.clock.now(),
        changed_at_given: true,
    };
    app::drills::ssr::schema_events::record(state, &change, None)
        .await
        .map_err(super::common::app_error)?;
    Ok(Some(format!(
        "Demo drill {}: {} in {} (measured recovery {}), a tabletop exercise logged, and a \
         schema change of billing reported.",
        report.drill_id,
        report.status.as_str(),
        app::format::format_duration(report.duration_ms),
        app::format::format_duration(report.recovery_ms)
    )))
}
