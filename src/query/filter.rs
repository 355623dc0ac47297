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

/// Which series a read is about: `name` (exact), or `match` (a glob over names: `*` any run,
/// `?` one character) or `names` (a comma-separated list); optional `host` and
/// `tag.<key>=<value>` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeriesSelector {
    /// The exact name; empty when `matching` says which names, or for any name.
    pub name: String,
    pub matching: Option<NameMatch>,
    pub host: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// Several names at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameMatch {
    Glob(String),
    Listed(Vec<String>),
}

impl SeriesSelector {
    /// The selector of a read about one name, given as `name_param`.
    pub(crate) fn from_params(
        params: &BTreeMap<String, String>,
        name_param: &str,
    ) -> Result<Self, BadParam> {
        let name = required(params, name_param)?.to_string();
        Ok(Self {
            name,
            matching: None,
            ..Self::any_name(params)
        })
    }

    /// The selector of a read about one name or several: exactly one of `name`, `match` and
    /// `names`.
    pub(crate) fn one_or_several(params: &BTreeMap<String, String>) -> Result<Self, BadParam> {
        let given: Vec<&str> = ["name", "match", "names"]
            .into_iter()
            .filter(|p| params.get(*p).is_some_and(|v| !v.is_empty()))
            .collect();
        match given.as_slice() {
            ["name"] => Self::from_params(params, "name"),
            [_] => Ok(Self::any_name(params)),
            [] => Err(bad(
                "name",
                "is required (or `match` with a glob, or `names`)",
            )),
            _ => Err(bad(
                given[1],
                format!(
                    "give one of `name`, `match` and `names`, not {}",
                    given.join(" and ")
                ),
            )),
        }
    }

