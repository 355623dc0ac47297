//! How an error is shown where it ends (a log line, a JSON answer, `/health`): its message and
//! every cause after it, `outer: inner: innermost`. Errors keep their causes as `#[source]`
//! instead of flattening them into strings, so this is the one place that joins them.

use std::error::Error;
use std::fmt;

/// Displays `0` and its chain of sources.
pub(crate) struct Chain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {0}")]
    struct Outer(&'static str, #[source] std::io::Error);

    #[test]
    fn every_cause_is_shown_once() {
        let e = Outer("a.toml", std::io::Error::other("permission denied"));
        assert_eq!(
            Chain(&e).to_string(),
            "cannot read a.toml: permission denied"
        );
    }
}
