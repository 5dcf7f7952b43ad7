//! `/admin/settings/*`: the console's own configuration. For now, its users.

pub mod api;
pub mod page;
#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

/// A user just added, with the temporary password to hand over (shown once; its
/// `Debug` leaves it out).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedUser {
    pub user_id: i64,
    pub email: String,
    pub temporary_password: String,
}

impl std::fmt::Debug for AddedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddedUser")
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("temporary_password", &crate::format::REDACTED)
            .finish()
    }
}
