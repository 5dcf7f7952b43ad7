//! `/admin/settings/*`: the console's own configuration. For now, its users.

pub mod api;
pub mod page;
#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

/// A user just added, with the temporary password to hand over (shown once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedUser {
    pub user_id: i64,
    pub email: String,
    pub temporary_password: crate::format::ShownOnce,
}
