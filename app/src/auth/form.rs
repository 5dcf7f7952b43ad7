//! The sign-in page as a plain HTML form: it loads no WASM and no script, so the first
//! page of an incident arrives in one small response, even over a slow VPN.
//!
//! The form posts to the sign-in server function (one function, whatever calls it).
//! A post from the form asks for HTML, so the function answers `303 See Other`: to the
//! page it leads to, or back to the form with a [`Refusal`] in the query. The refusal
//! carries a kind and numbers only, never a message: the sign-in page shows words of
//! its own, so a crafted link cannot put text of its choosing on it.

use crate::error::AppError;
use crate::stores::StoreKind;

/// Why a sign-in from the form was refused, as the redirect back to the form says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The email and password do not match an active account.
    Credentials,
    /// Too many failed sign-ins; try again after this many seconds.
    Throttled { retry_after_secs: u64 },
    /// A field is empty.
    Missing { field: Field },
    /// A store did not answer.
    StoreDown { store: StoreKind },
    /// The post came from another site, or the server failed (its log says why, under
    /// `reference` when there is one).
    Other { reference: Option<String> },
}

/// A field of the sign-in form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Email,
    Password,
}

/// The longest reference an [`AppError::Internal`] carries (they are 12 hex digits).
const MAX_REFERENCE: usize = 32;

impl Refusal {
    /// The refusal of a sign-in that failed with `error`.
    pub fn of(error: &AppError) -> Self {
        match error {
            AppError::SignInFailed => Refusal::Credentials,
            AppError::TooManyRequests { retry_after_secs }
            | AppError::RateLimited {
                retry_after_secs, ..
            } => Refusal::Throttled {
                retry_after_secs: *retry_after_secs,
            },
            AppError::Invalid { field, .. } if field == "email" => Refusal::Missing {
                field: Field::Email,
            },
            AppError::Invalid { field, .. } if field == "password" => Refusal::Missing {
                field: Field::Password,
            },
            AppError::Unavailable { stores, .. } => Refusal::StoreDown {
                // Signing in needs PostgreSQL; a sign-in refused for ClickHouse alone
                // says ClickHouse.
                store: stores
                    .iter()
                    .copied()
                    .find(|s| *s == StoreKind::Postgres)
                    .or(stores.first().copied())
                    .unwrap_or(StoreKind::Postgres),
            },
            AppError::Internal { reference, .. } => Refusal::Other {
                reference: Some(reference.clone()),
            },
            _ => Refusal::Other { reference: None },
        }
    }

    /// The query parameters that say this refusal (`refused=…` and its number or name).
    pub fn to_query(&self) -> String {
        match self {
            Refusal::Credentials => "refused=credentials".to_owned(),
            Refusal::Throttled { retry_after_secs } => {
                format!("refused=throttled&retry={retry_after_secs}")
            }
            Refusal::Missing { field } => format!(
                "refused=missing&field={}",
                match field {
                    Field::Email => "email",
                    Field::Password => "password",
                }
            ),
            Refusal::StoreDown { store } => format!("refused=unavailable&store={}", store.as_str()),
            Refusal::Other {
                reference: Some(reference),
            } => format!("refused=other&reference={reference}"),
            Refusal::Other { reference: None } => "refused=other".to_owned(),
        }
    }

    /// Reads a refusal back from the page's query (`param` gives one parameter). Anything
    /// it does not recognise is no refusal at all: the form shows no error it did not
    /// write itself.
    pub fn from_query(param: impl Fn(&str) -> Option<String>) -> Option<Self> {
        match param("refused")?.as_str() {
            "credentials" => Some(Refusal::Credentials),
            "throttled" => Some(Refusal::Throttled {
                retry_after_secs: param("retry")?.parse().ok()?,
            }),
            "missing" => Some(Refusal::Missing {
                field: match param("field")?.as_str() {
                    "email" => Field::Email,
                    "password" => Field::Password,
                    _ => return None,
                },
            }),
            "unavailable" => Some(Refusal::StoreDown {
                store: StoreKind::parse(&param("store")?)?,
            }),
            "other" => Some(Refusal::Other {
                reference: param("reference").filter(|r| {
                    !r.is_empty()
                        && r.len() <= MAX_REFERENCE
                        && r.bytes().all(|b| b.is_ascii_alphanumeric())
                }),
            }),
            _ => None,
        }
    }

