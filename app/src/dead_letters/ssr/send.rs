//! One attempt: the Standard Webhooks signature, an address check at resolve time, the
//! POST, and what its answer means.
//!
//! The convention (<https://www.standardwebhooks.com>): headers `webhook-id` (the same on
//! every retry and redrive, so a receiver can drop duplicates), `webhook-timestamp`
//! (seconds) and `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of
//! `<id>.<timestamp>.<body>` keyed with the secret's bytes (the base64 after `whsec_`).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The most of a response body kept with an attempt.
pub const SNIPPET_BYTES: usize = 1024;

/// A new signing secret: `whsec_` and 24 random bytes in base64.
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The `webhook-signature` header for `body` sent as message `id` at `timestamp`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap_or_else(|_| key.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Whether a webhook may not reach `ip`: every address that is not a public unicast one.
/// Loopback, private, link-local, shared (CGNAT), unspecified, broadcast, documentation,
/// benchmarking, IETF protocol assignments (192.0.0.0/24), reserved (240.0.0.0/4) and
/// multicast; in IPv6 also unique-local, site-local (fec0::/10), discard-only, Teredo and
/// ORCHID. An IPv6 address that carries an IPv4 one (mapped `::ffff:a.b.c.d`, NAT64
/// `64:ff9b::/96`, 6to4 `2002::/16`) is judged by the IPv4 address it reaches; the
/// deprecated IPv4-compatible form (`::a.b.c.d`) and local-use NAT64 are refused whole.
/// Nothing a customer's public endpoint resolves to, and what a request forged to reach
/// the inside of the network would use.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && c == 0)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                is_private(IpAddr::V4(std::net::Ipv4Addr::from(
                    (u32::from(hi) << 16) | u32::from(lo),
                )))
            };
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            match s {
                // IPv4-compatible (and :: and ::1): deprecated, never a webhook's.
                [0, 0, 0, 0, 0, 0, _, _] => true,
                // NAT64, well-known prefix: the IPv4 address in its last 32 bits.
                [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => embedded(hi, lo),
                // NAT64, local-use prefix (64:ff9b:1::/48): the network's own.
                [0x64, 0xff9b, 1, ..] => true,
                // 6to4: the IPv4 address in bits 16 to 48.
                [0x2002, hi, lo, ..] => embedded(hi, lo),
                // Discard-only (100::/64).
                [0x100, 0, 0, 0, ..] => true,
                // Teredo (2001::/32), ORCHIDv2 (2001:20::/28), documentation (2001:db8::/32).
                [0x2001, second, ..] => second == 0 || (second & 0xfff0) == 0x20 || second == 0xdb8,
                [first, ..] => {
                    (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
                        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
                        || (first & 0xffc0) == 0xfec0 // site-local, fec0::/10
                        || (first & 0xff00) == 0xff00 // multicast, ff00::/8
                }
            }
        }
    }
}

/// A resolver that drops private addresses, so a name that resolves to one (or is
/// changed to, after the URL was checked) is never connected to.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = public_addrs(&host).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The public addresses `host` resolves to; an error when it has none.
pub async fn public_addrs(
    host: &str,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await?
        .filter(|addr| !is_private(addr.ip()))
        .collect();
    if addrs.is_empty() {
        return Err(format!(
            "{host} resolves only to private or loopback addresses, which webhooks may not reach"
        )
        .into());
    }
    Ok(addrs)
}

/// The HTTP client: redirects are not followed (a redirect is an answer, not a 2xx, and
/// could lead inside the network), no proxy is used, and with `allow_private` off names
/// resolve to public addresses only. One per process, so connections are reused.
pub fn client(allow_private: bool) -> reqwest::Client {
    static PUBLIC: OnceLock<reqwest::Client> = OnceLock::new();
    static ANY: OnceLock<reqwest::Client> = OnceLock::new();
    let cell = if allow_private { &ANY } else { &PUBLIC };
    cell.get_or_init(|| {
        // No proxy, whatever HTTP(S)_PROXY says: a proxy resolves the name itself, so
        // the address check above would never see where a delivery goes.
        let builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Salvage-Webhooks/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(64);
        let builder = if allow_private {
            builder
        } else {
            builder.dns_resolver(Arc::new(PublicOnly))
        };
        builder.build().expect("the HTTP client builds")
    })
    .clone()
}

/// Why a URL is not a webhook's; each reads after "the URL".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("is not a URL ({0})")]
    Malformed(url::ParseError),
    #[error("must start with http:// or https://")]
    Scheme,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("has no host")]
    NoHost,
    #[error("points at a loopback, link-local or private address (set SALVAGE_WEBHOOK_ALLOW_PRIVATE to allow them)")]
    Private,
}

