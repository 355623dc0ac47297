//! Maintenance against the node: stitched and samplerr aliases that serve each instant once, and
//! `strata plan` offline.

use serde_json::{json, Value};

use crate::support::*;

/// Grafana's `_msearch` for one panel: a date histogram summing `count` over [from, to], through
/// `index` (an alias, a wildcard or a comma list of names); returns the total.
async fn grafana_total(scope: &Scope, index: &str, from: i64, to: i64) -> f64 {
    let body = json!({
        "size": 0,
        "query": {"bool": {"filter": [
            {"range": {"@timestamp": {"gte": from, "lte": to, "format": "epoch_millis"}}},
            {"query_string": {"analyze_wildcard": true, "query": "name:g"}}
        ]}},
        "aggs": {"2": {"date_histogram": {"field": "@timestamp", "fixed_interval": "86400000ms", "min_doc_count": 0,
            "extended_bounds": {"min": from, "max": to}, "format": "epoch_millis"},
            "aggs": {"1": {"sum": {"field": "count"}}}}}
    });
    let response = scope.grafana_search(index, &body).await;
    response["aggregations"]["2"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["1"]["value"].as_f64().unwrap_or(0.0))
        .sum()
}

#[tokio::test]
async fn maintenance_stitches_three_years_so_each_instant_counts_once() {
    use strata::maintain::run::{run_pass, MaintainError, PassOptions};
    use strata::persist::backend::{HttpBackend, SearchBackend};

    let scope = Scope::new("stitch");
    let archives = [
        archive("10m", "10m", "3 days", "day", "10s"),
        archive("1h", "1h", "2 months", "month", "10s"),
        archive("1d", "1d", "10 years", "year", "10s"),
    ]
    .concat();
    let cfg = scope.config(&archives, "[maintain]\nmax_deletes = 1000\n");
    let day = 86_400_000i64;
    let now = chrono::Utc::now().timestamp_millis();
    let today = now - now.rem_euclid(day);
    let times = three_years_of_times(now);
    // Loaded as if nothing had expired yet (a replay leaves out what is past the retention), so
    // that the pass below has expired indices to delete.
    let kept_longer = archives
        .replace("3 days", "10 years")
        .replace("2 months", "10 years");
    replay_into_node(&scope.config(&kept_longer, ""), &gauge_ones(&times)).await;
    // An index that matches the wildcard but not the naming: never touched.
    let stranger = format!("{}10m-notadate", scope.prefix);
    assert_eq!(
        scope
            .send(reqwest::Method::PUT, &format!("/{stranger}"), json!({}))
            .await
            .0,
        200
    );

    let backend = HttpBackend::connect(&scope.node, &cfg.node).unwrap();
    let pattern = cfg.index.naming.wildcard();
    let snapshot = || async {
        (
            backend.list_indices(&pattern).await.unwrap(),
            backend.get_aliases(&pattern).await.unwrap(),
        )
    };

    // Dry run and refused purge change nothing.
    let before = snapshot().await;
    let dry = PassOptions {
        dry_run: true,
        ..PassOptions::FULL
    };
    let planned = run_pass(&backend, &cfg, now, now, dry).await.unwrap();
    assert!(!planned.delete.is_empty() && !planned.actions.is_empty());
    let mut strict = cfg.clone();
    strict.maintain.max_deletes = 1;
    assert!(matches!(
        run_pass(&backend, &strict, now, now, PassOptions::FULL).await,
        Err(MaintainError::Refused(_))
    ));
    let younger = run_pass(&backend, &cfg, now + 400 * day, now, PassOptions::FULL).await;
    assert!(
        matches!(younger, Err(MaintainError::Refused(ref why)) if why.contains("younger than its retention")),
        "{younger:?}"
    );
    assert_eq!(
        snapshot().await,
        before,
        "dry run and refused passes changed nothing"
    );

    // The real pass, then a second one that has nothing to do.
    let done = run_pass(&backend, &cfg, now, now, PassOptions::FULL)
        .await
        .unwrap();
    assert!(!done.delete.contains(&stranger));
    let again = run_pass(&backend, &cfg, now, now, PassOptions::FULL)
        .await
        .unwrap();
    assert!(
        again.actions.is_empty() && again.delete.is_empty() && again.create.is_empty(),
        "{:?}",
        again.actions
    );
    assert!(backend
        .list_indices(&pattern)
        .await
        .unwrap()
        .contains(&stranger));

    // Through the umbrella, the alias wildcard and the per-period alias names: each event once.
    scope.refresh().await;
    let umbrella = cfg.aliases.umbrella.clone();
    let wildcard = format!("{}*", cfg.aliases.prefix);
    let mut names: Vec<String> = done
        .aliases
        .iter()
        .filter(|a| a.alias != umbrella)
        .map(|a| a.alias.clone())
        .collect();
    names.dedup();
    let per_period = names.join(",");
    let ranges = [
        (today - 3 * 365 * day, today + day),
        (today - 2 * day, today + day),
        (today - 90 * day, today - 30 * day),
        (today - 5 * day, today - 2 * day),
    ];
    for (from, to) in ranges {
        let expected = times.iter().filter(|&&t| t >= from && t < to).count() as f64;
        for index in [&umbrella, &wildcard, &per_period] {
            let label = if index.len() > 60 {
                "per-period names"
            } else {
                index.as_str()
            };
            assert_eq!(
                grafana_total(&scope, index, from, to - 1).await,
                expected,
                "{label} over [{from}, {to})"
            );
        }
    }
    scope.cleanup().await;
}

