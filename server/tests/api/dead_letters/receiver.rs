//! A real HTTP receiver for the delivery tests: it answers each path as told (a status,
//! a delay, a `Retry-After`), records every request, and checks each signature with its
//! own implementation of the Standard Webhooks convention (HMAC over SHA-256 written
//! out here, not the `hmac` crate the sender uses).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// How a path answers.
#[derive(Clone, Debug)]
pub struct Behaviour {
    pub status: u16,
    pub delay: Duration,
    pub retry_after: Option<u64>,
    pub body: String,
}

impl Behaviour {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            delay: Duration::ZERO,
            retry_after: None,
            body: format!("answer {status}"),
        }
    }
}

/// One request received.
#[derive(Clone, Debug)]
pub struct Hit {
    pub path: String,
    pub webhook_id: String,
    pub timestamp: i64,
    pub signature: String,
    pub body: Vec<u8>,
    pub status: u16,
}

#[derive(Clone, Default)]
struct Shared {
    behaviours: Arc<Mutex<HashMap<String, Behaviour>>>,
    hits: Arc<Mutex<Vec<Hit>>>,
}

pub struct Receiver {
    pub base: String,
    shared: Shared,
}

impl Receiver {
    /// Starts one on a free loopback port. Paths not told otherwise answer 200.
    pub async fn start() -> Self {
        let shared = Shared::default();
        let router = axum::Router::new()
            .route("/{path}", axum::routing::post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { base, shared }
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    pub fn set(&self, path: &str, behaviour: Behaviour) {
        self.shared
            .behaviours
            .lock()
            .unwrap()
            .insert(path.to_owned(), behaviour);
    }

    /// Every request to `path`, in the order received.
    pub fn hits(&self, path: &str) -> Vec<Hit> {
        self.shared
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }

    /// Per `webhook-id`, how many requests to `path` answered 2xx.
    pub fn delivered_by_id(&self, path: &str) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for hit in self.hits(path) {
            if (200..300).contains(&hit.status) {
                *counts.entry(hit.webhook_id).or_default() += 1;
            }
        }
        counts
    }
}

async fn receive(
    State(shared): State<Shared>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let behaviour = shared
        .behaviours
        .lock()
        .unwrap()
        .get(&path)
        .cloned()
        .unwrap_or_else(|| Behaviour::status(200));
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    shared.hits.lock().unwrap().push(Hit {
        path,
        webhook_id: header("webhook-id"),
        timestamp: header("webhook-timestamp").parse().unwrap_or_default(),
        signature: header("webhook-signature"),
        body: body.to_vec(),
        status: behaviour.status,
    });
    tokio::time::sleep(behaviour.delay).await;
    let mut response = (
        StatusCode::from_u16(behaviour.status).unwrap(),
        behaviour.body.clone(),
    )
        .into_response();
    if let Some(secs) = behaviour.retry_after {
        response
            .headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    response
}

/// HMAC-SHA256 as RFC 2104 writes it.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Whether `hit` is signed with `secret` (`whsec_<base64>`), as a receiver following the
/// convention checks it: any of the space-separated `v1,<sig>` entries matches.
pub fn verify(secret: &str, hit: &Hit) -> bool {
    let engine = base64::engine::general_purpose::STANDARD;
    let Ok(key) = engine.decode(secret.trim_start_matches("whsec_")) else {
        return false;
    };
    let mut signed = format!("{}.{}.", hit.webhook_id, hit.timestamp).into_bytes();
    signed.extend_from_slice(&hit.body);
    let expected = engine.encode(hmac_sha256(&key, &signed));
    hit.signature
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .any(|sig| sig == expected)
}

#[test]
fn the_receivers_hmac_matches_the_conventions_published_example() {
    let hit = Hit {
        path: String::new(),
        webhook_id: "msg_p5jXN8AQM9LWM0D4loKWxJek".into(),
        timestamp: 1614265330,
        signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into(),
        body: br#"{"test": 2432232314}"#.to_vec(),
        status: 200,
    };
    assert!(verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &hit));
    assert!(!verify("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &hit));
}
