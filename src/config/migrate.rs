//! `strata migrate-config`: reads the archive definitions of a samplerr Riemann configuration
//! (Clojure) and writes the equivalent archives.toml, with a comment for whatever it could not
//! translate. Pure text in, text out.
//!
//! Not a Clojure reader: it looks for what samplerr's configurations bind — `index-prefix` and
//! `alias-prefix` strings, and the archive maps `{:tf "…" :step … :ttl … :cfunc …}` — where
//! `:step` and `:ttl` are `clj-time` periods (`(t/seconds 20)`, `(t/months 2)`) or a number of
//! seconds.

use std::fmt::Write;

/// One samplerr archive, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SamplerrArchive {
    tf: String,
    step: Option<Period>,
    ttl: Option<Period>,
}

/// A `clj-time` period: an amount of a unit (`seconds`, `minutes`, … `years`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Period {
    amount: u64,
    unit: String,
}

/// Why nothing could be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrateError {
    #[error("no samplerr archive found: expected maps like {{:tf \"YYYY.MM.dd\" :step (t/seconds 20) :ttl (t/days 2) :cfunc cfunc}}")]
    NoArchives,
}

/// The archives.toml equivalent of the samplerr configuration `text`.
pub fn samplerr_to_toml(text: &str) -> Result<String, MigrateError> {
    let archives = archive_maps(text);
    if archives.is_empty() {
        return Err(MigrateError::NoArchives);
    }
    let index_prefix = binding(text, "index-prefix");
    let alias_prefix = binding(text, "alias-prefix");
    let mut out = String::from(
        "# Translated from a samplerr configuration by `strata migrate-config`. Check it with\n\
         # `strata check --config <this file>`; see MIGRATING.md.\n\
         # The archives' :cfunc lists need no translation: every bucket keeps count, sum, min,\n\
         # max, avg, first and last.\n\n[index]\n",
    );
    match &index_prefix {
        // samplerr names indices `<index-prefix>-<tf date>`.
        Some(prefix) => {
            let _ = writeln!(out, "prefix = {}", quoted(&format!("{prefix}-")));
        }
        None => out.push_str("# no index-prefix found: strata's default \"strata-\" applies\n"),
    }
    out.push_str(
        "name = \"{prefix}{period}\"\n\
         # samplerr's documents (service \"<name>/<cfunc>/<step>\", metric, cfunc; an avg, a min\n\
         # and a max document per bucket), so existing dashboards keep working. Remove it for\n\
         # strata's own layout: one document per bucket, a third of the documents.\n\
         layout = \"samplerr\"\n\n",
    );
    for (i, a) in archives.iter().enumerate() {
        write_archive(&mut out, i, a);
    }
    out.push_str("[aliases]\n# samplerr's per-period aliases, each on the finest index still covering its period.\nmode = \"samplerr\"\n");
    match &alias_prefix {
        Some(prefix) => {
            let _ = writeln!(out, "prefix = {}", quoted(&format!("{prefix}-")));
        }
        None => out.push_str("# no alias-prefix found: strata's default \"metrics-\" applies\n"),
    }
    if text.contains("periodically-rotate") || text.contains("periodically-purge") {
        out.push_str(
            "\n[maintain]\n# samplerr rotated and purged on a timer; strata does both in one pass at start-up\n\
             # and on this cron schedule (UTC).\nschedule = \"5 0 * * *\"\n",
        );
    }
    Ok(out)
}

fn write_archive(out: &mut String, i: usize, a: &SamplerrArchive) {
    out.push_str("[[archive]]\n");
    let period = index_period(&a.tf);
    let step = a.step.as_ref().and_then(step_of);
    let name = step.clone().unwrap_or_else(|| format!("archive{i}"));
    let _ = writeln!(out, "name = {}", quoted(&name));
    match &step {
        Some(step) => {
            let _ = writeln!(out, "step = {}", quoted(step));
        }
        None => {
            let _ = writeln!(
                out,
                "# could not translate :step {:?}: set the bucket length\nstep = \"1m\"",
                a.step
            );
        }
    }
    match a.ttl.as_ref().and_then(retention_of) {
        Some(retention) => {
            let _ = writeln!(out, "retention = {}", quoted(&retention));
        }
        None => {
            let _ = writeln!(
                out,
                "# samplerr's :ttl {} could not be translated (samplerr then kept the indices until purged\n# by hand): set how long to keep them\nretention = \"10 years\"",
                a.ttl.as_ref().map_or("(none)".to_string(), |p| format!("{} {}", p.amount, p.unit))
            );
        }
    }
    match period {
        Some(period) => {
            let _ = writeln!(out, "index_period = {}", quoted(period));
        }
        None => {
            let _ = writeln!(
                out,
                "# :tf {} is not one of YYYY.MM.dd.HH, YYYY.MM.dd, YYYY.MM, YYYY: set the index period\nindex_period = \"day\"",
                quoted(&a.tf)
            );
        }
    }
    out.push('\n');
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The string bound to `name` (`(let [name "…"` or `:name "…"`).
fn binding(text: &str, name: &str) -> Option<String> {
    for pattern in [format!(":{name}"), name.to_string()] {
        let mut rest = text;
        while let Some(at) = rest.find(&pattern) {
            let after = &rest[at + pattern.len()..];
            let trimmed = after.trim_start();
            let boundary = after.starts_with(char::is_whitespace);
            if boundary && trimmed.starts_with('"') {
                return trimmed[1..].split('"').next().map(str::to_string);
            }
            rest = after;
        }
    }
    None
}

/// Every `{…}` map holding a `:tf`.
fn archive_maps(text: &str) -> Vec<SamplerrArchive> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let map = &rest[open + 1..open + close];
        if let Some(tf) = binding(map, "tf").filter(|_| map.contains(":tf")) {
            found.push(SamplerrArchive {
                tf,
                step: period_after(map, ":step"),
                ttl: period_after(map, ":ttl"),
            });
        }
        rest = &rest[open + close + 1..];
    }
    found
}

