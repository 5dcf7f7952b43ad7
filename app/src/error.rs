//! The one error type of server functions and HTTP handlers.
//!
//! Every variant is something a person can act on. Internal causes (a `sqlx::Error`, a
//! ClickHouse error) are logged on the server with a reference and never sent to the
//! browser: the caller sees `Internal { reference }` and can quote the reference to
//! whoever reads the logs.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// An error a server function or handler returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AppError {
    /// No session, or it expired: sign in (401).
    #[error("Sign in to continue.")]
    Unauthorized,
    /// Signed in, but the role does not allow this (403).
    #[error("{message}")]
    Forbidden { message: String },
    /// The thing asked for does not exist (404).
    #[error("{what} was not found.")]
    NotFound { what: String },
    /// Input that does not pass validation; `field` names the wrong part (422).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The email and password do not match an active account (401). One message for
    /// every cause, so a failed sign-in never tells whether the email has an account.
    #[error("That email and password do not match an active account.")]
    SignInFailed,
    /// Too many attempts; try again after `retry_after_secs` seconds (429).
    #[error("Too many failed sign-ins. Try again in {} minute(s).", retry_after_secs.div_ceil(60).max(1))]
    TooManyRequests { retry_after_secs: u64 },
    /// The request itself is malformed (not JSON, not the expected shape) (400).
    #[error("{message}")]
    BadRequest { message: String },
    /// The request is larger than Salvage accepts: body size or rows per batch (413).
    #[error("{message}")]
    TooLarge { message: String },
    /// The action conflicts with the current state (409).
    #[error("{message}")]
    Conflict { message: String },
    /// A store the action needs is not reachable right now (503).
    #[error("{message}")]
    Unavailable { message: String },
    /// Something failed on the server; the cause is in the server log under `reference`.
    #[error("Something went wrong on the server (reference {reference}).")]
    Internal { reference: String },
    /// The call itself failed (network, encoding) before or after reaching the server.
    #[error("The request failed: {message}")]
    Transport { message: String },
}

impl AppError {
    /// A validation error naming the field that is wrong.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status this error is sent with.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::BadRequest { .. } => 400,
            Self::Unauthorized | Self::SignInFailed => 401,
            Self::TooLarge { .. } => 413,
            Self::TooManyRequests { .. } => 429,
            Self::Forbidden { .. } => 403,
            Self::NotFound { .. } => 404,
            Self::Conflict { .. } => 409,
            Self::Invalid { .. } => 422,
            Self::Unavailable { .. } => 503,
            Self::Internal { .. } | Self::Transport { .. } => 500,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Args(message) | ServerFnErrorErr::MissingArg(message) => {
                Self::invalid("arguments", message)
            }
            other => Self::Transport {
                message: other.to_string(),
            },
        }
    }
}

#[cfg(feature = "ssr")]
mod ssr {
    use super::AppError;
    use axum::response::{IntoResponse, Response};

    impl AppError {
        /// Logs `cause` with a fresh reference and returns the opaque error for the caller.
        pub fn internal(context: &str, cause: impl std::fmt::Display) -> Self {
            let reference = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
            tracing::error!(%reference, error = %cause, "{context}");
            Self::Internal { reference }
        }
    }

    impl IntoResponse for AppError {
        fn into_response(self) -> Response {
            let status = axum::http::StatusCode::from_u16(self.status_code())
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            let mut body = serde_json::to_value(&self).unwrap_or_default();
            if let Some(object) = body.as_object_mut() {
                object.insert("error".into(), self.to_string().into());
            }
            let mut response = (status, axum::Json(body)).into_response();
            if let Self::TooManyRequests { retry_after_secs } = self {
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(retry_after_secs),
                );
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_maps_to_the_status_a_client_can_act_on() {
        assert_eq!(AppError::Unauthorized.status_code(), 401);
        assert_eq!(
            AppError::invalid("rows[3].ts", "not a timestamp").status_code(),
            422
        );
        assert_eq!(
            AppError::Unavailable {
                message: "ClickHouse".into()
            }
            .status_code(),
            503
        );
    }

    #[test]
    fn an_invalid_error_names_its_field_in_the_message() {
        let error = AppError::invalid("email", "must contain @");
        assert_eq!(error.to_string(), "email: must contain @");
    }

    #[test]
    fn errors_survive_the_round_trip_through_the_wire_encoding() {
        let error = AppError::Forbidden {
            message: "Only admins can rotate the cron secret.".into(),
        };
        let bytes = error.ser();
        assert_eq!(AppError::de(bytes), error);
    }
}
