//! `/admin`: the overview, the live state of both stores.

pub mod api;
pub mod page;

pub use page::OverviewPage;
