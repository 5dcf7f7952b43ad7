//! The bucket target: both stores backed up to an S3-compatible server (moto's standalone
//! server, which `scripts/setup.sh --test` installs from PyPI), verified, and restored
//! from it into side databases.

use std::time::Duration;

use app::backups::ssr::restore::RestoreRequest;
use app::backups::ssr::storage::Bucket;
use app::backups::ssr::Storage;
use app::backups::RestoreStatus;

use super::*;
use crate::helpers::{eventually, free_port};

/// moto's S3 server on a free port, stopped when dropped.
pub(crate) struct Moto {
    pub(crate) endpoint: String,
    _child: tokio::process::Child,
}

impl Moto {
    pub(crate) async fn start() -> Self {
        let server = std::env::var("SALVAGE_MOTO_SERVER").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../.stores/moto/bin/moto_server"
            )
            .to_owned()
        });
        assert!(
            std::path::Path::new(&server).exists(),
            "{server} is missing: run `scripts/setup.sh --test` (it installs moto's S3 server)"
        );
        let port = free_port().await;
        let child = tokio::process::Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let up = eventually(Duration::from_secs(30), || async {
            http.get(&endpoint).send().await.is_ok()
        })
        .await;
        assert!(up, "moto_server answers on {endpoint}");
        Self {
            endpoint,
            _child: child,
        }
    }

    /// A new, empty bucket: its name.
    pub(crate) async fn make_bucket(&self) -> String {
        let name = format!("salvage-{}", uuid::Uuid::new_v4().simple());
        let made = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(
            made.status().is_success(),
            "create the bucket: {}",
            made.status()
        );
        name
    }

    /// A new bucket and the storage for `s3://<bucket>/backups` on it.
    async fn bucket(&self) -> Storage {
        let name = self.make_bucket().await;
        let bucket = Bucket::new(
            &format!("s3://{name}/backups"),
            &[
                ("aws_endpoint", self.endpoint.as_str()),
                ("aws_allow_http", "true"),
                ("aws_region", "us-east-1"),
                ("aws_access_key_id", "test"),
                ("aws_secret_access_key", "test"),
                ("aws_virtual_hosted_style_request", "false"),
            ],
        )
        .unwrap();
        Storage::Bucket(bucket)
    }
}

#[tokio::test]
async fn both_stores_back_up_to_a_bucket_verify_and_restore_from_it() {
    let moto = Moto::start().await;
    let app = app_with_data().await;
    let mut state = app.state.clone();
    state
        .part_mut::<app::backups::ssr::BackupSettings>()
        .storage = moto.bucket().await;

    let firing = app::jobs::ssr::Firing::by_hand(
        app::jobs::Trigger::Cli,
        app::auth::ssr::Actor::cli(),
        Some(crate::helpers::reason("to the bucket")),
        Default::default(),
    );
    let finished = app::jobs::ssr::run(
        &state,
        &app::backups::ssr::BACKUP,
        firing,
        Default::default(),
    )
    .await
    .unwrap()
    .unwrap();
    let report = finished
        .report::<app::backups::ssr::create::BackupReport>()
        .unwrap();
    assert!(
        report
            .backups
            .iter()
            .all(|b| b.status == app::backups::BackupStatus::Verified),
        "{report:?}"
    );
    for taken in &report.backups {
        let manifest = format!(
            "{}/{}/manifest.json",
            taken.store.as_str(),
            taken.backup_id.unwrap()
        );
        assert!(
            state.backups().storage.exists(&manifest).await.unwrap(),
            "{manifest} in the bucket"
        );
    }

    for taken in &report.backups {
        let target = side_name();
        let request = RestoreRequest {
            backup_id: taken.backup_id.unwrap(),
            target: Some(target.clone()),
            reason: Some(crate::helpers::reason("from the bucket")),
            ..Default::default()
        };
        let restored = app::backups::ssr::restore::restore(&state, &request, super::cli(), None)
            .await
            .unwrap();
        drop_side(&app, &target).await;
        assert_eq!(restored.status, RestoreStatus::Verified, "{restored:?}");
        assert_eq!(
            restored.rows, taken.rows,
            "every row of the backup came back"
        );
    }
}
