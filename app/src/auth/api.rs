//! Server functions of accounts: who am I, sign in and out, passwords, the first admin.

use leptos::prelude::*;

use super::Viewer;
use crate::error::AppError;

/// Where to go after signing in: `next` when it is a console path, else the overview.
/// Anything else (another site, `//evil`, a backslash trick) is ignored.
pub fn safe_next(next: &str) -> String {
    let ok = (next == "/admin" || next.starts_with("/admin/") || next.starts_with("/admin?"))
        && !next.contains("//")
        && !next.contains('\\')
        && !next.starts_with("/admin/login");
    if ok {
        next.to_owned()
    } else {
        "/admin".to_owned()
    }
}

/// The signed-in person, or 401.
#[server(endpoint = "auth/me")]
pub async fn current_user() -> Result<Viewer, AppError> {
    let (_, actor) = crate::auth::ssr::guard_allowing_temporary_password().await?;
    actor.viewer().ok_or(AppError::Unauthorized)
}

/// Signs in and returns where to go next. Refused calls: 401 (one message for every
/// cause), 422 for an empty field, 429 when throttled, 403 from another origin.
///
/// The sign-in page is a plain HTML form (see [`super::form`]): its post asks for HTML
/// and is answered `303 See Other`, to where the person goes next or back to the form
/// with the refusal.
#[server(endpoint = "auth/sign-in")]
pub async fn sign_in(email: String, password: String, next: String) -> Result<String, AppError> {
    use crate::auth::ssr;
    let result = async {
        let (state, parts, session) = ssr::request_context()?;
        ssr::check_origin(&state, &parts)?;
        let network = crate::server::client::client_network(&state, &parts);
        let actor = ssr::sign_in(
            &state,
            &session,
            &network,
            &email,
            secrecy::SecretString::from(password),
        )
        .await?;
        Ok(if actor.must_change_password {
            "/admin/account".to_owned()
        } else if next.is_empty() || next == "/admin" {
            // No page asked for: each role's home (operators start on the alerts).
            actor.role.home().to_owned()
        } else {
            safe_next(&next)
        })
    }
    .await;
    if crate::server::from_plain_form() {
        let location = match &result {
            Ok(target) => target.clone(),
            Err(error) => super::form::Refusal::of(error).redirect(&next),
        };
        crate::server::see_other(&location);
        return Ok(location);
    }
    crate::server::respond(result)
}

/// Ends the session server-side. Safe to call without one.
#[server(endpoint = "auth/sign-out")]
pub async fn sign_out() -> Result<(), AppError> {
    use crate::auth::ssr;
    let result = async {
        let (state, parts, session) = ssr::request_context()?;
        ssr::check_origin(&state, &parts)?;
        ssr::end_session(&session).await
    }
    .await;
    // A plain form (a page served without the client) goes to the sign-in page, not back
    // to the page it came from.
    if result.is_ok() && crate::server::from_plain_form() {
        crate::server::see_other("/admin/login");
    }
    crate::server::respond(result)
}

/// Changes the signed-in person's password; other sessions of the account end.
#[server(endpoint = "auth/password")]
pub async fn change_password(
    current_password: String,
    new_password: String,
    confirm_password: String,
) -> Result<(), AppError> {
    use crate::auth::ssr;
    let (state, actor) = ssr::guard_allowing_temporary_password().await?;
    let result = async {
        if new_password != confirm_password {
            return Err(AppError::invalid(
                "confirm_password",
                "the two new passwords differ",
            ));
        }
        let (_, parts, session) = ssr::request_context()?;
        ssr::change_password(
            &state,
            &session,
            &actor,
            &crate::server::client::client_network(&state, &parts),
            secrecy::SecretString::from(current_password),
            secrecy::SecretString::from(new_password),
        )
        .await
    }
    .await;
    crate::server::respond(result)
}

/// Whether `token` is a live first-admin setup link.
#[server(endpoint = "auth/setup-status")]
pub async fn setup_link_status(token: String) -> Result<bool, AppError> {
    use crate::auth::ssr;
    let result = async {
        let (state, parts, _) = ssr::request_context()?;
        ssr::check_origin(&state, &parts)?;
        ssr::setup_link_is_valid(&state.pg, &token, state.clock.now()).await
    }
    .await;
    crate::server::respond(result)
}

/// Creates the first admin from the one-time setup link.
#[server(endpoint = "auth/setup")]
pub async fn create_first_admin(
    token: String,
    email: String,
    password: String,
    confirm_password: String,
) -> Result<String, AppError> {
    use crate::auth::ssr;
    let result = async {
        let (state, parts, _) = ssr::request_context()?;
        ssr::check_origin(&state, &parts)?;
        if password != confirm_password {
            return Err(AppError::invalid(
                "confirm_password",
                "the two passwords differ",
            ));
        }
        ssr::create_first_admin(
            &state.pg,
            state.clock.now(),
            &crate::server::client::client_network(&state, &parts),
            &token,
            &email,
            secrecy::SecretString::from(password),
        )
        .await?;
        super::normalize_email("email", &email)
    }
    .await;
    crate::server::respond(result)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_console_paths_are_followed_after_sign_in() {
        assert_eq!(
            safe_next("/admin/history?kind=drill"),
            "/admin/history?kind=drill"
        );
        assert_eq!(safe_next("/admin"), "/admin");
        assert_eq!(safe_next("https://evil.example/admin"), "/admin");
        assert_eq!(safe_next("//evil.example"), "/admin");
        assert_eq!(safe_next("/admin//evil.example"), "/admin");
        assert_eq!(safe_next("/admin\\@evil"), "/admin");
        assert_eq!(safe_next("/administrator"), "/admin");
        assert_eq!(safe_next("/admin/login"), "/admin");
    }
}
