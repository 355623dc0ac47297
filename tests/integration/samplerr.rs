//! Coming from samplerr: `[index] layout = "samplerr"` writes samplerr's documents (one per
//! cfunc, `service` = `<name>/<cfunc>/<step>`, `metric`) under samplerr's naming and aliases, so
//! a samplerr dashboard's query reads them, while strata's own reads and merges are unchanged.

use serde_json::{json, Value};
use strata::clock::{Clock, ManualClock};
use strata::config::Config;

use crate::support::*;

/// A samplerr Grafana panel's search: a Lucene query on `service`, one `metric` aggregation
/// per hour.
async fn samplerr_panel(scope: &Scope, alias: &str, query: &str, agg: &str, from: i64) -> Value {
    let body = json!({
        "size": 0,
        "query": {"bool": {"filter": [
            {"range": {"@timestamp": {"gte": from, "lte": from + 3_599_999, "format": "epoch_millis"}}},
            {"query_string": {"analyze_wildcard": true, "query": query}}
        ]}},
        "aggs": {"2": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1h", "min_doc_count": 0, "format": "epoch_millis"},
            "aggs": {"1": {agg: {"field": "metric"}}}}}
    });
    let answer = scope.grafana_search(alias, &body).await;
    let buckets = answer["aggregations"]["2"]["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 1, "{answer}");
    buckets[0]["1"]["value"].clone()
}

#[tokio::test]
async fn samplerr_layout_answers_a_samplerr_dashboard_and_strata_reads_alike() {
    let scope = Scope::new("samplerr-layout");
    let archives = [
        archive("10m", "10m", "3 days", "day", "10s"),
        archive("1h", "1h", "3 months", "month", "10s"),
    ]
    .concat();
    // samplerr's naming, aliases and documents.
    let umbrella = format!("umbrella = \"{}all\"\n", scope.prefix);
    let text = scope
        .config_text(&archives, FAST)
        .replace(
            "replicas = 0\n",
            "replicas = 0\nname = \"{prefix}{period}\"\nlayout = \"samplerr\"\n",
        )
        .replace(&umbrella, "mode = \"samplerr\"\n");
    let cfg = Config::from_toml(&text, std::path::Path::new("samplerr.toml")).unwrap();

    // Yesterday 10:00: within both retentions whatever the date.
    let day = 86_400_000i64;
    let now = chrono::Utc::now().timestamp_millis();
    let t0 = now - now.rem_euclid(day) - day + 10 * 3_600_000;
    let clock = ManualClock::new(t0 + 300_000);
    let running = strata::pipeline::serve(
        cfg.clone(),
        strata::pipeline::ServeOptions {
            node_url: None,
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        std::sync::Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let event = |t: i64, v: f64| {
        format!(
            r#"{{"name":"cpu","host":"h1","value":{v},"timestamp":{}}}"#,
            t0 + t
        )
    };
    // In time (written with `create` when the clock passes the buckets), then late (merged).
    let early =
        [(1_000, 1.0), (61_000, 2.0), (121_000, 3.0), (181_000, 4.0)].map(|(t, v)| event(t, v));
    let (status, body, _) = post(&scope, &running, &format!("[{}]", early.join(","))).await;
    assert_eq!(status, 200, "{body}");
    clock.set(t0 + 2 * 3_600_000);
    assert_eq!(
        scope.wait_for_documents(6).await.len(),
        6,
        "2 buckets × (avg, min, max)"
    );
    let late = [(30_000, 10.0), (90_000, 20.0)].map(|(t, v)| event(t, v));
    let (status, body, _) = post(&scope, &running, &format!("[{}]", late.join(","))).await;
    assert_eq!((status, &body["merged"]), (200, &json!(2)), "{body}");
    let merged = stats_when(&running, std::time::Duration::from_secs(20), |s| {
        s.docs_merged >= 2
    })
    .await;
    assert_eq!(merged.docs_merged, 2, "the 10m and the 1h bucket");
    scope.refresh().await;

    let (status, stats) = get_json(
        &scope,
        format!(
            "http://{}/v1/stats?name=cpu&start={}&end={}",
            running.addr,
            t0,
            t0 + 3_600_000
        ),
    )
    .await;
    assert_eq!(status, 200, "{stats}");
    running.stop().await.unwrap();
    assert_eq!(
        stats,
        json!({"count": 6, "sum": 40.0, "min": 1.0, "max": 20.0, "average": 40.0 / 6.0}),
        "strata's reads see each bucket once, companions or not"
    );

    let backend = strata::persist::backend::HttpBackend::connect(&scope.node, &cfg.node).unwrap();
    strata::maintain::run::run_pass(
        &backend,
        &cfg,
        clock.now(),
        clock.now(),
        strata::maintain::run::PassOptions::FULL,
    )
    .await
    .unwrap();
    scope.refresh().await;

    // Grafana on samplerr's daily alias for that day (the 10-minute archive serves it).
    let alias = format!(
        "{}{}",
        cfg.aliases.prefix,
        strata::calendar::IndexPeriod::Day.render(t0)
    );
    let panel = |query: &'static str, agg: &'static str| {
        let (scope, alias) = (&scope, alias.clone());
        async move { samplerr_panel(scope, &alias, query, agg, t0).await }
    };
    assert_eq!(panel(r"service:cpu\/max\/*", "max").await, json!(20.0));
    assert_eq!(panel(r"service:cpu\/min\/*", "min").await, json!(1.0));
    let avg = panel(r"service:cpu\/avg\/*", "avg").await.as_f64().unwrap();
    assert!((avg - 40.0 / 6.0).abs() < 1e-9, "{avg}");
    assert_eq!(
        panel(r"service:cpu\/avg\/600 AND cfunc:avg", "max").await,
        json!(40.0 / 6.0),
        "one avg document for the bucket"
    );

    // Each companion holds the merged state, at the bucket's count as its version.
    let docs = scope.documents_by_id().await;
    let own = docs
        .iter()
        .find(|(_, d)| d["cfunc"] == "avg" && d["step"] == 600)
        .unwrap();
    let (status, max_doc) = scope
        .get(&format!(
            "/{}{}/_doc/{}-max",
            scope.prefix,
            strata::calendar::IndexPeriod::Day.render(t0),
            own.0
        ))
        .await;
    assert_eq!(status, 200, "{max_doc}");
    assert_eq!(
        (
            &max_doc["_version"],
            &max_doc["_source"]["metric"],
            &max_doc["_source"]["service"]
        ),
        (&json!(6), &json!(20.0), &json!("cpu/max/600"))
    );
    assert_eq!(
        (&own.1["count"], &own.1["service"], &own.1["tf"]),
        (&json!(6), &json!("cpu/avg/600"), &json!("YYYY.MM.dd"))
    );
    assert_eq!(docs.len(), 6, "still one document per bucket and cfunc");
    scope.cleanup().await;
}
