//! `strata replay`: events consolidated with their own times into the node, merged into what is
//! stored whatever the file's order, each archive in its own indices, and `--dry-run` without a
//! node.

use serde_json::Value;

use crate::support::*;

#[tokio::test]
async fn issue_example_gives_three_documents_and_a_second_replay_adds_to_them() {
    let scope = Scope::new("example");
    let cfg = scope.config(&archive("20s", "20s", "2 days", "day", "10s"), FAST);
    let base = ms("2026-01-01T00:00:00Z");
    let input = events_ndjson(
        "m",
        base,
        &[(0, 1.0), (10, 3.0), (20, 5.0), (30, 7.0), (40, 2.0)],
    );
    let now = base + 3_600_000;

    for round in 1..=2u64 {
        let summary = replay_ndjson_at(&cfg, &input, now).await.unwrap();
        assert_eq!(
            (
                summary.events,
                summary.documents,
                summary.recorded,
                summary.merged
            ),
            (5, 3, 5, 0),
            "round {round}"
        );
        let docs = scope.documents().await;
        assert_eq!(
            docs.len(),
            3,
            "round {round}: a replay merges into the documents, it never duplicates them"
        );
        let r = round as f64;
        assert_eq!(
            stats_of(&docs[0]),
            (2 * round, 4.0 * r, 1.0, 3.0, 2.0, 1.0, 3.0)
        );
        assert_eq!(
            stats_of(&docs[1]),
            (2 * round, 12.0 * r, 5.0, 7.0, 6.0, 5.0, 7.0)
        );
        assert_eq!(
            stats_of(&docs[2]),
            (round, 2.0 * r, 2.0, 2.0, 2.0, 2.0, 2.0)
        );
        let d = &docs[0];
        assert_eq!(
            (
                d["@timestamp"].as_str(),
                d["name"].as_str(),
                d["host"].as_str()
            ),
            (Some("2026-01-01T00:00:00Z"), Some("m"), Some("h1"))
        );
        assert_eq!(
            (
                d["tags"]["dc"].as_str(),
                d["type"].as_str(),
                d["archive"].as_str(),
                d["step"].as_u64()
            ),
            (Some("par"), Some("gauge"), Some("20s"), Some(20))
        );
        assert_eq!(
            (
                d["merge"]["first_at"].as_i64(),
                d["merge"]["last_at"].as_i64()
            ),
            (Some(base), Some(base + 10_000)),
            "the times of first and last are kept for merging"
        );
    }
    let index = format!("{}20s-2026.01.01", scope.prefix);
    assert_eq!(scope.indices().await, vec![index.clone()]);

    // The template typed the fields: statistics are doubles, dimensions keywords.
    let (_, mapping) = scope.get(&format!("/{index}/_mapping")).await;
    let props = &mapping[&index]["mappings"]["properties"];
    assert_eq!(props["sum"]["type"], "double");
    assert_eq!(props["count"]["type"], "long");
    assert_eq!(props["name"]["type"], "keyword");
    assert_eq!(props["tags"]["properties"]["dc"]["type"], "keyword");
    assert_eq!(props["@timestamp"]["type"], "date");
    let (_, settings) = scope.get(&format!("/{index}/_settings")).await;
    assert_eq!(
        settings[&index]["settings"]["index"]["codec"],
        "best_compression"
    );
    assert_eq!(
        settings[&index]["settings"]["index"]["number_of_shards"],
        "1"
    );
    scope.cleanup().await;
}