#[tokio::test]
async fn samplerr_mode_serves_a_grafana_daily_pattern_each_instant_once() {
    use strata::maintain::run::{run_pass, PassOptions};
    use strata::persist::backend::HttpBackend;

    let scope = Scope::new("daily");
    // Three months for the hourly archive: the test's 35 days then lie within its retention
    // whatever the date (with two months, on the first days of a month the oldest days fell in
    // a month already expired, and the test failed on 1 December).
    let archives = [
        archive("10m", "10m", "3 days", "day", "10s"),
        archive("1h", "1h", "3 months", "month", "10s"),
    ]
    .concat();
    let mut cfg = scope.config(&archives, "");
    cfg.aliases.mode = strata::config::AliasMode::Samplerr;
    let day = 86_400_000i64;
    let now = chrono::Utc::now().timestamp_millis();
    let today = now - now.rem_euclid(day);
    let times: Vec<i64> = (0..40)
        .map(|i| today - 35 * day + i * day + 7_200_000)
        .filter(|&t| t < now - 60_000)
        .collect();
    let input: String = times
        .iter()
        .map(|t| format!("{{\"name\":\"g\",\"value\":1,\"timestamp\":{t}}}\n"))
        .collect();
    replay_into_node(&cfg, &input).await;
    let backend = HttpBackend::connect(&scope.node, &cfg.node).unwrap();
    run_pass(&backend, &cfg, now, now, PassOptions::FULL)
        .await
        .unwrap();
    assert!(run_pass(&backend, &cfg, now, now, PassOptions::FULL)
        .await
        .unwrap()
        .actions
        .is_empty());
    scope.refresh().await;
    // Grafana with index pattern `[<alias prefix>]YYYY.MM.DD`, interval Daily: one name per day.
    let (from, to) = (today - 35 * day, today + day);
    let names: Vec<String> = (0..36)
        .map(|d| {
            format!(
                "{}{}",
                cfg.aliases.prefix,
                strata::calendar::IndexPeriod::Day.render(from + d * day)
            )
        })
        .collect();
    let expected = times.iter().filter(|&&t| t >= from && t < to).count() as f64;
    assert_eq!(
        grafana_total(&scope, &names.join(","), from, to - 1).await,
        expected
    );
    // One day served by the monthly index, through its day alias only.
    let old_day = today - 20 * day;
    let one = format!(
        "{}{}",
        cfg.aliases.prefix,
        strata::calendar::IndexPeriod::Day.render(old_day)
    );
    let expected = times
        .iter()
        .filter(|&&t| t >= old_day && t < old_day + day)
        .count() as f64;
    assert_eq!(grafana_total(&scope, &one, from, to - 1).await, expected);
    assert_eq!(expected, 1.0);
    scope.cleanup().await;
}

