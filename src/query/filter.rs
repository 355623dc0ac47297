//! Request parameters shared by the read APIs: times, and the series selector (name, host, tags).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::clock::EpochMillis;

/// A parameter that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter '{param}': {why}")]
pub(crate) struct BadParam {
    pub param: String,
    pub why: String,
}

fn bad(param: &str, why: impl Into<String>) -> BadParam {
    BadParam {
        param: param.to_string(),
        why: why.into(),
    }
}

/// A required parameter.
pub(crate) fn required<'a>(
    params: &'a BTreeMap<String, String>,
    name: &str,
) -> Result<&'a str, BadParam> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad(name, "is required"))
}

/// Epoch seconds between 1973 and 2286 read as milliseconds land in the first months of 1970,
/// where no metrics are: such a number is refused with a hint rather than read silently.
const LOOKS_LIKE_SECONDS: std::ops::Range<i64> = 100_000_000..10_000_000_000;

/// An instant parameter: RFC 3339 or epoch milliseconds (not seconds: see [`LOOKS_LIKE_SECONDS`]).
pub(crate) fn instant(
    params: &BTreeMap<String, String>,
    name: &str,
) -> Result<EpochMillis, BadParam> {
    let text = required(params, name)?;
    if let Ok(ms) = text.parse::<i64>() {
        if LOOKS_LIKE_SECONDS.contains(&ms) {
            return Err(bad(
                name,
                format!(
                    "{ms} is {} in epoch milliseconds; it looks like epoch seconds: send {ms}000 (milliseconds) or RFC 3339",
                    crate::calendar::rfc3339(ms)
                ),
            ));
        }
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|d| d.timestamp_millis())
        .map_err(|_| {
            bad(
                name,
                format!("{text:?} is neither RFC 3339 nor epoch milliseconds"),
            )
        })
}

/// Which series a read is about: `name`, optional `host` and `tag.<key>=<value>` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeriesSelector {
    pub name: String,
    pub host: Option<String>,
    pub tags: Vec<(String, String)>,
}

impl SeriesSelector {
    pub(crate) fn from_params(
        params: &BTreeMap<String, String>,
        name_param: &str,
    ) -> Result<Self, BadParam> {
        let name = required(params, name_param)?.to_string();
        Ok(Self {
            name,
            ..Self::any_name(params)
        })
    }

    /// Like [`SeriesSelector::from_params`] with `name` optional (empty: any name).
    pub(crate) fn any_name(params: &BTreeMap<String, String>) -> Self {
        let name = params.get("name").cloned().unwrap_or_default();
        let host = params.get("host").filter(|h| !h.is_empty()).cloned();
        let tags = params
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("tag.").map(|t| (t.to_string(), v.clone())))
            .collect();
        Self { name, host, tags }
    }

    /// Term filters on the document fields.
    pub(crate) fn filters(&self) -> Vec<Value> {
        let mut f = Vec::new();
        if !self.name.is_empty() {
            f.push(json!({"term": {"name": self.name}}));
        }
        if let Some(h) = &self.host {
            f.push(json!({"term": {"host": h}}));
        }
        for (k, v) in &self.tags {
            f.push(json!({"term": {format!("tags.{k}"): v}}));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn instants_and_selectors() {
        let p = params(&[
            ("name", "c1"),
            ("start", "1980-12-31T22:49:50Z"),
            ("end", "1000"),
            ("tag.dc", "par"),
            ("host", "h"),
        ]);
        assert_eq!(instant(&p, "start").unwrap(), 347_150_990_000);
        assert_eq!(instant(&p, "end").unwrap(), 1000);
        let seconds = params(&[("from", "1764500000")]);
        let why = instant(&seconds, "from").unwrap_err().to_string();
        assert!(
            why.contains("looks like epoch seconds: send 1764500000000"),
            "{why}"
        );
        assert_eq!(
            instant(&params(&[("from", "1764500000000")]), "from").unwrap(),
            1_764_500_000_000
        );
        assert_eq!(
            instant(&p, "to").unwrap_err().to_string(),
            "parameter 'to': is required"
        );
        let sel = SeriesSelector::from_params(&p, "name").unwrap();
        assert_eq!(sel.filters().len(), 3);
        assert!(instant(&params(&[("start", "yesterday")]), "start")
            .unwrap_err()
            .why
            .contains("neither"));
    }
}
