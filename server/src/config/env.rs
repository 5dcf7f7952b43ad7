//! Reading one variable: present (blank counts as unset), a whole number within bounds,
//! or on/off; each wrong value becomes the one line that names it.

use super::ConfigError;

/// The environment as settings read it.
pub(super) struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Env<'a> {
    pub(super) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self { lookup }
    }

    /// The value of `name`, unless it is unset or blank.
    pub(super) fn get(&self, name: &'static str) -> Option<String> {
        (self.lookup)(name).filter(|value| !value.trim().is_empty())
    }

    /// `name` as a whole number in `range`, or `default`; `unit` names what it counts.
    pub(super) fn bounded(
        &self,
        name: &'static str,
        range: std::ops::RangeInclusive<u64>,
        unit: &str,
        default: u64,
    ) -> Result<u64, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(value) => match value.trim().parse::<u64>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(ConfigError::Malformed {
                    name,
                    reason: format!(
                        "expected {unit} between {} and {}",
                        range.start(),
                        range.end()
                    ),
                }),
            },
        }
    }

    /// `name` as on/off (also true/false, 1/0), or `default`.
    pub(super) fn switch(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).as_deref().map(str::trim) {
            None => Ok(default),
            Some("on") | Some("true") | Some("1") => Ok(true),
            Some("off") | Some("false") | Some("0") => Ok(false),
            Some(_) => Err(ConfigError::Malformed {
                name,
                reason: "expected on or off".into(),
            }),
        }
    }
}
