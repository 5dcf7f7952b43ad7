//! The server side of accounts, one file per part:
//!
//! - `actor` — [`Actor`]: who did something.
//! - `passwords` — argon2id hashing and checking.
//! - `records` — `users` rows as the guard and sign-in read them.
//! - `session` — sessions, the same-origin check, the guard of every server function.
//! - `sign_in` — sign-in and its throttling.
//! - `account` — a person's own password change.
//! - `users` — creating and finding accounts (used by the CLI, setup and the settings
//!   feature, which holds user management).
//! - `setup` — the first admin's one-time link.
//!
//! Tokens, digests and constant-time checks are shared with ingest keys and cron
//! secrets in `crate::server::tokens`.

mod account;
mod actor;
mod passwords;
mod records;
mod session;
mod setup;
mod sign_in;
mod users;

pub use account::change_password;
pub use actor::Actor;
pub use passwords::{
    configure_password_gate, default_password_permits, hash_password, password_gate,
    verify_password, PasswordHash, DEFAULT_PASSWORD_WAIT,
};
pub use session::{
    authenticate, check_origin, end_session, guard, guard_allowing_temporary_password,
    request_context, serve,
};
pub use setup::{create_first_admin, issue_setup_token, setup_link_is_valid, SETUP_LINK_HOURS};
pub use sign_in::{sign_in, Throttle, THROTTLE_WINDOW_SECS};
pub use users::*;

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[tokio::test]
    async fn a_password_verifies_against_its_own_hash_only() {
        let hash = hash_password(SecretString::from("correct horse battery"))
            .await
            .unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password(
            SecretString::from("correct horse battery"),
            Some(hash.clone())
        )
        .await
        .unwrap());
        assert!(
            !verify_password(SecretString::from("wrong horse battery"), Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        assert!(!verify_password(SecretString::from(""), None).await.unwrap());
    }

    #[test]
    fn hashes_and_tokens_never_print() {
        let hash = PasswordHash::from_stored("$argon2id$secret".into());
        assert_eq!(format!("{hash:?}"), "PasswordHash(<redacted>)");
    }
}
