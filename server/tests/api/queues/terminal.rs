//! `salvage replay` and `salvage expire` from the terminal: finished, killed with -9,
//! interrupted with Ctrl-C and stopped with SIGTERM.

use super::*;

#[tokio::test]
async fn salvage_replay_and_expire_work_from_the_terminal() {
    let app = app_with_parked_rows(1, 250).await;

    // A batch the setting would refuse is refused here too, before anything runs.
    let small = crate::cli::salvage_on(&app, &["replay", "--reason", "drill", "--batch", "20"], "");
    assert_eq!(small.status.code(), Some(2));
    let refused = String::from_utf8_lossy(&small.stderr);
    assert!(
        refused.contains("--batch") && refused.contains("100 to 50000 rows"),
        "{refused}"
    );
    assert_eq!(queued(&app).await, 250);

    let output =
        crate::cli::salvage_on(&app, &["replay", "--reason", "drill", "--batch", "100"], "");

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("succeeded: 250 rows replayed"), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("250 rows / 250 rows"));
    assert_eq!(clickhouse_counts(&app).await, (250, 250));
    assert_eq!(queued(&app).await, 0);

    let output = crate::cli::salvage_on(&app, &["expire"], "");
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("requests: nothing older than the TTL")
    );
}

/// Parks `n` valid rows in the requests queue directly (as an outage would leave them).
async fn park_rows(app: &TestApp, n: i64) {
    sqlx::query(
        "insert into requests_fallback (id, ts, row_json)
         select u, now(), json_build_object(
                  'id', u, 'ts', to_char(now() at time zone 'utc', 'YYYY-MM-DD HH24:MI:SS'),
                  'ts_ms', 0, 'organization_id', 'org_kill', 'project', 'kill',
                  'provider', 'openai', 'model', 'gpt-4o-mini', 'status', 200,
                  'latency_ms', 100, 'prompt_tokens', 10, 'completion_tokens', 5,
                  'cost_usd', 0.0001, 'error', null)::text
           from (select gen_random_uuid() as u from generate_series(1, $1)) rows",
    )
    .bind(n)
    .execute(&app.pg)
    .await
    .unwrap();
}

/// The `salvage` binary with only `app`'s stores in its environment, run from a
/// folder without a `.env`.
fn salvage_on(app: &TestApp) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_salvage"));
    command
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.database_url)
        .env(
            "CLICKHOUSE_URL",
            crate::helpers::base_settings().clickhouse.url.as_str(),
        )
        .env(
            "CLICKHOUSE_PASSWORD",
            secrecy::ExposeSecret::expose_secret(
                &crate::helpers::base_settings().clickhouse.password,
            ),
        )
        .env("CLICKHOUSE_DATABASE", app.clickhouse.database());
    command
}

/// Sends `SIG<name>` to `child`.
fn send_signal(child: &std::process::Child, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name}");
}

/// After a replay stopped part-way (cancelled, not killed): ClickHouse holds exactly the
/// `rows` the run counted, no id twice, fewer than `total`, and the queue the rest.
async fn assert_stopped_replay_kept_each_row_once(app: &TestApp, rows: i64, total: i64) {
    let (count, distinct) = clickhouse_counts(app).await;
    assert_eq!(count, distinct, "no id reached ClickHouse twice");
    assert_eq!(
        distinct as i64, rows,
        "the run's figure is what ClickHouse got"
    );
    assert!((distinct as i64) < total, "stopped before the end");
    assert_eq!(
        queued(app).await + distinct as i64,
        total,
        "every row is in ClickHouse or still queued"
    );
}

