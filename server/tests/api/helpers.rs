//! `spawn_app()` and friends: start Salvage on port 0 against fresh databases.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use app::auth::ssr::Actor;
use app::auth::Role;
use app::server::clickhouse::ClickHouse;
use salvage::config::Settings;
use salvage::startup::Application;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// A running Salvage with its own databases.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// A pool on this test's PostgreSQL database.
    pub pg: PgPool,
    /// The URL of this test's PostgreSQL database (for running the binary against it).
    pub database_url: String,
    /// A client on this test's ClickHouse database.
    pub clickhouse: ClickHouse,
    /// An anonymous client (no session yet); `TestApp` derefs to it.
    pub anonymous: Client,
    /// The application's own state (its pools and clients, through any link).
    pub state: app::server::AppState,
    /// The link in front of ClickHouse, when the test asked for one.
    pub clickhouse_link: Option<FaultyLink>,
    /// The link in front of PostgreSQL, when the test asked for one.
    pub postgres_link: Option<FaultyLink>,
    shutdown: Option<oneshot::Sender<()>>,
    cleanup: Option<Cleanup>,
}

struct Cleanup {
    admin_url: SecretString,
    pg_database: String,
    /// Settings for a new ClickHouse client: a client used on the test's runtime keeps
    /// pooled connections bound to it, and that runtime is blocked while Drop runs.
    clickhouse: Settings,
    /// The backup target of this test.
    backup_dir: std::path::PathBuf,
}

/// What to change about the stores a test app talks to.
#[derive(Default)]
pub struct Options {
    /// Keep point-in-time recovery (pgBackRest) on, as `.env` sets it up. Off by default:
    /// the repository and its stanza lock are shared by every test, and its alerts read
    /// the shared cluster's archive, so only the tests about it turn it on.
    pub pitr: bool,
    /// Drills also restore PostgreSQL through the point-in-time path (minutes on the
    /// shared cluster: off unless a test is about it).
    pub drill_pitr: bool,
    /// Point ClickHouse at this URL instead of the local server (which is then not
    /// migrated): a closed port, or a [`FaultyLink`].
    pub clickhouse_url: Option<String>,
    /// Point PostgreSQL at this URL instead of a fresh database.
    pub database_url: Option<String>,
    /// Put a [`FaultyLink`] in front of the (real, fresh, migrated) ClickHouse database.
    pub clickhouse_link: bool,
    /// Put a [`FaultyLink`] in front of the (real, fresh, migrated) PostgreSQL database.
    pub postgres_link: bool,
    /// Changes to the settings, applied last (a public URL's port 0 still means "the
    /// port bound").
    pub tweak: Option<fn(&mut Settings)>,
    /// Run as production does with two roles: migrate as the schema's owner, work as the
    /// application role (`DATABASE_URL` of the local stores) with only its grants.
    pub two_roles: bool,
    /// Talk to the local ClickHouse cluster (`scripts/stores.sh start cluster`) instead
    /// of the single server: replica 1's HTTP port, `CLICKHOUSE_CLUSTER` set.
    pub cluster: bool,
}

/// Salvage with its settings changed by `tweak`, on fresh stores.
pub async fn spawn_app_tweaked(tweak: fn(&mut Settings)) -> TestApp {
    spawn_app_with(Options {
        tweak: Some(tweak),
        ..Options::default()
    })
    .await
}

/// The cron secret every test app is configured with.
pub const CRON_SECRET: &str = "test-cron-secret-0123456789abcdef";

/// Settings from `.env` at the workspace root, as `scripts/stores.sh start` wrote them.
pub fn base_settings() -> Settings {
    let env_file = concat!(env!("CARGO_MANIFEST_DIR"), "/../.env");
    let _ = dotenvy::from_path(env_file);
    Settings::from_env().unwrap_or_else(|error| {
        panic!("{error}: start the local stores first with `scripts/stores.sh start`")
    })
}

/// The URL of the role that may create databases: the schema owner's when the local
/// stores have one (`SALVAGE_MIGRATE_DATABASE_URL`), else `DATABASE_URL`'s.
pub fn owner_url(settings: &Settings) -> SecretString {
    settings
        .migrate_database_url
        .clone()
        .unwrap_or_else(|| settings.database_url.clone())
}

/// Salvage against fresh PostgreSQL and ClickHouse databases, both migrated.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

/// Salvage with point-in-time recovery through the shared pgBackRest repository.
pub async fn spawn_app_with_pitr() -> TestApp {
    spawn_app_with(Options {
        pitr: true,
        ..Options::default()
    })
    .await
}

