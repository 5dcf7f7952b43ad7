//! `salvage user …`: accounts from the terminal (local administrator access).

use secrecy::SecretString;

use super::args::UserCommand;
use super::common::{app_error, print_json};
use crate::config::Settings;

pub async fn user(command: UserCommand, settings: Settings) -> anyhow::Result<()> {
    use app::auth::{ssr, Role};
    let state = super::common::current_state(&settings).await?;
    let actor = ssr::Actor::cli();
    let role = |value: &str| Role::from_input(value).map_err(app_error);
    match command {
        UserCommand::Add {
            email,
            role: r,
            reason,
        } => {
            let role = role(&r)?;
            let password = read_password()?;
            let (id, _) = app::settings::ssr::add_user(
                &state.pg,
                &actor,
                &email,
                role,
                Some(password),
                reason,
            )
            .await
            .map_err(app_error)?;
            println!(
                "Added user #{id} ({}) as {role}.",
                email.trim().to_lowercase()
            );
        }
        UserCommand::SetRole {
            email,
            role: r,
            reason,
        } => {
            let role = role(&r)?;
            let id = ssr::user_id_by_email(&state.pg, &email)
                .await
                .map_err(app_error)?;
            app::settings::ssr::set_role(&state.pg, &actor, id, role, reason)
                .await
                .map_err(app_error)?;
            println!("{email} now has the {role} role.");
        }
        UserCommand::Disable { email, reason } => {
            let id = ssr::user_id_by_email(&state.pg, &email)
                .await
                .map_err(app_error)?;
            app::settings::ssr::set_disabled(&state.pg, &actor, id, true, reason)
                .await
                .map_err(app_error)?;
            println!("{email} is disabled; their sessions have ended.");
        }
        UserCommand::Enable { email, reason } => {
            let id = ssr::user_id_by_email(&state.pg, &email)
                .await
                .map_err(app_error)?;
            app::settings::ssr::set_disabled(&state.pg, &actor, id, false, reason)
                .await
                .map_err(app_error)?;
            println!("{email} is enabled.");
        }
        UserCommand::List(output) => {
            let users = ssr::list_users(&state.pg).await.map_err(app_error)?;
            if output.json {
                return print_json(&users);
            }
            println!(
                "{:<6} {:<36} {:<9} {:<9} LAST SIGN-IN (UTC)",
                "ID", "EMAIL", "ROLE", "STATUS"
            );
            for user in users {
                let status = if user.disabled {
                    "disabled"
                } else if user.must_change_password {
                    "temporary"
                } else {
                    "active"
                };
                println!(
                    "{:<6} {:<36} {:<9} {:<9} {}",
                    user.id,
                    user.email,
                    user.role,
                    status,
                    user.last_login_at
                        .map(app::format::format_utc)
                        .unwrap_or_else(|| "never".into())
                );
            }
        }
    }
    Ok(())
}

/// Reads a new password: twice from a prompt on a terminal, else one line of stdin.
fn read_password() -> anyhow::Result<SecretString> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password (at least 12 characters): ")?;
        let second = rpassword::prompt_password("Password again: ")?;
        anyhow::ensure!(first == second, "the two passwords differ");
        Ok(SecretString::from(first))
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(SecretString::from(
            line.trim_end_matches(['\r', '\n']).to_owned(),
        ))
    }
}
