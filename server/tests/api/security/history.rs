//! The history under pressure and under audit: heavy reads bounded, writes rated,
//! every read-everything action recorded, times that make sense.

use app::auth::Role;
use serde_json::json;
use sqlx::{Connection, PgConnection};

use crate::helpers::{spawn_app, Client, TestApp};

async fn entries_of_kind(app: &TestApp, kind: &str) -> i64 {
    sqlx::query_scalar("select count(*) from runbook_history where kind = $1")
        .bind(kind)
        .fetch_one(&app.pg)
        .await
        .unwrap()
}

/// Holds the advisory lock `(class, key)` on its own connection, as a running export
/// or verification elsewhere would.
async fn hold_lock(app: &TestApp, class: i32, key: i32) -> PgConnection {
    let mut connection = PgConnection::connect(&app.database_url).await.unwrap();
    let locked: bool = sqlx::query_scalar("select pg_try_advisory_lock($1, $2)")
        .bind(class)
        .bind(key)
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert!(locked);
    connection
}

/// Lets go of every lock [`hold_lock`] took (closing alone releases it a moment later,
/// when the server notices).
async fn release(mut connection: PgConnection) {
    sqlx::query("select pg_advisory_unlock_all()")
        .execute(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
}

async fn user_id(app: &TestApp, email: &str) -> i32 {
    sqlx::query_scalar::<_, i64>("select id from users where email = $1")
        .bind(email)
        .fetch_one(&app.pg)
        .await
        .unwrap() as i32
}

#[tokio::test]
async fn exports_cancels_and_verifications_each_leave_a_history_entry() {
    let app = spawn_app().await;
    let manager = app.signed_in(Role::Manager).await;
    let operator = app.signed_in(Role::Operator).await;

    let (status, _) = manager.get_html("/admin/history/export?format=csv").await;
    assert_eq!(status, 200);
    assert_eq!(entries_of_kind(&app, "history_export").await, 1);

    let (status, body) = manager.call("history/verify", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(entries_of_kind(&app, "chain_verify").await, 1);

    let run: i64 = sqlx::query_scalar(
        "insert into cron_job_runs (job_name, ran_at, heartbeat_at, trigger, actor)
         values ('replay-fallback', now(), now(), 'cli', 'someone') returning id",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    let (status, body) = operator.call("jobs/cancel", json!({"run_id": run})).await;
    assert_eq!(status, 200, "{body}");
    let cancels: i64 = sqlx::query_scalar(
        "select count(*) from runbook_history
         where kind = 'cron' and title = $1 and actor like 'operator-%' and (details ->> 'runId')::bigint = $2",
    )
    .bind(format!("Cancel requested for replay-fallback run #{run}"))
    .bind(run)
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(cancels, 1);

    // A run that is not running: a conflict, and nothing is written.
    sqlx::query(
        "update cron_job_runs set outcome = 'cancelled', finished_at = now() where id = $1",
    )
    .bind(run)
    .execute(&app.pg)
    .await
    .unwrap();
    let entries = app.count("runbook_history").await;
    let (status, body) = operator.call("jobs/cancel", json!({"run_id": run})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(app.count("runbook_history").await, entries);
}

#[tokio::test]
async fn incident_times_must_make_sense_and_a_refusal_writes_nothing() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    let declare = |started: &str, resolved: &str| {
        let operator = operator.clone();
        let (started, resolved) = (started.to_owned(), resolved.to_owned());
        async move {
            operator
                .call(
                    "history/incident",
                    json!({"title": "Disk full", "severity": "sev2", "started_at": started,
                           "resolved_at": resolved, "body": ""}),
                )
                .await
        }
    };
    let before = app.count("runbook_history").await;
    let today = time::OffsetDateTime::now_utc().date();
    let tomorrow = today.next_day().unwrap().to_string();
    let yesterday = today.previous_day().unwrap().to_string();
    for (started, resolved, field) in [
        ("1970-01-01", "", "started_at"),
        (tomorrow.as_str(), "", "started_at"),
        (
            today.to_string().as_str(),
            yesterday.as_str(),
            "resolved_at",
        ),
        (yesterday.as_str(), tomorrow.as_str(), "resolved_at"),
    ] {
        let (status, body) = declare(started, resolved).await;
        assert_eq!(status, 422, "{started} / {resolved}: {body}");
        assert_eq!(body["field"], field, "{started} / {resolved}: {body}");
    }
    assert_eq!(app.count("runbook_history").await, before);

    let (status, body) = declare(&today.to_string(), "").await;
    assert_eq!(status, 200, "{body}");
    let incident = body.as_i64().unwrap();
    for resolved in [yesterday.as_str(), tomorrow.as_str()] {
        let (status, body) = operator
            .call(
                "history/resolve",
                json!({"incident_id": incident, "resolved_at": resolved, "body": ""}),
            )
            .await;
        assert_eq!(status, 422, "{resolved}: {body}");
        assert_eq!(body["field"], "resolved_at");
    }
    // The incident and the status snapshot taken when it was declared; no resolution.
    assert_eq!(app.count("runbook_history").await, before + 2);
}

#[tokio::test]
async fn chain_verification_is_for_managers_and_admins_one_at_a_time_and_its_last_result_shows() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    app.add_user("lead@example.com", Role::Manager).await;
    let manager = app.signed_in_as("lead@example.com").await;

    let (status, _) = operator.call("history/verify", json!({})).await;
    assert_eq!(status, 403);

    let running = hold_lock(&app, 7305, 0).await;
    let (status, body) = manager.call("history/verify", json!({})).await;
    assert_eq!(status, 409, "another verification is running: {body}");
    release(running).await;

    let (status, body) = manager.call("history/verify", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let search = json!({"kind": "", "actor": "", "outcome": "", "from": "", "to": "", "q": "",
                        "before": ""});
    let (status, page) = operator.call("history/search", search).await;
    assert_eq!(status, 200, "{page}");
    let last = &page["last_verification"];
    assert_eq!(last["verifiedBy"], "lead@example.com", "{page}");
    assert_eq!(last["entries"], body["entries"]);
    assert!(last["verifiedAt"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn an_export_streams_and_runs_once_per_person_at_a_time() {
    let app = spawn_app().await;
    app.add_user("lead@example.com", Role::Manager).await;
    let manager = app.signed_in_as("lead@example.com").await;
    for n in 0..30 {
        let (status, _) = manager
            .call(
                "history/note",
                json!({"title": "", "body": format!("note {n}"), "incident_id": ""}),
            )
            .await;
        assert_eq!(status, 200);
    }

    let running = hold_lock(&app, 7303, user_id(&app, "lead@example.com").await).await;
    let (status, _) = manager.get_html("/admin/history/export?format=csv").await;
    assert_eq!(status, 409, "one export per person at a time");
    // Somebody else may export meanwhile.
    let admin = app.signed_in(Role::Admin).await;
    assert_eq!(
        admin.get("/admin/history/export?format=csv").await.status(),
        200
    );
    release(running).await;

    let response = manager
        .get("/admin/history/export?format=csv&kind=note")
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("content-length").is_none(),
        "streamed, not built in memory first"
    );
    let body = response.text().await.unwrap();
    assert_eq!(body.lines().count(), 31, "a header and 30 notes");
}

#[tokio::test]
async fn notes_are_capped_in_size_and_in_rate_per_person() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    let note = |body: String| {
        let operator = operator.clone();
        async move {
            let response = operator
                .call_server_fn(
                    "history/note",
                    json!({"title": "", "body": body, "incident_id": ""}),
                )
                .await;
            let status = response.status().as_u16();
            let retry = response.headers().get("retry-after").cloned();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, retry, body)
        }
    };
    let (status, _, body) = note("x".repeat(10_001)).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("body")),
        "{body}"
    );

    for n in 0..30 {
        assert_eq!(note(format!("note {n}")).await.0, 200);
    }
    let (status, retry, _) = note("one too many".into()).await;
    assert_eq!(status, 429);
    assert!(retry.is_some());
    assert_eq!(entries_of_kind(&app, "note").await, 30);
    // Another person is not slowed by it.
    let other = app.signed_in(Role::Operator).await;
    let (status, _) = other
        .call(
            "history/note",
            json!({"title": "", "body": "mine", "incident_id": ""}),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn text_search_needs_two_characters_per_word() {
    let app = spawn_app().await;
    let operator: Client = app.signed_in(Role::Operator).await;
    let search = |q: &str| json!({"kind": "", "actor": "", "outcome": "", "from": "", "to": "", "q": q, "before": ""});

    let (status, body) = operator
        .call("history/search", search("a b c d e f g h"))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "q");

    let (status, body) = operator.call("history/search", search("disk full")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn verify_recomputes_every_hash_so_a_replaced_digest_function_hides_nothing() {
    use crate::history::{append_one, behind_the_triggers_back, note, verify, Raw};
    let app = spawn_app().await;
    // Contents that exercise every escape of the canonical form.
    let details = Raw(
        app::history::EntryKind::Note,
        json!({"b": 1.50, "a": [1, "x\"y", null],
               "nested": {"z": null, "long key": true, "k": -2.5e-3}}),
    );
    append_one(
        &app,
        app::history::ssr::NewEntry::new(
            details,
            "first \"quoted\" \\ title",
            &app::auth::ssr::Actor::system("test"),
            app::history::Outcome::Info,
        )
        .with_body("line one\n\tline two \u{1} é ✓ 🚒 \r\u{8}\u{c}")
        .with_reason(Some(crate::helpers::reason("because / why"))),
    )
    .await;
    for n in 2..=4 {
        append_one(
            &app,
            note(&format!("entry {n}")).with_severity(Some("sev3".into())),
        )
        .await;
    }
    let report = verify(&app).await.unwrap();
    assert!(report.first_broken.is_none(), "{report:?}");

    // The schema's owner makes the database's digest trust whatever is stored, then
    // edits an entry: a check done by that SQL function would now pass.
    behind_the_triggers_back(
        &app,
        "create or replace function runbook_history_digest(h runbook_history) returns bytea
         language sql stable as $$ select h.hash $$;
         update runbook_history set title = 'forged' where id = 2",
    )
    .await;
    let fooled: i64 = sqlx::query_scalar(
        "select count(*) from runbook_history h where hash <> runbook_history_digest(h)",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(fooled, 0, "the replaced function sees nothing wrong");

    let broken = verify(&app).await.unwrap().first_broken.expect("found");
    assert_eq!(broken.id, 2);
    assert!(
        broken.problem.contains("changed after it was written"),
        "{}",
        broken.problem
    );
}

#[tokio::test]
async fn deleting_or_rewriting_the_newest_entries_shows_against_the_anchors() {
    use crate::history::{append_one, behind_the_triggers_back, note, verify};
    use app::history::anchor::anchor_head;
    let app = spawn_app().await;
    for n in 1..=20 {
        append_one(&app, note(&format!("entry {n}"))).await;
    }
    assert_eq!(
        anchor_head(&app.pg, &app.clickhouse, None).await.unwrap(),
        20
    );
    let report = verify(&app).await.unwrap();
    assert!(report.intact(), "{report:?}");
    assert_eq!(report.anchors.checked, 1);
    assert_eq!(report.anchors.newest_seq, Some(20));

    // The newest ten go, with the append-only trigger disabled: what is left still
    // links up perfectly.
    behind_the_triggers_back(&app, "delete from runbook_history where id > 10").await;
    let report = verify(&app).await.unwrap();
    assert!(report.first_broken.is_none(), "the chain alone cannot tell");
    let problem = report.anchors.problem.expect("the anchors can");
    assert!(problem.contains("newest entries are gone"), "{problem}");
    assert!(
        problem.contains("#20") && problem.contains("#10"),
        "{problem}"
    );

    // Refilled with ten new entries up to the same id: linked, but not what was anchored.
    for n in 11..=20 {
        append_one(&app, note(&format!("rewritten {n}"))).await;
    }
    let report = verify(&app).await.unwrap();
    assert!(report.first_broken.is_none());
    let problem = report.anchors.problem.expect("a rewrite");
    assert!(
        problem.contains("#20") && problem.contains("rewritten"),
        "{problem}"
    );

    // The console's button records the failure.
    let manager = app.signed_in(Role::Manager).await;
    let (status, body) = manager.call("history/verify", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let outcome: String = sqlx::query_scalar(
        "select outcome from runbook_history where kind = 'chain_verify' order by id desc limit 1",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(outcome, "failed");
}