/// Salvage whose ClickHouse is unreachable (a closed port); PostgreSQL is real and fresh.
pub async fn spawn_app_without_clickhouse() -> TestApp {
    let port = closed_port().await;
    spawn_app_with(Options {
        clickhouse_url: Some(format!("http://127.0.0.1:{port}")),
        ..Options::default()
    })
    .await
}

/// Salvage with some of its stores replaced, see [`Options`].
pub async fn spawn_app_with(options: Options) -> TestApp {
    let mut settings = base_settings();
    settings.drills.pitr = options.drill_pitr;
    if !options.pitr {
        settings.backups.pitr = None;
    }
    // Test databases are made (and the app runs) as the schema's owner; the security
    // tests that need the application role set it up themselves.
    let admin_url = owner_url(&settings);
    settings.migrate_database_url = None;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let pg_database = format!("salvage_test_{suffix}");
    let ch_database = format!("salvage_test_{suffix}");

    let mut admin = PgConnection::connect(admin_url.expose_secret())
        .await
        .expect("the local PostgreSQL answers (scripts/stores.sh start)");
    admin
        .execute(format!(r#"create database "{pg_database}""#).as_str())
        .await
        .expect("create the test database");

    let mut test_db_url = url::Url::parse(admin_url.expose_secret()).unwrap();
    test_db_url.set_path(&pg_database);
    let postgres_link = if options.postgres_link {
        let mut target = test_db_url.clone();
        let link = FaultyLink::to(
            format!(
                "{}:{}",
                target.host_str().unwrap(),
                target.port().unwrap_or(5432)
            )
            .parse()
            .unwrap(),
        )
        .await;
        target.set_port(Some(link.addr.port())).unwrap();
        settings.database_url = SecretString::from(target.to_string());
        Some(link)
    } else {
        settings.database_url = SecretString::from(
            options
                .database_url
                .clone()
                .unwrap_or_else(|| test_db_url.to_string()),
        );
        None
    };
    if options.two_roles {
        let app_role = base_settings().database_url;
        let mut app_url = url::Url::parse(app_role.expose_secret()).unwrap();
        assert_ne!(
            app_url.username(),
            test_db_url.username(),
            "two roles need the local stores' application role (scripts/stores.sh start)"
        );
        app_url.set_path(&pg_database);
        settings.database_url = SecretString::from(app_url.to_string());
        settings.migrate_database_url = Some(SecretString::from(test_db_url.to_string()));
    }
    settings.clickhouse.database = ch_database;
    if options.cluster {
        crate::cluster::on_the_cluster(&mut settings);
    }
    let local_settings = settings.clone();
    let local_clickhouse = settings.clickhouse_client();
    if let Some(url) = &options.clickhouse_url {
        settings.clickhouse.url = url.parse().unwrap();
    }
    let clickhouse_link = if options.clickhouse_link {
        let link = FaultyLink::to(local_clickhouse_addr()).await;
        settings.clickhouse.url = format!("http://{}", link.addr).parse().unwrap();
        local_clickhouse
            .migrate()
            .await
            .expect("migrate ClickHouse");
        Some(link)
    } else {
        None
    };
    settings.cron_secret = Some(SecretString::from(CRON_SECRET));
    let backup_dir = std::env::temp_dir().join(format!("salvage-test-backups-{suffix}"));
    settings.backups.storage = app::backups::ssr::Storage::Directory(backup_dir.clone());
    settings.queues.ingest_timeout = Duration::from_secs(3);
    // A whole test suite on two cores makes a page slow now and then; the console's
    // deadline is the outage tests' to set (they set a short one), not a load test here.
    settings.deadlines.store = Duration::from_secs(25);
    settings.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    // Port 0 here means "the port bound", so the same-origin check knows the test's port.
    settings.public_url = "http://127.0.0.1:0".parse().unwrap();
    settings.probe_timeout = Duration::from_millis(1500);
    // The tests' webhook receivers listen on loopback.
    settings.webhooks.allow_private = true;
    if let Some(tweak) = options.tweak {
        tweak(&mut settings);
    }

    let application = Application::build(&settings).await.expect("build the app");
    let state = application.state().clone();
    if options.database_url.is_none() {
        salvage::startup::migrate_postgres(&state)
            .await
            .expect("migrate PostgreSQL");
        salvage::startup::after_postgres_migrated(&state, settings.cron_secret.as_ref())
            .await
            .expect("register the cron jobs and the first cron secret");
    }
    if options.clickhouse_url.is_none() && !options.clickhouse_link {
        state
            .clickhouse
            .migrate()
            .await
            .expect("migrate ClickHouse");
    }
    let address = format!("http://127.0.0.1:{}", application.port());
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(application.run_until_stopped(
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));

    TestApp {
        address: address.clone(),
        pg: PgPool::connect(test_db_url.as_str())
            .await
            .expect("connect to the test database"),
        clickhouse: local_clickhouse,
        anonymous: Client::new(&address),
        state,
        clickhouse_link,
        postgres_link,
        database_url: test_db_url.to_string(),
        shutdown: Some(shutdown),
        cleanup: Some(Cleanup {
            admin_url,
            pg_database,
            clickhouse: local_settings,
            backup_dir,
        }),
    }
}

/// A second instance of `app` (another replica): its own pools and clients on the same
/// databases, built from the same settings.
pub fn second_instance(app: &TestApp) -> app::server::AppState {
    let mut settings = base_settings();
    settings.migrate_database_url = None;
    settings.database_url = SecretString::from(app.database_url.clone());
    settings.clickhouse.database = app.clickhouse.database().to_owned();
    salvage::startup::build_state(&settings)
}

/// The password every test account gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// A browser-like HTTP client of one person: its own cookie jar, the console's Origin
/// on every request, redirects not followed (so tests see them).
#[derive(Clone)]
pub struct Client {
    pub address: String,
    pub http: reqwest::Client,
}

impl Client {
    /// A new client with an empty cookie jar.
    pub fn new(address: &str) -> Self {
        Self::with_origin(address, address)
    }

    /// A client whose requests claim to come from `origin`.
    pub fn with_origin(address: &str, origin: &str) -> Self {
        Self::with_headers(address, &[("origin", origin)])
    }

    /// A client whose every request carries `X-Forwarded-For: <forwarded_for>`, as a
    /// load balancer would add for a client at that address.
    pub fn forwarded_for(address: &str, forwarded_for: &str) -> Self {
        Self::with_headers(
            address,
            &[("origin", address), ("x-forwarded-for", forwarded_for)],
        )
    }

    /// A client sending `headers` with every request.
    pub fn with_headers(address: &str, headers: &[(&'static str, &str)]) -> Self {
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        Self {
            address: address.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .default_headers(map)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// GET `path` (e.g. `/health/ready`).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("the app answers")
    }

    /// GET `path` and decode the JSON body, returning the status too.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// GET `path` and return the status with the body as text.
    pub async fn get_html(&self, path: &str) -> (u16, String) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.text().await.expect("a text body"))
    }

    /// Calls the overview's `overview/posture` server function and decodes its JSON.
    pub async fn posture(&self) -> (u16, serde_json::Value) {
        self.call("overview/posture", serde_json::json!({})).await
    }

    /// Calls a server function by its endpoint (`overview/posture`) with form fields
    /// given as a JSON object; returns the raw response.
    pub async fn call_server_fn(
        &self,
        endpoint: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}/api/{endpoint}", self.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded(&body))
            .send()
            .await
            .expect("the app answers")
    }

    /// Calls a server function and returns its status and JSON body (`null` if empty).
    pub async fn call(&self, endpoint: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let response = self.call_server_fn(endpoint, body).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Signs in; returns the status and body of `auth/sign-in`.
    pub async fn sign_in(&self, email: &str, password: &str) -> (u16, serde_json::Value) {
        self.call(
            "auth/sign-in",
            serde_json::json!({"email": email, "password": password, "next": "/admin"}),
        )
        .await
    }
}

impl std::ops::Deref for TestApp {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.anonymous
    }
}

impl TestApp {
    /// A fresh client with an empty cookie jar.
    pub fn client(&self) -> Client {
        Client::new(&self.address)
    }

    /// Adds an account directly (as the CLI would) and returns its id.
    pub async fn add_user(&self, email: &str, role: Role) -> i64 {
        app::settings::ssr::add_user(
            &self.pg,
            &Actor::cli(),
            email,
            role,
            Some(SecretString::from(PASSWORD)),
            None,
        )
        .await
        .expect("add a test user")
        .0
    }

    /// A client signed in as a new account with `role` (email `<role>-<n>@test.salvage`).
    pub async fn signed_in(&self, role: Role) -> Client {
        let email = format!(
            "{}-{}@test.salvage",
            role.as_str(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        self.add_user(&email, role).await;
        self.signed_in_as(&email).await
    }

    /// A client signed in as the existing account `email` (password [`PASSWORD`]).
    pub async fn signed_in_as(&self, email: &str) -> Client {
        let client = self.client();
        let (status, body) = client.sign_in(email, PASSWORD).await;
        assert_eq!(status, 200, "sign in as {email}: {body}");
        client
    }

    /// Rows in `table` of this test's PostgreSQL database.
    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&self.pg)
            .await
            .expect("count rows")
    }
}

fn serde_urlencoded(body: &serde_json::Value) -> String {
    body.as_object()
        .map(|object| {
            object
                .iter()
                .map(|(key, value)| {
                    let value = match value {
                        serde_json::Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    format!("{}={}", urlencode(key), urlencode(&value))
                })
                .collect::<Vec<_>>()
                .join("&")
        })
        .unwrap_or_default()
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let Some(cleanup) = self.cleanup.take() else {
            return;
        };
        // Drop runs inside the test's runtime; clean up on a thread with its own.
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok(mut admin) =
                    PgConnection::connect(cleanup.admin_url.expose_secret()).await
                {
                    let _ = admin
                        .execute(
                            format!(
                                r#"drop database if exists "{}" with (force)"#,
                                cleanup.pg_database
                            )
                            .as_str(),
                        )
                        .await;
                }
                let _ = cleanup.clickhouse.clickhouse_client().drop_database().await;
                let _ = std::fs::remove_dir_all(&cleanup.backup_dir);
            });
        });
        let _ = handle.join();
    }
}

