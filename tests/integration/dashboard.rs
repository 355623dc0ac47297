//! Grafana out of the box: docker/compose.yml and Grafana's provisioning refer to what exists
//! (paths, ports, the umbrella alias, pinned images), and every query of the shipped dashboard,
//! sent as Grafana's data source sends it, answers the right values from a real node over data
//! replayed across three resolutions. No Docker engine runs here: the containers themselves
//! are not started (README says so).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::support::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dashboard() -> Value {
    let path = repo().join("docker/grafana/dashboards/strata.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `"8080:8080"` → (8080, 8080).
fn port_pair(mapping: &Value) -> (u16, u16) {
    let (host, container) = mapping.as_str().unwrap().split_once(':').unwrap();
    (host.parse().unwrap(), container.parse().unwrap())
}

#[test]
fn compose_and_provisioning_refer_to_what_exists() {
    let docker = repo().join("docker");
    let compose = yaml(&docker.join("compose.yml"));
    let services = compose["services"].as_object().unwrap();
    for (name, service) in services {
        if let Some(image) = service["image"].as_str() {
            let (_, tag) = image
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("{name}: {image} has no tag"));
            assert!(
                tag != "latest" && tag.chars().next().unwrap().is_ascii_digit(),
                "{name}: pin {image}"
            );
        }
        if let Some(build) = service.get("build") {
            let context = docker.join(build["context"].as_str().unwrap());
            assert!(
                context
                    .join(build["dockerfile"].as_str().unwrap())
                    .is_file(),
                "{name}: dockerfile"
            );
        }
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let host = volume.as_str().unwrap().split(':').next().unwrap();
            assert!(docker.join(host).exists(), "{name}: volume {host}");
        }
        for dependency in service["depends_on"].as_array().into_iter().flatten() {
            assert!(
                services.contains_key(dependency.as_str().unwrap()),
                "{name}: {dependency}"
            );
        }
    }
    // strata listens where the image says and compose maps.
    let dockerfile = std::fs::read_to_string(docker.join("Dockerfile")).unwrap();
    let (_, strata_port) = port_pair(&services["strata"]["ports"][0]);
    assert!(dockerfile.contains(&format!("EXPOSE {strata_port}")));
    assert!(dockerfile.contains(&format!("0.0.0.0:{strata_port}")));
    let (_, node_port) = port_pair(&services["opensearch"]["ports"][0]);
    assert_eq!(
        services["strata"]["environment"]["STRATA_NODE_URL"],
        format!("http://opensearch:{node_port}")
    );

    // Grafana mounts the provisioning and the dashboards where its provider looks.
    let grafana = &services["grafana"];
    let mounts: Vec<(&str, &str)> = grafana["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let mut parts = v.as_str().unwrap().split(':');
            (parts.next().unwrap(), parts.next().unwrap())
        })
        .collect();
    let host_of = |container: &str| {
        mounts
            .iter()
            .find(|(_, c)| *c == container)
            .map(|(h, _)| docker.join(h))
            .unwrap_or_else(|| panic!("nothing mounted at {container}"))
    };
    let provisioning = host_of("/etc/grafana/provisioning");
    let providers = yaml(&provisioning.join("dashboards/strata.yml"));
    let dashboards = host_of(
        providers["providers"][0]["options"]["path"]
            .as_str()
            .unwrap(),
    );
    assert!(dashboards.join("strata.json").is_file());

    // The data source reads the umbrella alias of the configuration the image ships.
    let sources = yaml(&provisioning.join("datasources/strata.yml"));
    let source = &sources["datasources"][0];
    assert_eq!(source["url"], format!("http://opensearch:{node_port}"));
    let shipped = strata::config::Config::load(&repo().join("archives.toml")).unwrap();
    assert_eq!(
        source["jsonData"]["database"],
        shipped.aliases.umbrella.as_str()
    );
    assert_eq!(source["jsonData"]["timeField"], "@timestamp");
    let plugin = grafana["environment"]["GF_INSTALL_PLUGINS"]
        .as_str()
        .unwrap();
    assert!(
        plugin.starts_with(source["type"].as_str().unwrap()),
        "{plugin}"
    );
    // Every panel reads that data source.
    for panel in dashboard()["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(
                target["datasource"]["uid"], source["uid"],
                "{}",
                panel["title"]
            );
        }
    }
}

