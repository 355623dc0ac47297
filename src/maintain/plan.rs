//! The maintenance planner (pure): from "now", the existing indices and the existing aliases,
//! decide which indices to create, which aliases to add or remove (one atomic `_aliases`
//! request), and which indices have expired.
//!
//! Stitching: an archive's coverage starts at the start of its earliest unexpired index; each
//! instant is served by the finest archive whose coverage has begun. An index is served up to the
//! start of the coverage of any finer archive: wholly (no filter), in part (filter
//! `@timestamp < that start`), or not at all (no alias) — including when the finer coverage
//! starts exactly at the index's own start.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{json, Value};

use crate::calendar::{rfc3339, IndexPeriod};
use crate::clock::EpochMillis;
use crate::config::{AliasMode, Archive, Config};
use crate::persist::backend::ExistingAlias;

/// An alias as it should be.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredAlias {
    pub index: String,
    pub alias: String,
    pub filter: Option<Value>,
}

/// One index that follows the configured naming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedIndex {
    pub name: String,
    /// Index into the config's archives.
    pub archive: usize,
    pub start: EpochMillis,
    pub end: EpochMillis,
}

/// What one maintenance pass does.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    #[serde(serialize_with = "serialize_instant")]
    pub now: EpochMillis,
    /// The complete desired alias state (per-index aliases and the umbrella).
    pub aliases: Vec<DesiredAlias>,
    /// The `_aliases` actions that take the cluster there (removes first).
    pub actions: Vec<Value>,
    /// Expired indices, by explicit name.
    pub delete: Vec<String>,
    /// Indices of the current and next period that do not exist yet.
    pub create: Vec<String>,
    /// Delete candidates, with their period start and retention, for the safety checks.
    #[serde(skip)]
    pub expired: Vec<(ManagedIndex, EpochMillis)>,
    /// Why the purge would be refused without `--force` (a dry run shows it instead of failing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

