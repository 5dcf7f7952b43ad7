//! The overview as the recovery posture, against the real stores: each reason a store
//! falls short of its objectives appears when it holds and goes when it stops holding,
//! and the page says so in words.

use app::drills::DrillStore;
use serde_json::Value;

use crate::backups::{app_with_data, back_up, damage_events_file};
use app::auth::Role;

use crate::helpers::{run_failing_job, run_job, spawn_app_without_clickhouse, TestApp};

/// Each store's shortfalls, by kind: `[postgres kinds, clickhouse kinds]`.
async fn shortfalls(app: &TestApp) -> [Vec<String>; 2] {
    let (status, body) = app.signed_in(Role::Manager).await.posture().await;
    assert_eq!(status, 200, "{body}");
    let of = |store: &str| -> Vec<String> {
        let posture = body["recovery"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["store"] == store)
            .unwrap_or_else(|| panic!("{store} in {body}"));
        posture["shortfalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    [of("postgres"), of("clickhouse")]
}

fn kinds(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The page's verdict lines: `(store, verdict)` in order.
async fn verdicts(app: &TestApp) -> (Vec<(String, String)>, String) {
    let (status, html) = app.signed_in(Role::Manager).await.get_html("/admin").await;
    assert_eq!(status, 200);
    let mut out = Vec::new();
    for part in html.split("data-store=\"").skip(1) {
        let store = part.split('"').next().unwrap().to_owned();
        if let Some(rest) = part.strip_prefix(&format!("{store}\" data-verdict=\"")) {
            out.push((store, rest.split('"').next().unwrap().to_owned()));
        }
    }
    (out, html)
}

/// Sets drill `id`'s recovery time of `store` as if it had taken `ms`.
async fn record_recovery(app: &TestApp, id: i64, store: app::drills::StoreKind, ms: i64) {
    let stores: Value = sqlx::query_scalar("select stores from drills where id = $1")
        .bind(id)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    let mut stores: Vec<DrillStore> = serde_json::from_value(stores).unwrap();
    stores
        .iter_mut()
        .filter(|s| s.store == store)
        .for_each(|s| s.recovery_ms = ms);
    sqlx::query("update drills set stores = $1 where id = $2")
        .bind(serde_json::to_value(&stores).unwrap())
        .bind(id)
        .execute(&app.pg)
        .await
        .unwrap();
}

#[tokio::test]
async fn each_reason_a_store_falls_short_appears_while_it_holds_and_all_green_says_so() {
    let app = app_with_data().await;

    // Nothing backed up, nothing drilled.
    let none = kinds(&["no_recoverable_point", "never_drilled"]);
    assert_eq!(shortfalls(&app).await, [none.clone(), none]);
    let (lines, html) = verdicts(&app).await;
    assert_eq!(
        lines,
        vec![
            ("postgres".into(), "short".into()),
            ("clickhouse".into(), "short".into())
        ],
        "{html}"
    );
    assert!(
        html.contains("No verified backup and no point-in-time window: nothing to restore from."),
        "{html}"
    );

    // Backed up and verified: the recovery time is still unproven.
    let (_, ch_backup) = back_up(&app).await;
    let never = kinds(&["never_drilled"]);
    assert_eq!(shortfalls(&app).await, [never.clone(), never]);

    // A passing drill within the RTO: both recoverable within their objectives.
    let drill = run_job(&app, "restore-drill").await;
    assert_eq!(drill["outcome"], "succeeded", "{drill}");
    assert_eq!(shortfalls(&app).await, [kinds(&[]), kinds(&[])]);
    let (lines, html) = verdicts(&app).await;
    assert_eq!(
        lines,
        vec![
            ("postgres".into(), "ok".into()),
            ("clickhouse".into(), "ok".into())
        ],
        "{html}"
    );
    assert!(
        html.contains("can be recovered within its objectives (RPO 24 h 00 min, RTO 1 h 00 min)"),
        "{html}"
    );

    // The drill took two hours for PostgreSQL (recorded so: the test's data restores in
    // a second): over its one-hour RTO, and only PostgreSQL is short.
    let drill_id = drill["drillId"].as_i64().unwrap();
    record_recovery(&app, drill_id, app::drills::StoreKind::Postgres, 7_200_000).await;
    assert_eq!(
        shortfalls(&app).await,
        [kinds(&["drill_over_rto"]), kinds(&[])]
    );
    let (_, html) = verdicts(&app).await;
    assert!(
        html.contains(&format!(
            "Drill {drill_id} took 2 h 00 min to recover it; the RTO is 1 h 00 min."
        )),
        "{html}"
    );

    // The next drill restores a damaged ClickHouse backup and fails there: ClickHouse's
    // newest drill failed; PostgreSQL's part of it passed within the RTO.
    damage_events_file(&app, ch_backup).await;
    let failed = run_failing_job(&app, "restore-drill").await;
    let failed_id = failed["drillId"].as_i64().unwrap();
    assert_eq!(
        shortfalls(&app).await,
        [kinds(&[]), kinds(&["drill_failed"])],
        "{failed}"
    );
    let (_, html) = verdicts(&app).await;
    assert!(
        html.contains(&format!(
            "The last drill (drill {failed_id}) failed to restore it."
        )),
        "{html}"
    );

    // A day and an hour later the newest backups are older than the 24-hour RPO.
    app.state.clock.advance(time::Duration::hours(25));
    assert_eq!(
        shortfalls(&app).await,
        [
            kinds(&["beyond_rpo"]),
            kinds(&["beyond_rpo", "drill_failed"])
        ]
    );

    // Ninety days on, the functional drill is overdue as well.
    app.state.clock.advance(time::Duration::days(90));
    assert_eq!(
        shortfalls(&app).await,
        [
            kinds(&["beyond_rpo", "drill_overdue"]),
            kinds(&["beyond_rpo", "drill_failed", "drill_overdue"])
        ]
    );
}

#[tokio::test]
async fn a_failing_backup_is_named_for_its_store_only() {
    let app = spawn_app_without_clickhouse().await;

    let answer = run_job(&app, "backup").await;
    assert_eq!(answer["outcome"], "partial", "{answer}");

    let [postgres, clickhouse] = shortfalls(&app).await;
    assert!(
        !postgres.contains(&"backups_failing".to_owned()),
        "{answer}"
    );
    assert!(
        clickhouse.contains(&"backups_failing".to_owned()),
        "{clickhouse:?}: {answer}"
    );
    let (_, html) = verdicts(&app).await;
    assert!(html.contains("Backups are failing: backup "), "{html}");
}

#[tokio::test]
async fn the_rest_of_the_system_counts_what_needs_a_person_and_links_to_it() {
    let app = app_with_data().await;
    let (status, body) = app.signed_in(Role::Manager).await.posture().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["system"]["deadLetters"], 0, "{body}");
    assert_eq!(body["system"]["openIncidents"], serde_json::json!([]));

    // An incident declared: the overview lists it with a link to its page.
    let admin = app.signed_in(Role::Admin).await;
    let (status, declared) = admin
        .call(
            "history/incident",
            serde_json::json!({"title": "ClickHouse lost its disk", "severity": "sev1",
              "started_at": "", "resolved_at": "", "body": ""}),
        )
        .await;
    assert_eq!(status, 200, "{declared}");
    let (_, body) = admin.posture().await;
    let open = &body["system"]["openIncidents"][0];
    assert_eq!(open[1], "ClickHouse lost its disk", "{body}");
    let (_, html) = admin.get_html("/admin").await;
    assert!(
        html.contains(&format!("href=\"/admin/history/{}\"", open[0])),
        "{html}"
    );
}