/// A TCP port nothing listens on.
pub async fn closed_port() -> u16 {
    // Bound but never listening: a connection is refused at once, and no other test's
    // listener can take the port while this binary runs (a port freed again could be
    // handed to a test's server, and "ClickHouse" would then answer, or hang).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    RESERVED.lock().unwrap().push(socket);
    port
}

/// A port free now, for a process the test starts to listen on. It is taken below the
/// kernel's ephemeral range (32768 and up), where the outgoing connections of the many
/// tests running at once never land, and each call of this binary gets a new one: a
/// server started seconds later still finds it free.
pub async fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Two test binaries at once start at different places in the range.
    let base = 20_000 + (std::process::id() % 8) as u16 * 1_500;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 1_500;
        if TcpListener::bind(("127.0.0.1", port)).await.is_ok() {
            return port;
        }
    }
}

/// The sockets that hold [`closed_port`]'s ports for the life of the test binary.
static RESERVED: std::sync::Mutex<Vec<tokio::net::TcpSocket>> = std::sync::Mutex::new(Vec::new());

/// A TCP link to a real store that a test can cut and restore, to see how Salvage
/// behaves when the store goes away and comes back. While cut, new connections are
/// accepted and dropped at once and open ones are closed, as when the process dies.
/// The store behind it is real; only the wire is sabotaged.
pub struct FaultyLink {
    /// Where Salvage should connect instead of the store.
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
}

