//! Why a person did something, as the history keeps it. One type and one rule for every
//! door: the console's forms, the server functions and every `--reason` of the CLI read a
//! reason through [`Reason::parse`], so a reason the console refuses is refused at the
//! terminal too.

/// A reason: trimmed, not blank, at most [`Reason::MAX_CHARS`] characters. Serialised as
/// its text; read back (a job's input) through the same rule.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Reason(String);

impl TryFrom<String> for Reason {
    type Error = ReasonError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Reason::parse(&value)
    }
}

impl From<Reason> for String {
    fn from(reason: Reason) -> Self {
        reason.0
    }
}

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

    /// A reason Salvage gives itself in its own words (a drill's restore says which
    /// drill): kept within the rule, so a store never holds one the doors would refuse.
    pub fn own(text: impl Into<String>) -> Reason {
        let text = text.into();
        let text = text.trim();
        let cut = text
            .char_indices()
            .nth(Reason::MAX_CHARS)
            .map_or(text.len(), |(at, _)| at);
        Reason(text[..cut].to_owned())
    }

    /// A reason read back from a store, written through [`Reason::parse`] once (an old
    /// row may predate today's limit; it is kept as written). Blank is `None`.
    pub fn from_stored(value: Option<String>) -> Option<Reason> {
        value
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
            .map(Reason)
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

    #[test]
    fn salvages_own_words_and_stored_reasons_keep_the_rule_and_serde_checks_it() {
        assert_eq!(Reason::own("  drill 7 ").as_str(), "drill 7");
        assert_eq!(
            Reason::own("x".repeat(600)).as_str().chars().count(),
            Reason::MAX_CHARS
        );
        assert_eq!(Reason::from_stored(Some("  ".into())), None);
        assert_eq!(
            Reason::from_stored(Some(" kept ".into())).map(Reason::into_string),
            Some("kept".to_owned())
        );
        let json = serde_json::to_string(&Reason::parse("disk full").unwrap()).unwrap();
        assert_eq!(json, "\"disk full\"");
        assert!(serde_json::from_str::<Reason>("\"   \"").is_err());
        assert!(serde_json::from_str::<Reason>(&format!("\"{}\"", "x".repeat(501))).is_err());
    }
}
