//! The runbook history: append-only, chained, searchable, exportable.

use app::auth::ssr::Actor;
use app::auth::Role;
use app::history::ssr::{append, search, Filter, NewEntry};
use app::history::Outcome;
use serde_json::json;
use sqlx::{Connection, Executor};
use time::{Duration, OffsetDateTime};

use crate::helpers::{spawn_app, TestApp};

/// Verifies the chain as the console does (every hash recomputed in Rust).
pub(crate) async fn verify(app: &TestApp) -> Result<app::history::ChainReport, sqlx::Error> {
    app::history::chain::verify(&app.pg, &app.clickhouse, OffsetDateTime::now_utc(), "test").await
}

/// Details of any kind and shape, as only a test writes them (the product declares one
/// type per kind).
pub(crate) struct Raw(pub app::history::EntryKind, pub serde_json::Value);

impl serde::Serialize for Raw {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.1.serialize(serializer)
    }
}

impl app::history::ssr::Details for Raw {
    fn kind(&self) -> app::history::EntryKind {
        self.0
    }
}

/// An entry of `kind` with no details.
pub(crate) fn plain(kind: app::history::EntryKind) -> Raw {
    Raw(kind, serde_json::json!({}))
}

pub(crate) fn note(title: &str) -> NewEntry {
    NewEntry::new(
        app::history::ssr::Note {},
        title,
        &Actor::system("test"),
        Outcome::Info,
    )
}

pub(crate) async fn append_one(app: &TestApp, entry: NewEntry) -> i64 {
    let mut conn = app.pg.acquire().await.unwrap();
    append(&mut conn, &entry).await.unwrap()
}

#[tokio::test]
async fn an_entry_written_in_a_transaction_that_rolls_back_is_gone_with_it() {
    let app = spawn_app().await;
    let mut tx = app.pg.begin().await.unwrap();
    append(&mut tx, &note("never happened")).await.unwrap();

    tx.rollback().await.unwrap();

    assert_eq!(app.count("runbook_history").await, 0);
    // The chain has no gap where the rolled-back entry was.
    assert_eq!(append_one(&app, note("first real entry")).await, 1);
    assert!(verify(&app).await.unwrap().first_broken.is_none());
}

#[tokio::test]
async fn update_delete_and_truncate_are_refused() {
    let app = spawn_app().await;
    append_one(&app, note("keep me")).await;

    for statement in [
        "update runbook_history set title = 'changed'",
        "delete from runbook_history",
        "truncate runbook_history",
    ] {
        let error = sqlx::query(statement).execute(&app.pg).await.unwrap_err();
        assert!(
            error.to_string().contains("append-only"),
            "{statement}: {error}"
        );
    }
    let title: String = sqlx::query_scalar("select title from runbook_history")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(title, "keep me");
}

/// Runs `statement` with the append-only trigger switched off, as a superuser could.
pub(crate) async fn behind_the_triggers_back(app: &TestApp, statement: &str) {
    let url = app.pg.connect_options().clone();
    let mut conn = sqlx::PgConnection::connect_with(&url).await.unwrap();
    conn.execute("alter table runbook_history disable trigger runbook_history_append_only")
        .await
        .unwrap();
    conn.execute(statement).await.unwrap();
    conn.execute("alter table runbook_history enable trigger runbook_history_append_only")
        .await
        .unwrap();
}

#[tokio::test]
async fn verify_finds_an_entry_altered_behind_the_triggers_back() {
    let app = spawn_app().await;
    for n in 1..=5 {
        append_one(&app, note(&format!("entry {n}"))).await;
    }
    assert!(verify(&app).await.unwrap().first_broken.is_none());

    behind_the_triggers_back(
        &app,
        "update runbook_history set title = 'rewritten' where id = 3",
    )
    .await;

    let report = verify(&app).await.unwrap();
    let broken = report.first_broken.expect("the change is found");
    assert_eq!(broken.id, 3);
    assert!(
        broken.problem.contains("changed after it was written"),
        "{}",
        broken.problem
    );
}

