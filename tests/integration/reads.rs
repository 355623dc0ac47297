//! The read APIs over stored data: `/v1/stats`, `/v1/metrics` across resolutions, coverage,
//! Kilometric `/read`, `/v1/series`, percentiles.

use serde_json::{json, Value};
use strata::clock::ManualClock;

use crate::support::*;

/// Values over four orders of magnitude, deterministic.
fn spread_values(n: usize) -> Vec<f64> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            (u * 9.2).exp().round() / 10.0 + 0.1
        })
        .collect()
}

fn nearest_rank(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

fn within_one_percent(estimate: Option<f64>, exact: f64) -> bool {
    estimate.is_some_and(|e| (e - exact).abs() <= 0.01 * exact.abs())
}

#[tokio::test]
async fn stats_answers_cricket_example_with_correct_min_and_max() {
    let scope = Scope::new("cricket");
    let archives = archive("1h", "1h", "50 years", "year", "10s");
    let cfg = scope.config(&archives, FAST);
    let input = [
        r#"{"name":"c1","type":"counter","value":1,"timestamp":"1990-01-01T00:00:00Z"}"#,
        r#"{"name":"c1","type":"counter","value":1,"timestamp":"1990-01-01T01:00:00Z"}"#,
        r#"{"name":"c1","type":"counter","value":1,"timestamp":"1990-06-01T00:00:00Z"}"#,
        r#"{"name":"c2","type":"counter","value":4.7,"timestamp":"1990-01-01T00:00:00Z"}"#,
    ]
    .join("\n");
    replay_into_node(&cfg, &input).await;
    scope.refresh().await;
    let clock = ManualClock::new(chrono::Utc::now().timestamp_millis());
    let running = start(&scope, &archives, FAST, &clock).await;
    let base = format!("http://{}/v1/stats", running.addr);
    let (status, body) = get_json(
        &scope,
        format!("{base}?name=c1&start=1980-12-31T22:49:50Z&end=2016-12-31T22:49:50Z"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"count": 3, "sum": 3.0, "min": 1.0, "max": 1.0, "average": 1.0})
    );
    let (status, body) =
        get_json(&scope, format!("{base}?name=c1&start=1980-12-31T22:49:50Z")).await;
    assert_eq!(
        (status, body["param"].as_str()),
        (400, Some("end")),
        "{body}"
    );
    let (status, _) = get_json(
        &scope,
        format!("{base}?name=c1&start=2000-01-01T00:00:00Z&end=2001-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = get_json(&scope, format!("{base}?name=c1&start=yesterday&end=0")).await;
    assert_eq!(status, 400, "{body}");
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn stats_over_two_resolutions_equal_the_raw_statistics() {
    let scope = Scope::new("twores");
    let archives = [
        archive("10m", "10m", "3 days", "day", "10s"),
        archive("1h", "1h", "2 months", "month", "10s"),
    ]
    .concat();
    let cfg = scope.config(&archives, FAST);
    let (hour, day) = (3_600_000i64, 86_400_000i64);
    let now = chrono::Utc::now().timestamp_millis();
    let today = now - now.rem_euclid(day);
    // Every 50 minutes for ten days, values that differ.
    let events: Vec<(i64, f64)> = (0..290)
        .map(|i| {
            (
                today - 10 * day + i * 3_000_000,
                ((i * 37) % 101) as f64 - 20.0,
            )
        })
        .filter(|&(t, _)| t < now - 60_000)
        .collect();
    let input: String = events
        .iter()
        .map(|(t, v)| format!("{{\"name\":\"t\",\"value\":{v},\"timestamp\":{t}}}\n"))
        .collect();
    replay_into_node(&cfg, &input).await;
    scope.refresh().await;
    let clock = ManualClock::new(now);
    let running = start(&scope, &archives, FAST, &clock).await;
    // From 8 days ago (hourly archive) to now (10-minute archive since two days ago), on hours.
    let (from, to) = (today - 8 * day + 5 * hour, now - now.rem_euclid(hour) - 1);
    let raw: Vec<f64> = events
        .iter()
        .filter(|&&(t, _)| t >= from && t <= to)
        .map(|&(_, v)| v)
        .collect();
    let (status, body) = get_json(
        &scope,
        format!(
            "http://{}/v1/stats?name=t&start={from}&end={to}",
            running.addr
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"].as_u64(), Some(raw.len() as u64));
    assert_eq!(body["sum"].as_f64(), Some(raw.iter().sum::<f64>()));
    assert_eq!(body["min"].as_f64(), raw.iter().cloned().reduce(f64::min));
    assert_eq!(body["max"].as_f64(), raw.iter().cloned().reduce(f64::max));
    let average = raw.iter().sum::<f64>() / raw.len() as f64;
    assert!(
        (body["average"].as_f64().unwrap() - average).abs() < 1e-9,
        "{body}"
    );
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn metrics_read_each_part_of_three_years_from_the_finest_archive() {
    let scope = Scope::new("points");
    let archives = [
        archive("10m", "10m", "3 days", "day", "10s"),
        archive("1h", "1h", "2 months", "month", "10s"),
        archive("1d", "1d", "10 years", "year", "10s"),
    ]
    .concat();
    let cfg = scope.config(&archives, FAST);
    let day = 86_400_000i64;
    let now = chrono::Utc::now().timestamp_millis();
    let today = now - now.rem_euclid(day);
    let times = three_years_of_times(now);
    replay_into_node(&cfg, &gauge_ones(&times)).await;
    scope.refresh().await;
    let clock = ManualClock::new(now);
    let running = start(&scope, &archives, FAST, &clock).await;
    let (from, to) = (today - 3 * 365 * day, today + day - 1);
    let (status, body) = get_json(
        &scope,
        format!(
            "http://{}/v1/metrics?name=g&from={from}&to={to}&stat=count",
            running.addr
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let points = body["points"].as_array().unwrap();
    let total: f64 = points.iter().filter_map(|p| p["value"].as_f64()).sum();
    assert_eq!(
        total,
        times.iter().filter(|&&t| t >= from && t <= to).count() as f64
    );
    // The resolution changes from daily to hourly to 10-minute points, in time order.
    let mut seen: Vec<(String, i64)> = Vec::new();
    for p in points {
        let key = (
            p["archive"].as_str().unwrap().to_string(),
            p["step"].as_i64().unwrap(),
        );
        if seen.last() != Some(&key) {
            seen.push(key);
        }
    }
    assert_eq!(
        seen,
        vec![
            ("1d".to_string(), 86_400),
            ("1h".to_string(), 3_600),
            ("10m".to_string(), 600)
        ]
    );
    assert!(points
        .windows(2)
        .all(|w| w[0]["timestamp"].as_i64() < w[1]["timestamp"].as_i64()));
    // A coarser step re-aggregates; bad parameters are named.
    let (_, coarse) = get_json(
        &scope,
        format!(
            "http://{}/v1/metrics?name=g&from={from}&to={to}&stat=count&step=7d",
            running.addr
        ),
    )
    .await;
    let coarse_total: f64 = coarse["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["value"].as_f64())
        .sum();
    assert_eq!(coarse_total, total);
    for (query, param) in [
        ("&stat=median", "stat"),
        ("&stat=p101", "stat"),
        ("&min_coverage=2", "min_coverage"),
        ("&step=0s", "step"),
    ] {
        let (status, body) = get_json(
            &scope,
            format!(
                "http://{}/v1/metrics?name=g&from={from}&to={to}{query}",
                running.addr
            ),
        )
        .await;
        assert_eq!(
            (status, body["param"].as_str()),
            (400, Some(param)),
            "{body}"
        );
    }
    let (status, body) = get_json(
        &scope,
        format!("http://{}/v1/metrics?name=g&to={to}", running.addr),
    )
    .await;
    assert_eq!((status, body["param"].as_str()), (400, Some("from")));
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn min_coverage_nulls_points_with_too_few_stored_buckets() {
    let scope = Scope::new("coverage");
    let archives = archive("10m", "10m", "30 days", "day", "10s");
    let cfg = scope.config(&archives, FAST);
    let base = ms("2026-02-01T00:00:00Z");
    // One value in every other 10-minute bucket: half of the stored buckets are empty.
    let input: String = (0..12)
        .map(|i| {
            format!(
                "{{\"name\":\"half\",\"value\":{i},\"timestamp\":{}}}\n",
                base + i * 1_200_000
            )
        })
        .collect();
    replay_ndjson_at(&cfg, &input, ms("2026-02-02T00:00:00Z"))
        .await
        .unwrap();
    scope.refresh().await;
    let clock = ManualClock::new(ms("2026-02-02T00:00:00Z"));
    let running = start(&scope, &archives, FAST, &clock).await;
    let url = |c: &str| {
        format!(
            "http://{}/v1/metrics?name=half&from={base}&to={}&step=20m&min_coverage={c}",
            running.addr,
            base + 4 * 3_600_000 - 1
        )
    };
    let values = |body: &Value| {
        body["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["value"].as_f64())
            .collect::<Vec<_>>()
    };
    let (_, strict) = get_json(&scope, url("0.75")).await;
    assert_eq!(values(&strict).len(), 12);
    assert!(values(&strict).iter().all(Option::is_none), "{strict}");
    let (_, lenient) = get_json(&scope, url("0.25")).await;
    assert_eq!(
        values(&lenient),
        (0..12).map(|i| Some(i as f64)).collect::<Vec<_>>()
    );
    assert!(lenient["points"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["coverage"] == 0.5));
    // cricket's lookup of the stored points at one instant.
    let at = base + 1_200_000;
    let (status, body) = get_json(
        &scope,
        format!(
            "http://{}/v1/metrics?name=half&timestamp={at}",
            running.addr
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!([{"name": "half", "type": "gauge", "value": 1.0, "timestamp": "2026-02-01T00:20:00Z", "archive": "10m", "step": 600}])
    );
    let (status, _) = get_json(
        &scope,
        format!(
            "http://{}/v1/metrics?name=half&timestamp={}",
            running.addr,
            base + 600_000
        ),
    )
    .await;
    assert_eq!(status, 404);
    // An instant inside a bucket finds that bucket, not only its start.
    let (status, inside) = get_json(
        &scope,
        format!(
            "http://{}/v1/metrics?name=half&timestamp={}",
            running.addr,
            at + 445_000
        ),
    )
    .await;
    assert_eq!((status, inside.clone()), (200, body), "{inside}");
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn kilometric_track_and_read_counters_and_points() {
    let scope = Scope::new("kilo");
    let t0 = ms("2026-03-01T10:00:05Z");
    let clock = ManualClock::new(t0);
    let running = start(&scope, &archive_20s(), FAST, &clock).await;
    let track = |query: String| {
        let url = format!("http://{}/track?{query}", running.addr);
        let http = scope.http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    // Minute 10:00: 1 + 2.5 + 1; minute 10:01: 4 + 1; minute 10:02 nothing; 10:03: 7.
    let mut expected_total = 0.0;
    for (offset_s, value) in [
        (0, None),
        (10, Some(2.5)),
        (30, None),
        (60, Some(4.0)),
        (75, None),
        (180, Some(7.0)),
    ] {
        clock.set(t0 + offset_s * 1000);
        let query = match value {
            Some(v) => format!("key=visits&value={v}"),
            None => "key=visits".to_string(),
        };
        assert_eq!(track(query).await, 204);
        expected_total += value.unwrap_or(1.0);
    }
    assert_eq!(track("value=1".into()).await, 400);
    assert_eq!(track("key=visits&value=NaN".into()).await, 400);
    clock.set(t0 + 600_000);
    let docs = scope.wait_for_documents(5).await;
    assert_eq!(docs.len(), 5, "{docs:?}");
    assert!(docs.iter().all(|d| d["type"] == "counter"));

    let base = format!("http://{}/read?key=visits", running.addr);
    let (status, counter) = get_json(&scope, format!("{base}&type=counter")).await;
    assert_eq!(status, 200, "{counter}");
    assert_eq!(counter["name"], "visits");
    assert_eq!(counter["values"][0]["value"].as_f64(), Some(expected_total));
    assert_eq!(
        counter["values"][0]["from"].as_i64(),
        Some(ms("2026-03-01T10:00:00Z"))
    );
    assert_eq!(
        counter["values"][0]["to"].as_i64(),
        Some(ms("2026-03-01T10:03:00Z"))
    );
    let (_, points) = get_json(&scope, format!("{base}&type=points&period=60")).await;
    assert_eq!(
        points,
        json!({"name": "visits", "values": [
            {"from": ms("2026-03-01T10:00:00Z"), "value": 4.5},
            {"from": ms("2026-03-01T10:01:00Z"), "value": 5},
            {"from": ms("2026-03-01T10:03:00Z"), "value": 7}
        ]})
    );
    let (status, body) = get_json(&scope, format!("{base}&type=gauge")).await;
    assert_eq!((status, body["param"].as_str()), (400, Some("type")));
    let (_, empty) = get_json(
        &scope,
        format!("http://{}/read?key=nothing&type=counter", running.addr),
    )
    .await;
    assert_eq!(empty, json!({"name": "nothing", "values": []}));
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn series_lists_what_has_data_in_the_range() {
    let scope = Scope::new("series");
    let archives = [
        archive("20s", "20s", "2 days", "day", "10s"),
        archive("1h", "1h", "10 years", "year", "10s"),
    ]
    .concat();
    let cfg = scope.config(&archives, FAST);
    let base = ms("2026-02-01T00:00:00Z");
    let input = [
        format!(
            r#"{{"name":"cpu","host":"a","tags":{{"dc":"par"}},"value":1,"timestamp":{base}}}"#
        ),
        format!(r#"{{"name":"cpu","host":"b","value":1,"timestamp":{base}}}"#),
        format!(
            r#"{{"name":"mem","host":"a","value":1,"timestamp":{}}}"#,
            base + 86_400_000
        ),
    ]
    .join("\n");
    replay_ndjson_at(&cfg, &input, ms("2026-02-02T12:00:00Z"))
        .await
        .unwrap();
    scope.refresh().await;
    let clock = ManualClock::new(ms("2026-02-02T12:00:00Z"));
    let running = start(&scope, &archives, FAST, &clock).await;
    let url = |q: &str| {
        format!(
            "http://{}/v1/series?from={base}&to={}{q}",
            running.addr,
            base + 3_600_000
        )
    };
    let (status, body) = get_json(&scope, url("")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!([
            {"series": "cpu{host=\"a\",dc=\"par\"}", "name": "cpu", "host": "a", "tags": {"dc": "par"}, "archives": ["20s"]},
            {"series": "cpu{host=\"b\"}", "name": "cpu", "host": "b", "tags": {}, "archives": ["20s"]}
        ])
    );
    let (_, only_a) = get_json(&scope, url("&tag.dc=par")).await;
    assert_eq!(only_a.as_array().unwrap().len(), 1);
    let (status, _) = get_json(&scope, format!("http://{}/v1/series?to=1", running.addr)).await;
    assert_eq!(status, 400);
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn percentiles_survive_downsampling_within_one_percent_of_nearest_rank() {
    let scope = Scope::new("pctl");
    let keep = "percentiles = [50, 90, 99]\n";
    let archives = [
        archive("10m", "10m", "3 days", "day", "10s"),
        keep.to_string(),
        archive("1h", "1h", "2 months", "month", "10s"),
        keep.to_string(),
    ]
    .concat();
    let cfg = scope.config(&archives, FAST);
    let (hour, day) = (3_600_000i64, 86_400_000i64);
    let now = chrono::Utc::now().timestamp_millis();
    let today = now - now.rem_euclid(day);
    // Every 5 minutes for ten days: several values per stored bucket, spread over 4 decades.
    let values = spread_values(2880);
    let events: Vec<(i64, f64)> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (today - 10 * day + i as i64 * 300_000 + 7_000, v))
        .filter(|&(t, _)| t < now - 60_000)
        .collect();
    let input: String = events
        .iter()
        .map(|(t, v)| {
            format!("{{\"name\":\"lat\",\"type\":\"timer\",\"value\":{v},\"timestamp\":{t}}}\n")
        })
        .collect();
    replay_into_node(&cfg, &input).await;
    scope.refresh().await;
    let docs = scope.documents().await;
    let hourly = docs.iter().find(|d| d["archive"] == "1h").unwrap();
    assert!(hourly["p99"].as_f64().is_some() && hourly["sketch"].as_str().is_some());
    let clock = ManualClock::new(now);
    let running = start(&scope, &archives, FAST, &clock).await;
    let in_range = |from: i64, to: i64| -> Vec<f64> {
        events
            .iter()
            .filter(|&&(t, _)| t >= from && t <= to)
            .map(|&(_, v)| v)
            .collect()
    };
    // Across both resolutions: from 8 days ago (hourly) to the last whole hour (10-minute).
    let (from, to) = (today - 8 * day + 5 * hour, now - now.rem_euclid(hour) - 1);
    let raw = in_range(from, to);
    let (status, body) = get_json(
        &scope,
        format!(
            "http://{}/v1/stats?name=lat&start={from}&end={to}",
            running.addr
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"].as_u64(), Some(raw.len() as u64));
    for (field, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        let exact = nearest_rank(&raw, q);
        assert!(
            within_one_percent(body[field].as_f64(), exact),
            "{field}: {} vs exact {exact}",
            body[field]
        );
    }
    let (_, other) = get_json(
        &scope,
        format!(
            "http://{}/v1/stats?name=lat&start={from}&end={to}&percentiles=99.9",
            running.addr
        ),
    )
    .await;
    assert!(within_one_percent(
        other["p99_9"].as_f64(),
        nearest_rank(&raw, 0.999)
    ));
    // Daily points over days the hourly archive holds: each merges 24 hourly sketches.
    let (from, to) = (today - 8 * day, today - 4 * day - 1);
    let (status, body) = get_json(
        &scope,
        format!(
            "http://{}/v1/metrics?name=lat&from={from}&to={to}&step=1d&stat=p99",
            running.addr
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let points = body["points"].as_array().unwrap();
    assert_eq!(points.len(), 4, "{body}");
    for p in points {
        let t = p["timestamp"].as_i64().unwrap();
        let exact = nearest_rank(&in_range(t, t + day - 1), 0.99);
        assert_eq!(p["archive"], "1h");
        assert!(
            within_one_percent(p["value"].as_f64(), exact),
            "{p} vs exact {exact}"
        );
    }
    // A step that is not a whole multiple of a stored one is refused, naming the steps.
    let (status, body) = get_json(
        &scope,
        format!(
            "http://{}/v1/metrics?name=lat&from={from}&to={to}&step=90m",
            running.addr
        ),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string()
            .contains("not a whole multiple of the 1h step"),
        "{body}"
    );
    // A counter keeps no sketch: a percentile of it is refused, not answered with nulls.
    let hits: String = events
        .iter()
        .map(|(t, _)| {
            format!("{{\"name\":\"hits\",\"type\":\"counter\",\"value\":1,\"timestamp\":{t}}}\n")
        })
        .collect();
    replay_into_node(&cfg, &hits).await;
    scope.refresh().await;
    let (status, body) = get_json(
        &scope,
        format!(
            "http://{}/v1/metrics?name=hits&from={from}&to={to}&step=1d&stat=p99",
            running.addr
        ),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("this series is a counter"),
        "{body}"
    );
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn several_series_in_one_read_equal_each_read_alone_and_series_come_in_pages() {
    let scope = Scope::new("group");
    let archives = [
        archive("20s", "20s", "2 days", "day", "10s") + "percentiles = [50, 99]\n",
        archive("1h", "1h", "10 years", "year", "10s") + "percentiles = [50, 99]\n",
    ]
    .concat();
    let cfg = scope.config(&archives, FAST);
    let now = ms("2026-02-03T12:00:00Z");
    let base = ms("2026-02-01T00:00:00Z");
    // Two names on three hosts, every 5 minutes for two and a half days: the first day is
    // served by the hourly archive only (the 20 s one keeps two days).
    let values = spread_values(6 * 720);
    let mut lines = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let (series, step) = (i % 6, i / 6);
        let name = ["cpu.user", "cpu.system"][series % 2];
        let host = ["a", "b", "c"][series / 2];
        let t = base + step as i64 * 300_000;
        lines.push(format!(
            r#"{{"name":"{name}","host":"{host}","type":"timer","value":{v},"timestamp":{t}}}"#
        ));
    }
    replay_ndjson_at(&cfg, &lines.join("\n"), now)
        .await
        .unwrap();
    scope.refresh().await;
    let clock = ManualClock::new(now);
    let running = start(&scope, &archives, FAST, &clock).await;
    let range = format!("from={base}&to={}", now - 1);
    let read = |q: String| {
        let (scope, addr) = (&scope, running.addr);
        async move {
            let (status, body) = get_json(scope, format!("http://{addr}/v1/metrics?{q}")).await;
            assert_eq!(status, 200, "{q}: {body}");
            body
        }
    };

    // By host, three statistics and a percentile, about 60 points over the range.
    let stats = "stat=avg,min,max,p99&step=auto&points=60";
    let grouped = read(format!("match=cpu.*&group_by=host&{stats}&{range}")).await;
    assert_eq!(grouped["group_by"], "host");
    assert_eq!(grouped["truncated"], false);
    let series = grouped["series"].as_array().unwrap();
    assert_eq!(
        series.iter().map(|s| s["key"].clone()).collect::<Vec<_>>(),
        vec![json!("a"), json!("b"), json!("c")]
    );
    let points = series[0]["points"].as_array().unwrap();
    assert!((40..=80).contains(&points.len()), "{} points", points.len());
    let archives_seen: std::collections::BTreeSet<&str> = points
        .iter()
        .map(|p| p["archive"].as_str().unwrap())
        .collect();
    assert_eq!(
        archives_seen.len(),
        2,
        "both resolutions, each point says which"
    );
    for (host, s) in ["a", "b", "c"].iter().zip(series) {
        let alone = read(format!(
            "names=cpu.user,cpu.system&host={host}&group_by=none&{stats}&{range}"
        ))
        .await;
        assert_eq!(s["points"], alone["points"], "host {host}: grouped = alone");
    }
    // By name, against the exact-name read.
    let by_name = read(format!("names=cpu.user,cpu.system&{stats}&{range}")).await;
    assert_eq!(by_name["group_by"], "name");
    for s in by_name["series"].as_array().unwrap() {
        let key = s["key"].as_str().unwrap();
        let alone = read(format!("name={key}&{stats}&{range}")).await;
        assert_eq!(s["points"], alone["points"], "{key}");
        let first = &alone["points"][0]["values"];
        assert!(first["min"].as_f64() <= first["avg"].as_f64(), "{first}");
        assert!(
            first["p99"].as_f64() <= Some(first["max"].as_f64().unwrap() * 1.01),
            "{first}"
        );
    }
    let (status, body) = get_json(
        &scope,
        format!(
            "http://{}/v1/metrics?match=cpu.*&group_by=host&limit=2&{range}&step=auto&points=60",
            running.addr
        ),
    )
    .await;
    assert_eq!((status, &body["truncated"]), (200, &json!(true)), "{body}");
    assert_eq!(body["series"].as_array().unwrap().len(), 2);
    let (status, body) = get_json(
        &scope,
        format!(
            "http://{}/v1/metrics?name=cpu.user&match=cpu.*&{range}",
            running.addr
        ),
    )
    .await;
    assert_eq!((status, &body["param"]), (400, &json!("match")), "{body}");

    // Series in pages of four, then filtered by a glob.
    let page = |after: Option<String>| {
        let (scope, addr) = (&scope, running.addr);
        let range = range.clone();
        async move {
            let after = after
                .map(|a| format!("&after={}", urlencode(&a)))
                .unwrap_or_default();
            let (status, body) = get_json(
                scope,
                format!("http://{addr}/v1/series?{range}&limit=4{after}"),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body.as_array().unwrap().clone()
        }
    };
    let first = page(None).await;
    assert_eq!(first.len(), 4);
    let rest = page(first[3]["series"].as_str().map(String::from)).await;
    assert_eq!(rest.len(), 2);
    let all: Vec<Value> = first.into_iter().chain(rest).collect();
    let (_, whole) = get_json(&scope, format!("http://{}/v1/series?{range}", running.addr)).await;
    assert_eq!(Value::Array(all), whole);
    let (_, system) = get_json(
        &scope,
        format!("http://{}/v1/series?{range}&match=*.system", running.addr),
    )
    .await;
    assert_eq!(system.as_array().unwrap().len(), 3, "{system}");
    running.stop().await.unwrap();
    scope.cleanup().await;
}

/// Percent-encodes a query value.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn indices_of_an_older_template_and_of_the_current_one_read_alike() {
    use strata::maintain::run::{run_pass, PassOptions};
    use strata::persist::backend::HttpBackend;

    let scope = Scope::new("mixed");
    let archives = archive("1h", "1h", "10 years", "year", "10s");
    let cfg = scope.config(&archives, FAST);
    // The 2025 index as an older strata made it: every statistic indexed for search too.
    let mut template = strata::persist::template::index_template(&cfg);
    let mut mappings = template["template"]["mappings"].take();
    for field in ["count", "sum", "min", "max", "avg", "first", "last"] {
        let kind = mappings["properties"][field]["type"].clone();
        mappings["properties"][field] = json!({"type": kind});
    }
    let old = format!("{}1h-2025", scope.prefix);
    let (status, body) = scope
        .send(
            reqwest::Method::PUT,
            &format!("/{old}"),
            json!({"settings": {"number_of_replicas": 0}, "mappings": mappings}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Three events an hour around the new year: the last day of 2025, the first of 2026.
    let first = ms("2025-12-31T00:00:00Z");
    let mut lines = Vec::new();
    for h in 0..48 {
        for k in 0..3 {
            lines.push(format!(
                r#"{{"name":"m","value":{},"timestamp":{}}}"#,
                h * 3 + k,
                first + h * 3_600_000 + k * 600_000
            ));
        }
    }
    let now = ms("2026-01-05T00:00:00Z");
    replay_ndjson_at(&cfg, &lines.join("\n"), now)
        .await
        .unwrap();
    let backend = HttpBackend::connect(&scope.node, &cfg.node).unwrap();
    run_pass(&backend, &cfg, now, now, PassOptions::FULL)
        .await
        .unwrap();
    scope.refresh().await;
    let (_, mapping) = scope
        .get(&format!("/{}1h-*/_mapping/field/count", scope.prefix))
        .await;
    let indexed =
        |index: &str| mapping[index]["mappings"]["count"]["mapping"]["count"]["index"].clone();
    assert_eq!(
        indexed(&old),
        Value::Null,
        "the older index searches its statistics"
    );
    assert_eq!(
        indexed(&format!("{}1h-2026", scope.prefix)),
        json!(false),
        "the new one keeps them as doc values only"
    );

    let clock = ManualClock::new(now);
    let running = start(&scope, &archives, FAST, &clock).await;
    let (status, stats) = get_json(
        &scope,
        format!(
            "http://{}/v1/stats?name=m&start=2025-12-31T00:00:00Z&end=2026-01-01T23:59:59Z",
            running.addr
        ),
    )
    .await;
    assert_eq!(status, 200, "{stats}");
    let n = 144.0;
    assert_eq!(
        stats,
        json!({"count": 144, "sum": n * (n - 1.0) / 2.0, "min": 0.0, "max": n - 1.0, "average": (n - 1.0) / 2.0})
    );
    for step in ["1h", "1d"] {
        let (status, body) = get_json(
            &scope,
            format!(
                "http://{}/v1/metrics?name=m&from=2025-12-31T00:00:00Z&to=2026-01-01T23:59:59Z&step={step}&stat=count,max",
                running.addr
            ),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let points = body["points"].as_array().unwrap();
        let total: f64 = points
            .iter()
            .filter_map(|p| p["values"]["count"].as_f64())
            .sum();
        assert_eq!(total, 144.0, "step {step}: every event, from both indices");
        assert_eq!(
            points.last().unwrap()["values"]["max"],
            json!(n - 1.0),
            "step {step}"
        );
    }
    running.stop().await.unwrap();
    scope.cleanup().await;
}