/// docker/kibana/strata.ndjson, one saved object per line.
fn saved_objects() -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("docker/kibana/strata.ndjson")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn kibana_saved_objects_hold_together() {
    let objects = saved_objects();
    let shipped = strata::config::Config::load(&repo().join("archives.toml")).unwrap();
    let template = strata::persist::template::index_template(&shipped);
    let mapped = &template["template"]["mappings"]["properties"];
    let pattern = objects
        .iter()
        .find(|o| o["type"] == "index-pattern")
        .unwrap();
    assert_eq!(
        pattern["attributes"]["title"],
        shipped.aliases.umbrella.as_str()
    );
    assert_eq!(pattern["attributes"]["timeFieldName"], "@timestamp");
    for vis in objects.iter().filter(|o| o["type"] == "visualization") {
        for reference in vis["references"].as_array().unwrap() {
            assert!(
                objects
                    .iter()
                    .any(|o| o["id"] == reference["id"] && o["type"] == reference["type"]),
                "{reference}"
            );
        }
        let source: Value = serde_json::from_str(
            vis["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert!(vis["references"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == source["indexRefName"]));
        let state: Value =
            serde_json::from_str(vis["attributes"]["visState"].as_str().unwrap()).unwrap();
        for agg in state["aggs"].as_array().unwrap() {
            let field = agg["params"]["field"].as_str().unwrap();
            assert!(
                mapped.get(field).is_some(),
                "{field} is a field strata maps"
            );
        }
    }
}

/// The search Kibana's visualisation `state` runs: its date histogram around its metric
/// aggregations.
fn kibana_body(state: &Value, from: i64, to: i64, interval_ms: i64) -> Value {
    let aggs = state["aggs"].as_array().unwrap();
    let mut metrics = serde_json::Map::new();
    let mut histogram = None;
    for agg in aggs {
        let (id, kind, field) = (
            agg["id"].as_str().unwrap(),
            agg["type"].as_str().unwrap(),
            &agg["params"]["field"],
        );
        match agg["schema"].as_str().unwrap() {
            "metric" => {
                metrics.insert(id.to_string(), json!({kind: {"field": field}}));
            }
            "segment" => histogram = Some((id.to_string(), field.clone())),
            other => panic!("schema {other} not modelled"),
        }
    }
    let (id, field) = histogram.unwrap();
    json!({
        "size": 0,
        "query": {"bool": {"filter": [{"range": {"@timestamp": {"gte": from, "lte": to, "format": "epoch_millis"}}}]}},
        "aggs": {id: {"date_histogram": {"field": field, "fixed_interval": format!("{interval_ms}ms"), "min_doc_count": 1},
            "aggs": metrics}}
    })
}

/// The `_msearch` body Grafana's Elasticsearch / OpenSearch data source sends for `target`
/// (the subset of its query model the dashboard uses): the bucket aggregations nested in order,
/// the metric aggregations innermost, `count` as the document count.
fn grafana_body(target: &Value, metric: &str, from: i64, to: i64, interval_ms: i64) -> Value {
    let query = target["query"].as_str().unwrap().replace("$metric", metric);
    let mut metrics = serde_json::Map::new();
    for m in target["metrics"].as_array().unwrap() {
        let kind = m["type"].as_str().unwrap();
        if kind != "count" {
            metrics.insert(
                m["id"].as_str().unwrap().to_string(),
                json!({kind: {"field": m["field"]}}),
            );
        }
    }
    let mut aggs = Value::Object(metrics);
    for bucket in target["bucketAggs"].as_array().unwrap().iter().rev() {
        let id = bucket["id"].as_str().unwrap();
        let field = &bucket["field"];
        let mut agg = match bucket["type"].as_str().unwrap() {
            "date_histogram" => json!({"date_histogram": {
                "field": field, "fixed_interval": format!("{interval_ms}ms"), "min_doc_count": 0,
                "extended_bounds": {"min": from, "max": to}, "format": "epoch_millis"}}),
            "terms" => {
                let settings = &bucket["settings"];
                let order_by = match settings["orderBy"].as_str().unwrap() {
                    "_term" => "_key",
                    other => other,
                };
                json!({"terms": {"field": field,
                    "size": settings["size"].as_str().unwrap().parse::<u64>().unwrap(),
                    "order": {order_by: settings["order"]},
                    "min_doc_count": settings["min_doc_count"].as_str().unwrap().parse::<u64>().unwrap()}})
            }
            other => panic!("bucket aggregation {other} not modelled"),
        };
        if aggs.as_object().is_some_and(|a| !a.is_empty()) {
            agg["aggs"] = aggs;
        }
        aggs = json!({id: agg});
    }
    json!({
        "size": 0,
        "query": {"bool": {"filter": [
            {"range": {target["timeField"].as_str().unwrap(): {"gte": from, "lte": to, "format": "epoch_millis"}}},
            {"query_string": {"analyze_wildcard": true, "query": query}}
        ]}},
        "aggs": aggs
    })
}

/// The aggregations of one panel query, sent as Grafana sends it.
async fn run_target(
    scope: &Scope,
    index: &str,
    target: &Value,
    range: (i64, i64),
    interval_ms: i64,
) -> Value {
    let body = grafana_body(target, "g", range.0, range.1, interval_ms);
    scope.grafana_search(index, &body).await["aggregations"].clone()
}

/// `(time, value)` of a histogram's buckets for metric `id` (`None`: the doc count).
fn points(histogram: &Value, id: Option<&str>) -> Vec<(i64, Option<f64>)> {
    histogram["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let value = match id {
                Some(id) => b[id]["value"].as_f64(),
                None => b["doc_count"].as_f64(),
            };
            (b["key"].as_i64().unwrap(), value)
        })
        .collect()
}

