//! strata against a secured node: OpenSearch with its security plugin over HTTPS with basic auth,
//! started by `scripts/node start opensearch-2.19.1-secured` (scripts/test does it and sets
//! STRATA_TEST_SECURED_NODE to its URL and STRATA_TEST_SECURED_DIR to its run directory, which
//! holds `ca.pem`, `user` and `password`). Writes and reads go through TLS and the credentials;
//! a wrong password, an unknown CA or no CA at all fail at start with a clear error instead of a
//! retry loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use strata::clock::ManualClock;
use strata::config::Config;
use strata::persist::backend::{HttpBackend, SearchBackend};
use strata::pipeline::{serve, ServeError, ServeOptions};

struct Secured {
    url: String,
    dir: PathBuf,
}

fn secured() -> Secured {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run scripts/test, which starts the secured node and sets it")
        })
    };
    Secured {
        url: var("STRATA_TEST_SECURED_NODE"),
        dir: PathBuf::from(var("STRATA_TEST_SECURED_DIR")),
    }
}

/// A config for the secured node with `ca_file` and `password_file`, under its own prefix.
fn config(node: &Secured, prefix: &str, ca_file: Option<&Path>, password_file: &Path) -> Config {
    let user = std::fs::read_to_string(node.dir.join("user")).unwrap();
    let ca = ca_file.map_or(String::new(), |f| {
        format!("ca_file = \"{}\"\n", f.display())
    });
    let text = format!(
        "[node]\nurl = \"{url}\"\nusername = \"{user}\"\npassword_file = \"{pw}\"\n{ca}\
         [index]\nprefix = \"{prefix}\"\ntemplate = \"{prefix}tpl\"\nreplicas = 0\n\
         [aliases]\nprefix = \"{prefix}alias-\"\numbrella = \"{prefix}all\"\n\
         [[archive]]\nname = \"20s\"\nstep = \"20s\"\nretention = \"2 days\"\nindex_period = \"day\"\nlateness = \"10s\"\n\
         [consolidate]\ntick = \"20ms\"\n[persist]\nflush_interval = \"50ms\"\n",
        url = node.url,
        user = user.trim(),
        pw = password_file.display(),
    );
    Config::from_toml(&text, Path::new("secured.toml")).unwrap()
}

fn prefix(test: &str) -> String {
    format!("s{}-{test}-", std::process::id())
}

async fn start(cfg: Config, clock: &ManualClock) -> Result<strata::pipeline::Running, ServeError> {
    let options = ServeOptions {
        node_url: None,
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        serve(cfg, options, Arc::new(clock.clone())),
    )
    .await
    .expect("serve neither started nor failed within 30 s")
}

async fn get_json(http: &reqwest::Client, url: String) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// A CA that did not sign the node's certificate.
fn other_ca(dir: &Path) -> PathBuf {
    let (key, cert) = (dir.join("other-ca-key.pem"), dir.join("other-ca.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=not-the-node-ca", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{made:?}");
    cert
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-secured-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn writes_and_reads_go_through_tls_and_basic_auth() {
    let node = secured();
    let prefix = prefix("rw");
    let cfg = config(
        &node,
        &prefix,
        Some(&node.dir.join("ca.pem")),
        &node.dir.join("password"),
    );
    let backend = HttpBackend::connect(&node.url, &cfg.node).unwrap();
    let clock = ManualClock::new(1_780_000_005_000);
    let running = start(cfg, &clock)
        .await
        .expect("starts against the secured node");
    let http = reqwest::Client::new();
    let body = "{\"name\":\"tls\",\"value\":1}\n{\"name\":\"tls\",\"value\":3}\n";
    let answer = http
        .post(format!("http://{}/v1/metrics", running.addr))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    clock.set(1_780_000_031_000);

    // The document, read back from the node with the same credentials.
    let deadline = Instant::now() + Duration::from_secs(30);
    let pattern = format!("{prefix}*");
    let docs = loop {
        backend.refresh(&pattern).await.unwrap();
        let docs = backend
            .search_all(&pattern, &json!({"match_all": {}}))
            .await
            .unwrap();
        if !docs.is_empty() || Instant::now() > deadline {
            break docs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(docs.len(), 1, "{docs:?}");
    // The statistics are kept as doc values only (not in `_source`).
    let hit = backend
        .search(
            &pattern,
            &json!({"query": {"match_all": {}}, "docvalue_fields": ["count", "sum"]}),
        )
        .await
        .unwrap();
    let fields = &hit["hits"]["hits"][0]["fields"];
    assert_eq!(
        (fields["count"][0].as_u64(), fields["sum"][0].as_f64()),
        (Some(2), Some(4.0)),
        "{hit}"
    );

    // strata's own read API queries the node through the same client.
    let read = get_json(
        &http,
        format!(
            "http://{}/v1/metrics?name=tls&from=2026-05-28T20:26:00Z&to=2026-05-28T20:27:20Z&step=20s",
            running.addr
        ),
    )
    .await;
    let points = read["points"].as_array().expect("points");
    let values: Vec<f64> = points.iter().filter_map(|p| p["value"].as_f64()).collect();
    assert_eq!(values, vec![2.0], "the avg of 1 and 3: {read}");

    let health = get_json(&http, format!("http://{}/health", running.addr)).await;
    assert_eq!(health["status"], "ok", "{health}");
    let password = std::fs::read_to_string(node.dir.join("password")).unwrap();
    assert!(!health.to_string().contains(password.trim()));
    running.stop().await.unwrap();

    let names = backend.list_indices(&pattern).await.unwrap();
    backend.delete_indices(&names).await.unwrap();
}

#[tokio::test]
async fn a_wrong_password_fails_at_start_naming_the_credentials() {
    let node = secured();
    let dir = temp_dir("password");
    let wrong = dir.join("password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let cfg = config(&node, &prefix("pw"), Some(&node.dir.join("ca.pem")), &wrong);
    let started = Instant::now();
    let error = start(cfg, &ManualClock::new(0))
        .await
        .err()
        .expect("refused");
    assert!(matches!(error, ServeError::Refused(_)), "{error:?}");
    assert!(error.to_string().contains("credentials"), "{error}");
    eprintln!(
        "wrong password: refused after {} ms: {error}",
        started.elapsed().as_millis()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn an_unknown_ca_or_none_fails_at_start_naming_ca_file() {
    let node = secured();
    let dir = temp_dir("ca");
    let password = node.dir.join("password");
    let other = other_ca(&dir);
    for ca in [Some(other.as_path()), None] {
        let cfg = config(&node, &prefix("ca"), ca, &password);
        let started = Instant::now();
        let error = start(cfg, &ManualClock::new(0))
            .await
            .err()
            .expect("refused");
        let text = error.to_string();
        assert!(matches!(error, ServeError::Untrusted(_)), "{error:?}");
        assert!(
            text.contains("ca_file") && text.contains("UnknownIssuer"),
            "{text}"
        );
        eprintln!(
            "ca_file {ca:?}: refused after {} ms: {text}",
            started.elapsed().as_millis()
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}