fn serialize_instant<S: serde::Serializer>(t: &EpochMillis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// The alert history indices among `names` whose month started at least `tasks.alerts_retention`
/// before `now` (the same rule as the archives' indices), sorted.
pub fn expired_alert_history(config: &Config, now: EpochMillis, names: &[String]) -> Vec<String> {
    let indices = config.tasks.alert_indices();
    let mut expired: Vec<String> = names
        .iter()
        .filter(|name| {
            indices
                .history_start(name)
                .is_some_and(|start| config.tasks.alerts_retention.add_to(start) <= now)
        })
        .cloned()
        .collect();
    expired.sort();
    expired
}

/// Recognises the indices that belong to a configured archive.
pub fn managed_indices(config: &Config, names: &[String]) -> Vec<ManagedIndex> {
    let mut found = Vec::new();
    for name in names {
        for (i, a) in config.archives.iter().enumerate() {
            if let Some(start) = config
                .index
                .naming
                .parse_name(name, &a.name, a.index_period)
            {
                found.push(ManagedIndex {
                    name: name.clone(),
                    archive: i,
                    start,
                    end: a.index_period.next_start(start),
                });
                break;
            }
        }
    }
    found
}

/// Whether the index of `archive` whose period starts at `start` has expired at `now`: the one
/// retention rule, for deletion here and for late events in the consolidator.
pub fn is_expired(archive: &Archive, start: EpochMillis, now: EpochMillis) -> bool {
    archive.retention.add_to(start) <= now
}

/// The start of the oldest index period of `archive` not expired at `now`: buckets before it
/// are past the retention.
pub fn retention_horizon(archive: &Archive, now: EpochMillis) -> EpochMillis {
    let period = archive.index_period;
    // Step back more than the longest the retention can be (a month is at most 31 days, a year
    // 366), then forward to the first period that has not expired.
    let longest = archive.retention.min_len_ms() / 28 * 31 + period.min_len_ms() * 2;
    let mut start = period.start_of(now.saturating_sub(longest));
    while is_expired(archive, start, now) {
        start = period.next_start(start);
    }
    start
}

/// The retention horizon of every archive, in configuration order.
pub fn retention_horizons(config: &Config, now: EpochMillis) -> Vec<EpochMillis> {
    config
        .archives
        .iter()
        .map(|a| retention_horizon(a, now))
        .collect()
}

/// Computes the plan for `now`.
pub fn plan(
    config: &Config,
    now: EpochMillis,
    existing: &[String],
    aliases: &[ExistingAlias],
) -> Plan {
    let mut indices = managed_indices(config, existing);
    let present: BTreeSet<&str> = existing.iter().map(String::as_str).collect();
    let mut create = Vec::new();
    for (i, a) in config.archives.iter().enumerate() {
        let current = a.index_period.start_of(now);
        for start in [current, a.index_period.next_start(current)] {
            let name = config.index.naming.render(&a.name, a.index_period, start);
            if !present.contains(name.as_str()) && !create.contains(&name) {
                create.push(name.clone());
                indices.push(ManagedIndex {
                    name,
                    archive: i,
                    start,
                    end: a.index_period.next_start(start),
                });
            }
        }
    }
    let is_expired = |m: &ManagedIndex| is_expired(&config.archives[m.archive], m.start, now);
    let expired: Vec<(ManagedIndex, EpochMillis)> = indices
        .iter()
        .filter(|m| is_expired(m))
        .map(|m| {
            (
                m.clone(),
                config.archives[m.archive].retention.add_to(m.start),
            )
        })
        .collect();
    let kept: Vec<&ManagedIndex> = indices.iter().filter(|m| !is_expired(m)).collect();

    let served = served_ranges(config, &kept);
    let desired = match config.aliases.mode {
        AliasMode::Stitched => stitched_aliases(config, &served),
        AliasMode::Samplerr => samplerr_aliases(config, &served),
    };
    let doomed: BTreeSet<&str> = expired.iter().map(|(m, _)| m.name.as_str()).collect();
    let managed_names: BTreeSet<&str> = indices.iter().map(|m| m.name.as_str()).collect();
    let actions = alias_actions(config, &desired, aliases, &managed_names, &doomed);
    let mut delete: Vec<String> = doomed.iter().map(|s| s.to_string()).collect();
    delete.sort();
    create.sort();
    Plan {
        now,
        aliases: desired,
        actions,
        delete,
        create,
        expired,
        refused: None,
    }
}

/// Where each archive's coverage starts: the start of its earliest kept index.
fn coverage_starts(kept: &[&ManagedIndex]) -> BTreeMap<usize, EpochMillis> {
    let mut coverage: BTreeMap<usize, EpochMillis> = BTreeMap::new();
    for m in kept {
        let start = coverage.entry(m.archive).or_insert(m.start);
        *start = (*start).min(m.start);
    }
    coverage
}

/// Where the coverage of any archive finer than `archive` starts (`MAX` when none has any).
fn finer_coverage_start(
    config: &Config,
    coverage: &BTreeMap<usize, EpochMillis>,
    archive: usize,
) -> EpochMillis {
    let step = |i: usize| config.archives[i].step;
    coverage
        .iter()
        .filter(|(&b, _)| step(b) < step(archive))
        .map(|(_, &start)| start)
        .min()
        .unwrap_or(EpochMillis::MAX)
}

/// For every kept index, the part of its period it serves: `[start, end)`, empty when none.
fn served_ranges<'a>(
    config: &Config,
    kept: &[&'a ManagedIndex],
) -> Vec<(&'a ManagedIndex, EpochMillis, EpochMillis)> {
    let coverage = coverage_starts(kept);
    let mut ranges: Vec<_> = kept
        .iter()
        .map(|m| {
            (
                *m,
                m.start,
                m.end
                    .min(finer_coverage_start(config, &coverage, m.archive)),
            )
        })
        .filter(|(_, from, to)| from < to)
        .collect();
    ranges.sort_by(|a, b| (a.1, &a.0.name).cmp(&(b.1, &b.0.name)));
    ranges
}

/// The time each archive serves at `now`, given the existing index names: `(archive, from, to)`,
/// finest first — the same stitching the aliases use, for reads that go to the archives directly.
pub fn archive_spans(
    config: &Config,
    now: EpochMillis,
    existing: &[String],
) -> Vec<(usize, EpochMillis, EpochMillis)> {
    let indices = managed_indices(config, existing);
    let kept: Vec<&ManagedIndex> = indices
        .iter()
        .filter(|m| config.archives[m.archive].retention.add_to(m.start) > now)
        .collect();
    let coverage = coverage_starts(&kept);
    let mut spans: Vec<_> = coverage
        .iter()
        .map(|(&a, &from)| (a, from, finer_coverage_start(config, &coverage, a)))
        .filter(|(_, from, to)| from < to)
        .collect();
    spans.sort_by_key(|&(a, _, _)| config.archives[a].step);
    spans
}

fn lt_filter(to: EpochMillis, m: &ManagedIndex) -> Option<Value> {
    (to < m.end).then(|| json!({"range": {"@timestamp": {"lt": rfc3339(to)}}}))
}

fn stitched_aliases(
    config: &Config,
    served: &[(&ManagedIndex, EpochMillis, EpochMillis)],
) -> Vec<DesiredAlias> {
    let mut out = Vec::new();
    for (m, _, to) in served {
        let period = config.archives[m.archive].index_period;
        let filter = lt_filter(*to, m);
        out.push(DesiredAlias {
            index: m.name.clone(),
            alias: format!("{}{}", config.aliases.prefix, period.render(m.start)),
            filter: filter.clone(),
        });
        out.push(DesiredAlias {
            index: m.name.clone(),
            alias: config.aliases.umbrella.clone(),
            filter,
        });
    }
    out
}

/// samplerr's per-period aliases over the finest archive's periods, each pointing at the index
/// (or indices) serving that period, filtered to the period when the index is coarser.
fn samplerr_aliases(
    config: &Config,
    served: &[(&ManagedIndex, EpochMillis, EpochMillis)],
) -> Vec<DesiredAlias> {
    let Some(finest) = config.archives.iter().min_by_key(|a| a.step) else {
        return Vec::new();
    };
    let period: IndexPeriod = finest.index_period;
    let mut out = Vec::new();
    for (m, from, to) in served {
        let own_period = config.archives[m.archive].index_period;
        let mut p = period.start_of(*from);
        while p < *to {
            let next = period.next_start(p);
            let (lo, hi) = (p.max(*from), next.min(*to));
            let whole_index = own_period == period && lo == m.start && hi == m.end;
            let filter = (!whole_index)
                .then(|| json!({"range": {"@timestamp": {"gte": rfc3339(lo), "lt": rfc3339(hi)}}}));
            out.push(DesiredAlias {
                index: m.name.clone(),
                alias: format!("{}{}", config.aliases.prefix, period.render(p)),
                filter,
            });
            p = next;
        }
    }
    out
}

/// Removes of managed aliases that should not exist, then adds of the missing or changed ones.
fn alias_actions(
    config: &Config,
    desired: &[DesiredAlias],
    existing: &[ExistingAlias],
    managed: &BTreeSet<&str>,
    doomed: &BTreeSet<&str>,
) -> Vec<Value> {
    let ours =
        |alias: &str| alias == config.aliases.umbrella || alias.starts_with(&config.aliases.prefix);
    let have: BTreeMap<(&str, &str), &Option<Value>> = existing
        .iter()
        .filter(|e| ours(&e.alias) && managed.contains(e.index.as_str()))
        .map(|e| ((e.alias.as_str(), e.index.as_str()), &e.filter))
        .collect();
    let want: BTreeMap<(&str, &str), &Option<Value>> = desired
        .iter()
        .map(|d| ((d.alias.as_str(), d.index.as_str()), &d.filter))
        .collect();
    let mut actions = Vec::new();
    for (alias, index) in have.keys() {
        if !want.contains_key(&(*alias, *index)) && !doomed.contains(index) {
            actions.push(json!({"remove": {"index": index, "alias": alias}}));
        }
    }
    for d in desired {
        if have.get(&(d.alias.as_str(), d.index.as_str())) != Some(&&d.filter) {
            let mut add = json!({"index": d.index, "alias": d.alias});
            if let Some(f) = &d.filter {
                add["filter"] = f.clone();
            }
            actions.push(json!({ "add": add }));
        }
    }
    actions
}

/// The plan in a few lines for people.
/// Which parts of a plan to show: what rotating does (create, aliases), what purging does
/// (delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sections {
    pub rotate: bool,
    pub purge: bool,
}

