//! `salvage bench sign-in-flood`: what floods of password work cost a running console.
//!
//! Starts this binary's `salvage serve` as a child process on a throwaway PostgreSQL
//! database (behind a trusted proxy at 127.0.0.1, so each post can name its client in
//! `X-Forwarded-For`), then floods it: first-admin setup posts with wrong links, wrong
//! sign-ins from one network (what one attacking machine sends), and wrong sign-ins from
//! a new network each time (what the throttle cannot stop: only the password gate bounds
//! them). Prints the child's resident memory at the start, its peak during each flood
//! and where it settles after, and the time of a real sign-in (from its own network)
//! during each flood against its time unflooded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

use super::bench::Scratch;
use crate::config::Settings;

const EMAIL: &str = "oncall@bench.salvage";
const PASSWORD: &str = "a long and correct passphrase";
/// The real person's network, and the one attacking machine's.
const PERSON: &str = "198.51.100.9";
const ATTACKER: &str = "203.0.113.7";

/// `salvage bench sign-in-flood`.
pub async fn flood(settings: &Settings, seconds: u64, loops: usize) -> anyhow::Result<()> {
    anyhow::ensure!((1..=600).contains(&seconds), "--seconds: from 1 to 600");
    anyhow::ensure!((1..=256).contains(&loops), "--loops: from 1 to 256");
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let (settings, scratch) =
        Scratch::create(settings, &format!("salvage_bench_{suffix}"), Vec::new()).await?;
    let result = measure(&settings, Duration::from_secs(seconds), loops).await;
    scratch.drop_all().await;
    result
}