/// `salvage replay --batch 200` on `app`'s databases, its output captured, once it has
/// replayed at least 1,000 rows.
async fn replay_process_under_way(app: &TestApp) -> std::process::Child {
    let child = salvage_on(app)
        .args(["replay", "--batch", "200"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = crate::helpers::eventually(Duration::from_secs(30), || async {
        replay_progress(app).await.unwrap_or(0) >= 1000
    })
    .await;
    assert!(started, "the replay process made progress");
    child
}

#[tokio::test]
async fn a_replay_process_killed_mid_run_loses_and_doubles_nothing() {
    let app = spawn_app().await;
    park_rows(&app, 20_000).await;
    let mut child = replay_process_under_way(&app).await;

    child.kill().unwrap(); // SIGKILL: no chance to finish its batch or clean up
    child.wait().unwrap();

    let (count, distinct) = clickhouse_counts(&app).await;
    assert_eq!(count, distinct, "no id reached ClickHouse twice");
    assert!(
        distinct < 20_000,
        "killed before the end ({distinct} rows in)"
    );
    assert!(
        queued(&app).await + distinct as i64 >= 20_000,
        "every row is in ClickHouse or still queued"
    );

    let report = run_replay(&app, 1000).await;

    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(clickhouse_counts(&app).await, (20_000, 20_000));
    assert_eq!(queued(&app).await, 0);
}

#[tokio::test]
async fn ctrl_c_stops_a_terminal_replay_after_its_batch_and_records_it_as_cancelled() {
    // Enough rows that the interrupt lands well before the end.
    const ROWS: i64 = 100_000;
    let app = spawn_app().await;
    park_rows(&app, ROWS).await;
    let child = replay_process_under_way(&app).await;

    send_signal(&child, "INT");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();

    assert!(output.status.success(), "{:?}", output.status);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains(" cancelled: "), "{printed}");
    let (outcome, trigger, rows): (String, String, i64) = sqlx::query_as(
        "select outcome, trigger, rows_processed from cron_job_runs
          where job_name = 'replay-fallback'",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!((outcome.as_str(), trigger.as_str()), ("cancelled", "cli"));
    assert_stopped_replay_kept_each_row_once(&app, rows, ROWS).await;
}

#[tokio::test]
async fn sigterm_during_a_replay_stops_in_time_records_it_as_cancelled_and_loses_nothing() {
    const ROWS: i64 = 200_000;
    let app = spawn_app().await;
    park_rows(&app, ROWS).await;
    let port = crate::helpers::free_port().await;
    let address = format!("http://127.0.0.1:{port}");
    let mut server = salvage_on(&app)
        .arg("serve")
        .env("SALVAGE_ADDR", format!("127.0.0.1:{port}"))
        .env("SALVAGE_SCHEDULER", "off")
        .env("SALVAGE_SHUTDOWN_GRACE_SECS", "30")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let up = crate::helpers::eventually(Duration::from_secs(30), || async {
        http.get(format!("{address}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(up, "salvage serve came up");

    // The replay, through the cron route: the request stays open while the job works.
    let call = tokio::spawn(
        http.post(format!("{address}/cron/replay-fallback"))
            .bearer_auth(CRON_SECRET)
            .send(),
    );
    let working = crate::helpers::eventually(Duration::from_secs(60), || async {
        let done = replay_progress(&app).await;
        done.unwrap_or(0) >= 20_000
    })
    .await;
    assert!(working, "the replay made progress");

    let signalled = std::time::Instant::now();
    send_signal(&server, "TERM");
    let exit = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();

    // It stopped within its shutdown grace (plus a little for the process to exit), and
    // cleanly: the running job stopped after its batch and said so.
    assert!(
        signalled.elapsed() < Duration::from_secs(40),
        "salvage serve took {:?} to stop",
        signalled.elapsed()
    );
    assert!(exit.success(), "{exit:?}");
    let (outcome, rows): (String, i64) = sqlx::query_as(
        "select outcome, rows_processed from cron_job_runs where job_name = 'replay-fallback'",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(
        outcome, "cancelled",
        "the run says cancelled, not abandoned"
    );
    let response = call.await.unwrap().expect("the caller got its answer");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["outcome"], "cancelled", "{body}");

    assert_stopped_replay_kept_each_row_once(&app, rows, ROWS).await;

    // The next replay finishes the queue.
    let report = run_replay(&app, 5000).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(clickhouse_counts(&app).await, (ROWS as u64, ROWS as u64));
    assert_eq!(queued(&app).await, 0);
}
