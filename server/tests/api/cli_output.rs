//! Output for scripts and shells: `salvage completions …` and the list commands' `--json`.

use serde_json::Value;

use crate::cli::{salvage_env, salvage_on};
use crate::helpers::{spawn_app, TestApp};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A completion script for each shell, printed with no settings at all (no `.env`, no
/// `DATABASE_URL`), naming nested commands and their flags.
#[test]
fn completions_need_no_settings_and_cover_nested_commands() {
    for (shell, marker) in [
        ("bash", "complete -F _salvage"),
        ("zsh", "#compdef salvage"),
        ("fish", "complete -c salvage"),
    ] {
        let output = salvage_env(&["completions", shell], "", &[]);
        assert!(output.status.success(), "{shell}: {}", text(&output.stderr));
        let script = text(&output.stdout);
        assert!(script.contains(marker), "{shell}: no `{marker}`");
        for word in ["ingest-key", "cron-secret", "rollback-to", "json"] {
            assert!(script.contains(word), "{shell}: `{word}` is not completed");
        }
    }
    // The bash script is valid bash.
    let path = std::env::temp_dir().join(format!("salvage-completion-{}.bash", std::process::id()));
    std::fs::write(&path, salvage_env(&["completions", "bash"], "", &[]).stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(check.status.success(), "{}", text(&check.stderr));

    let unknown = salvage_env(&["completions", "powershell7"], "", &[]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("invalid value"));
}

/// Runs a list command with `--json`; returns its exit code and the parsed array.
fn list_json(app: &TestApp, args: &[&str]) -> (Option<i32>, Vec<Value>) {
    let mut args = args.to_vec();
    args.push("--json");
    let output = salvage_on(app, &args, "");
    let stdout = text(&output.stdout);
    let rows: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("{args:?}: not JSON ({error}): {stdout}"));
    let Value::Array(rows) = rows else {
        panic!("{args:?}: not an array: {stdout}")
    };
    (output.status.code(), rows)
}

/// Every list command prints its rows as one JSON array, with the rows its table shows
/// (never a secret) and the same exit code.
#[tokio::test]
async fn list_commands_print_their_rows_as_json() {
    let app = spawn_app().await;
    app.add_user("lead@example.com", app::auth::Role::Manager)
        .await;
    let created = salvage_on(
        &app,
        &[
            "ingest-key",
            "create",
            "--name",
            "gateway",
            "--organization",
            "*",
        ],
        "",
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let secret = text(&created.stdout).trim().to_owned();
    let (hook, secret_of_hook) =
        crate::dead_letters::webhook_for(&app, "http://127.0.0.1:9/hook", 3, &["order.paid"]).await;
    crate::backups::back_up(&app).await;
    crate::alerts::raise_data_expired(&app, "cli").await;

    let (code, users) = list_json(&app, &["user", "list"]);
    assert_eq!(code, Some(0));
    let lead = users
        .iter()
        .find(|u| u["email"] == "lead@example.com")
        .expect("the added user");
    assert_eq!(lead["role"], "manager");
    assert_eq!(lead["disabled"], false);

    let (code, keys) = list_json(&app, &["ingest-key", "list"]);
    assert_eq!(code, Some(0));
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["name"], "gateway");
    assert_eq!(keys[0]["organization_id"], "*");
    let listed = serde_json::to_string(&keys).unwrap();
    assert!(
        !listed.contains(&secret),
        "the key's secret is never listed"
    );

    let (code, backups) = list_json(&app, &["backup", "list"]);
    assert_eq!(code, Some(0));
    let mut stores: Vec<&str> = backups
        .iter()
        .map(|b| b["store"].as_str().unwrap())
        .collect();
    stores.sort_unstable();
    assert_eq!(stores, ["clickhouse", "postgres"]);
    assert!(
        backups.iter().all(|b| b["status"] == "verified"),
        "{backups:?}"
    );

    // A critical alert is open: the JSON lists it and the exit code is still 1.
    let (code, alerts) = list_json(&app, &["alerts", "list"]);
    assert_eq!(code, Some(1));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["kind"], "data_expired");
    assert_eq!(alerts[0]["severity"], "critical");

    let (code, webhooks) = list_json(&app, &["webhook", "list"]);
    assert_eq!(code, Some(0));
    assert_eq!(webhooks.len(), 1);
    assert_eq!(webhooks[0]["id"], hook);
    assert_eq!(
        webhooks[0]["event_types"],
        serde_json::json!(["order.paid"])
    );
    assert!(!serde_json::to_string(&webhooks)
        .unwrap()
        .contains(&secret_of_hook));

    let (code, migrations) = list_json(&app, &["migrations", "list"]);
    assert_eq!(code, Some(0));
    let shipped = app::registry::BACKGROUND_MIGRATIONS[0].name;
    assert!(
        migrations.iter().any(|m| m["name"] == shipped),
        "{migrations:?}"
    );

    let (code, drills) = list_json(&app, &["drill", "list"]);
    assert_eq!((code, drills.len()), (Some(0), 0));

    let (code, secrets) = list_json(&app, &["cron-secret", "list"]);
    assert_eq!(code, Some(0));
    assert_eq!(secrets.len(), 1, "the test app's one cron secret");
    let listed = serde_json::to_string(&secrets).unwrap();
    assert!(!listed.contains(crate::helpers::CRON_SECRET));

    let (_, jobs) = list_json(&app, &["cron", "list"]);
    let mut names: Vec<&str> = jobs.iter().map(|j| j["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    let mut expected = app::crons::JOB_NAMES.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
}