/// The child `salvage serve`, killed when dropped.
struct Server {
    child: std::process::Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(settings: &Settings) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let address = format!("http://127.0.0.1:{port}");
        let database = settings.database_url.expose_secret();
        let child = std::process::Command::new(std::env::current_exe()?)
            .arg("serve")
            .env("DATABASE_URL", database)
            .env("SALVAGE_MIGRATE_DATABASE_URL", database)
            .env("SALVAGE_ADDR", format!("127.0.0.1:{port}"))
            .env("SALVAGE_PUBLIC_URL", &address)
            .env("SALVAGE_TRUSTED_PROXIES", "127.0.0.1")
            .env("SALVAGE_SCHEDULER", "off")
            .env("SALVAGE_MIGRATE_BACKUP", "off")
            .env("SALVAGE_MAX_IN_FLIGHT", "100000")
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("start salvage serve")?;
        let server = Self { child, address };
        let http = reqwest::Client::new();
        let ready = Instant::now();
        loop {
            let live = http
                .get(format!("{}/health/ready", server.address))
                .send()
                .await;
            if live.is_ok_and(|r| r.status().is_success()) {
                return Ok(server);
            }
            anyhow::ensure!(
                ready.elapsed() < Duration::from_secs(60),
                "salvage serve did not answer within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The child's resident memory now, in MiB.
    fn resident_mb(&self) -> f64 {
        super::bench::memory_mib(&self.child.id().to_string(), "VmRSS")
    }

    /// A client whose posts come from `network` and from the console's own origin.
    fn client(&self, network: &str) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("origin", self.address.parse().expect("an origin"));
        headers.insert("x-forwarded-for", network.parse().expect("an address"));
        reqwest::Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a client")
    }

    /// One real sign-in from the person's network: its time, and whether it succeeded.
    async fn sign_in(&self) -> (Duration, bool) {
        let started = Instant::now();
        let response = self
            .client(PERSON)
            .post(format!("{}/api/auth/sign-in", self.address))
            .form(&[("email", EMAIL), ("password", PASSWORD), ("next", "")])
            .send()
            .await;
        let ok = response.is_ok_and(|r| r.status().is_success());
        (started.elapsed(), ok)
    }

    /// The median of five real sign-ins, in ms; fails if one did not succeed.
    async fn sign_in_ms(&self) -> anyhow::Result<f64> {
        let mut times = Vec::new();
        for _ in 0..5 {
            let (took, ok) = self.sign_in().await;
            anyhow::ensure!(ok, "a real sign-in failed");
            times.push(took.as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        Ok(times[2])
    }
}

/// What one kind of flood posts.
#[derive(Clone, Copy)]
enum Flood {
    Setup,
    SignInOneNetwork,
    SignInManyNetworks,
}

impl Flood {
    fn label(self) -> &'static str {
        match self {
            Self::Setup => "setup posts, wrong links, one network",
            Self::SignInOneNetwork => "wrong sign-ins, one network",
            Self::SignInManyNetworks => "wrong sign-ins, a new network each",
        }
    }

    fn request(self, server: &Server, http: &reqwest::Client) -> reqwest::RequestBuilder {
        let token = format!("sgs_{}", uuid::Uuid::new_v4().simple());
        match self {
            Self::Setup => http
                .post(format!("{}/api/auth/setup", server.address))
                .form(&[
                    ("token", token.as_str()),
                    ("email", "root@bench.salvage"),
                    ("password", "a guessed first-admin passphrase"),
                    ("confirm_password", "a guessed first-admin passphrase"),
                ]),
            Self::SignInOneNetwork => http
                .post(format!("{}/api/auth/sign-in", server.address))
                .form(&[("email", EMAIL), ("password", token.as_str()), ("next", "")]),
            Self::SignInManyNetworks => {
                let b = uuid::Uuid::new_v4().into_bytes();
                http.post(format!("{}/api/auth/sign-in", server.address))
                    .header("x-forwarded-for", format!("10.{}.{}.{}", b[0], b[1], b[2]))
                    .form(&[
                        ("email", format!("guess-{}@bench.salvage", b[3]).as_str()),
                        ("password", token.as_str()),
                        ("next", ""),
                    ])
            }
        }
    }
}

/// One flood's figures.
struct Measured {
    peak_mb: f64,
    settled_mb: f64,
    sign_in_ms: f64,
    answers: BTreeMap<u16, u64>,
}

async fn run_flood(
    server: &Arc<Server>,
    flood: Flood,
    length: Duration,
    loops: usize,
) -> anyhow::Result<Measured> {
    let until = Instant::now() + length;
    let stop = Arc::new(AtomicBool::new(false));
    let peak_kib = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (server, stop, peak_kib) = (server.clone(), stop.clone(), peak_kib.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                peak_kib.fetch_max((server.resident_mb() * 1024.0) as u64, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let posters: Vec<_> = (0..loops)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move {
                let http = server.client(ATTACKER);
                let mut answers = BTreeMap::<u16, u64>::new();
                while Instant::now() < until {
                    let status = match flood.request(&server, &http).send().await {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    };
                    *answers.entry(status).or_default() += 1;
                }
                answers
            })
        })
        .collect();
    // The person signs in a second into the flood, while it is at full strength.
    tokio::time::sleep(Duration::from_secs(1).min(length / 2)).await;
    let sign_in_ms = server.sign_in_ms().await?;
    let mut answers = BTreeMap::new();
    for poster in posters {
        for (status, n) in poster.await? {
            *answers.entry(status).or_default() += n;
        }
    }
    stop.store(true, Ordering::SeqCst);
    sampler.await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(Measured {
        peak_mb: peak_kib.load(Ordering::SeqCst) as f64 / 1024.0,
        settled_mb: server.resident_mb(),
        sign_in_ms,
        answers,
    })
}

async fn measure(settings: &Settings, length: Duration, loops: usize) -> anyhow::Result<()> {
    let state = crate::startup::build_state(settings);
    crate::startup::migrate_postgres(&state).await?;
    let server = Arc::new(Server::start(settings).await?);
    app::settings::ssr::add_user(
        &state.pg,
        &app::auth::ssr::Actor::cli(),
        EMAIL,
        app::auth::Role::Operator,
        Some(SecretString::from(PASSWORD)),
        None,
    )
    .await
    .map_err(|error| anyhow::anyhow!("add the bench's account: {error}"))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start_mb = server.resident_mb();
    let alone_ms = server.sign_in_ms().await?;
    println!(
        "bench sign-in-flood: salvage serve (pid {}) on a throwaway database; {loops} loops \
         posting for {} s per flood; password gate: {} permits (this machine's default)\n",
        server.child.id(),
        length.as_secs(),
        app::auth::ssr::default_password_permits()
    );
    println!(
        "{:<40} {:>8} {:>8} {:>8}   {:>10}   answers",
        "", "start", "peak", "settled", "sign-in"
    );
    println!(
        "{:<40} {:>5.0} MB {:>8} {:>8}   {:>7.1} ms",
        "unflooded", start_mb, "", "", alone_ms
    );
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for flood in [
        Flood::Setup,
        Flood::SignInOneNetwork,
        Flood::SignInManyNetworks,
    ] {
        let m = run_flood(&server, flood, length, loops).await?;
        let answers: Vec<String> = m
            .answers
            .iter()
            .map(|(status, n)| format!("{n}×{status}"))
            .collect();
        println!(
            "{:<40} {:>8} {:>5.0} MB {:>5.0} MB   {:>7.1} ms   {}",
            flood.label(),
            "",
            m.peak_mb,
            m.settled_mb,
            m.sign_in_ms,
            answers.join(" ")
        );
        if !matches!(flood, Flood::SignInManyNetworks) {
            worst.0 = worst.0.max(m.peak_mb);
            worst.1 = worst.1.max(m.settled_mb - start_mb);
            worst.2 = worst.2.max(m.sign_in_ms / alone_ms);
        }
    }
    println!(
        "\nfloods from one network: peak {:.0} MB (goal ≤ 200), settled {:+.0} MB from the start \
         (goal ≤ +50), a real sign-in {:.1}× its unflooded time (goal ≤ 2×)",
        worst.0, worst.1, worst.2
    );
    Ok(())
}
