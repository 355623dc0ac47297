//! Refusals and push-back: documents the node refuses, bad input that writes nothing, the series
//! limit, and a blocked node answered with 503 without losing anything.

use std::time::Duration;

use serde_json::{json, Value};
use strata::clock::ManualClock;
use strata::replay::ReplayError;

use crate::support::*;

#[tokio::test]
async fn documents_the_node_refuses_are_counted_not_retried_forever() {
    let scope = Scope::new("poison");
    let cfg = scope.config(&archive("20s", "20s", "2 days", "day", "10s"), FAST);
    let index = format!("{}20s-2026.01.01", scope.prefix);
    // Install strata's template, then pre-create the index with a name mapping that cannot take
    // a document's name.
    let template = strata::persist::template::index_template(&cfg);
    assert_eq!(
        scope
            .send(
                reqwest::Method::PUT,
                &format!("/_index_template/{}", cfg.index.template),
                template
            )
            .await
            .0,
        200
    );
    let (status, v) = scope
        .send(
            reqwest::Method::PUT,
            &format!("/{index}"),
            json!({"mappings": {"properties": {"name": {"type": "long"}}}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let base = ms("2026-01-01T00:00:00Z");
    let mut input = events_ndjson("12", base, &[(0, 1.0)]);
    input.push_str(&events_ndjson("not-a-number", base, &[(0, 1.0)]));
    let err = replay_ndjson_at(&cfg, &input, base + 3_600_000)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ReplayError::Incomplete {
                rejected: 1,
                dropped: 0
            }
        ),
        "{err}"
    );
    let docs = scope.documents().await;
    assert_eq!(docs.len(), 1, "the good document was written");
    scope.cleanup().await;
}

#[tokio::test]
async fn bad_input_gets_400_and_nothing_of_it_reaches_the_node() {
    let scope = Scope::new("badinput");
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let extra = format!("{FAST}\n[http]\nmax_body_bytes = 2048\n[ingest]\nmax_name_length = 64\n");
    let running = start(
        &scope,
        &archive("20s", "20s", "2 days", "day", "10s"),
        &extra,
        &clock,
    )
    .await;
    let good = r#"{"name":"poisoned","value":1}"#;
    let cases: Vec<(String, &str)> = vec![
        (
            format!("[{good}, {{\"name\":\"x\",\"value\":1"),
            "malformed JSON",
        ),
        (
            format!("[{good}, {{\"value\":1}}]"),
            "item 1: field 'name': is required",
        ),
        (
            format!("[{good}, {{\"name\":\"x\"}}]"),
            "item 1: field 'value': is required",
        ),
        (
            format!("[{good}, {{\"name\":\"x\",\"value\":NaN}}]"),
            "malformed JSON",
        ),
        (
            format!("[{good}, {{\"name\":\"x\",\"value\":\"Infinity\"}}]"),
            "field 'value': must be a finite number",
        ),
        (
            format!("[{good}, {{\"name\":\"x\",\"value\":1e999}}]"),
            "field 'value': must be a finite number",
        ),
        (
            format!("[{good}, {{\"name\":\"\",\"value\":1}}]"),
            "field 'name': must not be empty",
        ),
        (
            format!("[{good}, {{\"name\":\"{}\",\"value\":1}}]", "n".repeat(65)),
            "field 'name': is 65 bytes long",
        ),
        (
            format!("[{good}, {{\"name\":\"a\\nb\",\"value\":1}}]"),
            "field 'name': must not contain control characters",
        ),
        (
            format!("[{good}, {{\"name\":\"x\",\"value\":1,\"timestamp\":\"noon\"}}]"),
            "field 'timestamp': \"noon\" is not an RFC 3339 time",
        ),
        (
            format!(
                "[{good}, {{\"name\":\"x\",\"value\":1,\"timestamp\":\"2026-03-01T11:00:00Z\"}}]"
            ),
            "ahead of the server clock",
        ),
        (
            format!("{good}\n{{\"name\":\"x\",\"value\":[1]}}\n"),
            "line 2: field 'value': must be a finite number",
        ),
    ];
    for (body, expected) in &cases {
        let (status, answer, _) = post(&scope, &running, body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(
            message.contains(expected),
            "{body}: expected {expected:?} in {message:?}"
        );
    }
    let (_, answer, _) = post(&scope, &running, &cases[1].0).await;
    assert_eq!(
        (answer["item"].as_u64(), answer["field"].as_str()),
        (Some(1), Some("name"))
    );

    let huge = format!("[{}]", vec![good; 100].join(","));
    let (status, answer, _) = post(&scope, &running, &huge).await;
    assert_eq!(status, 413, "{answer}");

    // One good request with another series, then stop: only it reaches the node.
    let (status, _, _) = post(&scope, &running, r#"{"name":"clean","value":7}"#).await;
    assert_eq!(status, 200);
    running.stop().await.unwrap();
    let docs = scope.documents().await;
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0]["name"], "clean");
    scope.cleanup().await;
}

#[tokio::test]
async fn new_series_over_the_limit_are_refused_whole() {
    let scope = Scope::new("limit");
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let extra = FAST.replace("[consolidate]\n", "[consolidate]\nmax_series = 2\n");
    let running = start(
        &scope,
        &archive("20s", "20s", "2 days", "day", "10s"),
        &extra,
        &clock,
    )
    .await;
    let (status, body, _) = post(
        &scope,
        &running,
        r#"[{"name":"a","value":1},{"name":"b","value":1},{"name":"c","value":1}]"#,
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("active series limit 2 reached: new series 'c' refused"),
        "{body}"
    );
    let (status, _, _) = post(
        &scope,
        &running,
        r#"[{"name":"a","value":1},{"name":"b","value":1}]"#,
    )
    .await;
    assert_eq!(status, 200);
    running.stop().await.unwrap();
    let names: Vec<Value> = scope
        .documents()
        .await
        .iter()
        .map(|d| d["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("a"), json!("b")],
        "nothing of the refused request was recorded"
    );
    scope.cleanup().await;
}

#[tokio::test]
async fn a_blocked_node_pushes_back_with_503_and_loses_nothing() {
    let scope = Scope::new("pushback");
    let start_at = ms("2026-03-01T01:00:00Z");
    let clock = ManualClock::new(start_at);
    let extra = "[consolidate]\ntick = \"5ms\"\nqueue_batches = 1\n[persist]\nqueue_docs = 1\nbatch_docs = 1\nflush_interval = \"5ms\"\nretry_initial = \"20ms\"\nretry_max = \"50ms\"\n";
    let running = start(
        &scope,
        &archive("20s", "20s", "2 days", "day", "0s"),
        extra,
        &clock,
    )
    .await;
    // The day's index refuses writes with 429 until the block is lifted. The maintenance pass
    // that `serve` starts may create the index first: either way it exists.
    let index = format!("{}20s-2026.03.01", scope.prefix);
    let (status, body) = scope
        .send(reqwest::Method::PUT, &format!("/{index}"), json!({}))
        .await;
    assert!(
        status == 200 || (status == 400 && body.to_string().contains("resource_already_exists")),
        "{status} {body}"
    );
    let block = |on: bool| json!({"index.blocks.read_only_allow_delete": if on { json!(true) } else { Value::Null }});
    assert_eq!(
        scope
            .send(
                reqwest::Method::PUT,
                &format!("/{index}/_settings"),
                block(true)
            )
            .await
            .0,
        200
    );

    let mut accepted = 0u64;
    let mut refused = None;
    for i in 0..400 {
        let (status, body, retry_after) = post(
            &scope,
            &running,
            &format!("{{\"name\":\"s{i}\",\"value\":{i}}}"),
        )
        .await;
        match status {
            200 => accepted += body["accepted"].as_u64().unwrap(),
            503 => {
                refused = Some((body, retry_after));
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
        clock.advance(Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let (body, retry_after) =
        refused.expect("ingest never pushed back while the node refused writes");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(
        body["error"].as_str().unwrap().contains("queue is full"),
        "{body}"
    );
    // The writer is retrying the items the node answers 429 (it may still be on its first try).
    let stats = stats_when(&running, Duration::from_secs(20), |s| s.docs_retried > 0).await;
    assert!(
        stats.docs_retried > 0,
        "the writer retried the refused items"
    );

    assert_eq!(
        scope
            .send(
                reqwest::Method::PUT,
                &format!("/{index}/_settings"),
                block(false)
            )
            .await
            .0,
        200
    );
    running.stop().await.unwrap();
    let docs = scope.documents().await;
    assert_eq!(
        docs.len() as u64,
        accepted,
        "every accepted event's bucket was written once the node recovered"
    );
    scope.cleanup().await;
}

#[tokio::test]
async fn distinct_tag_keys_past_the_bound_are_refused_at_ingest_and_never_by_the_node() {
    let scope = Scope::new("tagkeys");
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let extra = FAST.replace("[consolidate]\n", "[consolidate]\nmax_tag_keys = 100\n");
    let running = start(&scope, &archive_20s(), &extra, &clock).await;
    // Names the node's field rules could treat apart come first, then plain ones: 300 in all,
    // each in an event (and so a series) of its own.
    let mut keys: Vec<String> = [
        "_id",
        "_source",
        "_type",
        "_doc",
        "@timestamp",
        "a-b",
        "a b",
        "ключ",
        "*",
        "#",
        "tags",
        "1",
        "A",
    ]
    .map(String::from)
    .to_vec();
    keys.push("x".repeat(255));
    keys.extend((keys.len()..300).map(|i| format!("k{i:03}")));
    let (mut acked, mut refused) = (Vec::new(), 0);
    for (i, key) in keys.iter().enumerate() {
        let body = json!({"name": "keys", "value": i, "tags": {key.as_str(): "v"}});
        let (status, answer, _) = post(&scope, &running, &body.to_string()).await;
        match status {
            200 => acked.push(key.clone()),
            400 => {
                assert_eq!(answer["field"], "tags", "{answer}");
                let error = answer["error"].as_str().unwrap();
                assert!(error.contains(&format!("tag key '{key}'")), "{error}");
                assert!(error.contains("consolidate.max_tag_keys"), "{error}");
                refused += 1;
            }
            other => panic!("key {key:?}: {other} {answer}"),
        }
    }
    assert_eq!((acked.len(), refused), (100, 200));
    assert_eq!(&acked[..14], &keys[..14], "the unusual names are taken");

    clock.set(ms("2026-03-01T10:00:30Z"));
    let docs = scope.wait_for_documents(100).await;
    let stats = stats_when(&running, Duration::from_secs(10), |s| s.docs_written >= 100).await;
    assert_eq!((stats.docs_written, stats.docs_rejected), (100, 0));
    assert_eq!(stats.tag_keys, 100);
    running.stop().await.unwrap();
    assert_eq!(scope.documents().await.len(), docs.len());

    // On the node: one field per acknowledged key, under a field limit above the bound.
    let index = format!("{}20s-2026.03.01", scope.prefix);
    let (_, mapping) = scope.get(&format!("/{index}/_mapping/field/tags.*")).await;
    let mut mapped: Vec<&str> = mapping[&index]["mappings"]
        .as_object()
        .unwrap()
        .keys()
        .map(|f| f.strip_prefix("tags.").unwrap())
        .collect();
    mapped.sort_unstable();
    let mut expected: Vec<&str> = acked.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(mapped, expected);
    let (_, settings) = scope
        .get(&format!(
            "/{index}/_settings/index.mapping.total_fields.limit?flat_settings=true"
        ))
        .await;
    let limit: usize = settings[&index]["settings"]["index.mapping.total_fields.limit"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((200..300).contains(&limit), "field limit {limit}");
    eprintln!(
        "300 distinct tag keys at max_tag_keys = 100: {} acknowledged and stored, {refused} refused at ingest, {} rejected by the node; field limit {limit}",
        acked.len(),
        stats.docs_rejected
    );
    scope.cleanup().await;
}
