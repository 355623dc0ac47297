//! Index names: the template of `[index] name` (`{prefix}`, `{archive}`, `{period}`), rendered
//! for a bucket's period and parsed back from the names the node lists, and the rules both
//! Elasticsearch and OpenSearch apply to index names.

use crate::calendar::IndexPeriod;
use crate::clock::EpochMillis;

/// One piece of an index name template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Archive,
    Period,
}

/// A parsed index name template such as `{prefix}{archive}-{period}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexNaming {
    pieces: Vec<Piece>,
}

/// Why an index name template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    #[error("unknown placeholder '{{{0}}}' (known: {{prefix}}, {{archive}}, {{period}})")]
    UnknownPlaceholder(String),
    #[error("unclosed '{{' in the template")]
    Unclosed,
    #[error("the template has no {{period}}: every period would write to the same index")]
    NoPeriod,
    #[error("index name '{name}' is invalid: {why}")]
    InvalidName { name: String, why: &'static str },
}

impl IndexNaming {
    /// Parses `template`, substituting `{prefix}` at once.
    pub fn parse(template: &str, prefix: &str) -> Result<Self, NamingError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let close = rest[open..].find('}').ok_or(NamingError::Unclosed)? + open;
            match &rest[open + 1..close] {
                "prefix" => literal.push_str(prefix),
                "archive" | "period" => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(if &rest[open + 1..close] == "archive" {
                        Piece::Archive
                    } else {
                        Piece::Period
                    });
                }
                other => return Err(NamingError::UnknownPlaceholder(other.to_string())),
            }
            rest = &rest[close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        if !pieces.contains(&Piece::Period) {
            return Err(NamingError::NoPeriod);
        }
        Ok(Self { pieces })
    }

    /// The index name for `archive`'s period that starts at `period_start`.
    pub fn render(&self, archive: &str, period: IndexPeriod, period_start: EpochMillis) -> String {
        let mut name = String::with_capacity(48);
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => name.push_str(s),
                Piece::Archive => name.push_str(archive),
                Piece::Period => name.push_str(&period.render(period_start)),
            }
        }
        name
    }

    /// The wildcard pattern that matches every index this template can produce.
    pub fn wildcard(&self) -> String {
        let mut pattern = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => pattern.push_str(s),
                Piece::Archive | Piece::Period => {
                    if !pattern.ends_with('*') {
                        pattern.push('*')
                    }
                }
            }
        }
        pattern
    }

    /// The period start encoded in `name` if it is the index of `archive`'s period, else `None`.
    pub fn parse_name(
        &self,
        name: &str,
        archive: &str,
        period: IndexPeriod,
    ) -> Option<EpochMillis> {
        let mut rest = name;
        let mut start = None;
        for piece in &self.pieces {
            rest = match piece {
                Piece::Literal(s) => rest.strip_prefix(s.as_str())?,
                Piece::Archive => rest.strip_prefix(archive)?,
                Piece::Period => {
                    let len = period.render(0).len();
                    let text = rest.get(..len)?;
                    start = Some(period.parse(text)?);
                    &rest[len..]
                }
            };
        }
        if rest.is_empty() {
            start
        } else {
            None
        }
    }
}

/// Checks the rules both Elasticsearch and OpenSearch apply to index names.
pub(crate) fn validate_index_name(name: &str) -> Result<(), NamingError> {
    let invalid = |why| {
        Err(NamingError::InvalidName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > 255 {
        return invalid("it is longer than 255 bytes");
    }
    if name.chars().any(|c| c.is_uppercase()) {
        return invalid("it has upper-case letters");
    }
    if name.chars().any(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ' ' | ':'
        ) || c.is_control()
    }) {
        return invalid("it contains one of \\ / * ? \" < > | , # : space or a control character");
    }
    if name.starts_with(['-', '_', '+']) {
        return invalid("it starts with '-', '_' or '+'");
    }
    if name == "." || name == ".." {
        return invalid("it is '.' or '..'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> EpochMillis {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn samplerr_naming_is_expressible() {
        let naming = IndexNaming::parse("{prefix}{period}", ".samplerr-").unwrap();
        let t = at("2016-03-17T10:00:00Z");
        assert_eq!(
            naming.render("20s", IndexPeriod::Day, IndexPeriod::Day.start_of(t)),
            ".samplerr-2016.03.17"
        );
        assert_eq!(
            naming.render("1h", IndexPeriod::Year, IndexPeriod::Year.start_of(t)),
            ".samplerr-2016"
        );
        assert_eq!(naming.wildcard(), ".samplerr-*");
    }

    #[test]
    fn names_parse_back_only_for_their_archive_and_period() {
        let naming = IndexNaming::parse("{prefix}{archive}-{period}", "strata-").unwrap();
        let day = at("2020-04-09T00:00:00Z");
        assert_eq!(
            naming.parse_name("strata-20s-2020.04.09", "20s", IndexPeriod::Day),
            Some(day)
        );
        assert_eq!(
            naming.parse_name("strata-20s-2020.04.09", "10m", IndexPeriod::Day),
            None
        );
        assert_eq!(
            naming.parse_name("strata-20s-2020.04", "20s", IndexPeriod::Day),
            None
        );
        assert_eq!(
            naming.parse_name("strata-20s-2020.04.09x", "20s", IndexPeriod::Day),
            None
        );
        let samplerr = IndexNaming::parse("{prefix}{period}", ".samplerr-").unwrap();
        assert_eq!(
            samplerr.parse_name(".samplerr-2020.04", "10m", IndexPeriod::Month),
            Some(at("2020-04-01T00:00:00Z"))
        );
        assert_eq!(
            samplerr.parse_name(".samplerr-2020.04", "20s", IndexPeriod::Day),
            None
        );
        assert_eq!(
            samplerr.parse_name("samplerr-2020.04", "10m", IndexPeriod::Month),
            None
        );
    }

    #[test]
    fn default_naming_renders_archive_and_period() {
        let naming = IndexNaming::parse("{prefix}{archive}-{period}", "strata-").unwrap();
        let t = at("2026-11-23T10:00:00Z");
        assert_eq!(
            naming.render("10m", IndexPeriod::Month, IndexPeriod::Month.start_of(t)),
            "strata-10m-2026.11"
        );
        assert_eq!(naming.wildcard(), "strata-*-*");
    }

    #[test]
    fn bad_templates_are_refused() {
        assert_eq!(
            IndexNaming::parse("{prefix}{archive}", "x-"),
            Err(NamingError::NoPeriod)
        );
        assert_eq!(
            IndexNaming::parse("{prefix}{day}", "x-"),
            Err(NamingError::UnknownPlaceholder("day".into()))
        );
        assert_eq!(
            IndexNaming::parse("{prefix{period}", "x-"),
            Err(NamingError::UnknownPlaceholder("prefix{period".into()))
        );
    }

    #[test]
    fn index_name_rules() {
        assert!(validate_index_name("strata-20s-2020.01.01").is_ok());
        assert!(validate_index_name(".samplerr-2020").is_ok());
        assert!(validate_index_name("Strata-2020").is_err());
        assert!(validate_index_name("_strata").is_err());
        assert!(validate_index_name("a b").is_err());
    }
}
