//! The `salvage` binary itself: help, configuration errors, `salvage migrate`.

use std::process::{Command, Output};

use secrecy::ExposeSecret;

use crate::helpers::{base_settings, closed_port};

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
    let env = [
        ("DATABASE_URL", settings.database_url.expose_secret()),
        ("CLICKHOUSE_URL", settings.clickhouse.url.as_str()),
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

    assert!(first.status.success(), "{}", stderr(&first));
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(stdout(&second).contains("Schema is current"));
    assert_eq!(tables, ["events", "requests"]);
}

#[tokio::test]
async fn migrate_fails_naming_clickhouse_when_it_is_unreachable() {
    let settings = base_settings();
    let url = format!("http://127.0.0.1:{}", closed_port().await);

    let output = salvage(
        &["migrate"],
        &[
            ("DATABASE_URL", settings.database_url.expose_secret()),
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
