//! The `salvage` binary itself: help, configuration errors, `salvage migrate`.

use std::process::{Command, Output};

use secrecy::ExposeSecret;

use crate::helpers::{base_settings, closed_port, owner_url};

/// Runs `salvage args…` from a directory with no `.env`, with only `env` set.
fn salvage(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_salvage"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("the salvage binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_explains_each_command() {
    let top = salvage(&["--help"], &[]);
    assert!(top.status.success());
    let text = stdout(&top);
    assert!(text.contains("disaster-recovery console"), "{text}");
    assert!(text.contains("serve") && text.contains("migrate"), "{text}");

    for command in ["serve", "migrate"] {
        let help = salvage(&[command, "--help"], &[]);
        assert!(help.status.success(), "{command}");
        assert!(
            stdout(&help).contains(&format!("Usage: salvage {command}")),
            "{command}"
        );
    }
    assert!(stdout(&salvage(&["serve", "--help"], &[])).contains("/health/ready"));
    assert!(stdout(&salvage(&["migrate", "--help"], &[])).contains("Idempotent"));
}

#[test]
fn a_missing_setting_stops_start_up_with_one_line_naming_it() {
    let output = salvage(&["serve"], &[("CLICKHOUSE_URL", "http://127.0.0.1:8123")]);

    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "salvage: configuration: DATABASE_URL is not set\n"
    );
}