impl Sections {
    pub const ALL: Sections = Sections {
        rotate: true,
        purge: true,
    };
}

/// The plan as text, with the `sections` asked for.
pub fn render_text(plan: &Plan, sections: Sections) -> String {
    let mut out = format!("maintenance plan at {}\n", rfc3339(plan.now));
    let list = |title: &str, items: &[String]| {
        if items.is_empty() {
            format!("{title}: none\n")
        } else {
            format!(
                "{title}:\n{}",
                items.iter().map(|i| format!("  {i}\n")).collect::<String>()
            )
        }
    };
    if sections.rotate {
        out.push_str(&list("create", &plan.create));
    }
    if sections.purge {
        out.push_str(&list("delete (expired)", &plan.delete));
        if let Some(why) = &plan.refused {
            out.push_str(&format!("purge refused: {why} (--force goes ahead)\n"));
        }
    }
    if !sections.rotate {
        return out;
    }
    let aliases: Vec<String> = plan
        .aliases
        .iter()
        .map(|a| match &a.filter {
            Some(f) => format!("{} -> {} where {}", a.alias, a.index, f),
            None => format!("{} -> {}", a.alias, a.index),
        })
        .collect();
    out.push_str(&list("aliases (desired)", &aliases));
    out.push_str(&format!("alias actions to send: {}\n", plan.actions.len()));
    out
}

