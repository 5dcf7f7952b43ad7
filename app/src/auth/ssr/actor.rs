//! Who did something: a signed-in person, the command line or a scheduled job.

use super::super::{Permission, Role, Viewer};
use crate::error::AppError;

/// Who did something: a signed-in person, the command line or a scheduled job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// `users.id` for a person; `None` for the CLI and jobs.
    pub user_id: Option<i64>,
    /// What the history records as the actor: an email, `cli:<user>`, `system:<job>`.
    pub name: String,
    pub role: Role,
    /// A temporary password is still in use.
    pub must_change_password: bool,
}

impl Actor {
    /// The command line, run by someone with the server's configuration (and so with
    /// the databases' credentials): it acts with the admin role.
    pub fn cli() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        Self {
            user_id: None,
            name: format!("cli:{user}"),
            role: Role::Admin,
            must_change_password: false,
        }
    }

    /// A scheduled job or Salvage itself.
    pub fn system(job: &str) -> Self {
        Self {
            user_id: None,
            name: format!("system:{job}"),
            role: Role::Admin,
            must_change_password: false,
        }
    }

    /// The page-facing view of a signed-in person.
    pub fn viewer(&self) -> Option<Viewer> {
        Some(Viewer {
            user_id: self.user_id?,
            email: self.name.clone(),
            role: self.role,
            must_change_password: self.must_change_password,
        })
    }

    /// `Ok` when the role allows `permission`; a logged 403 otherwise.
    pub fn authorize(&self, permission: Permission) -> Result<(), AppError> {
        if self.role.can(permission) {
            Ok(())
        } else {
            tracing::warn!(actor = %self.name, role = %self.role, ?permission, "refused: role does not allow this");
            Err(AppError::Forbidden {
                message: permission.refusal(self.role),
            })
        }
    }
}