#[tokio::test]
async fn replay_spreads_archives_over_their_own_indices() {
    let scope = Scope::new("archives");
    let archives = [
        archive("20s", "20s", "2 days", "day", "10s"),
        archive("10m", "10m", "2 months", "month", "10s"),
        archive("1h", "1h", "10 years", "year", "10s"),
    ]
    .concat();
    let cfg = scope.config(&archives, FAST);
    // One event a minute for two hours across a day boundary.
    let base = ms("2025-12-31T23:00:00Z");
    let points: Vec<(i64, f64)> = (0..120).map(|i| (i * 60, i as f64)).collect();
    let input = events_ndjson("cpu", base, &points);
    let summary = replay_ndjson_at(&cfg, &input, base + 3 * 3_600_000)
        .await
        .unwrap();
    assert_eq!(summary.documents, 120 + 12 + 2);
    let p = &scope.prefix;
    assert_eq!(
        scope.indices().await,
        vec![
            format!("{p}10m-2025.12"),
            format!("{p}10m-2026.01"),
            format!("{p}1h-2025"),
            format!("{p}1h-2026"),
            format!("{p}20s-2025.12.31"),
            format!("{p}20s-2026.01.01")
        ]
    );
    let docs = scope.documents().await;
    for name in ["20s", "10m", "1h"] {
        let of: Vec<&Value> = docs.iter().filter(|d| d["archive"] == name).collect();
        assert_eq!(
            of.iter().map(|d| d["count"].as_u64().unwrap()).sum::<u64>(),
            120,
            "{name}"
        );
        assert_eq!(
            of.iter().map(|d| d["sum"].as_f64().unwrap()).sum::<f64>(),
            (0..120).sum::<i64>() as f64,
            "{name}"
        );
    }
    let hourly: Vec<(u64, f64, f64)> = docs
        .iter()
        .filter(|d| d["archive"] == "1h")
        .map(|d| {
            (
                d["count"].as_u64().unwrap(),
                d["min"].as_f64().unwrap(),
                d["max"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(hourly, vec![(60, 0.0, 59.0), (60, 60.0, 119.0)]);
    scope.cleanup().await;
}

#[tokio::test]
async fn replay_dry_run_prints_the_bulk_body_without_a_node() {
    let dir = std::env::temp_dir().join(format!("strata-dry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("archives.toml");
    std::fs::write(&config, archive("20s", "20s", "2 days", "day", "10s")).unwrap();
    // An hour ago, on a minute boundary: within the retention whenever the test runs.
    let now = chrono::Utc::now().timestamp_millis();
    let base = now - now.rem_euclid(60_000) - 3_600_000;
    let input = events_ndjson(
        "m",
        base,
        &[(0, 1.0), (10, 3.0), (20, 5.0), (30, 7.0), (40, 2.0)],
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "replay",
            "--dry-run",
            "--config",
            config.to_str().unwrap(),
            "-",
        ])
        .env_remove("STRATA_NODE_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "three action lines and three documents");
    let day = chrono::DateTime::from_timestamp_millis(base)
        .unwrap()
        .format("%Y.%m.%d");
    assert_eq!(lines[0]["create"]["_index"], format!("strata-20s-{day}"));
    assert_eq!(lines[1]["count"], 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("replayed 5 events: 3 documents; recorded 5, merged 0, expired 0"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_large_replay_shows_progress_as_a_bar_on_a_terminal_and_as_lines_otherwise() {
    let scope = Scope::new("progress");
    let dir = std::env::temp_dir().join(format!("strata-{}", scope.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("strata.toml");
    let text = scope.config_text(&archive("20s", "20s", "2 days", "day", "10s"), "");
    std::fs::write(&config, text).unwrap();
    // 100 000 events of one series over half an hour ending an hour and a half ago.
    let now = chrono::Utc::now().timestamp_millis();
    let base = now - now.rem_euclid(60_000) - 2 * 3_600_000;
    let mut input = String::new();
    for i in 0..100_000i64 {
        input.push_str(&format!(
            "{{\"name\":\"p\",\"value\":{},\"timestamp\":{}}}\n",
            i % 100,
            base + i * 18
        ));
    }
    let events = dir.join("events.ndjson");
    std::fs::write(&events, &input).unwrap();
    let strata = env!("CARGO_BIN_EXE_strata");
    let run = |command: String| async move {
        let out = tokio::process::Command::new("sh")
            .args(["-c", &command])
            .output()
            .await
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{command}: {text}");
        text
    };
    let replay = format!(
        "'{strata}' replay --config '{}' '{}'",
        config.display(),
        events.display()
    );

    // On a pseudo-terminal (util-linux's script): a bar redrawn in place.
    let tty = run(format!("script -qfec \"{replay}\" /dev/null")).await;
    assert!(
        tty.contains("replay: validating [") && tty.contains("replay: writing ["),
        "{tty}"
    );
    assert!(
        tty.contains('\r') || tty.contains("\u{1b}["),
        "redrawn in place: {tty:?}"
    );
    assert!(tty.contains("100000 events"), "{tty}");

    // Otherwise: plain lines, and the summary.
    let lines = run(format!("{replay} 2>&1 | cat")).await;
    for phase in ["validating", "writing"] {
        let line = lines
            .lines()
            .find(|l| l.starts_with(&format!("replay: {phase} 100% (")))
            .unwrap_or_else(|| panic!("{phase} in {lines}"));
        assert!(
            line.contains("100000 events") && line.contains("events/s, done in"),
            "{line}"
        );
    }
    assert!(!lines.contains('\r'), "{lines:?}");
    assert!(lines.contains("replayed 100000 events"), "{lines}");

    // Standard input is spooled and streamed the same way; --partial skips bad lines.
    let bad = "{\"name\":\"p\"}\nnot json\n";
    let good: String = input.lines().take(4).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("bad.ndjson"), format!("{bad}{good}")).unwrap();
    let refused = tokio::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "'{strata}' replay --progress off --config '{}' - < '{}'",
                config.display(),
                dir.join("bad.ndjson").display()
            ),
        ])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("line 1: field 'value'"));
    let partial = run(format!(
        "'{strata}' replay --partial --progress off --config '{}' - < '{}'",
        config.display(),
        dir.join("bad.ndjson").display()
    ))
    .await;
    assert!(
        partial.contains("skipped 2 bad line(s) (--partial): line 1: field 'value'"),
        "{partial}"
    );
    assert!(partial.contains("line 2: "), "{partial}");
    let leftover = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("strata-replay-")
        });
    assert!(!leftover, "the spooled standard input is removed");
    scope.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}