#[tokio::test]
async fn verify_finds_a_deleted_entry_and_a_rehashed_one() {
    let app = spawn_app().await;
    for n in 1..=5 {
        append_one(&app, note(&format!("entry {n}"))).await;
    }

    behind_the_triggers_back(&app, "delete from runbook_history where id = 2").await;
    let deleted = verify(&app).await.unwrap().first_broken.unwrap();
    // Rewriting an entry and recomputing its hash breaks the next entry's link.
    behind_the_triggers_back(
        &app,
        "update runbook_history h set title = 'forged' where id = 4;
         update runbook_history h set hash = runbook_history_digest(h) where id = 4",
    )
    .await;
    behind_the_triggers_back(&app, "delete from runbook_history where id in (1, 3)").await;
    let rehashed = verify(&app).await.unwrap().first_broken.unwrap();

    assert_eq!(deleted.id, 3);
    assert!(
        deleted.problem.contains("does not link"),
        "{}",
        deleted.problem
    );
    assert_eq!(rehashed.id, 4, "{}", rehashed.problem);
}

#[tokio::test]
async fn two_writers_at_once_make_one_unbroken_chain() {
    let app = spawn_app().await;
    let writer = |name: &'static str| {
        let pg = app.pg.clone();
        tokio::spawn(async move {
            for n in 0..25 {
                let mut tx = pg.begin().await.unwrap();
                append(&mut tx, &note(&format!("{name} {n}")))
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
        })
    };

    let (a, b) = tokio::join!(writer("a"), writer("b"));
    a.unwrap();
    b.unwrap();

    let report = verify(&app).await.unwrap();
    assert_eq!(report.entries, 50);
    assert!(report.first_broken.is_none(), "{:?}", report.first_broken);
    let max: i64 = sqlx::query_scalar("select max(id) from runbook_history")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(max, 50);
}