    /// Like [`SeriesSelector::from_params`] with the name optional (none: any name); `match` and
    /// `names` are read too.
    pub(crate) fn any_name(params: &BTreeMap<String, String>) -> Self {
        let name = params.get("name").cloned().unwrap_or_default();
        let matching = if let Some(glob) = params.get("match").filter(|g| !g.is_empty()) {
            Some(NameMatch::Glob(glob.clone()))
        } else {
            params.get("names").filter(|n| !n.is_empty()).map(|names| {
                NameMatch::Listed(
                    names
                        .split(',')
                        .filter(|n| !n.is_empty())
                        .map(String::from)
                        .collect(),
                )
            })
        };
        let host = params.get("host").filter(|h| !h.is_empty()).cloned();
        let tags = params
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("tag.").map(|t| (t.to_string(), v.clone())))
            .collect();
        Self {
            name,
            matching,
            host,
            tags,
        }
    }

    /// Whether the selector may take several names.
    pub(crate) fn is_several(&self) -> bool {
        self.matching.is_some()
    }

    /// The names asked for, as written: `cpu`, `cpu.*` or `a,b`.
    pub(crate) fn label(&self) -> String {
        match &self.matching {
            Some(NameMatch::Glob(glob)) => glob.clone(),
            Some(NameMatch::Listed(names)) => names.join(","),
            None => self.name.clone(),
        }
    }

    /// Term filters on the document fields.
    pub(crate) fn filters(&self) -> Vec<Value> {
        let mut f = Vec::new();
        if !self.name.is_empty() {
            f.push(json!({"term": {"name": self.name}}));
        }
        match &self.matching {
            Some(NameMatch::Glob(glob)) => {
                f.push(json!({"wildcard": {"name": {"value": glob}}}));
            }
            Some(NameMatch::Listed(names)) => f.push(json!({"terms": {"name": names}})),
            None => {}
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

/// How the series of a read about several are grouped into lines: one per name, host, tag
/// value or series, or all in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GroupBy {
    Name,
    Host,
    Tag(String),
    Series,
    Nothing,
}

impl GroupBy {
    /// `group_by`: `name`, `host`, `tag.<key>`, `series` or `none`; the default is `name` for a
    /// read about several names and `none` otherwise.
    pub(crate) fn from_params(
        params: &BTreeMap<String, String>,
        selector: &SeriesSelector,
    ) -> Result<Self, BadParam> {
        let Some(text) = params.get("group_by").filter(|g| !g.is_empty()) else {
            return Ok(if selector.is_several() {
                GroupBy::Name
            } else {
                GroupBy::Nothing
            });
        };
        Ok(match text.as_str() {
            "name" => GroupBy::Name,
            "host" => GroupBy::Host,
            "series" => GroupBy::Series,
            "none" => GroupBy::Nothing,
            other => match other.strip_prefix("tag.").filter(|k| !k.is_empty()) {
                Some(key) => GroupBy::Tag(key.to_string()),
                None => {
                    return Err(bad(
                        "group_by",
                        format!("{other:?} is not one of name, host, tag.<key>, series or none"),
                    ))
                }
            },
        })
    }

    /// The keyword field the groups are read from.
    pub(crate) fn field(&self) -> Option<String> {
        match self {
            GroupBy::Name => Some("name".into()),
            GroupBy::Host => Some("host".into()),
            GroupBy::Tag(key) => Some(format!("tags.{key}")),
            GroupBy::Series => Some("series".into()),
            GroupBy::Nothing => None,
        }
    }

    /// The group of a stored document (its `_source`); `None` when it has no such field.
    pub(crate) fn key_of(&self, doc: &Value) -> Option<String> {
        let v = match self {
            GroupBy::Name => &doc["name"],
            GroupBy::Host => &doc["host"],
            GroupBy::Tag(key) => &doc["tags"][key],
            GroupBy::Series => &doc["series"],
            GroupBy::Nothing => return Some(String::new()),
        };
        v.as_str().map(String::from)
    }

    pub(crate) fn as_param(&self) -> String {
        match self {
            GroupBy::Tag(key) => format!("tag.{key}"),
            GroupBy::Name => "name".into(),
            GroupBy::Host => "host".into(),
            GroupBy::Series => "series".into(),
            GroupBy::Nothing => "none".into(),
        }
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
        assert_eq!(GroupBy::from_params(&p, &sel), Ok(GroupBy::Nothing));
        assert!(instant(&params(&[("start", "yesterday")]), "start")
            .unwrap_err()
            .why
            .contains("neither"));
    }

    #[test]
    fn several_names_by_glob_or_list_grouped_by_name_unless_told() {
        let glob = params(&[("match", "cpu.*"), ("host", "h")]);
        let sel = SeriesSelector::one_or_several(&glob).unwrap();
        assert_eq!(sel.label(), "cpu.*");
        assert_eq!(
            sel.filters()[0],
            json!({"wildcard": {"name": {"value": "cpu.*"}}})
        );
        assert_eq!(GroupBy::from_params(&glob, &sel), Ok(GroupBy::Name));
        let listed = params(&[("names", "a,b"), ("group_by", "tag.dc")]);
        let sel = SeriesSelector::one_or_several(&listed).unwrap();
        assert_eq!(sel.filters()[0], json!({"terms": {"name": ["a", "b"]}}));
        let by = GroupBy::from_params(&listed, &sel).unwrap();
        assert_eq!(by.field().as_deref(), Some("tags.dc"));
        assert_eq!(
            by.key_of(&json!({"tags": {"dc": "par"}})).as_deref(),
            Some("par")
        );
        assert_eq!(by.key_of(&json!({"tags": {}})), None);

        let both = params(&[("name", "a"), ("match", "b*")]);
        let why = SeriesSelector::one_or_several(&both).unwrap_err();
        assert_eq!(why.param, "match");
        assert!(SeriesSelector::one_or_several(&params(&[]))
            .unwrap_err()
            .why
            .contains("required"));
        let bad_group = params(&[("name", "a"), ("group_by", "colour")]);
        let sel = SeriesSelector::one_or_several(&bad_group).unwrap();
        assert_eq!(
            GroupBy::from_params(&bad_group, &sel).unwrap_err().param,
            "group_by"
        );
    }
}
