//! README.md's own examples, run as written (issue 18): every `sh` block's commands (curl
//! against a strata serving the shipped archives on a real node, `strata` subcommands with the
//! built binary), every `json` block posted as a body, and the usage block's flags checked
//! against each subcommand's `--help`. The README's examples carry a fixed date; the clock is
//! set to that morning.

use std::path::Path;
use std::time::Duration;

use strata::clock::ManualClock;

use crate::support::*;

/// Commands a README block may show that this test does not run, with why.
const NOT_RUN_HERE: [(&str, &str); 2] = [
    (
        "scripts/run",
        "serves until Ctrl-C; the rest of this test is what it does",
    ),
    ("scripts/test", "is what runs this test"),
];

/// The README's fenced blocks: (info string, body).
fn blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_string(), String::new())),
            (Some(_), Some(_)) => out.push(open.take().unwrap()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// A block's commands, continuation lines joined, comments and blank lines left out.
fn commands(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in body.lines() {
        let line = line.split(" # ").next().unwrap_or("").trim_end();
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            continue;
        }
        current.push_str(line);
        if !current.trim().is_empty() {
            out.push(current.trim().to_string());
        }
        current.clear();
    }
    out
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// Runs `command` with `sh`, without blocking the runtime (the strata under test serves on it).
async fn shell(command: &str) -> std::process::Output {
    tokio::process::Command::new("sh")
        .args(["-c", command])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_example_in_the_readme_runs_as_written() {
    let scope = Scope::new("readme");
    // The shipped archives, on this test's prefix.
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("archives.toml"))
            .unwrap();
    let archives: String = shipped
        .split("\n[[archive]]")
        .skip(1)
        .map(|a| format!("[[archive]]{}", a.split("\n[").next().unwrap()))
        .collect::<Vec<_>>()
        .join("\n");
    let clock = ManualClock::new(ms("2026-11-23T10:00:06Z"));
    let running = start(&scope, &archives, FAST, &clock).await;
    let base = format!("http://{}", running.addr);
    let binary = env!("CARGO_BIN_EXE_strata");
    let mut ran = 0;
    let mut buckets_written = false;
    for (info, body) in blocks(&readme()) {
        match info.as_str() {
            "json" => {
                let (status, answer, _) = post(&scope, &running, &body).await;
                assert_eq!(status, 200, "README json block {body}: {answer}");
                ran += 1;
            }
            "sh" => {
                for command in commands(&body) {
                    if let Some((_, why)) =
                        NOT_RUN_HERE.iter().find(|(c, _)| command.starts_with(c))
                    {
                        eprintln!("not run here ({why}): {command}");
                        continue;
                    }
                    let reads_stored = ["/v1/metrics?", "/v1/stats?", "/v1/series?", "/read?"]
                        .iter()
                        .any(|r| command.contains(r));
                    if reads_stored && !buckets_written {
                        // Past the hourly bucket's end and lateness: every archive writes it.
                        clock.set(ms("2026-11-23T11:00:30Z"));
                        let docs = scope.wait_for_documents(3).await;
                        assert!(docs.len() >= 3, "{docs:?}");
                        buckets_written = true;
                    }
                    let runnable = if command.starts_with("curl ") {
                        command.replace("http://127.0.0.1:8080", &base)
                    } else if command.contains("strata ") {
                        command.replace("strata ", &format!("{binary} "))
                    } else {
                        panic!(
                            "README shows a command this test does not know how to run: {command}"
                        );
                    };
                    let out = shell(&runnable).await;
                    assert!(
                        out.status.success(),
                        "README command failed: {command}\nstdout: {}\nstderr: {}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    assert!(!out.stdout.is_empty(), "{command} printed nothing");
                    ran += 1;
                }
            }
            "" if body.trim_start().starts_with("strata ") => {
                // The usage block: every flag shown is one the subcommand's --help lists.
                for line in body.lines().filter(|l| l.starts_with("strata ")) {
                    let sub = line.split_whitespace().nth(1).unwrap();
                    let help = shell(&format!("{binary} {sub} --help")).await;
                    assert!(help.status.success(), "strata {sub} --help");
                    let help = String::from_utf8_lossy(&help.stdout).to_string();
                    for flag in line
                        .split(|c: char| c.is_whitespace() || "[]|()".contains(c))
                        .filter(|w| w.starts_with("--"))
                    {
                        let flag = flag.trim_end_matches(':').trim_end_matches(',');
                        if line.contains(&format!("but {flag}")) {
                            assert!(
                                !help.contains(flag),
                                "strata {sub} offers {flag}, which the usage says it does not"
                            );
                        } else {
                            assert!(
                                help.contains(flag),
                                "strata {sub} --help does not list {flag}"
                            );
                        }
                    }
                    ran += 1;
                }
            }
            _ => {}
        }
    }
    assert!(ran >= 12, "the README's examples ran ({ran})");
    tokio::time::timeout(Duration::from_secs(60), running.stop())
        .await
        .unwrap()
        .unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn completions_and_the_manual_page_come_from_the_command_line_definition() {
    let strata = env!("CARGO_BIN_EXE_strata");
    // bash: the script loads, registers a completion for `strata`, and completes subcommands
    // and a subcommand's flags.
    let script = format!(
        r#"source <("{strata}" completions bash) || exit 3
complete -p strata || exit 4
COMP_WORDS=(strata r); COMP_CWORD=1; COMP_LINE="strata r"; COMP_POINT=8
_strata strata r strata; echo "sub: ${{COMPREPLY[*]}}"
COMP_WORDS=(strata serve --lo); COMP_CWORD=2; COMP_LINE="strata serve --lo"; COMP_POINT=17
_strata strata --lo serve; echo "flags: ${{COMPREPLY[*]}}""#
    );
    let out = shell(&format!("bash -c '{}'", script.replace('\'', "'\\''"))).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{prefix} in {text}"))
            .to_string()
    };
    let subcommands = line("sub: ");
    assert!(
        subcommands.contains("replay") && subcommands.contains("rotate"),
        "{text}"
    );
    assert!(line("flags: ").contains("--log-format"), "{text}");
    for shell in ["zsh", "fish"] {
        let out = tokio::process::Command::new(strata)
            .args(["completions", shell])
            .output()
            .await
            .unwrap();
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && script.contains("replay") && script.contains("node-url"),
            "{shell}"
        );
    }
    // The manual page renders with groff without a warning and names every subcommand.
    let out = shell(&format!(
        "'{strata}' man | groff -man -Tutf8 -ww 2>&1 >/dev/null | head -5; '{strata}' man | groff -man -Tutf8 | col -b"
    ))
    .await;
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.contains("NAME") && page.contains("strata - Round-robin"),
        "{page}"
    );
    for sub in [
        "serve",
        "check",
        "replay",
        "plan",
        "maintain",
        "rotate",
        "purge",
        "completions",
    ] {
        assert!(page.contains(sub), "{sub} in {page}");
    }
    assert!(!page.contains("warning"), "{page}");
}