/// A line of `strata plan --aliases FILE` that is not `alias index [filter-json]`.
#[derive(Debug, thiserror::Error)]
pub enum AliasLineError {
    #[error("aliases line {line}: expected `alias index [filter-json]`, got {text:?}")]
    Shape { line: usize, text: String },
    #[error("aliases line {line}: the filter is not JSON")]
    Filter {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// Parses the offline alias listing of `strata plan --aliases`: one `alias index [filter-json]`
/// per line (lines numbered from 1 in errors).
pub fn parse_alias_lines(lines: &[String]) -> Result<Vec<ExistingAlias>, AliasLineError> {
    lines
        .iter()
        .enumerate()
        .map(|(n, text)| {
            let line = n + 1;
            let mut parts = text.trim().splitn(3, char::is_whitespace);
            let (alias, index) = match (parts.next(), parts.next()) {
                (Some(a), Some(i)) if !i.trim().is_empty() => (a.to_string(), i.trim().to_string()),
                _ => {
                    return Err(AliasLineError::Shape {
                        line,
                        text: text.clone(),
                    })
                }
            };
            let filter = match parts.next().map(str::trim).filter(|f| !f.is_empty()) {
                Some(f) => Some(
                    serde_json::from_str(f)
                        .map_err(|source| AliasLineError::Filter { line, source })?,
                ),
                None => None,
            };
            Ok(ExistingAlias {
                alias,
                index,
                filter,
            })
        })
        .collect()
}

#[cfg(test)]
mod alert_history_tests {
    use super::*;

    #[test]
    fn alert_history_months_expire_like_archive_indices() {
        let config = Config::from_toml(
            "[[archive]]\nname=\"20s\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"\n[tasks]\nalerts_retention = \"2 months\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let names: Vec<String> = [
            "strata_alerts-history-2026.09",
            "strata_alerts-history-2026.10",
            "strata_alerts-state",
            "strata_alerts-history-junk",
            "other-history-2020.01",
        ]
        .map(String::from)
        .to_vec();
        let now = crate::calendar::IndexPeriod::Month
            .parse("2026.12")
            .unwrap();
        assert_eq!(
            expired_alert_history(&config, now, &names),
            [
                "strata_alerts-history-2026.09",
                "strata_alerts-history-2026.10"
            ]
        );
        assert_eq!(
            expired_alert_history(&config, now - 1, &names),
            ["strata_alerts-history-2026.09"]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn each_half_shows_only_what_it_does() {
        let p = plan(&samplerr_config("stitched"), 1_700_000_000_000, &[], &[]);
        let both = render_text(&p, Sections::ALL);
        assert!(
            both.contains("create:")
                && both.contains("delete (expired)")
                && both.contains("aliases (desired)")
        );
        let rotate = render_text(
            &p,
            Sections {
                rotate: true,
                purge: false,
            },
        );
        assert!(
            rotate.contains("create:") && !rotate.contains("delete"),
            "{rotate}"
        );
        let purge = render_text(
            &p,
            Sections {
                rotate: false,
                purge: true,
            },
        );
        assert!(purge.contains("delete (expired)"), "{purge}");
        assert!(
            !purge.contains("aliases") && !purge.contains("create"),
            "{purge}"
        );
    }

    #[test]
    fn the_retention_horizon_is_the_first_period_not_expired() {
        let text = r#"
[[archive]]
name = "a"
step = "1h"
retention = "3 months"
index_period = "day"
[[archive]]
name = "b"
step = "1h"
retention = "2 years"
index_period = "month"
[[archive]]
name = "c"
step = "10m"
retention = "36 hours"
index_period = "hour"
"#;
        let config = Config::from_toml(text, Path::new("t")).unwrap();
        let day = 86_400_000;
        for now in (0..800).map(|i| 1_700_000_000_000 + i * 13 * day / 10 + i * 7_919) {
            for a in &config.archives {
                let h = retention_horizon(a, now);
                let p = a.index_period;
                assert_eq!(p.start_of(h), h, "a period start");
                assert!(!is_expired(a, h, now), "{} at {now}", a.name);
                assert!(is_expired(a, p.start_of(h - 1), now), "{} at {now}", a.name);
            }
        }
    }

    fn samplerr_config(mode: &str) -> Config {
        // An umbrella only in stitched mode: samplerr mode refuses the key.
        let umbrella = if mode == "stitched" {
            "umbrella = \"samplerr\""
        } else {
            ""
        };
        let text = format!(
            r#"
            [index]
            prefix = ".samplerr-"
            name = "{{prefix}}{{period}}"
            [aliases]
            prefix = "samplerr-"
            {umbrella}
            mode = "{mode}"
            [[archive]]
            name = "20s"
            step = "20s"
            retention = "3 days"
            index_period = "day"
            [[archive]]
            name = "10m"
            step = "10m"
            retention = "2 months"
            index_period = "month"
            [[archive]]
            name = "1h"
            step = "1h"
            retention = "10 years"
            index_period = "year"
        "#
        );
        Config::from_toml(&text, Path::new("t")).unwrap()
    }

    fn at(s: &str) -> EpochMillis {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    fn example_indices() -> Vec<String> {
        [
            "1970",
            "2019",
            "2020",
            "2020.02",
            "2020.03",
            "2020.04",
            "2020.04.08",
            "2020.04.09",
            "2020.04.10",
            "2020.04.11",
        ]
        .iter()
        .map(|p| format!(".samplerr-{p}"))
        .collect()
    }

    fn alias_of<'a>(plan: &'a Plan, index: &str) -> Vec<(&'a str, &'a Option<Value>)> {
        plan.aliases
            .iter()
            .filter(|a| a.index == index)
            .map(|a| (a.alias.as_str(), &a.filter))
            .collect()
    }

    #[test]
    fn samplerr_users_worked_case() {
        let plan = plan(
            &samplerr_config("stitched"),
            at("2020-04-11T13:13:26Z"),
            &example_indices(),
            &[],
        );
        assert_eq!(
            plan.delete,
            vec![
                ".samplerr-1970",
                ".samplerr-2020.02",
                ".samplerr-2020.04.08"
            ]
        );
        assert_eq!(
            plan.create,
            vec![
                ".samplerr-2020.04.12",
                ".samplerr-2020.05",
                ".samplerr-2021"
            ]
        );
        let lt = |s: &str| Some(json!({"range": {"@timestamp": {"lt": s}}}));
        assert_eq!(
            alias_of(&plan, ".samplerr-2020.04"),
            vec![
                ("samplerr-2020.04", &lt("2020-04-09T00:00:00Z")),
                ("samplerr", &lt("2020-04-09T00:00:00Z"))
            ]
        );
        assert_eq!(
            alias_of(&plan, ".samplerr-2020"),
            vec![
                ("samplerr-2020", &lt("2020-03-01T00:00:00Z")),
                ("samplerr", &lt("2020-03-01T00:00:00Z"))
            ]
        );
        assert_eq!(
            alias_of(&plan, ".samplerr-2020.03"),
            vec![("samplerr-2020.03", &None), ("samplerr", &None)]
        );
        assert_eq!(
            alias_of(&plan, ".samplerr-2020.04.09"),
            vec![("samplerr-2020.04.09", &None), ("samplerr", &None)]
        );
        assert_eq!(
            alias_of(&plan, ".samplerr-2019"),
            vec![("samplerr-2019", &None), ("samplerr", &None)]
        );
        // Coarse indices entirely inside finer coverage, and the created ones ahead, get none.
        assert!(alias_of(&plan, ".samplerr-2020.05").is_empty());
        assert!(alias_of(&plan, ".samplerr-2021").is_empty());
        assert!(alias_of(&plan, ".samplerr-1970").is_empty());
        assert_eq!(
            alias_of(&plan, ".samplerr-2020.04.12").len(),
            2,
            "tomorrow's daily index is ready"
        );
        assert!(plan.actions.iter().all(|a| a.get("add").is_some()));
    }

    #[test]
    fn coarse_period_starting_exactly_at_finer_coverage_gets_no_alias() {
        // Daily coverage starts on 2020-04-01, the very start of the monthly index 2020.04.
        let names: Vec<String> = ["2020.03", "2020.04", "2020.04.01", "2020.04.02"]
            .iter()
            .map(|p| format!(".samplerr-{p}"))
            .collect();
        let plan = plan(
            &samplerr_config("stitched"),
            at("2020-04-02T10:00:00Z"),
            &names,
            &[],
        );
        assert!(
            alias_of(&plan, ".samplerr-2020.04").is_empty(),
            "{:?}",
            alias_of(&plan, ".samplerr-2020.04")
        );
        assert_eq!(
            alias_of(&plan, ".samplerr-2020.03"),
            vec![("samplerr-2020.03", &None), ("samplerr", &None)]
        );
    }

    #[test]
    fn a_second_pass_sends_nothing() {
        let cfg = samplerr_config("stitched");
        let now = at("2020-04-11T13:13:26Z");
        let first = plan(&cfg, now, &example_indices(), &[]);
        let mut indices: Vec<String> = example_indices()
            .into_iter()
            .filter(|i| !first.delete.contains(i))
            .collect();
        indices.extend(first.create.clone());
        let aliases: Vec<ExistingAlias> = first
            .aliases
            .iter()
            .map(|a| ExistingAlias {
                alias: a.alias.clone(),
                index: a.index.clone(),
                filter: a.filter.clone(),
            })
            .collect();
        let second = plan(&cfg, now, &indices, &aliases);
        assert!(second.actions.is_empty(), "{:?}", second.actions);
        assert!(second.delete.is_empty() && second.create.is_empty());
    }

    #[test]
    fn stale_aliases_are_removed_and_foreign_ones_left_alone() {
        let cfg = samplerr_config("stitched");
        let existing = vec![
            ExistingAlias {
                alias: "samplerr-2020.05".into(),
                index: ".samplerr-2020.05".into(),
                filter: None,
            },
            ExistingAlias {
                alias: "other".into(),
                index: ".samplerr-2020.03".into(),
                filter: None,
            },
            ExistingAlias {
                alias: "samplerr-x".into(),
                index: "unrelated".into(),
                filter: None,
            },
            ExistingAlias {
                alias: "samplerr-2020.04.08".into(),
                index: ".samplerr-2020.04.08".into(),
                filter: None,
            },
        ];
        let mut names = example_indices();
        names.push(".samplerr-2020.05".into());
        names.push("unrelated".into());
        let plan = plan(&cfg, at("2020-04-11T13:13:26Z"), &names, &existing);
        let removes: Vec<&Value> = plan
            .actions
            .iter()
            .filter_map(|a| a.get("remove"))
            .collect();
        assert_eq!(
            removes,
            vec![&json!({"index": ".samplerr-2020.05", "alias": "samplerr-2020.05"})],
            "the expired index's alias goes with the index"
        );
    }

    #[test]
    fn archive_spans_follow_the_same_stitching() {
        let spans = archive_spans(
            &samplerr_config("stitched"),
            at("2020-04-11T13:13:26Z"),
            &example_indices(),
        );
        assert_eq!(
            spans,
            vec![
                (0, at("2020-04-09T00:00:00Z"), EpochMillis::MAX),
                (1, at("2020-03-01T00:00:00Z"), at("2020-04-09T00:00:00Z")),
                (2, at("2019-01-01T00:00:00Z"), at("2020-03-01T00:00:00Z")),
            ]
        );
    }

    #[test]
    fn samplerr_mode_gives_one_alias_per_day() {
        let plan = plan(
            &samplerr_config("samplerr"),
            at("2020-04-11T13:13:26Z"),
            &example_indices(),
            &[],
        );
        let daily = |alias: &str| {
            plan.aliases
                .iter()
                .filter(|a| a.alias == alias)
                .map(|a| (a.index.as_str(), &a.filter))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            daily("samplerr-2020.04.10"),
            vec![(".samplerr-2020.04.10", &None)]
        );
        let range = |a: &str, b: &str| Some(json!({"range": {"@timestamp": {"gte": a, "lt": b}}}));
        assert_eq!(
            daily("samplerr-2020.04.08"),
            vec![(
                ".samplerr-2020.04",
                &range("2020-04-08T00:00:00Z", "2020-04-09T00:00:00Z")
            )]
        );
        assert_eq!(
            daily("samplerr-2020.02.15"),
            vec![(
                ".samplerr-2020",
                &range("2020-02-15T00:00:00Z", "2020-02-16T00:00:00Z")
            )]
        );
        assert_eq!(
            daily("samplerr-2019.06.01"),
            vec![(
                ".samplerr-2019",
                &range("2019-06-01T00:00:00Z", "2019-06-02T00:00:00Z")
            )]
        );
        assert!(daily("samplerr-1970.01.01").is_empty());
    }

    #[test]
    fn alias_lines_parse_with_and_without_filters() {
        let lines: Vec<String> = [
            "metrics strata-20s-2026.11.30",
            r#"metrics-10m strata-10m-2026.11  {"range":{"@timestamp":{"lt":1}}}"#,
        ]
        .map(String::from)
        .to_vec();
        let aliases = parse_alias_lines(&lines).unwrap();
        assert_eq!(aliases[0].alias, "metrics");
        assert_eq!(aliases[0].index, "strata-20s-2026.11.30");
        assert_eq!(aliases[0].filter, None);
        assert_eq!(aliases[1].index, "strata-10m-2026.11");
        assert_eq!(
            aliases[1].filter,
            Some(json!({"range":{"@timestamp":{"lt":1}}}))
        );
    }

    #[test]
    fn bad_alias_lines_are_named_by_number() {
        let err = parse_alias_lines(&["a b".into(), "lonely".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "aliases line 2: expected `alias index [filter-json]`, got \"lonely\""
        );
        let err = parse_alias_lines(&["a b {not json".into()]).unwrap_err();
        assert!(
            matches!(err, AliasLineError::Filter { line: 1, .. }),
            "{err}"
        );
    }
}