impl FaultyLink {
    /// A link in front of `target`, up.
    pub async fn to(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0_u64);
        let (accept_up, accept_cuts) = (up.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = accept_cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { addr, up, cuts }
    }

    /// Cuts the link: open connections close, new ones are refused.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|generation| *generation += 1);
    }

    /// Restores the link.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// The address of the local ClickHouse's HTTP interface.
pub fn local_clickhouse_addr() -> SocketAddr {
    let settings = base_settings();
    let url = &settings.clickhouse.url;
    format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port_or_known_default().unwrap()
    )
    .parse()
    .unwrap()
}

/// Polls `check` every 200 ms until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `job` through its cron route (as an outside scheduler would) and returns the
/// route's answer.
pub async fn run_job(app: &TestApp, job: &str) -> serde_json::Value {
    let (status, answer) = post_job(app, job).await;
    assert_eq!(status, 200, "/cron/{job}: {answer}");
    answer
}

/// Runs `job` through `/cron/<job>` expecting it to fail: a 503 to the scheduler, with
/// the run's report.
pub async fn run_failing_job(app: &TestApp, job: &str) -> serde_json::Value {
    let (status, answer) = post_job(app, job).await;
    assert_eq!(
        status, 503,
        "/cron/{job}: a failed run is a 503 to the scheduler: {answer}"
    );
    assert_eq!(answer["outcome"], "failed", "{answer}");
    answer
}

async fn post_job(app: &TestApp, job: &str) -> (u16, serde_json::Value) {
    let response = app
        .http
        .post(format!("{}/cron/{job}", app.address))
        .bearer_auth(CRON_SECRET)
        .send()
        .await
        .expect("the app answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON report"))
}

/// A reason a test gives, through the rule every door applies.
pub fn reason(text: &str) -> app::reason::Reason {
    app::reason::Reason::parse(text).expect("a test's reason passes the reason rule")
}
