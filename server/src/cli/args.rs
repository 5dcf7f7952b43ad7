//! The commands and flags of `salvage` (clap).

use app::reason::Reason;
use clap::{Parser, Subcommand};

/// Every `--reason`: the console's rule (not blank, at most 500 characters), checked
/// before the command runs.
fn reason(value: &str) -> Result<Reason, app::reason::ReasonError> {
    Reason::parse(value)
}

/// Every replay `--batch`: the range the setting accepts.
fn replay_batch(value: &str) -> anyhow::Result<i64> {
    let rows: i64 = value.parse()?;
    Ok(app::queues::ssr::replay::batch_size(rows)?)
}

/// Salvage: a self-hosted disaster-recovery console for a service that keeps its
/// observability data in ClickHouse and its accounts and queues in PostgreSQL.
///
/// Settings come from the environment and from `.env` in the working directory
/// (DATABASE_URL, CLICKHOUSE_URL, CLICKHOUSE_DATABASE, CLICKHOUSE_USER,
/// CLICKHOUSE_PASSWORD, SALVAGE_ADDR, SALVAGE_PUBLIC_URL); see README.md.
#[derive(Debug, Parser)]
#[command(name = "salvage", version, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the console at /admin, the health endpoints at /health/ready and
    /// /health/deep, and the server functions the console calls.
    ///
    /// Starts even while PostgreSQL or ClickHouse is down (that is when you need the
    /// console most): the schema is applied in the background as soon as each store
    /// answers, and /health/ready reports 503 until both do. Stops gracefully on Ctrl-C
    /// or SIGTERM.
    Serve,
    /// Apply the PostgreSQL migrations and the ClickHouse tables, run the smoke checks,
    /// then exit.
    ///
    /// Before applying PostgreSQL migrations to a database that has data, takes a
    /// PostgreSQL backup and records it as the pre-upgrade backup of the new version
    /// (skip with --no-backup <reason> or SALVAGE_MIGRATE_BACKUP=off). Idempotent: run it
    /// as often as you like, from several machines at once. Exits non-zero, naming the
    /// store or the check, when something refuses.
    ///
    /// --rollback-to <backup id> undoes an upgrade instead: with every console stopped,
    /// it restores that pre-upgrade backup's whole schema in place (the schema that was
    /// live is kept aside). Then deploy the version that expects that schema.
    Migrate {
        /// Skip the pre-upgrade backup, saying why (recorded with the upgrade).
        #[arg(long, value_name = "REASON")]
        no_backup: Option<String>,
        /// Restore this pre-upgrade PostgreSQL backup's whole schema in place.
        #[arg(long, value_name = "BACKUP_ID", conflicts_with = "no_backup")]
        rollback_to: Option<i64>,
        /// With --rollback-to: the backup id again, to confirm (asked for when missing).
        #[arg(long, requires = "rollback_to")]
        confirm: Option<String>,
        /// With --rollback-to: why, for the history.
        #[arg(long, requires = "rollback_to", value_parser = reason)]
        reason: Option<Reason>,
    },
    /// Run the smoke checks: both stores answer, the schema is the one this binary
    /// expects, the history chain verifies, the queues can be read, no background
    /// migration failed or stuck, and one round trip through ingest (ClickHouse cut) and
    /// replay in scratch databases. Exits non-zero naming every check that failed.
    Check,
    /// Background migrations: list them, pause, resume, retry or cancel one (the same
    /// actions as /admin/migrations, recorded as cli:$USER). They run in `salvage serve`
    /// every minute, or now with `salvage cron run run-background-migrations`.
    #[command(subcommand)]
    Migrations(MigrationsCommand),
    /// Manage console accounts (acts as admin, recorded in the history as cli:$USER).
    #[command(subcommand)]
    User(UserCommand),
    /// Read or check the runbook history.
    #[command(subcommand)]
    History(HistoryCommand),
    /// Replay both fallback queues into ClickHouse now (the same run as the console's
    /// Replay button and /cron/replay-fallback), with a progress bar. Ctrl-C stops
    /// after the current batch; nothing is lost or doubled either way.
    Replay {
        /// Why, for the history.
        #[arg(long, value_parser = reason)]
        reason: Option<Reason>,
        /// Rows per batch, 100 to 50000 (default: SALVAGE_REPLAY_BATCH, 20000).
        #[arg(long, value_parser = replay_batch)]
        batch: Option<i64>,
        /// Stop after this many seconds and report what is left (default: no limit).
        #[arg(long)]
        budget_secs: Option<u64>,
    },
    /// Delete queued rows older than SALVAGE_FALLBACK_TTL_HOURS (default 7 days). This
    /// loses those rows for good; each queue that loses any gets a history entry.
    Expire,
    /// Run a cron job now, or see how every job has been firing.
    #[command(subcommand)]
    Cron(CronCommand),
    /// List, acknowledge, resolve and silence alerts (the same functions as the
    /// console's /admin/alerts; recorded as cli:$USER).
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// Back up, list, verify and restore backups of both stores (the same functions as
    /// /admin/backups and /cron/backup; recorded as cli:$USER).
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Recovery from the repository alone, on a machine whose stores were lost. `--list`
    /// prints what each store can be brought back to (it reads no database); `--latest`
    /// or `--to TIME` brings both stores back onto empty servers, step by step, and a
    /// run stopped at a step resumes from it. Exits 2 when it refuses (nothing changed).
    Recover(RecoverArgs),
    /// Run and list restore drills (the same function as /admin/drills and
    /// /cron/restore-drill; recorded as cli:$USER).
    #[command(subcommand)]
    Drill(DrillCommand),
    /// Add, list, turn off or on, and delete the webhooks deliveries go to.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// The dead letters: their breakdown, a redrive, a purge (as on /admin/dlq).
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Rotate or list the cron secret (the bearer token of /cron/*).
    #[command(subcommand)]
    CronSecret(CronSecretCommand),
    /// Create, revoke or list the keys callers of /ingest/* authenticate with.
    #[command(subcommand)]
    IngestKey(IngestKeyCommand),
    /// Demo data: accounts and history (no subcommand), live traffic, an outage.
    Demo {
        #[command(subcommand)]
        command: Option<DemoCommand>,
    },
    /// Measure Salvage on this machine (throwaway databases; prints the figures).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print a completion script for your shell to standard output, e.g.
    /// `salvage completions bash > /etc/bash_completion.d/salvage`,
    /// `salvage completions zsh > "${fpath[1]}/_salvage"` or
    /// `salvage completions fish > ~/.config/fish/completions/salvage.fish`.
    /// Reads no settings and touches no store.
    Completions { shell: clap_complete::Shell },
    /// Print the OpenAPI 3.1 description of the HTTP routes (/ingest/*, /cron/*,
    /// /health/*, /metrics), as served at /api/openapi.json and committed in
    /// docs/openapi.json. Reads no settings and touches no store.
    Openapi,
}

/// `--json` of the list commands: the rows as one JSON array on standard output (times
/// in Unix milliseconds, UTC), for scripts; the exit code is the table's.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Output {
    /// Print the rows as a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `salvage recover …`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("point").required(true).args(["list", "to", "latest"])))]
pub struct RecoverArgs {
    /// List the recovery points, newest first, and change nothing.
    #[arg(long)]
    pub list: bool,
    /// Recover both stores to this moment (RFC 3339, e.g. 2026-12-07T03:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Recover both stores to the newest point the repository holds.
    #[arg(long)]
    pub latest: bool,
    /// When the loss happened (RFC 3339): the measured recovery point is this moment
    /// minus the point reached.
    #[arg(long, value_name = "TIME")]
    pub lost_at: Option<String>,
    /// Why (recorded in the history entry the recovery ends with). Required to recover.
    #[arg(long)]
    pub reason: Option<String>,
    /// The target database's name, to recover onto a database that holds tables (they
    /// are set aside in a schema of their own, never dropped).
    #[arg(long, value_name = "DATABASE")]
    pub confirm: Option<String>,
    #[command(flatten)]
    pub output: Output,
}

/// `salvage ingest-key …`.
#[derive(Debug, Subcommand)]
pub enum IngestKeyCommand {
    /// Create a key; the secret is printed once, on standard output.
    Create {
        /// Who will use it, e.g. "api-gateway production".
        #[arg(long)]
        name: String,
        /// The organisation whose rows it sends (`organization_id`), or `*` for a key
        /// that sends for every organisation.
        #[arg(long)]
        organization: String,
    },
    /// Revoke a key: it stops working at once here and within 3 s on every replica.
    Revoke {
        #[arg(long)]
        id: i64,
        #[arg(long, value_parser = reason)]
        reason: Reason,
    },
    /// List the keys (never their secrets).
    List(Output),
    /// What a key did in the last 7 days: first and last use, requests and rows per
    /// hour, its source addresses (a leaked key's blast radius).
    Show {
        /// The key's number (`salvage ingest-key list`).
        id: i64,
        #[command(flatten)]
        output: Output,
    },
}

/// `salvage cron …`.
#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// Every job: schedule, runs in the last 24 h against the expected, fire rate, last
    /// run and success, durations, flags. Exits 1 when a job is flagged.
    List(Output),
    /// Run one job now (recorded as trigger `cli`, with you as the actor).
    Run {
        /// The job's name, e.g. replay-fallback (see `salvage cron list`).
        job: String,
        /// Why, for the history.
        #[arg(long, value_parser = reason)]
        reason: Option<Reason>,
    },
}

/// `salvage backup …`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back up both stores now, verify each backup, then apply retention (the `backup`
    /// job). Ctrl-C stops after the current file; a stopped backup never lists as
    /// complete.
    Create {
        #[arg(long, value_parser = reason)]
        reason: Option<Reason>,
    },
    /// The newest 50 backups, newest first.
    List(Output),
    /// Rebuild the catalogue from the repository: add the backups whose signed manifests
    /// it holds and the catalogue lacks (after a restore of an older database), mark as
    /// gone those whose files are not there. A manifest that does not verify is named and
    /// never added (exit 1).
    Sync {
        #[arg(long, value_parser = reason)]
        reason: Option<Reason>,
    },
    /// What a restore can reach now, per store: the oldest and newest moments and how far
    /// the newest is behind (PostgreSQL's from the WAL archive when pgBackRest is set up).
    Window(Output),
    /// Check every file of a backup against its manifest (checksums, sizes, rows).
    Verify { id: i64 },
    /// Restore a backup into a side database (default `salvage_restore_<id>`), or in
    /// place with `--in-place --confirm <live database>` (application tables only; the
    /// live tables are kept aside for `salvage backup rollback`). With `--store postgres
    /// --to TIME|latest` instead of an id: PostgreSQL from pgBackRest's archive to that
    /// moment, into a side cluster on another port, verified and left running.
    Restore {
        #[arg(required_unless_present = "to", conflicts_with = "to")]
        id: Option<i64>,
        /// The store a point-in-time restore brings back (only `postgres` has one).
        #[arg(long, requires = "to", value_parser = ["postgres"])]
        store: Option<String>,
        /// `latest`, or a moment in RFC 3339 (`2026-12-07T03:00:00Z`).
        #[arg(long, requires = "store", conflicts_with_all = ["target", "tables", "in_place"])]
        to: Option<String>,
        /// The side cluster's port (default: a free one).
        #[arg(long, requires = "to")]
        port: Option<u16>,
        /// The side database's name.
        #[arg(long)]
        target: Option<String>,
        /// Only these tables, comma-separated.
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
        #[arg(long)]
        in_place: bool,
        /// The live database's name, typed to confirm an in-place restore.
        #[arg(long)]
        confirm: Option<String>,
        /// During an incident freeze: confirm the incident and restore in place anyway.
        #[arg(long)]
        confirm_incident: bool,
        #[arg(long, value_parser = reason)]
        reason: Option<Reason>,
    },
    /// The side clusters point-in-time restores left running.
    Side {
        #[command(subcommand)]
        command: SideCommand,
    },
    /// Put back the live tables an in-place restore kept aside.
    Rollback {
        /// The restore's id.
        restore: i64,
        #[arg(long, value_parser = reason)]
        reason: Option<Reason>,
    },
}

/// `salvage backup side …`.
#[derive(Debug, Subcommand)]
pub enum SideCommand {
    /// Every side cluster on this host: its port, what it was restored to, its age.
    List(Output),
    /// Stop the side cluster on this port and delete its directory.
    Stop {
        port: u16,
        #[arg(long, value_parser = reason)]
        reason: Option<Reason>,
    },
}

/// `salvage webhook …`.
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Add a webhook; its signing secret is printed once, on standard output.
    Add {
        #[arg(long)]
        url: String,
        /// Event types, comma-separated (`salvage.alert` for the console's alerts).
        #[arg(long)]
        events: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Retries after the first attempt (0–20).
        #[arg(long, default_value = "5")]
        max_retries: String,
    },
    /// Every webhook, its state, due deliveries and dead letters.
    List(Output),
    /// Stop sending to a webhook (its deliveries wait).
    Disable {
        id: i64,
        #[arg(long, value_parser = reason)]
        reason: Reason,
    },
    /// Send to a webhook again.
    Enable {
        id: i64,
        #[arg(long, value_parser = reason)]
        reason: Reason,
    },
    /// Delete a webhook; its pending deliveries are dead-lettered (`webhook_deleted`).
    Delete {
        id: i64,
        #[arg(long, value_parser = reason)]
        reason: Reason,
    },
    /// Seal every signing secret under the first key of SALVAGE_WEBHOOK_SECRET_KEYS (those
    /// stored before sealing, or under a key being rotated out). Start-up does it too;
    /// once it has, the old key can leave the setting.
    Reseal,
}

/// `salvage migrations …`.
#[derive(Debug, Subcommand)]
pub enum MigrationsCommand {
    /// Every background migration: status, progress, heartbeat, last error.
    List(Output),
    /// Stop a migration after its current chunk.
    Pause {
        name: String,
        #[arg(long, value_parser = reason)]
        reason: Reason,
    },
    /// Put a paused migration back in line.
    Resume {
        name: String,
        #[arg(long, value_parser = reason)]
        reason: Reason,
    },
    /// Run a failed or cancelled migration again from its saved cursor.
    Retry {
        name: String,
        #[arg(long, value_parser = reason)]
        reason: Reason,
    },
    /// Stop a migration for good (chunks done stay done).
    Cancel {
        name: String,
        #[arg(long, value_parser = reason)]
        reason: Reason,
    },
}

/// `salvage dlq …`. A filter is the page's query string, e.g.
/// `webhook=3&reason=exhausted&since=2026-11-28T09:00`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// The dead letters by webhook and reason (the runbook's breakdown).
    Summary {
        #[arg(long, default_value = "")]
        filter: String,
    },
    /// Send the dead letters matching the filter again, once each; prints progress.
    /// With --dry-run, only counts them and prints a sample.
    Redrive {
        #[arg(long, default_value = "")]
        filter: String,
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_parser = reason)]
        reason: Option<Reason>,
    },
    /// Delete the dead letters matching the filter; --confirm must be their count.
    Purge {
        #[arg(long, default_value = "")]
        filter: String,
        #[arg(long)]
        confirm: String,
        #[arg(long, value_parser = reason)]
        reason: Reason,
    },
}

/// `salvage drill …`.
#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Restore the latest verified backup of each store (or `--backup` ids, one per
    /// store) into throwaway databases, verify them, run the console's queries on them,
    /// tear them down and record the measured recovery time. Ctrl-C stops after the
    /// current step and still tears down. Exits 1 when the drill does not pass.
    Run {
        /// Backup ids to restore instead of the latest verified ones, comma-separated.
        #[arg(long, value_delimiter = ',')]
        backup: Vec<i64>,
        #[arg(long, value_parser = reason)]
        reason: Option<Reason>,
    },
    /// The newest 50 drills, newest first.
    List(Output),
}

/// `salvage alerts …`.
#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Open alerts, most severe and oldest first (with `--resolved`: the last resolved
    /// ones). Exits 1 when a critical alert is open.
    List {
        #[arg(long)]
        resolved: bool,
        /// Only this kind, e.g. fallback_queue_high.
        #[arg(long)]
        kind: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Acknowledge alerts with a note, optionally for a while (`--until 4h`).
    Ack {
        /// Alert ids, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        id: Vec<i64>,
        #[arg(long)]
        note: String,
        /// `30m`, `4h`, `2d` or a UTC time; past it the alert fires again.
        #[arg(long)]
        until: Option<String>,
    },
    /// Resolve alerts by hand, with a note.
    Resolve {
        #[arg(long, value_delimiter = ',', required = true)]
        id: Vec<i64>,
        #[arg(long)]
        note: String,
    },
    /// Silence a kind (optionally keys matching a pattern, `*` as a wildcard) until an end.
    Silence {
        #[arg(long)]
        kind: String,
        #[arg(long)]
        key: Option<String>,
        /// `4h`, `2d` or a UTC time (required; at most 30 days).
        #[arg(long)]
        until: String,
        #[arg(long, value_parser = reason)]
        reason: Reason,
    },
    /// End a silence now.
    Unsilence {
        #[arg(long)]
        id: i64,
        #[arg(long, value_parser = reason)]
        reason: Reason,
    },
}

/// `salvage cron-secret …`.
#[derive(Debug, Subcommand)]
pub enum CronSecretCommand {
    /// Make a new cron secret (printed once, on standard output). The current one keeps
    /// working for the grace window, so each scheduler can be switched in turn.
    Rotate {
        /// Hours the previous secret keeps working (0 to 168).
        #[arg(long, default_value_t = app::crons::DEFAULT_GRACE_HOURS)]
        grace_hours: i64,
        /// Why, for the history.
        #[arg(long, value_parser = reason)]
        reason: Option<Reason>,
    },
    /// End the grace window of a previous secret now: it stops working at once.
    EndGrace {
        #[arg(long)]
        id: i64,
        #[arg(long, value_parser = reason)]
        reason: Reason,
    },
    /// The current and previous secrets (never their values), with when and by which
    /// caller each was last used.
    List(Output),
}

/// `salvage demo …`.
#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Post realistic LLM request logs and trace events to this Salvage's /ingest/*,
    /// a few batches a second, until stopped. Creates its own ingest key.
    Traffic {
        /// Batches per second.
        #[arg(long, default_value_t = 2)]
        rate: u32,
    },
    /// Stop the local ClickHouse (scripts/stores.sh) for N seconds, then start it again:
    /// watch /admin/queues fill and /admin/alerts raise, then drain and clear when you
    /// press Replay.
    Outage {
        #[arg(long, default_value_t = 180)]
        seconds: u64,
    },
}

/// `salvage bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Restore PostgreSQL to latest from pgBackRest's repository with Salvage and by hand,
    /// on the cluster plus a generated database of N GB, in R rounds that alternate
    /// which goes first; print each time and the medians.
    Pitr {
        #[arg(long, default_value_t = 1)]
        gb: u64,
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// Back up and restore N ClickHouse rows and the demo PostgreSQL data with Salvage,
    /// and with the raw tools on the same data; print both times and peak memory.
    Backup {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
    },
    /// Fill a fallback queue with N rows and drain it; print replay rows/s beside a plain
    /// ClickHouse insert and a plain PostgreSQL claim-and-delete of the same rows, peak
    /// memory, and ingest rows/s with ClickHouse up and down.
    Replay {
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
        /// Rows per replay batch (ingest is measured in batches of at most 5000, the
        /// most one ingest request may carry).
        #[arg(long, default_value_t = app::queues::ssr::replay::DEFAULT_BATCH,
              value_parser = replay_batch)]
        batch: i64,
        /// Replay batches in flight at once (the replay job's default is 2).
        #[arg(long, default_value_t = app::queues::ssr::replay::DEFAULT_PARALLEL)]
        parallel: usize,
    },
    /// Deliver N webhooks to a local receiver and post the same payloads with a plain
    /// HTTP client (deliveries/s of each), then redrive N dead letters (rows/s, peak
    /// memory), in a throwaway database.
    Webhooks {
        #[arg(long, default_value_t = 5_000)]
        deliveries: u64,
        #[arg(long, default_value_t = 100_000)]
        dead_letters: u64,
        /// How long the receiver takes to answer, in ms; one run per value.
        #[arg(long, value_delimiter = ',', default_value = "0,20")]
        receiver_ms: Vec<u64>,
    },
    /// Start `salvage serve` on a throwaway database and flood it with first-admin setup
    /// posts, then with wrong sign-ins (16 loops, 10 s each, from one network, then from
    /// many); print its resident memory (start, peak, settled) and a real sign-in's time
    /// under each flood against its time unflooded.
    SignInFlood {
        /// Seconds each flood lasts.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Loops posting at once.
        #[arg(long, default_value_t = 16)]
        loops: usize,
    },
    /// Fill a throwaway database with resolved and open alerts; print the self-monitor's
    /// evaluation time and the time of /admin/alerts' queries.
    Alerts {
        #[arg(long, default_value_t = 10_000)]
        resolved: u64,
        #[arg(long, default_value_t = 500)]
        open: u64,
    },
}

/// `salvage user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account. The password is read from a prompt, or from the first line of
    /// standard input when that is not a terminal; never from the command line.
    Add {
        #[arg(long)]
        email: String,
        /// operator, manager or admin.
        #[arg(long)]
        role: String,
        /// Why, for the history.
        #[arg(long, value_parser = reason)]
        reason: Option<Reason>,
    },
    /// Change an account's role.
    SetRole {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
        #[arg(long, value_parser = reason)]
        reason: Option<Reason>,
    },
    /// Disable an account; its sessions end at once.
    Disable {
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = reason)]
        reason: Option<Reason>,
    },
    /// Re-enable a disabled account.
    Enable {
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = reason)]
        reason: Option<Reason>,
    },
    /// List every account.
    List(Output),
}

/// `salvage history …`.
#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Walk the hash chain; exit 1 naming the first entry that does not match.
    Verify,
}
