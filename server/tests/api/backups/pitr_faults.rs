//! The WAL archive under faults, with real parts: a private PostgreSQL whose archive
//! command is pgBackRest's, its repository made unwritable and then fixed; and the
//! shared repository read with a wrong passphrase. The private cluster is this test's
//! alone, so breaking its archive touches no other test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use app::backups::ssr::pitr::alerts::{lag_signal, Archiver};
use app::backups::ssr::pitr::{PgBackRest, PitrSettings};
use time::OffsetDateTime;

use crate::helpers::{free_port, spawn_app_with_pitr};

const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A command run as the OS user pgBackRest and PostgreSQL run as.
fn as_owner(run_as: &Option<String>, program: &str) -> tokio::process::Command {
    match run_as {
        Some(user) => {
            let mut command = tokio::process::Command::new("runuser");
            command.args(["-u", user, "--", program]);
            command
        }
        None => tokio::process::Command::new(program),
    }
}

async fn ok(mut command: tokio::process::Command) {
    let out = command.output().await.unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The newest PostgreSQL server programs Debian installed (or the PATH's).
fn server_tool(name: &str) -> String {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin").join(name))
        .filter(|path| path.exists())
        .collect();
    found.sort();
    found
        .pop()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| name.to_owned())
}

/// A directory in the side directory (owned by the user pgBackRest runs as).
async fn private_dir(shared: &PitrSettings, name: &str) -> PathBuf {
    let dir = shared.side_dir.join(format!(
        "{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(user) = &shared.run_as {
        let mut chown = tokio::process::Command::new("chown");
        chown.args([&format!("{user}:"), dir.to_str().unwrap()]);
        ok(chown).await;
    }
    dir
}

async fn write_owned(shared: &PitrSettings, path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let mut chmod = tokio::process::Command::new("chmod");
    chmod.args(["600", path.to_str().unwrap()]);
    ok(chmod).await;
    if let Some(user) = &shared.run_as {
        let mut chown = tokio::process::Command::new("chown");
        chown.args([&format!("{user}:"), path.to_str().unwrap()]);
        ok(chown).await;
    }
}

struct Private {
    dir: PathBuf,
    settings: PitrSettings,
    pool: sqlx::PgPool,
    url: url::Url,
    _cleanup: Cleanup,
}

/// A private cluster's directory: its server stopped and the directory deleted however
/// the test ends, a failed assertion during its start included.
struct Cleanup {
    dir: PathBuf,
    run_as: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let pg_ctl = server_tool("pg_ctl");
        let mut stop = match &self.run_as {
            Some(user) => {
                let mut command = std::process::Command::new("runuser");
                command.args(["-u", user, "--", &pg_ctl]);
                command
            }
            None => std::process::Command::new(&pg_ctl),
        };
        let _ = stop
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&data)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Private {
    /// initdb, archiving through pgBackRest into a repository of its own (a directory
    /// in it, or what `repository` configures), started, with its stanza made.
    async fn start(shared: &PitrSettings, repository: Option<&str>) -> Private {
        let dir = private_dir(shared, "faults").await;
        let cleanup = Cleanup {
            dir: dir.clone(),
            run_as: shared.run_as.clone(),
        };
        let port = free_port().await;
        let d = dir.display().to_string();
        let mut initdb = as_owner(&shared.run_as, &server_tool("initdb"));
        initdb.args([
            "-D",
            &format!("{d}/data"),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ]);
        ok(initdb).await;
        let config = dir.join("pgbackrest.conf");
        write_owned(
            shared,
            &config,
            &format!(
                "[global]\n{}\nlog-path={d}\nlock-path={d}\n\
                 log-level-console=warn\nlog-level-file=off\narchive-timeout=300\n\n\
                 [faults]\npg1-path={d}/data\npg1-port={port}\npg1-socket-path={d}\n\
                 pg1-user=postgres\n",
                repository.map_or_else(|| format!("repo1-path={d}/repo"), str::to_owned)
            ),
        )
        .await;
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{d}'\n\
             wal_level = replica\narchive_mode = on\n\
             archive_command = 'pgbackrest --config={d}/pgbackrest.conf --stanza=faults archive-push %p'\n\
             archive_timeout = {}\nmax_connections = 20\nshared_buffers = 16MB\nfsync = off\n",
            ARCHIVE_TIMEOUT.as_secs()
        );
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("data/postgresql.conf"))
            .unwrap()
            .write_all(conf.as_bytes())
            .unwrap();
        let mut start = as_owner(&shared.run_as, &server_tool("pg_ctl"));
        start.args([
            "start",
            "-w",
            "-D",
            &format!("{d}/data"),
            "-l",
            &format!("{d}/pg.log"),
        ]);
        ok(start).await;
        let settings = PitrSettings {
            config,
            stanza: "faults".into(),
            archive_timeout: ARCHIVE_TIMEOUT,
            side_dir: dir.clone(),
            ..shared.clone()
        };
        PgBackRest::new(&settings).stanza_create().await.unwrap();
        let url =
            url::Url::parse(&format!("postgres://postgres@127.0.0.1:{port}/postgres")).unwrap();
        let pool = sqlx::PgPool::connect(url.as_str()).await.unwrap();
        Private {
            dir,
            settings,
            pool,
            url,
            _cleanup: cleanup,
        }
    }

    /// Writes a row and switches to a new WAL segment, so there is one to archive.
    async fn write(&self) {
        sqlx::query("create table if not exists probe (at timestamptz default now())")
            .execute(&self.pool)
            .await
            .unwrap();
        sqlx::query("insert into probe default values")
            .execute(&self.pool)
            .await
            .unwrap();
        sqlx::query("select pg_switch_wal()")
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// What the `wal_archive_lag` evaluator says at the server's now.
    async fn signal(&self) -> Option<app::alerts::ssr::Signal> {
        let archiver = Archiver::read(&self.pool).await.unwrap();
        let now: OffsetDateTime = sqlx::query_scalar("select clock_timestamp()")
            .fetch_one(&self.pool)
            .await
            .unwrap();
        lag_signal(&archiver, now, self.settings.archive_timeout)
    }

    /// Polls (at most `limit`) until the evaluator's answer is `raised` or not.
    async fn until(&self, raised: bool, limit: Duration) -> Option<app::alerts::ssr::Signal> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let signal = self.signal().await;
            if signal.is_some() == raised {
                return signal;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "wal_archive_lag still {} after {limit:?}: {:?}",
                if raised { "clear" } else { "raised" },
                Archiver::read(&self.pool).await.unwrap()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

async fn chmod(mode: &str, path: &Path) {
    let mut chmod = tokio::process::Command::new("chmod");
    chmod.args([mode, path.to_str().unwrap()]);
    ok(chmod).await;
}

#[tokio::test]
async fn an_unwritable_repository_raises_wal_archive_lag_and_fixing_it_clears_it() {
    let app = spawn_app_with_pitr().await;
    let shared = app.state.backups().pitr.clone().unwrap();
    let private = Private::start(&shared, None).await;
    // Archiving works: a written segment reaches the repository; nothing is raised.
    private.write().await;
    let deadline = tokio::time::Instant::now() + ARCHIVE_TIMEOUT * 3;
    loop {
        let archiver = Archiver::read(&private.pool).await.unwrap();
        if archiver.last_archived_wal.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{archiver:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(private.signal().await.is_none());

    // The repository's archive made unwritable: the archive command fails, and the
    // alert is raised once three archive timeouts pass without a segment archived.
    let archive = private.dir.join("repo/archive");
    chmod("000", &archive).await;
    private.write().await;
    let raised = private
        .until(true, ARCHIVE_TIMEOUT * 3 + Duration::from_secs(30))
        .await
        .unwrap();
    assert!(raised.title.contains("failing"), "{}", raised.title);
    let failing = Archiver::read(&private.pool).await.unwrap();
    assert!(failing.last_failed.is_some(), "{failing:?}");
    // The overview's verdict names the same archive as the reason PostgreSQL is at risk.
    let now: OffsetDateTime = sqlx::query_scalar("select clock_timestamp()")
        .fetch_one(&private.pool)
        .await
        .unwrap();
    let shortfall =
        app::overview::ssr::archive_shortfall(&failing, now, private.settings.archive_timeout);
    assert!(
        matches!(
            shortfall,
            Some(app::overview::Shortfall::ArchiveLagging { failing: true, .. })
        ),
        "{shortfall:?}"
    );

    // Fixed: the next segment wakes the archiver, which archives the backlog; cleared.
    chmod("750", &archive).await;
    private.write().await;
    private.until(false, Duration::from_secs(90)).await;
}

#[tokio::test]
async fn a_wrong_passphrase_fails_with_a_message_naming_the_setting() {
    let app = spawn_app_with_pitr().await;
    let shared = app.state.backups().pitr.clone().unwrap();
    let dir = private_dir(&shared, "passphrase").await;
    let config = std::fs::read_to_string(&shared.config).unwrap();
    assert!(
        config.contains("repo1-cipher-pass="),
        "the local repository is encrypted"
    );
    let wrong: String = config
        .lines()
        .map(|line| {
            if line.starts_with("repo1-cipher-pass=") {
                "repo1-cipher-pass=not-the-passphrase".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let wrong_config = dir.join("pgbackrest.conf");
    write_owned(&shared, &wrong_config, &wrong).await;
    let settings = PitrSettings {
        config: wrong_config,
        ..shared.clone()
    };
    let error = PgBackRest::new(&settings)
        .info()
        .await
        .unwrap_err()
        .to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(error.contains("repo1-cipher-pass"), "{error}");
    assert!(error.contains("SALVAGE_PGBACKREST_CONFIG"), "{error}");
    // The right one still reads it.
    PgBackRest::new(&shared).info().await.unwrap();
}

/// TLS in front of moto's plain S3 server: pgBackRest speaks only https to S3, and
/// moto's own https (a development server) ends its connections without TLS's close
/// notice, which OpenSSL 3 refuses. `tls_proxy.py` (run by moto's Python) holds a
/// self-signed certificate made here with `openssl`. Stopped when dropped.
struct TlsProxy {
    port: u16,
    _child: tokio::process::Child,
}

impl TlsProxy {
    async fn start(moto: &super::bucket::Moto, dir: &Path) -> Self {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let mut openssl = tokio::process::Command::new("openssl");
        openssl
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert);
        ok(openssl).await;
        let python = std::env::var("SALVAGE_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../.stores/moto/bin/moto_server")
            })
            .with_file_name("python");
        let upstream = url::Url::parse(&moto.endpoint).unwrap().port().unwrap();
        let port = free_port().await;
        let child = tokio::process::Command::new(python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/api/backups/tls_proxy.py"
            ))
            .arg(&cert)
            .arg(&key)
            .arg(port.to_string())
            .arg(upstream.to_string())
            .kill_on_drop(true)
            .spawn()
            .expect("start the TLS proxy");
        let up = crate::helpers::eventually(Duration::from_secs(30), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "the TLS proxy listens on {port}");
        Self {
            port,
            _child: child,
        }
    }
}

async fn count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from probe")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_encrypted_repository_in_s3_archives_backs_up_verifies_and_restores_every_row() {
    use app::backups::ssr::pitr::side::{self, Target};
    let app = spawn_app_with_pitr().await;
    let shared = app.state.backups().pitr.clone().unwrap();
    let moto = super::bucket::Moto::start().await;
    let bucket = moto.make_bucket().await;
    let certificates = private_dir(&shared, "tls").await;
    let tls = TlsProxy::start(&moto, &certificates).await;
    let repository = format!(
        "repo1-type=s3\nrepo1-path=/repo\nrepo1-s3-bucket={bucket}\n\
         repo1-s3-endpoint=127.0.0.1\nrepo1-storage-port={}\nrepo1-s3-region=us-east-1\n\
         repo1-s3-key=moto\nrepo1-s3-key-secret=moto\nrepo1-s3-uri-style=path\n\
         repo1-storage-verify-tls=n\nrepo1-cipher-type=aes-256-cbc\n\
         repo1-cipher-pass=a-passphrase-for-the-s3-test",
        tls.port
    );
    let private = Private::start(&shared, Some(&repository)).await;
    let tool = PgBackRest::new(&private.settings);

    // Rows, a full base backup, the repository verified.
    private.write().await;
    tool.run(&["backup", "--type=full"])
        .await
        .unwrap_or_else(|e| panic!("the full backup into the bucket: {e}"));
    let verified = tool
        .run(&["verify", "--output=text"])
        .await
        .unwrap_or_else(|e| panic!("verify: {e}"));
    assert!(!verified.contains("status: error"), "{verified}");
    let info = tool.info().await.unwrap_or_else(|e| panic!("info: {e}"));
    assert_eq!(info.backups.len(), 1, "{info:?}");
    assert_eq!(info.backups[0].kind, "full");

    // More rows after it, archived to the bucket: a restore to latest has them all.
    sqlx::query("insert into probe select now() from generate_series(1, 999)")
        .execute(&private.pool)
        .await
        .unwrap();
    let written = count(&private.pool).await;
    private.write().await;
    let written = written + 1;
    // A hang guard, not a speed claim: through moto and the TLS proxy on a busy machine
    // a segment takes its time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let switched: String = sqlx::query_scalar("select pg_walfile_name(pg_current_wal_lsn())")
        .fetch_one(&private.pool)
        .await
        .unwrap();
    loop {
        let archiver = Archiver::read(&private.pool).await.unwrap();
        if archiver.last_archived_wal.as_deref() >= Some(switched.as_str()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{archiver:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Deep enough that a Unix socket in it would pass the kernel's 107-byte limit,
    // wherever the checkout is: the side cluster must not need one.
    let data_dir = private
        .dir
        .join("a-side-cluster-restored-into-a-directory-deeper-than-any-unix-socket-path-may-be");
    let port = free_port().await;
    let restored = side::start(
        app.state.backups(),
        &private.settings,
        &data_dir,
        port,
        Target::Latest,
        &private.url,
        Duration::from_secs(600),
    )
    .await;
    let counted = match &restored {
        Ok(_) => {
            let mut url = private.url.clone();
            url.set_port(Some(port)).unwrap();
            let side = sqlx::PgPool::connect(url.as_str()).await.unwrap();
            let n = count(&side).await;
            side.close().await;
            Some(n)
        }
        Err(_) => None,
    };
    side::stop(app.state.backups(), &private.settings, &data_dir)
        .await
        .unwrap_or_else(|e| panic!("stopping the side cluster: {e}"));
    std::fs::remove_dir_all(&certificates).ok();
    restored.unwrap_or_else(|e| panic!("the restore to latest from the bucket: {e}"));
    assert_eq!(counted, Some(written), "every row committed is back");
}
