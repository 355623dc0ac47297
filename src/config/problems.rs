//! What validation found wrong: each problem names the field, the value and why, and they are
//! collected so that one run reports all of them.

use std::fmt;

/// One validation failure: which field, which value, and why it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub value: String,
    pub why: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.field, self.value, self.why)
    }
}

/// Collects problems so that one run of `strata check` reports all of them.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn add(
        &mut self,
        field: impl Into<String>,
        value: impl fmt::Display,
        why: impl Into<String>,
    ) {
        self.0.push(Problem {
            field: field.into(),
            value: value.to_string(),
            why: why.into(),
        });
    }
}
