//! Accounts, roles and sessions: who is signed in and what their role lets them do.
//!
//! - [`Role`] and [`Permission`] — the role table of README.md, as code. Both the server
//!   gate and the page conveniences (hidden buttons) ask [`Role::can`].
//! - `api` — the `#[server]` functions: who am I, sign in / out, change password,
//!   create the first admin.
//! - `form` — the sign-in page as a plain HTML form (no WASM): how a refused sign-in
//!   comes back to it.
//! - `page` — the sign-in, first-admin and account pages.
//! - `ssr` (server only) — password hashing, the session guard, throttling, user queries.

pub mod api;
pub mod form;
pub mod page;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod viewer;

use serde::{Deserialize, Serialize};

crate::stored::stored_enum! {
    /// What a person may do in Salvage. Ordered by breadth only for display; permissions
    /// are decided by [`Role::can`], never by comparing roles.
    pub enum Role {
        /// On call: reads everything, acts on queues, alerts and migrations.
        Operator = "operator",
        /// Reads everything, above all the history; annotates and exports it.
        Manager = "manager",
        /// Everything, plus restores, purges, secrets, users and ingest keys.
        Admin = "admin",
    }
}

impl Role {
    /// A role typed in a form or on the command line (any case, spaces around), or an
    /// error naming the field.
    pub fn from_input(value: &str) -> Result<Role, crate::error::AppError> {
        Role::parse(&value.trim().to_ascii_lowercase()).ok_or_else(|| {
            crate::error::AppError::invalid("role", "choose operator, manager or admin")
        })
    }

    /// Where a person of this role lands after signing in when no page was asked for:
    /// operators on the alerts, managers on the drills, admins on the overview.
    pub fn home(self) -> &'static str {
        match self {
            Role::Operator => "/admin/alerts",
            Role::Manager => "/admin/drills",
            Role::Admin => "/admin",
        }
    }

    /// Whether this role may do `permission`: the role table of README's "Accounts,
    /// roles and sessions", as code.
    pub fn can(self, permission: Permission) -> bool {
        match permission {
            Permission::Read | Permission::Annotate => true,
            Permission::ExportHistory | Permission::VerifyHistory => {
                matches!(self, Role::Manager | Role::Admin)
            }
            Permission::Operate => matches!(self, Role::Operator | Role::Admin),
            Permission::Administer | Permission::ManageUsers => self == Role::Admin,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind of thing a person can do. Every server function and handler names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// See any page and any record.
    Read,
    /// Declare incidents and add notes to the history.
    Annotate,
    /// Download the history as CSV or Markdown.
    ExportHistory,
    /// Verify the history's hash chain (a full scan of it).
    VerifyHistory,
    /// Replay queues, redrive dead letters, handle alerts, resume migrations, start drills.
    Operate,
    /// Restore backups, purge dead letters, rotate the cron secret, manage ingest keys.
    Administer,
    /// Add users, change roles, disable accounts.
    ManageUsers,
}

impl Permission {
    /// The plain sentence a refused person reads.
    pub fn refusal(self, role: Role) -> String {
        let what = match self {
            Permission::Read => "read the console",
            Permission::Annotate => "add to the history",
            Permission::ExportHistory => "export the history",
            Permission::VerifyHistory => "verify the history chain",
            Permission::Operate => "run operational actions",
            Permission::Administer => "run admin actions",
            Permission::ManageUsers => "manage users",
        };
        let who = match self {
            Permission::ExportHistory | Permission::VerifyHistory => "managers and admins",
            Permission::Operate => "operators and admins",
            _ => "admins",
        };
        format!("Your role ({role}) cannot {what}; only {who} can.")
    }
}

/// The signed-in person, as the pages see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    /// `users.id`.
    pub user_id: i64,
    /// The sign-in email.
    pub email: String,
    /// The role, read from the database on every request.
    pub role: Role,
    /// A temporary password is in use: the console asks for a new one before anything else.
    pub must_change_password: bool,
}

/// A user as the settings page and `salvage user list` show them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    pub must_change_password: bool,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
}

/// The shortest password accepted. Long passphrases beat complexity rules.
pub const MIN_PASSWORD_LEN: usize = 12;
/// The longest password accepted (bounds the hashing work an attacker can ask for).
pub const MAX_PASSWORD_LEN: usize = 256;

/// Checks a new password's length; the error names `field`.
pub fn check_new_password(field: &str, password: &str) -> Result<(), crate::error::AppError> {
    let length = password.chars().count();
    if length < MIN_PASSWORD_LEN {
        return Err(crate::error::AppError::invalid(
            field,
            format!("use at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if length > MAX_PASSWORD_LEN {
        return Err(crate::error::AppError::invalid(
            field,
            format!("use at most {MAX_PASSWORD_LEN} characters"),
        ));
    }
    Ok(())
}

/// Normalises and checks an email address; the error names `field`.
pub fn normalize_email(field: &str, email: &str) -> Result<String, crate::error::AppError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(char::is_whitespace)
        });
    if valid {
        Ok(email)
    } else {
        Err(crate::error::AppError::invalid(
            field,
            "enter an email address like name@example.com",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_table_matches_the_design() {
        use Permission::*;
        let table = [
            (Role::Operator, [true, true, false, true, false, false]),
            (Role::Manager, [true, true, true, false, false, false]),
            (Role::Admin, [true, true, true, true, true, true]),
        ];
        for (role, expected) in table {
            let actual = [
                Read,
                Annotate,
                ExportHistory,
                Operate,
                Administer,
                ManageUsers,
            ]
            .map(|permission| role.can(permission));
            assert_eq!(actual, expected, "{role}");
        }
    }

    #[test]
    fn roles_parse_from_their_stored_names_and_typed_ones_from_any_case() {
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(Role::parse("Admin"), None, "stored names are exact");
        assert_eq!(Role::from_input("Admin"), Ok(Role::Admin));
        assert_eq!(Role::from_input(" operator "), Ok(Role::Operator));
        assert!(Role::from_input("root").is_err());
    }

    #[test]
    fn emails_are_lower_cased_and_must_have_one_at_sign() {
        assert_eq!(
            normalize_email("email", " Ops@Example.COM ").unwrap(),
            "ops@example.com"
        );
        assert!(normalize_email("email", "ops").is_err());
        assert!(normalize_email("email", "a@b@c").is_err());
        assert!(normalize_email("email", "a b@c").is_err());
    }

    #[test]
    fn short_passwords_are_refused_with_the_field_named() {
        let error = check_new_password("new_password", "short").unwrap_err();
        assert_eq!(
            error.to_string(),
            "new_password: use at least 12 characters"
        );
        assert!(check_new_password("p", "correct horse battery").is_ok());
    }
}
