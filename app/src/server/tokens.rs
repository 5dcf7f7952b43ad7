//! Secrets Salvage hands out (setup links, ingest keys, cron secrets) and temporary
//! passwords: generated from the OS's random source, kept only as SHA-256 digests,
//! compared in constant time. Every kind of token goes through these functions.

use rand::distributions::{Distribution, Slice};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// 32 random bytes from the OS, hex-encoded (64 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A temporary password a person can type: 20 characters without look-alikes, each
/// drawn uniformly from the OS's random source (about 115 bits).
pub fn temporary_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let letters = Slice::new(ALPHABET).expect("the alphabet is not empty");
    letters
        .sample_iter(rand::rngs::OsRng)
        .take(20)
        .map(|b| char::from(*b))
        .collect()
}

/// SHA-256 of a token: what the database keeps instead of the token.
pub fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Whether two digests are equal, in time that does not depend on where they differ.
pub fn digests_match(stored: &[u8], presented: &[u8]) -> bool {
    bool::from(stored.ct_eq(presented))
}

/// Whether `headers` carry `Authorization: Bearer <token>` whose digest is `expected`
/// (a token setting such as `SALVAGE_HEALTH_TOKEN`), compared in constant time.
pub fn bearer_matches(headers: &axum::http::HeaderMap, expected: &[u8]) -> bool {
    bearer(headers).is_some_and(|presented| digests_match(expected, &digest(presented)))
}

/// The token of an `Authorization: Bearer <token>` header; `None` when the header is
/// missing or has another shape.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hex() {
        let token = random_token();
        assert_eq!(token.len(), 64);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(random_token(), random_token());
    }

    #[test]
    fn temporary_passwords_use_every_letter_of_the_alphabet_and_nothing_else() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let password = temporary_password();
            assert_eq!(password.chars().count(), 20);
            seen.extend(password.chars());
        }
        assert!(seen.iter().all(|c| !"0O1lI".contains(*c)), "{seen:?}");
        // 4,000 draws over 55 letters: every letter shows up (a missing one would mean
        // the draw is not uniform over the alphabet).
        assert_eq!(seen.len(), 55);
    }

    #[test]
    fn digests_match_only_the_same_token() {
        let stored = digest("sgk_abc");
        assert!(digests_match(&stored, &digest("sgk_abc")));
        assert!(!digests_match(&stored, &digest("sgk_abd")));
        assert!(!digests_match(&stored, &[]));
    }

    #[test]
    fn only_a_bearer_header_yields_a_token() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert("authorization", "Bearer sgc_123 ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("sgc_123"));
    }
}