#[tokio::test]
async fn keyset_pages_cover_every_entry_once_newest_first() {
    let app = spawn_app().await;
    let base = OffsetDateTime::now_utc() - Duration::days(30);
    let mut tx = app.pg.begin().await.unwrap();
    for n in 0..130i64 {
        // Pairs share a start time, so the id must break ties.
        let at = base + Duration::hours(n / 2);
        append(
            &mut tx,
            &note(&format!("entry {n}")).with_times(at, Some(at)),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let mut seen = Vec::new();
    let mut filter = Filter::default();
    loop {
        let (entries, more) = search(&app.pg, &filter, 50, time::OffsetDateTime::now_utc())
            .await
            .unwrap();
        seen.extend(entries.iter().map(|e| (e.started_at, e.id)));
        if !more {
            break;
        }
        let cursor = app::history::ssr::cursor_after(entries.last().unwrap());
        filter.before = Some(app::history::ssr::parse_cursor(&cursor).unwrap());
    }

    assert_eq!(seen.len(), 130);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first, no repeats");
    sorted.dedup();
    assert_eq!(sorted.len(), 130);
}

#[tokio::test]
async fn filters_narrow_by_kind_actor_outcome_time_and_text() {
    let app = spawn_app().await;
    let operator = Actor {
        user_id: None,
        name: "ops@example.com".into(),
        role: Role::Operator,
        must_change_password: false,
    };
    let now = OffsetDateTime::now_utc();
    let drill = |title: &str, outcome, days: i64| {
        NewEntry::new(
            plain(app::history::EntryKind::Drill),
            title,
            &Actor::system("scheduler"),
            outcome,
        )
        .with_times(
            now - Duration::days(days),
            Some(now - Duration::days(days) + Duration::minutes(9)),
        )
    };
    for entry in [
        drill("Weekly restore drill", Outcome::Succeeded, 20),
        drill("Weekly restore drill", Outcome::Failed, 13),
        drill("Weekly restore drill", Outcome::Succeeded, 6),
        NewEntry::new(
            app::history::ssr::Note {},
            "Disk on ch-2 replaced",
            &operator,
            Outcome::Info,
        )
        .with_body("The disk was full"),
    ] {
        append_one(&app, entry).await;
    }
    let titles = |filter: Filter| {
        let pg = app.pg.clone();
        async move {
            search(&pg, &filter, 50, time::OffsetDateTime::now_utc())
                .await
                .unwrap()
                .0
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };

    assert_eq!(
        titles(Filter {
            kind: Some("drill".into()),
            ..Filter::default()
        })
        .await,
        vec![3, 2, 1]
    );
    assert_eq!(
        titles(Filter {
            outcome: Some(Outcome::Failed),
            ..Filter::default()
        })
        .await,
        vec![2]
    );
    assert_eq!(
        titles(Filter {
            actor: Some("ops@example.com".into()),
            ..Filter::default()
        })
        .await,
        vec![4]
    );
    assert_eq!(
        titles(Filter {
            from: Some(now - Duration::days(14)),
            to: Some(now - Duration::days(1)),
            ..Filter::default()
        })
        .await,
        vec![3, 2]
    );
    assert_eq!(
        titles(Filter {
            text: app::history::ssr::text_query("dis FULL").unwrap(),
            ..Filter::default()
        })
        .await,
        vec![4]
    );
    assert!(titles(Filter {
        text: app::history::ssr::text_query("nothing-like-this").unwrap(),
        ..Filter::default()
    })
    .await
    .is_empty());
}

#[tokio::test]
async fn an_incident_shows_its_timeline_and_resolution() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    let manager = app.signed_in(Role::Manager).await;
    let (_, id) = operator
        .call(
            "history/incident",
            json!({"title": "ClickHouse down in eu-1", "severity": "sev1",
              "started_at": "2026-11-20T09:00", "resolved_at": "", "body": "Inserts failing"}),
        )
        .await;
    let id = id.as_i64().unwrap();
    manager
        .call(
            "history/note",
            json!({"title": "", "body": "Status page updated", "incident_id": id.to_string()}),
        )
        .await;
    // An admin resolves it past the post-recovery checklist (incident mode's own tests
    // cover the checklist), with the reason kept.
    let admin = app.signed_in(Role::Admin).await;
    let (status, body) = admin
        .call(
            "history/resolve",
            json!({"incident_id": id, "resolved_at": "2026-11-20T11:30", "body": "Disk replaced",
                   "override_reason": "checked by hand"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, view) = manager.call("history/entry", json!({"id": id})).await;

    assert_eq!(status, 200, "{view}");
    assert_eq!(view["entry"]["severity"], "sev1");
    let timeline: Vec<&str> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    // Chronological: the resolution was back-dated to 11:30 on the 20th; the status
    // snapshot taken when it was declared and the note are from now.
    assert_eq!(
        timeline,
        vec!["incident_resolved", "incident_snapshot", "note"]
    );
    let resolved =
        OffsetDateTime::from_unix_timestamp(view["resolved_at"].as_i64().unwrap() / 1000).unwrap();
    assert_eq!((resolved.hour(), resolved.minute()), (11, 30));
    // Its page says when it finished and how long it lasted: from 09:00 to the
    // resolution at 11:30.
    let (_, html) = manager.get_html(&format!("/admin/history/{id}")).await;
    let facts = html
        .split("<dt>Finished</dt>")
        .nth(1)
        .expect("a Finished fact");
    let facts = &facts[..facts.find("<dt>Reason</dt>").expect("then the reason")];
    assert!(facts.contains("2026-11-20 11:30"), "{facts}");
    assert!(facts.contains("2 h 30 min"), "{facts}");
    let (again, body) = operator
        .call(
            "history/resolve",
            json!({"incident_id": id, "resolved_at": "", "body": ""}),
        )
        .await;
    assert_eq!(again, 409, "{body}");
}

#[tokio::test]
async fn bad_input_names_the_field_and_writes_nothing() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    let before = app.count("runbook_history").await;
    let cases = [
        (
            "history/note",
            json!({"title": "", "body": "   ", "incident_id": ""}),
            "body",
        ),
        (
            "history/note",
            json!({"title": "", "body": "x", "incident_id": "abc"}),
            "incident_id",
        ),
        (
            "history/note",
            json!({"title": "", "body": "x", "incident_id": "999"}),
            "incident_id",
        ),
        (
            "history/incident",
            json!({"title": "x", "severity": "sev9", "started_at": "", "resolved_at": "", "body": ""}),
            "severity",
        ),
        (
            "history/incident",
            json!({"title": "", "severity": "sev1", "started_at": "", "resolved_at": "", "body": ""}),
            "title",
        ),
        (
            "history/incident",
            json!({"title": "x", "severity": "sev1", "started_at": "2026-11-20T10:00", "resolved_at": "2026-11-20T09:00", "body": ""}),
            "resolved_at",
        ),
        (
            "history/search",
            json!({"kind": "", "actor": "", "outcome": "", "from": "last week", "to": "", "q": "", "before": ""}),
            "from",
        ),
        (
            "history/search",
            json!({"kind": "", "actor": "", "outcome": "", "from": "", "to": "", "q": "", "before": "garbage"}),
            "before",
        ),
        (
            "history/search",
            json!({"kind": "", "actor": "", "outcome": "won", "from": "", "to": "", "q": "", "before": ""}),
            "outcome",
        ),
    ];
    for (endpoint, args, field) in cases {
        let (status, body) = operator.call(endpoint, args).await;
        assert_eq!(status, 422, "{endpoint}: {body}");
        assert_eq!(body["field"], field, "{endpoint}: {body}");
    }
    assert_eq!(app.count("runbook_history").await, before);
}

#[tokio::test]
async fn the_export_holds_the_filtered_entries_as_csv_and_markdown() {
    let app = spawn_app().await;
    let manager = app.signed_in(Role::Manager).await;
    append_one(&app, note("=HYPERLINK(\"x\") | pipe")).await;
    append_one(
        &app,
        NewEntry::new(
            plain(app::history::EntryKind::Drill),
            "Weekly restore drill",
            &Actor::system("s"),
            Outcome::Succeeded,
        ),
    )
    .await;

    let (csv_status, csv) = manager
        .get_html("/admin/history/export?format=csv&kind=note")
        .await;
    let (md_status, markdown) = manager
        .get_html("/admin/history/export?format=markdown")
        .await;
    let (bad_status, bad) = manager.get_json("/admin/history/export?format=pdf").await;

    assert_eq!(csv_status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("id,started_at"));
    assert!(
        lines[1].contains("\"'=HYPERLINK(\"\"x\"\") | pipe\""),
        "{}",
        lines[1]
    );
    assert_eq!(md_status, 200);
    assert!(markdown.contains("| Weekly restore drill |"), "{markdown}");
    assert!(
        markdown.contains("=HYPERLINK(\"x\") \\| pipe"),
        "{markdown}"
    );
    assert_eq!(bad_status, 422);
    assert_eq!(bad["field"], "format");
}

#[tokio::test]
async fn every_user_change_is_in_the_history_with_who_and_why() {
    let app = spawn_app().await;
    let admin = app.signed_in(Role::Admin).await;
    let (_, added) = admin
        .call(
            "settings/users/add",
            json!({"email": "ann@example.com", "role": "operator", "reason": "on-call rota"}),
        )
        .await;
    let id = added["user_id"].as_i64().unwrap();
    admin
        .call(
            "settings/users/role",
            json!({"user_id": id, "role": "manager", "reason": "promoted"}),
        )
        .await;
    admin
        .call(
            "settings/users/disabled",
            json!({"user_id": id, "disabled": true, "reason": "left"}),
        )
        .await;

    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "select title, reason from runbook_history where kind = 'user_change' and details->>'email' = 'ann@example.com' order by id",
    )
    .fetch_all(&app.pg)
    .await
    .unwrap();

    assert_eq!(
        rows,
        vec![
            (
                "Added ann@example.com as operator".to_owned(),
                Some("on-call rota".to_owned())
            ),
            (
                "Changed ann@example.com from operator to manager".to_owned(),
                Some("promoted".to_owned())
            ),
            (
                "Disabled ann@example.com".to_owned(),
                Some("left".to_owned())
            ),
        ]
    );
    let temporary = added["temporary_password"]["shownOnce"].as_str().unwrap();
    assert!(!rows.iter().any(|(title, _)| title.contains(temporary)));
    let details: String =
        sqlx::query_scalar("select string_agg(details::text, ' ') from runbook_history")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert!(
        !details.contains(temporary),
        "the temporary password is never stored"
    );
}