#[tokio::test]
async fn migrate_config_turns_a_samplerr_setup_into_a_config_check_accepts() {
    let dir = std::env::temp_dir().join(format!("strata-migrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let riemann = dir.join("riemann.config");
    std::fs::write(
        &riemann,
        r#"(let [elastic      (samplerr/connect "http://localhost:9200")
      index-prefix ".samplerr"
      alias-prefix "samplerr"
      cfunc        [{:func samplerr/average :name "avg"} {:func samplerr/minimum :name "min"}]
      archives     [{:tf "YYYY.MM.dd" :step (t/seconds 20) :ttl (t/days 2) :cfunc cfunc}
                    {:tf "YYYY.MM" :step (t/minutes 10) :ttl (t/months 2) :cfunc cfunc}
                    {:tf "YYYY" :step (t/hours 1) :ttl (t/years 10) :cfunc cfunc}]]
  (streams (samplerr/down archives persist)))
"#,
    )
    .unwrap();
    let strata = env!("CARGO_BIN_EXE_strata");
    let out = shell(&format!(
        "'{strata}' migrate-config '{}' > '{}/archives.toml' && '{strata}' check --config '{}/archives.toml'",
        riemann.display(),
        dir.display(),
        dir.display()
    ))
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("indices: .samplerr-* (template 'strata', samplerr's documents)"),
        "{text}"
    );
    for line in [
        "archive 20s: step 20s, retention 2 days, index per day",
        "archive 10m: step 10m, retention 2 months, index per month",
        "archive 1h: step 1h, retention 10 years, index per year",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