#[test]
fn a_malformed_setting_is_named_and_its_secret_not_echoed() {
    let output = salvage(
        &["serve"],
        &[
            ("DATABASE_URL", "mysql://root:s3cret-pw@db/x"),
            ("CLICKHOUSE_URL", "http://127.0.0.1:8123"),
        ],
    );

    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.starts_with("salvage: configuration: DATABASE_URL is malformed"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(!text.contains("s3cret-pw"), "{text}");
}

#[tokio::test]
async fn migrate_creates_the_schema_and_can_run_twice() {
    let settings = base_settings();
    let database = format!("salvage_cli_{}", uuid::Uuid::new_v4().simple());
    let owner = owner_url(&settings);
    // A fresh, empty PostgreSQL database: it needs no pre-upgrade backup.
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(owner.expose_secret())
        .await
        .unwrap();
    sqlx::query(&format!(r#"create database "{database}""#))
        .execute(&mut admin)
        .await
        .unwrap();
    let mut fresh = url::Url::parse(owner.expose_secret()).unwrap();
    fresh.set_path(&database);
    let fresh = fresh.to_string();
    let env = [
        ("DATABASE_URL", fresh.as_str()),
        ("CLICKHOUSE_URL", settings.clickhouse.url.as_str()),
        (
            "CLICKHOUSE_PASSWORD",
            settings.clickhouse.password.expose_secret(),
        ),
        ("CLICKHOUSE_DATABASE", database.as_str()),
    ];

    let first = salvage(&["migrate"], &env);
    let second = salvage(&["migrate"], &env);

    let mut ch_settings = settings.clone();
    ch_settings.clickhouse.database = database.clone();
    let clickhouse = ch_settings.clickhouse_client();
    let tables: Vec<String> = clickhouse
        .client()
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(database.as_str())
        .fetch_all()
        .await
        .unwrap();
    clickhouse.drop_database().await.unwrap();
    let pool = sqlx::PgPool::connect(&fresh).await.unwrap();
    let upgrades: Vec<(Option<i64>, Option<String>)> =
        sqlx::query_as("select backup_id, backup_skipped from schema_upgrades")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    sqlx::query(&format!(r#"drop database "{database}" with (force)"#))
        .execute(&mut admin)
        .await
        .unwrap();

    assert!(first.status.success(), "{}", stderr(&first));
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stdout(&first).contains("applied to an empty database"),
        "{}",
        stdout(&first)
    );
    assert!(stdout(&second).contains("schema already at version"));
    assert!(
        stdout(&second).contains("ok   round trip"),
        "{}",
        stdout(&second)
    );
    assert_eq!(upgrades, [(None, Some("fresh database".to_owned()))]);
    assert_eq!(tables, ["events", "history_anchors", "requests"]);
}

#[tokio::test]
async fn migrate_fails_naming_clickhouse_when_it_is_unreachable() {
    let url = format!("http://127.0.0.1:{}", closed_port().await);
    // A test app's own database: the PostgreSQL half of the migrate succeeds before the
    // ClickHouse half fails, and must not touch the developer's database.
    let app = crate::helpers::spawn_app().await;

    let output = salvage(
        &["migrate"],
        &[
            ("DATABASE_URL", app.database_url.as_str()),
            ("CLICKHOUSE_URL", url.as_str()),
        ],
    );

    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("Failed to apply the ClickHouse schema"),
        "{}",
        stderr(&output)
    );
}

/// Runs `salvage args…` against `app`'s databases, feeding `stdin`.
pub fn salvage_on(app: &crate::helpers::TestApp, args: &[&str], stdin: &str) -> Output {
    salvage_with(&app.database_url, app.clickhouse.database(), args, stdin)
}

/// `salvage <args>` on a test app's databases, given by URL and name (so it can run on a
/// blocking thread while the app keeps serving).
pub fn salvage_with(
    database_url: &str,
    clickhouse_database: &str,
    args: &[&str],
    stdin: &str,
) -> Output {
    let settings = base_settings();
    salvage_env(
        args,
        stdin,
        &[
            ("DATABASE_URL", database_url),
            ("CLICKHOUSE_URL", settings.clickhouse.url.as_str()),
            ("CLICKHOUSE_DATABASE", clickhouse_database),
        ],
    )
}

/// `salvage <args>` with only `env` set (and the local ClickHouse password, the backup
/// signing and encryption keys, `PATH`, `USER=oncall`), feeding `stdin`.
pub fn salvage_env(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    use std::io::Write;
    let settings = base_settings();
    let mut child = Command::new(env!("CARGO_BIN_EXE_salvage"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("USER", "oncall")
        .env(
            "CLICKHOUSE_PASSWORD",
            settings.clickhouse.password.expose_secret(),
        )
        // Read from `.env` by `base_settings` above.
        .envs(
            ["SALVAGE_BACKUP_SIGNING_KEYS", "SALVAGE_BACKUP_AGE_IDENTITY"]
                .into_iter()
                .filter_map(|name| std::env::var(name).ok().map(|value| (name, value))),
        )
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the salvage binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn user_commands_add_list_change_and_disable_accounts_with_history() {
    let app = crate::helpers::spawn_app().await;
    // Another admin, so the one promoted below is not the last and may be disabled.
    app.add_user("boss@example.com", app::auth::Role::Admin)
        .await;

    let add = salvage_on(
        &app,
        &[
            "user",
            "add",
            "--email",
            "Lead@Example.com",
            "--role",
            "manager",
            "--reason",
            "new lead",
        ],
        "a long enough passphrase\n",
    );
    let set_role = salvage_on(
        &app,
        &[
            "user",
            "set-role",
            "--email",
            "lead@example.com",
            "--role",
            "admin",
        ],
        "",
    );
    let disable = salvage_on(
        &app,
        &[
            "user",
            "disable",
            "--email",
            "lead@example.com",
            "--reason",
            "left",
        ],
        "",
    );
    let list = salvage_on(&app, &["user", "list"], "");

    assert!(add.status.success(), "{}", stderr(&add));
    assert!(set_role.status.success(), "{}", stderr(&set_role));
    assert!(disable.status.success(), "{}", stderr(&disable));
    let listing = stdout(&list);
    assert!(
        listing.contains("lead@example.com")
            && listing.contains("admin")
            && listing.contains("disabled"),
        "{listing}"
    );
    let entries: Vec<(String, String)> = sqlx::query_as(
        "select actor, title from runbook_history
         where kind = 'user_change' and details->>'email' = 'lead@example.com' order by id",
    )
    .fetch_all(&app.pg)
    .await
    .unwrap();
    assert_eq!(
        entries,
        vec![
            (
                "cli:oncall".to_owned(),
                "Added lead@example.com as manager".to_owned()
            ),
            (
                "cli:oncall".to_owned(),
                "Changed lead@example.com from manager to admin".to_owned()
            ),
            (
                "cli:oncall".to_owned(),
                "Disabled lead@example.com".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn user_add_takes_no_password_on_the_command_line_and_refuses_a_short_one() {
    let app = crate::helpers::spawn_app().await;

    let argv = salvage_on(
        &app,
        &[
            "user",
            "add",
            "--email",
            "a@example.com",
            "--role",
            "admin",
            "--password",
            "hunter2hunter2",
        ],
        "",
    );
    let short = salvage_on(
        &app,
        &["user", "add", "--email", "a@example.com", "--role", "admin"],
        "short\n",
    );
    let bad_role = salvage_on(
        &app,
        &["user", "add", "--email", "a@example.com", "--role", "root"],
        "a long enough passphrase\n",
    );

    assert_eq!(argv.status.code(), Some(2), "{}", stderr(&argv));
    assert!(stderr(&argv).contains("--password"), "{}", stderr(&argv));
    assert_eq!(short.status.code(), Some(1));
    assert!(
        stderr(&short).contains("password: use at least 12 characters"),
        "{}",
        stderr(&short)
    );
    assert!(
        stderr(&bad_role).contains("role: choose operator, manager or admin"),
        "{}",
        stderr(&bad_role)
    );
    assert_eq!(app.count("users").await, 0);
    assert_eq!(app.count("runbook_history").await, 0);
}

#[tokio::test]
async fn a_reason_the_console_refuses_is_refused_at_the_terminal_and_changes_nothing() {
    let app = crate::helpers::spawn_app().await;
    let revoke = |reason: String| {
        salvage_on(
            &app,
            &["ingest-key", "revoke", "--id", "1", "--reason", &reason],
            "",
        )
    };
    let long = revoke("x".repeat(501));
    let blank = revoke("   ".to_owned());
    let cron = salvage_on(
        &app,
        &[
            "cron",
            "run",
            "expire-fallback",
            "--reason",
            &"y".repeat(501),
        ],
        "",
    );

    for (output, says) in [
        (&long, "keep it under 500 characters"),
        (&blank, "say why, for the history"),
        (&cron, "keep it under 500 characters"),
    ] {
        assert_eq!(output.status.code(), Some(2), "{}", stderr(output));
        let error = stderr(output);
        assert!(
            error.contains("--reason") && error.contains(says),
            "{error}"
        );
    }
    assert_eq!(app.count("cron_job_runs").await, 0);
    assert_eq!(app.count("runbook_history").await, 0);
}

#[tokio::test]
async fn history_verify_exits_non_zero_naming_a_tampered_entry() {
    let app = crate::helpers::spawn_app().await;
    for email in ["a@example.com", "b@example.com", "c@example.com"] {
        app.add_user(email, app::auth::Role::Operator).await;
    }
    let intact = salvage_on(&app, &["history", "verify"], "");

    let mut conn = app.pg.acquire().await.unwrap();
    sqlx::query("alter table runbook_history disable trigger runbook_history_append_only")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("update runbook_history set reason = 'edited' where id = 2")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("alter table runbook_history enable trigger runbook_history_append_only")
        .execute(&mut *conn)
        .await
        .unwrap();
    let broken = salvage_on(&app, &["history", "verify"], "");

    assert!(intact.status.success(), "{}", stderr(&intact));
    assert!(
        stdout(&intact).contains("intact: 3 entries"),
        "{}",
        stdout(&intact)
    );
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        stderr(&broken).contains("broken at entry #2"),
        "{}",
        stderr(&broken)
    );
}

#[tokio::test]
async fn serve_prints_a_setup_link_that_creates_the_first_admin_once() {
    use std::io::{BufRead, BufReader};
    let app = crate::helpers::spawn_app().await;
    let settings = base_settings();
    let port = crate::helpers::free_port().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_salvage"))
        .arg("serve")
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.database_url)
        .env("CLICKHOUSE_URL", settings.clickhouse.url.as_str())
        .env(
            "CLICKHOUSE_PASSWORD",
            settings.clickhouse.password.expose_secret(),
        )
        .env("CLICKHOUSE_DATABASE", "salvage_cli_serve")
        .env("SALVAGE_ADDR", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let link = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains("/admin/setup?token="))
    })
    .await
    .unwrap()
    .expect("serve prints the setup link");
    let token = link.trim().rsplit("token=").next().unwrap().to_owned();
    let client = crate::helpers::Client::new(&format!("http://127.0.0.1:{port}"));
    let form = serde_json::json!({"token": token, "email": "first@example.com",
        "password": crate::helpers::PASSWORD, "confirm_password": crate::helpers::PASSWORD});

    let (status, body) = client.call("auth/setup", form.clone()).await;
    let (again, _) = client.call("auth/setup", form).await;

    let _ = child.kill();
    let _ = child.wait();
    let _ = settings
        .clickhouse_client_for("salvage_cli_serve")
        .drop_database()
        .await;
    assert!(
        link.trim()
            .starts_with(&format!("http://127.0.0.1:{port}/admin/setup?token=")),
        "{link}"
    );
    assert_eq!(token.len(), 64);
    assert_eq!(status, 200, "{body}");
    assert_eq!(again, 404);
    assert_eq!(app.count("users where role = 'admin'").await, 1);
}

/// Counts of what a command would change: applied migrations, upgrades, history, users,
/// cron runs.
async fn schema_and_writes(pg: &sqlx::PgPool) -> [i64; 5] {
    let mut counts = [0; 5];
    for (count, table) in counts.iter_mut().zip([
        "_sqlx_migrations",
        "schema_upgrades",
        "runbook_history",
        "users",
        "cron_job_runs",
    ]) {
        *count = sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(pg)
            .await
            .unwrap();
    }
    counts
}

#[tokio::test]
async fn a_command_on_a_schema_older_than_the_binary_refuses_with_exit_2_and_changes_nothing() {
    let app = crate::helpers::spawn_app().await;
    // The binary is one migration ahead of this database: its newest is "not applied".
    let newest: (i64, String, Vec<u8>, i64) = sqlx::query_as(
        "delete from _sqlx_migrations where version = (select max(version) from _sqlx_migrations)
         returning version, description, checksum, execution_time",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    let before = schema_and_writes(&app.pg).await;

    let commands: [&[&str]; 5] = [
        &["alerts", "list"],
        &["backup", "list"],
        &[
            "user",
            "add",
            "--email",
            "new@example.com",
            "--role",
            "operator",
        ],
        &["replay", "--reason", "after the upgrade"],
        &["cron", "run", "prune-cron-runs", "--reason", "tidy"],
    ];
    let outputs: Vec<Output> = commands
        .iter()
        .map(|args| salvage_on(&app, args, "a-long-enough-password\n"))
        .collect();
    let after = schema_and_writes(&app.pg).await;

    for (args, output) in commands.iter().zip(&outputs) {
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(output)
        );
        assert_eq!(
            stderr(output),
            "salvage: the schema is 1 migration behind this binary; run `salvage migrate`\n",
            "{args:?}"
        );
    }
    assert_eq!(after, before, "a refused command wrote nothing");

    // Once the schema is the binary's again (as `salvage migrate` leaves it), they run.
    sqlx::query(
        "insert into _sqlx_migrations (version, description, success, checksum, execution_time)
         values ($1, $2, true, $3, $4)",
    )
    .bind(newest.0)
    .bind(&newest.1)
    .bind(&newest.2)
    .bind(newest.3)
    .execute(&app.pg)
    .await
    .unwrap();
    let list = salvage_on(&app, &["alerts", "list"], "");
    assert!(list.status.success(), "{}", stderr(&list));
}
