//! Why a person did something, as the history keeps it. One type and one rule for every
//! door: the console's forms, the server functions and every `--reason` of the CLI read a
//! reason through [`Reason::parse`], so a reason the console refuses is refused at the
//! terminal too.

/// A reason: trimmed, not blank, at most [`Reason::MAX_CHARS`] characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason(String);

/// What is wrong with a reason; each reads after the field's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReasonError {
    #[error("say why, for the history")]
    Missing,
    #[error("keep it under 500 characters")]
    TooLong,
}

impl Reason {
    pub const MAX_CHARS: usize = 500;

    /// A reason that must be given.
    pub fn parse(value: &str) -> Result<Reason, ReasonError> {
        Reason::optional(value)?.ok_or(ReasonError::Missing)
    }

    /// A reason that may be left empty (`None`).
    pub fn optional(value: &str) -> Result<Option<Reason>, ReasonError> {
        let value = value.trim();
        if value.chars().count() > Reason::MAX_CHARS {
            return Err(ReasonError::TooLong);
        }
        Ok((!value.is_empty()).then(|| Reason(value.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl From<ReasonError> for crate::error::AppError {
    fn from(error: ReasonError) -> Self {
        crate::error::AppError::invalid("reason", error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_trimmed_required_and_bounded() {
        assert_eq!(Reason::parse("  disk full ").unwrap().as_str(), "disk full");
        assert_eq!(Reason::parse("   "), Err(ReasonError::Missing));
        assert_eq!(Reason::optional(" "), Ok(None));
        let longest = "x".repeat(Reason::MAX_CHARS);
        assert!(Reason::parse(&longest).is_ok());
        assert_eq!(
            Reason::parse(&format!("{longest}y")),
            Err(ReasonError::TooLong)
        );
        // Characters, not bytes: 500 accented letters are a reason.
        assert!(Reason::parse(&"é".repeat(Reason::MAX_CHARS)).is_ok());
    }
}