/// Why a URL is not a webhook's, or `Ok` with the URL parsed.
pub fn check_url(raw: &str, allow_private: bool) -> Result<url::Url, UrlError> {
    let url = url::Url::parse(raw.trim()).map_err(UrlError::Malformed)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let Some(host) = url.host() else {
        return Err(UrlError::NoHost);
    };
    if allow_private {
        return Ok(url);
    }
    let private = match host {
        url::Host::Ipv4(ip) => is_private(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => is_private(IpAddr::V6(ip)),
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost") || name.ends_with(".local")
        }
    };
    if private {
        return Err(UrlError::Private);
    }
    Ok(url)
}

/// What one attempt got.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The HTTP status, when one came back.
    pub status: Option<u16>,
    /// Why it failed without a status (timeout, refused, resolved to a private address).
    pub error: Option<String>,
    /// The start of the body (at most [`SNIPPET_BYTES`]).
    pub snippet: Option<String>,
    /// `Retry-After`, when the endpoint sent one.
    pub retry_after: Option<Duration>,
    pub duration: Duration,
}

/// What an answer means for the delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again later (5xx, 408, 429, a timeout, no connection, a redirect).
    Retry,
    /// 410 or another 4xx: the endpoint refused it; retrying cannot help.
    Reject,
}

impl Answer {
    pub fn verdict(&self) -> Verdict {
        match self.status {
            Some(status) if (200..300).contains(&status) => Verdict::Delivered,
            Some(408 | 429) => Verdict::Retry,
            Some(status) if (400..500).contains(&status) => Verdict::Reject,
            _ => Verdict::Retry,
        }
    }

    /// One line for `last_error`: the status and the start of the body, or the error.
    pub fn summary(&self) -> Option<String> {
        match (self.status, &self.error) {
            (_, Some(error)) => Some(error.clone()),
            (Some(status), None) if !(200..300).contains(&status) => {
                let body: String = self
                    .snippet
                    .as_deref()
                    .unwrap_or("")
                    .chars()
                    .take(120)
                    .collect();
                Some(format!("HTTP {status} {}", body.trim()).trim().to_owned())
            }
            _ => None,
        }
    }
}

/// One message to send.
pub struct Message<'a> {
    pub url: &'a str,
    pub secret: &'a str,
    pub id: &'a str,
    pub timestamp: i64,
    pub body: &'a [u8],
}

/// Sends `message` once, within `timeout`.
pub async fn send(
    client: &reqwest::Client,
    message: &Message<'_>,
    timeout: Duration,
    allow_private: bool,
) -> Answer {
    let started = Instant::now();
    let failed = |error: String| Answer {
        status: None,
        error: Some(error),
        snippet: None,
        retry_after: None,
        duration: started.elapsed(),
    };
    // A literal address is never resolved, so the resolver cannot check it: check here.
    if let Err(reason) = check_url(message.url, allow_private) {
        return failed(format!("the URL {reason}"));
    }
    let request = client
        .post(message.url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .header("webhook-id", message.id)
        .header("webhook-timestamp", message.timestamp.to_string())
        .header(
            "webhook-signature",
            sign(message.secret, message.id, message.timestamp, message.body),
        )
        .body(message.body.to_vec());
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(error) => return failed(describe(&error, timeout)),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_retry_after);
    let mut snippet = Vec::new();
    while snippet.len() < SNIPPET_BYTES {
        match tokio::time::timeout(timeout.saturating_sub(started.elapsed()), response.chunk())
            .await
        {
            Ok(Ok(Some(chunk))) => snippet.extend_from_slice(&chunk),
            _ => break,
        }
    }
    snippet.truncate(SNIPPET_BYTES);
    let mut text = String::from_utf8_lossy(&snippet).into_owned();
    // A cut in the middle of a character shows as one replacement character at most.
    while text.len() > SNIPPET_BYTES {
        text.pop();
    }
    Answer {
        status: Some(status),
        error: None,
        snippet: (!text.is_empty()).then_some(text),
        retry_after,
        duration: started.elapsed(),
    }
}

fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {} s", timeout.as_secs_f64());
    }
    // The innermost cause says it best ("Connection refused", the resolver's refusal).
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if error.is_connect() {
        format!("could not connect: {text}")
    } else {
        text
    }
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let secs = (at - time::OffsetDateTime::now_utc()).whole_seconds();
    Some(Duration::from_secs(secs.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_conventions_published_example() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_new_secret_signs_and_differs_each_time() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with("whsec_") && a != b);
        assert_ne!(sign(&a, "m", 1, b"x"), sign(&b, "m", 1, b"x"));
    }

    #[test]
    fn private_and_loopback_addresses_are_refused_and_public_ones_pass() {
        for url in [
            "http://127.0.0.1/hook",
            "http://10.1.2.3/",
            "http://192.168.0.10:8080/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://localhost:3000/",
            "http://printer.local/",
        ] {
            assert!(check_url(url, false).is_err(), "{url}");
            assert!(check_url(url, true).is_ok(), "{url} with private allowed");
        }
        for url in ["https://hooks.example.com/in", "http://93.184.216.34/x"] {
            assert!(check_url(url, false).is_ok(), "{url}");
        }
        for url in [
            "ftp://example.com/",
            "not a url",
            "https://user:pw@example.com/",
        ] {
            assert!(check_url(url, true).is_err(), "{url}");
        }
    }

    /// Every range a webhook may not reach, with an address inside it, and public
    /// addresses next to them that it may.
    #[test]
    fn every_address_that_is_not_public_unicast_is_refused() {
        let refused = [
            ("0.0.0.0/8", "0.1.2.3"),
            ("10.0.0.0/8", "10.0.0.5"),
            ("100.64.0.0/10 shared", "100.127.255.254"),
            ("127.0.0.0/8", "127.3.2.1"),
            ("169.254.0.0/16", "169.254.169.254"),
            ("172.16.0.0/12", "172.31.0.1"),
            ("192.0.0.0/24 protocol assignments", "192.0.0.8"),
            ("192.0.2.0/24 documentation", "192.0.2.1"),
            ("192.168.0.0/16", "192.168.1.1"),
            ("198.18.0.0/15 benchmarking", "198.19.0.1"),
            ("198.51.100.0/24 documentation", "198.51.100.7"),
            ("203.0.113.0/24 documentation", "203.0.113.9"),
            ("224.0.0.0/4 multicast", "239.1.2.3"),
            ("240.0.0.0/4 reserved", "240.0.0.1"),
            ("broadcast", "255.255.255.255"),
            ("::", "::"),
            ("::1", "::1"),
            ("IPv4-compatible, private", "::a00:5"),
            ("IPv4-compatible, public", "::8.8.8.8"),
            ("IPv4-mapped, private", "::ffff:10.0.0.5"),
            ("NAT64, private", "64:ff9b::a00:5"),
            ("NAT64, loopback", "64:ff9b::127.0.0.1"),
            ("NAT64 local use", "64:ff9b:1::808:808"),
            ("discard-only", "100::1"),
            ("Teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2"),
            ("ORCHIDv2", "2001:20::1"),
            ("documentation", "2001:db8::1"),
            ("6to4, private", "2002:a00:5::1"),
            ("6to4, CGNAT", "2002:6440:1::1"),
            ("unique local", "fd12:3456::1"),
            ("link-local", "fe80::1"),
            ("site-local", "fec0::1"),
            ("multicast", "ff02::1"),
        ];
        for (range, ip) in refused {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_private(ip), "{range}: {ip} was let through");
            let host = match ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            };
            assert!(
                check_url(&format!("http://{host}/"), false).is_err(),
                "{range}"
            );
        }
        for ip in [
            "8.8.8.8",
            "93.184.216.34",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.1.1",
            "223.255.255.254",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:4860::8888",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip} is public");
        }
    }

    /// Runs [`proxy_in_the_environment_child`] in a process of its own whose environment
    /// names a proxy (the variable is read when a client is built, and setting it here
    /// would reach every other test of this process).
    #[test]
    fn the_webhook_client_ignores_a_proxy_named_in_the_environment() {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "dead_letters::ssr::send::tests::proxy_in_the_environment_child",
                "--ignored",
                "--nocapture",
            ])
            .env("SALVAGE_PROXY_CHILD", "1")
            // Nothing listens on port 9 (discard): a client using the proxy fails.
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("http_proxy", "http://127.0.0.1:9")
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("ALL_PROXY", "http://127.0.0.1:9")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{printed}");
        assert!(printed.contains("1 passed"), "the child ran: {printed}");
    }

    #[tokio::test]
    #[ignore = "run by the_webhook_client_ignores_a_proxy_named_in_the_environment"]
    async fn proxy_in_the_environment_child() {
        assert_eq!(std::env::var("SALVAGE_PROXY_CHILD").as_deref(), Ok("1"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            socket
                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
        });

        let answer = client(true)
            .post(format!("http://127.0.0.1:{port}/hook"))
            .body("{}")
            .send()
            .await
            .expect("delivered straight to the receiver, not through the proxy");

        assert_eq!(answer.status().as_u16(), 204);
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_when_resolved() {
        let error = public_addrs("localhost").await.unwrap_err();
        assert!(error.to_string().contains("private or loopback"), "{error}");
    }

    #[test]
    fn statuses_become_verdicts() {
        let answer = |status: Option<u16>| Answer {
            status,
            error: None,
            snippet: None,
            retry_after: None,
            duration: Duration::ZERO,
        };
        assert_eq!(answer(Some(200)).verdict(), Verdict::Delivered);
        assert_eq!(answer(Some(204)).verdict(), Verdict::Delivered);
        assert_eq!(answer(Some(301)).verdict(), Verdict::Retry);
        assert_eq!(answer(Some(408)).verdict(), Verdict::Retry);
        assert_eq!(answer(Some(429)).verdict(), Verdict::Retry);
        assert_eq!(answer(Some(500)).verdict(), Verdict::Retry);
        assert_eq!(answer(Some(410)).verdict(), Verdict::Reject);
        assert_eq!(answer(Some(400)).verdict(), Verdict::Reject);
        assert_eq!(answer(None).verdict(), Verdict::Retry);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