#[tokio::test]
async fn plan_works_offline_on_samplerr_naming() {
    let dir = std::env::temp_dir().join(format!("strata-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = "[index]\nprefix = \".samplerr-\"\nname = \"{prefix}{period}\"\n[aliases]\nprefix = \"samplerr-\"\numbrella = \"samplerr\"\n".to_string()
        + &[archive("20s", "20s", "3 days", "day", "10s"), archive("10m", "10m", "2 months", "month", "10s"), archive("1h", "1h", "10 years", "year", "10s")].concat();
    std::fs::write(dir.join("archives.toml"), config).unwrap();
    let indices: String = [
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
    .map(|p| format!(".samplerr-{p}\n"))
    .collect();
    std::fs::write(dir.join("indices"), indices).unwrap();
    std::fs::write(dir.join("aliases"), "samplerr-2020.04.08 .samplerr-2020.04.08\nsamplerr-2020.04 .samplerr-2020.04 {\"range\":{\"@timestamp\":{\"lt\":\"2020-04-08T00:00:00Z\"}}}\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "plan",
            "--config",
            dir.join("archives.toml").to_str().unwrap(),
            "--now",
            "2020-04-11T15:13:26+02:00",
            "--format",
            "json",
        ])
        .args([
            "--indices",
            dir.join("indices").to_str().unwrap(),
            "--aliases",
            dir.join("aliases").to_str().unwrap(),
        ])
        .env_remove("STRATA_NODE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["now"], "2020-04-11T13:13:26Z");
    assert_eq!(
        plan["delete"],
        json!([
            ".samplerr-1970",
            ".samplerr-2020.02",
            ".samplerr-2020.04.08"
        ])
    );
    let filter_of = |index: &str, alias: &str| {
        plan["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["index"] == index && a["alias"] == alias)
            .map(|a| a["filter"].clone())
    };
    assert_eq!(
        filter_of(".samplerr-2020.04", "samplerr"),
        Some(json!({"range": {"@timestamp": {"lt": "2020-04-09T00:00:00Z"}}}))
    );
    assert_eq!(
        filter_of(".samplerr-2020", "samplerr-2020"),
        Some(json!({"range": {"@timestamp": {"lt": "2020-03-01T00:00:00Z"}}}))
    );
    let actions = plan["actions"].as_array().unwrap();
    assert!(actions.contains(&json!({"add": {"index": ".samplerr-2020.04", "alias": "samplerr-2020.04", "filter": {"range": {"@timestamp": {"lt": "2020-04-09T00:00:00Z"}}}}})));
    assert!(
        !actions.iter().any(|a| a.get("remove").is_some()),
        "the expired index's alias goes with it: {actions:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn status_reports_each_archive_and_the_drift_of_the_aliases() {
    use strata::maintain::run::{run_pass, PassOptions};

    let scope = Scope::new("status");
    let archives = [
        archive("10m", "10m", "3 days", "day", "10s"),
        archive("1h", "1h", "2 months", "month", "10s"),
        archive("1d", "1d", "10 years", "year", "10s"),
    ]
    .concat();
    let cfg = scope.config(&archives, "");
    let now = chrono::Utc::now().timestamp_millis();
    let times = three_years_of_times(now);
    replay_into_node(&cfg, &gauge_ones(&times)).await;
    let backend = strata::persist::backend::HttpBackend::connect(&scope.node, &cfg.node).unwrap();
    run_pass(&backend, &cfg, now, now, PassOptions::FULL)
        .await
        .unwrap();
    scope.refresh().await;
    let dir = std::env::temp_dir().join(format!("strata-{}", scope.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let config_file = dir.join("strata.toml");
    std::fs::write(&config_file, scope.config_text(&archives, "")).unwrap();
    let status = |format: &'static str| {
        let config_file = config_file.clone();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
                .args(["status", "--config", config_file.to_str().unwrap()])
                .args(["--format", format])
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let report: Value = serde_json::from_str(&status("json").await).unwrap();

    // Each archive's documents and bucket range, as the node counts them.
    let docs = scope.documents().await;
    for (i, name) in ["10m", "1h", "1d"].iter().enumerate() {
        let a = &report["archives"][i];
        assert_eq!(a["name"], *name);
        let mine: Vec<&Value> = docs.iter().filter(|d| d["archive"] == *name).collect();
        assert_eq!(a["documents"].as_u64(), Some(mine.len() as u64), "{a}");
        let times: Vec<&str> = mine
            .iter()
            .filter_map(|d| d["@timestamp"].as_str())
            .collect();
        let oldest = times.iter().min().map(|t| ms(t));
        let newest = times.iter().max().map(|t| ms(t));
        assert_eq!(a["oldest_bucket"].as_str().map(ms), oldest, "{a}");
        assert_eq!(a["newest_bucket"].as_str().map(ms), newest, "{a}");
        assert!(
            a["indices"].as_u64().unwrap() >= 1 && a["bytes"].as_u64().unwrap() > 0,
            "{a}"
        );
    }
    // Finest first, each archive serving up to where the finer one starts.
    let serves = |i: usize| &report["archives"][i]["serves"];
    assert!(serves(0)["to"].is_null(), "{report}");
    assert_eq!(serves(1)["to"], serves(0)["from"], "{report}");
    assert_eq!(serves(2)["to"], serves(1)["from"], "{report}");
    assert_eq!(report["alias_drift"], json!([]), "{report}");

    // An alias removed by hand shows as drift, in both formats.
    let alias = format!("{}all", scope.prefix);
    let index = format!("{}10m-*", scope.prefix);
    assert_eq!(
        scope
            .send(
                reqwest::Method::POST,
                "/_aliases",
                json!({"actions": [{"remove": {"index": index, "alias": alias}}]})
            )
            .await
            .0,
        200
    );
    let report: Value = serde_json::from_str(&status("json").await).unwrap();
    let drift = report["alias_drift"].as_array().unwrap();
    assert!(
        !drift.is_empty() && drift.iter().all(|a| a["add"]["alias"] == alias.as_str()),
        "{report}"
    );
    let text = status("text").await;
    assert!(
        text.contains("archive") && text.contains("serves through the aliases"),
        "{text}"
    );
    assert!(text.contains("change(s) from the plan"), "{text}");
    eprintln!("{text}");
    scope.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}