#[tokio::test]
async fn every_dashboard_query_answers_from_three_resolutions_through_the_umbrella() {
    use strata::maintain::run::{run_pass, PassOptions};
    let scope = Scope::new("dashboard");
    // The shipped archives: 20 s with percentiles for two days, 10 min for two months, 1 h for
    // ten years.
    let shipped = strata::config::Config::load(&repo().join("archives.toml")).unwrap();
    let archives: String = shipped
        .archives
        .iter()
        .map(|a| {
            let percentiles = match a.percentiles.is_empty() {
                true => String::new(),
                false => format!(
                    "percentiles = [{}]\n",
                    a.percentiles.iter().map(f64::to_string).collect::<Vec<_>>().join(", ")
                ),
            };
            format!(
                "[[archive]]\nname = \"{}\"\nstep = \"{}\"\nretention = \"{}\"\nindex_period = \"{}\"\n{percentiles}",
                a.name,
                humantime::format_duration(a.step),
                a.retention,
                a.index_period
            )
        })
        .collect();
    let cfg = scope.config(&archives, "");
    let now = chrono::Utc::now().timestamp_millis();
    let times = three_years_of_times(now);
    // Values 0..=6 in turn, so that min, max and avg differ.
    let value = |i: usize| (i % 7) as f64;
    let input: String = times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "{{\"name\":\"g\",\"value\":{},\"timestamp\":{t}}}\n",
                value(i)
            )
        })
        .collect();
    replay_into_node(&cfg, &input).await;
    let backend = strata::persist::backend::HttpBackend::connect(&scope.node, &cfg.node).unwrap();
    run_pass(&backend, &cfg, now, now, PassOptions::FULL)
        .await
        .unwrap();
    scope.refresh().await;

    let umbrella = cfg.aliases.umbrella.clone();
    let day = 86_400_000;
    // From a day's start (a bucket start in every archive, as Grafana's range filter meets
    // bucket times), to now.
    let from = now - 3 * 365 * day;
    let range = (from - from.rem_euclid(day), now);
    let in_range: Vec<(i64, f64)> = times
        .iter()
        .enumerate()
        .filter(|(_, &t)| t >= range.0 && t <= range.1)
        .map(|(i, &t)| (t, value(i)))
        .collect();
    let panels = dashboard()["panels"].as_array().unwrap().clone();
    let target = |panel: usize, refid: &str| -> Value {
        panels[panel]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["refId"] == refid)
            .unwrap()
            .clone()
    };

    // Events per interval: every event once, whichever resolution serves it.
    let counts = run_target(&scope, &umbrella, &target(1, "A"), range, day).await;
    let total: f64 = points(&counts["2"], Some("1"))
        .iter()
        .filter_map(|p| p.1)
        .sum();
    assert_eq!(total, in_range.len() as f64);

    // The band: min and max exact over the whole range, the avg line inside it everywhere.
    let min = run_target(&scope, &umbrella, &target(0, "A"), range, day).await;
    let max = run_target(&scope, &umbrella, &target(0, "B"), range, day).await;
    let avg = run_target(&scope, &umbrella, &target(0, "C"), range, day).await;
    let (min, max, avg) = (
        points(&min["2"], Some("1")),
        points(&max["2"], Some("1")),
        points(&avg["2"], Some("1")),
    );
    let lowest = min.iter().filter_map(|p| p.1).fold(f64::MAX, f64::min);
    let highest = max.iter().filter_map(|p| p.1).fold(f64::MIN, f64::max);
    assert_eq!(
        lowest,
        in_range.iter().map(|p| p.1).fold(f64::MAX, f64::min)
    );
    assert_eq!(
        highest,
        in_range.iter().map(|p| p.1).fold(f64::MIN, f64::max)
    );
    let mut shown = 0;
    for ((lo, hi), mid) in min.iter().zip(&max).zip(&avg) {
        if let (Some(lo), Some(hi), Some(mid)) = (lo.1, hi.1, mid.1) {
            assert!(lo <= mid && mid <= hi, "{lo} <= {mid} <= {hi} at {}", lo);
            shown += 1;
        }
    }
    assert!(shown >= 38, "{shown} days with data");

    // Percentiles only where the 20 s archive serves (its last two days), within the band.
    let p99 = run_target(&scope, &umbrella, &target(2, "B"), range, day).await;
    let p99 = points(&p99["2"], Some("1"));
    let with_p99: Vec<i64> = p99.iter().filter(|p| p.1.is_some()).map(|p| p.0).collect();
    assert!(
        !with_p99.is_empty() && with_p99.iter().all(|&t| t >= now - 3 * day),
        "{with_p99:?}"
    );
    for (t, v) in p99.iter().filter_map(|(t, v)| v.map(|v| (*t, v))) {
        let hi = max.iter().find(|p| p.0 == t).and_then(|p| p.1).unwrap();
        assert!(v <= hi, "p99 {v} <= max {hi}");
    }

    // strata's own panel: documents per archive, every archive that serves part of the range.
    let per_archive = run_target(&scope, &umbrella, &target(3, "A"), range, day).await;
    let archives: Vec<&str> = per_archive["3"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        archives,
        ["20s", "1h", "10m"],
        "ordered by name, descending"
    );
    let served: f64 = per_archive["3"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| points(&b["2"], None))
        .filter_map(|p| p.1)
        .sum();
    let (_, count) = scope
        .send(
            reqwest::Method::POST,
            &format!("/{umbrella}/_count"),
            json!({"query": {"range": {"@timestamp": {"gte": range.0, "lte": range.1}}}}),
        )
        .await;
    assert_eq!(served, count["count"].as_f64().unwrap(), "{count}");
    // Kibana's visualisation over the same range: min <= avg <= max in every bucket.
    let vis = saved_objects()
        .into_iter()
        .find(|o| o["type"] == "visualization")
        .unwrap();
    let state: Value =
        serde_json::from_str(vis["attributes"]["visState"].as_str().unwrap()).unwrap();
    let (_, answer) = scope
        .send(
            reqwest::Method::POST,
            &format!("/{umbrella}/_search"),
            kibana_body(&state, range.0, range.1, day),
        )
        .await;
    let buckets = answer["aggregations"]["2"]["buckets"].as_array().unwrap();
    assert!(buckets.len() >= 38, "{answer}");
    for b in buckets {
        let (avg, lo, hi) = (
            b["1"]["value"].as_f64().unwrap(),
            b["3"]["value"].as_f64().unwrap(),
            b["4"]["value"].as_f64().unwrap(),
        );
        assert!(lo <= avg && avg <= hi, "{b}");
    }
    eprintln!(
        "dashboard: {} events over three years through {umbrella}: {shown} days in the band, {} days with p99, {served} documents from archives {archives:?}",
        in_range.len(),
        with_p99.len()
    );
    scope.cleanup().await;
}