/// The period after `key`: `(t/seconds 20)`, `(seconds 20)` or a bare number of seconds.
fn period_after(map: &str, key: &str) -> Option<Period> {
    let at = map.find(key)?;
    let value = map[at + key.len()..].trim_start();
    if let Some(call) = value.strip_prefix('(') {
        let call = call.split(')').next()?;
        let mut words = call.split_whitespace();
        let unit = words.next()?.rsplit('/').next()?.to_string();
        let amount = words.next()?.parse().ok()?;
        return Some(Period { amount, unit });
    }
    let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
    Some(Period {
        amount: digits.parse().ok()?,
        unit: "seconds".into(),
    })
}

/// `20s`, `10m`, `1h`, `1d`: strata's step, which is whole seconds.
fn step_of(p: &Period) -> Option<String> {
    let suffix = match p.unit.as_str() {
        "seconds" | "second" => "s",
        "minutes" | "minute" => "m",
        "hours" | "hour" => "h",
        "days" | "day" => "d",
        _ => return None,
    };
    (p.amount > 0).then(|| format!("{}{suffix}", p.amount))
}

/// `2 days`, `2 months`, `10 years`: strata's calendar retention.
fn retention_of(p: &Period) -> Option<String> {
    let unit = match p.unit.as_str() {
        "hours" | "hour" => "hours",
        "days" | "day" => "days",
        "weeks" | "week" => "weeks",
        "months" | "month" => "months",
        "years" | "year" => "years",
        _ => return None,
    };
    (p.amount > 0).then(|| format!("{} {unit}", p.amount))
}

/// samplerr's Joda date format of an archive's indices, as strata's index period.
fn index_period(tf: &str) -> Option<&'static str> {
    match tf {
        "YYYY.MM.dd.HH" | "yyyy.MM.dd.HH" => Some("hour"),
        "YYYY.MM.dd" | "yyyy.MM.dd" => Some("day"),
        "YYYY.MM" | "yyyy.MM" => Some("month"),
        "YYYY" | "yyyy" => Some("year"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    /// The shape of samplerr's README synopsis: three archives of clj-time periods bound in a
    /// `let`, with the prefixes and a periodic rotation.
    const SYNOPSIS: &str = r#"
(let [conn         (samplerr/connect "http://localhost:9200")
      index-prefix ".samplerr"
      alias-prefix "samplerr"
      cf           [{:func samplerr/average :name "avg"} {:func samplerr/maximum :name "max"}]
      archives     [{:tf "YYYY.MM.dd" :step (t/seconds 20) :ttl (t/days 2)    :cfunc cf}
                    {:tf "YYYY.MM"    :step (t/minutes 10) :ttl (t/months 2) :cfunc cf}
                    {:tf "YYYY"       :step (t/hours 1)    :ttl (t/years 10) :cfunc cf}]
      rotate       (samplerr/periodically-rotate {:interval (t/days 1) :conn conn :index-prefix index-prefix :alias-prefix alias-prefix :archives archives})]
  (streams (by [:host :service] (samplerr/down archives persist))))
"#;

    #[test]
    fn the_readme_synopsis_becomes_a_config_that_validates() {
        let toml = samplerr_to_toml(SYNOPSIS).unwrap();
        let config = Config::from_toml(&toml, Path::new("migrated.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let archives: Vec<(String, u64, String, String)> = config
            .archives
            .iter()
            .map(|a| {
                (
                    a.name.clone(),
                    a.step.as_secs(),
                    a.retention.to_string(),
                    a.index_period.to_string(),
                )
            })
            .collect();
        assert_eq!(
            archives,
            [
                (
                    "20s".to_string(),
                    20,
                    "2 days".to_string(),
                    "day".to_string()
                ),
                ("10m".into(), 600, "2 months".into(), "month".into()),
                ("1h".into(), 3600, "10 years".into(), "year".into())
            ]
        );
        assert_eq!(config.index.naming.wildcard(), ".samplerr-*");
        assert_eq!(config.index.layout, crate::config::DocumentLayout::Samplerr);
        assert!(
            toml.contains("prefix = \"samplerr-\"") && toml.contains("mode = \"samplerr\""),
            "{toml}"
        );
        assert!(toml.contains("[maintain]"), "{toml}");
    }

    #[test]
    fn numbers_of_seconds_and_untranslatable_parts_are_said_in_comments() {
        let text = r#"(def archives [{:tf "YYYY.MM.dd" :step 20 :cfunc cfunc}
                                 {:tf "YY-ww" :step (t/millis 5) :ttl (t/days 3) :cfunc cfunc}])"#;
        let toml = samplerr_to_toml(text).unwrap();
        assert!(toml.contains("step = \"20s\""), "{toml}");
        assert!(
            toml.contains("# samplerr's :ttl (none) could not be translated"),
            "{toml}"
        );
        assert!(toml.contains("# could not translate :step"), "{toml}");
        assert!(toml.contains("# :tf \"YY-ww\" is not one of"), "{toml}");
        assert!(toml.contains("# no index-prefix found"), "{toml}");
        // The placeholders are what `strata check` then points at: here both archives would
        // write the same daily index.
        let problem = Config::from_toml(&toml, Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(problem.contains("would both write to index"), "{problem}");
        assert_eq!(
            samplerr_to_toml("(streams prn)"),
            Err(MigrateError::NoArchives)
        );
    }
}
