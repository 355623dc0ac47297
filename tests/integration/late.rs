//! Nothing dropped for being late: events for buckets already written are merged into their
//! documents exactly, whatever the order and however late, by one writer or two racing; events
//! past every retention expire without writing; an old period's new index serves at once.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use strata::clock::ManualClock;

use crate::support::*;

/// `doc` without the token of the write that stored it (random per write).
fn without_token(mut doc: Value) -> Value {
    if let Some(merge) = doc.get_mut("merge").and_then(Value::as_object_mut) {
        merge.remove("w");
    }
    doc
}

/// Polls `search` until it finds at least one hit; how long that took, or `None` after `limit`.
async fn time_until_found(
    scope: &Scope,
    path: &str,
    query: Value,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let (status, v) = scope
            .send(reqwest::Method::POST, path, json!({"query": query}))
            .await;
        if status == 200 && v["hits"]["total"]["value"].as_u64().unwrap_or(0) > 0 {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn cricket_example_over_http_is_merged_into_1990_and_served_through_the_aliases_at_once() {
    let scope = Scope::new("cricket-http");
    let archives = [
        archive("10s", "10s", "2 days", "day", "10s"),
        archive("1h", "1h", "50 years", "year", "10s"),
    ]
    .concat();
    let clock = ManualClock::new(chrono::Utc::now().timestamp_millis());
    let running = start(&scope, &archives, FAST, &clock).await;
    let events = [
        r#"{"name":"c1","type":"counter","value":1,"timestamp":"1990-12-31T22:49:50Z"}"#,
        r#"{"name":"c1","type":"counter","value":1,"timestamp":"1990-12-31T22:49:50Z"}"#,
        r#"{"name":"c1","type":"counter","value":1,"timestamp":"1990-12-31T22:49:50Z"}"#,
        r#"{"name":"c2","type":"counter","value":1,"timestamp":"2016-03-17T12:00:00Z"}"#,
    ];
    let (status, body, _) = post(&scope, &running, &format!("[{}]", events.join(","))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"accepted": 4, "merged": 4, "expired": 0, "archives": {
            "10s": {"recorded": 0, "merged": 0, "expired": 4},
            "1h": {"recorded": 0, "merged": 4, "expired": 0}}})
    );

    // The schedule never fires here (the clock stands still): only the writer's notice of a
    // new index can put 1990's index under the umbrella alias.
    let umbrella = format!("/{}all/_search", scope.prefix);
    let took = time_until_found(
        &scope,
        &umbrella,
        json!({"term": {"name": "c1"}}),
        Duration::from_secs(15),
    )
    .await;
    eprintln!("1990's index served through the umbrella alias after {took:?}");
    assert!(took.is_some(), "not under the umbrella alias after 15 s");

    let (status, body) = get_json(
        &scope,
        format!(
            "http://{}/v1/stats?name=c1&start=1980-12-31T22:49:50Z&end=2016-12-31T22:49:50Z",
            running.addr
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"count": 3, "sum": 3.0, "min": 1.0, "max": 1.0, "average": 1.0})
    );
    running.stop().await.unwrap();
    let p = &scope.prefix;
    let indices = scope.indices().await;
    assert!(indices.contains(&format!("{p}1h-1990")), "{indices:?}");
    assert!(
        !indices.iter().any(|i| i.starts_with(&format!("{p}10s-19"))
            || i.starts_with(&format!("{p}10s-2016"))),
        "expired events create no index: {indices:?}"
    );
    scope.cleanup().await;
}

/// A few thousand events over five series, integer values (so sums are exact in any order),
/// distinct times per series (so first and last are defined by time alone).
fn backfill(base: i64) -> Vec<(String, i64, i64)> {
    let mut events = Vec::new();
    for s in 0..5 {
        for i in 0..600i64 {
            let t = base + i * 29_000 + s * 7;
            events.push((format!("s{s}"), t, (i * 37 + s * 11) % 101));
        }
    }
    events
}

fn ndjson_of(events: &[(String, i64, i64)]) -> String {
    events
        .iter()
        .map(|(name, t, v)| {
            format!("{{\"name\":\"{name}\",\"host\":\"h\",\"value\":{v},\"timestamp\":{t}}}\n")
        })
        .collect()
}