    /// The error the form shows, in the words the server function's own error has.
    pub fn error(&self) -> AppError {
        match self {
            Refusal::Credentials => AppError::SignInFailed,
            Refusal::Throttled { retry_after_secs } => AppError::TooManyRequests {
                retry_after_secs: *retry_after_secs,
            },
            Refusal::Missing {
                field: Field::Email,
            } => AppError::invalid("email", "enter your email"),
            Refusal::Missing {
                field: Field::Password,
            } => AppError::invalid("password", "enter your password"),
            Refusal::StoreDown { store } => AppError::store_down(*store),
            Refusal::Other {
                reference: Some(reference),
            } => AppError::Internal {
                reference: reference.clone(),
                cause: Default::default(),
            },
            Refusal::Other { reference: None } => AppError::Forbidden {
                message: "The sign-in did not go through. Open the sign-in page again and \
                          retry."
                    .to_owned(),
            },
        }
    }

    /// Where the form goes back to after this refusal: the sign-in page, still leading
    /// to `next`.
    pub fn redirect(&self, next: &str) -> String {
        let mut url = crate::auth::viewer::login_url(next);
        url.push('&');
        url.push_str(&self.to_query());
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(refusal: &Refusal) -> Option<Refusal> {
        let query = refusal.to_query();
        Refusal::from_query(|name| {
            query.split('&').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                (key == name).then(|| value.to_owned())
            })
        })
    }

    #[test]
    fn every_refusal_reads_back_as_itself() {
        for refusal in [
            Refusal::Credentials,
            Refusal::Throttled {
                retry_after_secs: 900,
            },
            Refusal::Missing {
                field: Field::Email,
            },
            Refusal::Missing {
                field: Field::Password,
            },
            Refusal::StoreDown {
                store: StoreKind::Postgres,
            },
            Refusal::StoreDown {
                store: StoreKind::Clickhouse,
            },
            Refusal::Other {
                reference: Some("a1b2c3d4e5f6".to_owned()),
            },
            Refusal::Other { reference: None },
        ] {
            assert_eq!(read_back(&refusal), Some(refusal.clone()), "{refusal:?}");
        }
    }

    #[test]
    fn the_form_shows_the_server_functions_own_words() {
        for error in [
            AppError::SignInFailed,
            AppError::TooManyRequests {
                retry_after_secs: 120,
            },
            AppError::invalid("email", "enter your email"),
            AppError::invalid("password", "enter your password"),
            AppError::store_down(StoreKind::Postgres),
            AppError::store_down(StoreKind::Clickhouse),
            AppError::Internal {
                reference: "0123456789ab".to_owned(),
                cause: Default::default(),
            },
        ] {
            assert_eq!(Refusal::of(&error).error(), error);
        }
    }

    #[test]
    fn a_crafted_query_puts_no_words_of_its_own_on_the_page() {
        let query = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.to_string())
            }
        };
        // Unknown kinds and values are no refusal at all.
        assert_eq!(
            Refusal::from_query(query(&[("refused", "Call 555-0100")])),
            None
        );
        assert_eq!(
            Refusal::from_query(query(&[("refused", "missing"), ("field", "Your boss")])),
            None
        );
        assert_eq!(
            Refusal::from_query(query(&[("refused", "throttled"), ("retry", "soon")])),
            None
        );
        // A reference that is not a plain token is dropped, the refusal kept.
        assert_eq!(
            Refusal::from_query(query(&[
                ("refused", "other"),
                ("reference", "call us at 555-0100")
            ])),
            Some(Refusal::Other { reference: None })
        );
        assert_eq!(Refusal::from_query(query(&[])), None);
    }

    #[test]
    fn the_redirect_keeps_the_page_asked_for() {
        assert_eq!(
            Refusal::Credentials.redirect("/admin/alerts?alert=3"),
            "/admin/login?next=/admin/alerts%3Falert%3D3&refused=credentials"
        );
    }
}