#[tokio::test]
async fn replay_in_any_order_gives_identical_documents() {
    let base = ms("2026-11-01T00:00:00Z");
    let now = base + 6 * 3_600_000;
    let archives = [
        archive("20s", "20s", "2 days", "day", "10s"),
        archive("10m", "10m", "2 months", "month", "10s") + "percentiles = [50, 90]\n",
        archive("1h", "1h", "10 years", "year", "10s"),
    ]
    .concat();
    let sorted = backfill(base);
    let mut by_time = sorted.clone();
    by_time.sort_by_key(|(name, t, _)| (*t, name.clone()));
    let mut reversed = by_time.clone();
    reversed.reverse();
    let mut shuffled = by_time.clone();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in (1..shuffled.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        shuffled.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    let orders = [
        ("sorted", by_time),
        ("reversed", reversed),
        ("shuffled", shuffled),
        ("grouped", sorted),
    ];
    let mut reference: Option<Vec<(String, Value)>> = None;
    for (order, events) in orders {
        let scope = Scope::new(&format!("order-{order}"));
        let cfg = scope.config(&archives, FAST);
        let summary = replay_ndjson_at(&cfg, &ndjson_of(&events), now)
            .await
            .unwrap();
        eprintln!("{order}: {summary:?}");
        assert_eq!(summary.events, 3000);
        assert_eq!(summary.expired, 0);
        let docs: Vec<(String, Value)> = scope
            .documents_by_id()
            .await
            .into_iter()
            .map(|(id, doc)| (id, without_token(doc)))
            .collect();
        let counted: u64 = docs.iter().map(|(_, d)| d["count"].as_u64().unwrap()).sum();
        assert_eq!(
            counted,
            3 * 3000,
            "{order}: every event in each of three archives"
        );
        match &reference {
            None => reference = Some(docs),
            Some(expected) => {
                assert_eq!(docs.len(), expected.len(), "{order}");
                for (got, want) in docs.iter().zip(expected) {
                    assert_eq!(got, want, "{order}");
                }
            }
        }
        scope.cleanup().await;
    }
}

fn gauge_at(t: i64, v: i64) -> String {
    format!(r#"{{"name":"lat","type":"timer","value":{v},"timestamp":{t}}}"#)
}

#[tokio::test]
async fn a_written_bucket_takes_late_events_exactly_as_if_they_had_come_in_time() {
    let archives = archive("20s", "20s", "2 days", "day", "10s") + "percentiles = [50, 90, 99]\n";
    let t0 = ms("2026-03-01T10:00:00Z");
    // In time: 40 values over the bucket; late: 30 more between and around them. A set too:
    // its members are stored, so the late ones that were seen before count once.
    let member = |t: i64, who: i64| {
        format!(r#"{{"name":"users","type":"set","value":"u{who}","timestamp":{t}}}"#)
    };
    let early: Vec<String> = (0..40)
        .map(|i| gauge_at(t0 + 1_000 + i * 400, i * 3 % 17))
        .chain((0..10).map(|i| member(t0 + 2_000 + i, i)))
        .collect();
    let late: Vec<String> = (0..30)
        .map(|i| gauge_at(t0 + 200 + i * 650, 100 - i * 7 % 50))
        .chain((5..15).map(|i| member(t0 + 3_000 + i, i)))
        .collect();

    let merged = Scope::new("late-live");
    let clock = ManualClock::new(t0 + 19_000);
    let running = start(&merged, &archives, FAST, &clock).await;
    let (status, body, _) = post(&merged, &running, &format!("[{}]", early.join(","))).await;
    assert_eq!(status, 200, "{body}");
    clock.set(t0 + 30_000);
    assert_eq!(merged.wait_for_documents(2).await.len(), 2);
    let (status, body, _) = post(&merged, &running, &format!("[{}]", late.join(","))).await;
    assert_eq!((status, &body["merged"]), (200, &json!(40)), "{body}");
    let stats = running.stats.clone();
    running.stop().await.unwrap();
    let s = stats.snapshot();
    assert_eq!(
        (s.docs_merged, s.write_conflicts),
        (2, 0),
        "one read-merge-write a bucket, and a single writer never races itself"
    );
    let got = merged.documents_by_id().await;
    assert_eq!(got.len(), 2, "still one document for each bucket");
    let of = |docs: &[(String, Value)], name: &str| {
        docs.iter()
            .find(|(_, d)| d["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(of(&got, "lat").1["count"], 70);
    assert_eq!(of(&got, "users").1["unique"], 15, "u5..u9 came twice");

    let in_time = Scope::new("late-ref");
    let clock = ManualClock::new(t0 + 19_000);
    let running = start(&in_time, &archives, FAST, &clock).await;
    let all = [early, late].concat();
    let (status, _, _) = post(&in_time, &running, &format!("[{}]", all.join(","))).await;
    assert_eq!(status, 200);
    running.stop().await.unwrap();
    let want = in_time.documents_by_id().await;

    assert_eq!(want.len(), 2);
    for name in ["lat", "users"] {
        let (got, want) = (of(&got, name), of(&want, name));
        assert_eq!(got.0, want.0, "same id");
        assert_eq!(
            without_token(got.1),
            without_token(want.1),
            "every statistic, first and last, percentiles and sketch, a set's members"
        );
    }
    merged.cleanup().await;
    in_time.cleanup().await;
}

#[tokio::test]
async fn two_writers_racing_late_batches_into_one_bucket_lose_nothing() {
    let scope = Scope::new("late-race");
    let archives = archive("1m", "1m", "2 days", "day", "0s");
    let now = chrono::Utc::now().timestamp_millis();
    let clock = ManualClock::new(now);
    let a = start(&scope, &archives, FAST, &clock).await;
    let b = start(&scope, &archives, FAST, &clock).await;
    let bucket = now - now.rem_euclid(60_000) - 3_600_000;
    let rounds = 30;
    for round in 0..rounds {
        let event = format!(
            r#"{{"name":"raced","value":1,"timestamp":{}}}"#,
            bucket + 1_000 + round
        );
        let (ra, rb) = tokio::join!(post(&scope, &a, &event), post(&scope, &b, &event));
        assert_eq!((ra.0, rb.0), (200, 200));
        // Let the late tables drain (every 20 ms tick) so the writes race, not the batches.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let conflicts = a.stats.snapshot().write_conflicts + b.stats.snapshot().write_conflicts;
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    let docs = scope.documents().await;
    eprintln!("two writers, {rounds} rounds: {conflicts} conflicts re-read and merged");
    assert_eq!(docs.len(), 1);
    assert_eq!(
        (docs[0]["count"].as_u64(), docs[0]["sum"].as_f64()),
        (Some(2 * rounds as u64), Some(2.0 * rounds as f64)),
        "no lost update"
    );
    scope.cleanup().await;
}

#[tokio::test]
async fn events_older_than_every_retention_expire_without_writing() {
    let scope = Scope::new("expired");
    let archives = [
        archive("20s", "20s", "2 days", "day", "10s"),
        archive("1h", "1h", "1 year", "month", "10s"),
    ]
    .concat();
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let running = start(&scope, &archives, FAST, &clock).await;
    let body = r#"[{"name":"old","value":1,"timestamp":"2020-05-05T00:00:00Z"},
                   {"name":"old","value":2,"timestamp":"2025-01-01T00:00:00Z"}]"#;
    let (status, body, _) = post(&scope, &running, body).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"accepted": 0, "merged": 0, "expired": 2, "archives": {
            "20s": {"recorded": 0, "merged": 0, "expired": 2},
            "1h": {"recorded": 0, "merged": 0, "expired": 2}}})
    );
    // The hourly archive keeps a year of monthly indices: 2025-03's expired at 2026-03-01T00:00,
    // 2025-04's is kept, so an event of April 2025 is merged there (and expires in the 20 s one).
    let (status, body, _) = post(
        &scope,
        &running,
        r#"{"name":"old","value":3,"timestamp":"2025-04-01T00:00:00Z"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["archives"],
        json!({"20s": {"recorded": 0, "merged": 0, "expired": 1}, "1h": {"recorded": 0, "merged": 1, "expired": 0}})
    );
    running.stop().await.unwrap();
    let docs = scope.documents().await;
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["sum"], 3.0);
    let p = &scope.prefix;
    let indices = scope.indices().await;
    assert!(
        !indices
            .iter()
            .any(|i| i.contains("2020") || i.contains("2025.01")),
        "no index for expired events: {indices:?}"
    );
    assert!(indices.contains(&format!("{p}1h-2025.04")), "{indices:?}");
    scope.cleanup().await;
}

/// Statistics are stored once, as doc values, and ids lead with the series in indices made from
/// today's template; an index made before (statistics in `_source` too, hashed ids) keeps
/// working beside it: both take late events exactly, into the one document of each bucket, and
/// reads over both answer the same.
#[tokio::test]
async fn late_events_merge_into_indices_made_before_and_after_the_lean_documents() {
    let scope = Scope::new("mixed-source");
    let archives = archive_20s();
    let (old_day, new_day) = (ms("2026-03-01T10:00:00Z"), ms("2026-03-02T10:00:00Z"));
    // The old day's index as an earlier strata made it, before this template: every statistic
    // in `_source` as well, and no mark of ids led by the series.
    let old_index = format!("{}20s-2026.03.01", scope.prefix);
    let mut earlier = strata::persist::template::index_template(&scope.config(&archives, FAST));
    let body = earlier["template"].as_object_mut().unwrap();
    let mappings = body["mappings"].as_object_mut().unwrap();
    mappings.remove("_source");
    mappings.remove("_meta");
    let (status, answer) = scope
        .send(reqwest::Method::PUT, &format!("/{old_index}"), json!(body))
        .await;
    assert_eq!(status, 200, "{answer}");
    let clock = ManualClock::new(new_day + 5_000);
    let running = start(&scope, &archives, FAST, &clock).await;
    let timer = |t: i64, v: i64| gauge_at(t, v);
    let first: Vec<String> = [old_day, new_day]
        .iter()
        .flat_map(|&t| [timer(t + 1_000, 4), timer(t + 2_000, 6)])
        .collect();
    let (status, body, _) = post(&scope, &running, &format!("[{}]", first.join(","))).await;
    assert_eq!(status, 200, "{body}");
    clock.set(new_day + 31_000);
    assert_eq!(scope.wait_for_documents(2).await.len(), 2);

    let raw_source = |index: String| {
        let scope = &scope;
        async move {
            let (_, v) = scope
                .send(
                    reqwest::Method::POST,
                    &format!("/{index}/_search"),
                    json!({"query": {"match_all": {}}}),
                )
                .await;
            v["hits"]["hits"][0]["_source"].clone()
        }
    };
    let new_index = format!("{}20s-2026.03.02", scope.prefix);
    assert_eq!(
        raw_source(old_index.clone()).await["count"],
        2,
        "the old index keeps statistics in _source"
    );
    let new_source = raw_source(new_index.clone()).await;
    for field in ["count", "sum", "min", "max", "avg", "first", "last"] {
        assert!(
            new_source.get(field).is_none(),
            "{field} stored once: {new_source}"
        );
    }
    assert_eq!(
        new_source["name"], "lat",
        "names, tags and merge fields stay in _source"
    );

    // Late for both buckets: each document is read back (from _source or doc values) and merged.
    let late: Vec<String> = [old_day, new_day]
        .iter()
        .flat_map(|&t| [timer(t + 500, 1), timer(t + 19_000, 9)])
        .collect();
    let (status, body, _) = post(&scope, &running, &format!("[{}]", late.join(","))).await;
    assert_eq!((status, &body["merged"]), (200, &json!(4)), "{body}");
    let stats = stats_when(&running, Duration::from_secs(20), |s| s.docs_merged >= 2).await;
    assert_eq!(stats.docs_merged, 2, "{stats:?}");
    let docs = scope.documents().await;
    assert_eq!(docs.len(), 2, "one document a bucket");
    for doc in &docs {
        assert_eq!(
            stats_of(doc),
            (4, 20.0, 1.0, 9.0, 5.0, 1.0, 9.0),
            "count, sum, min, max, avg, first, last: {doc}"
        );
    }
    assert!(raw_source(new_index).await.get("count").is_none());
    let mut id_lengths: Vec<(String, usize)> = scope
        .documents_by_id()
        .await
        .into_iter()
        .map(|(id, d)| {
            (
                d["@timestamp"].as_str().unwrap()[..10].to_string(),
                id.len(),
            )
        })
        .collect();
    id_lengths.sort();
    assert_eq!(
        id_lengths,
        [
            ("2026-03-01".to_string(), 32),
            ("2026-03-02".to_string(), 23)
        ],
        "the old index keeps hashed ids, the new one leads them with the series"
    );

    // Reads over both kinds of index: first and last come from doc values where they must.
    let (status, v) = get_json(
        &scope,
        format!(
            "http://{}/v1/metrics?name=lat&from={old_day}&to={}&step=1d&stat=count,first,last,avg",
            running.addr,
            ms("2026-03-03T00:00:00Z")
        ),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let values: Vec<&Value> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["values"])
        .filter(|values| !values["count"].is_null())
        .collect();
    assert_eq!(
        values,
        [
            &json!({"count": 4.0, "first": 1.0, "last": 9.0, "avg": 5.0}),
            &json!({"count": 4.0, "first": 1.0, "last": 9.0, "avg": 5.0})
        ],
        "{v}"
    );
    running.stop().await.unwrap();
    scope.cleanup().await;
}
