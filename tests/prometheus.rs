//! A real Prometheus (Debian's package, installed by `cargo xtask test`) scraping a real guard on
//! loopback: the endpoint serves `/metrics` only, `promtool check metrics` accepts its text, the shipped alert rules
//! (dist/prometheus) load and evaluate, every query of the shipped Grafana dashboard
//! (dist/grafana) is valid PromQL, and the series carry the right values — the scope's limit and
//! usage, the level, and a suspension counted once the guard held a hog. Run as root.
mod support;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    MIB,
    guard_env::{GuardRun, config, scenario, start_pipeline, tmp, wait_until},
    http::{encode, free_port, get, request},
    require_root, spawn,
};

fn dist(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dist")
        .join(path)
}

fn tool(name: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.is_file(),
        "{name} is missing: `cargo xtask test` installs Debian's prometheus package"
    );
    path
}

/// The result of an instant query, as (labels, value) pairs.
fn query(port: u16, expr: &str) -> Result<Vec<(Value, f64)>, String> {
    let reply = get(port, &format!("/api/v1/query?query={}", encode(expr)))
        .map_err(|err| err.to_string())?;
    let json: Value =
        serde_json::from_str(&reply.body).map_err(|err| format!("{err}: {}", reply.body))?;
    if json["status"] != "success" {
        return Err(format!("{expr}: {}", reply.body));
    }
    Ok(json["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let value = r["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            (r["metric"].clone(), value)
        })
        .collect())
}

/// The first value of `expr`, once it has one (within `timeout`).
fn value_of(port: u16, expr: &str, timeout: Duration) -> Option<f64> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(result) = query(port, expr)
            && let Some((_, value)) = result.first()
        {
            return Some(*value);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

/// Every PromQL expression of the shipped dashboard, with `$instance` matching any host.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(dist("grafana/memtrace.json")).expect("the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| {
            target["expr"]
                .as_str()
                .map(|e| e.replace("$instance", ".*"))
        })
        .collect();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        let query = variable["query"].as_str().expect("a query variable");
        // label_values(METRIC, LABEL) is Grafana's; the metric itself must exist.
        let metric = query
            .trim_start_matches("label_values(")
            .split(',')
            .next()
            .expect("a metric");
        exprs.push(metric.to_owned());
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    exprs
}

#[test]
fn prometheus_scrapes_the_guard_rules_load_and_a_suspension_is_counted() {
    require_root();
    let promtool = tool("promtool");
    let prometheus = tool("prometheus");
    let check = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(dist("prometheus/alerts.yml"))
        .output()
        .expect("promtool");
    assert!(check.status.success(), "{check:?}");
    let check = Command::new(&promtool)
        .args(["check", "config"])
        .arg(dist("prometheus/prometheus.yml"))
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "the shipped example config: {check:?}"
    );

    let mut s = scenario("prometheus");
    let metrics_port = free_port();
    let guard_config = config(&tmp(), "");
    let state = tmp().join(format!("prometheus-state-{}.json", std::process::id()));
    let mut guard = GuardRun::start(
        &s.group.path,
        &guard_config,
        &state,
        &["--metrics", &format!("127.0.0.1:{metrics_port}")],
    );

    // The endpoint's text passes promtool's own linter.
    let scrape = get(metrics_port, "/metrics").expect("the metrics endpoint answers");
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    // It serves /metrics only.
    for (method, path, status) in [
        ("GET", "/", 404),
        ("GET", "/metrics/x", 404),
        ("POST", "/metrics", 405),
    ] {
        let reply = request(metrics_port, method, path).expect("the endpoint answers");
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.body);
    }
    let mut lint = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    lint.stdin
        .take()
        .expect("stdin")
        .write_all(scrape.body.as_bytes())
        .expect("feeding promtool");
    let lint = lint.wait_with_output().expect("promtool");
    assert!(
        lint.status.success() && lint.stdout.is_empty() && lint.stderr.is_empty(),
        "promtool check metrics: {}{}\n{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr),
        scrape.body
    );

    // A real Prometheus scraping it every second, with the shipped rules.
    let dir = tmp().join(format!("prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("prometheus dir");
    let prom_port = free_port();
    let prom_config = dir.join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: memtrace\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n",
            dist("prometheus/alerts.yml").display()
        ),
    )
    .expect("prometheus config");
    let _prometheus = spawn(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            get(prom_port, "/-/ready").is_ok_and(|r| r.status == 200)
        }),
        "prometheus never became ready"
    );
    let up = value_of(
        prom_port,
        "up{job=\"memtrace\"} == 1",
        Duration::from_secs(20),
    );
    assert_eq!(up, Some(1.0), "the guard's target is up");

    // The scope as the guard sees it: the test cgroup's 512 MiB limit, some usage.
    let limit = value_of(
        prom_port,
        "memtrace_scope_limit_bytes",
        Duration::from_secs(10),
    );
    assert_eq!(limit, Some((512 * MIB) as f64));
    let used = value_of(
        prom_port,
        "memtrace_scope_used_bytes",
        Duration::from_secs(10),
    )
    .expect("scope usage");
    assert!(used > 0.0 && used < (512 * MIB) as f64, "{used}");

    // Every rule loaded and is healthy; every dashboard query is valid PromQL.
    let rules = get(prom_port, "/api/v1/rules").expect("rules");
    let rules: Value = serde_json::from_str(&rules.body).expect("rules JSON");
    let loaded: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .collect();
    assert_eq!(loaded.len(), 7, "{rules}");
    assert!(
        wait_until(Duration::from_secs(10), || {
            let rules = get(prom_port, "/api/v1/rules")
                .ok()
                .and_then(|r| serde_json::from_str::<Value>(&r.body).ok());
            rules.is_some_and(|r| {
                r["data"]["groups"][0]["rules"]
                    .as_array()
                    .is_some_and(|all| all.iter().all(|rule| rule["health"] == "ok"))
            })
        }),
        "every rule evaluates"
    );
    for expr in dashboard_queries() {
        if let Err(err) = query(prom_port, &expr) {
            panic!("dashboard query {expr:?} is not valid: {err}");
        }
    }

    // A hog the guard holds: Prometheus sees the suspension, the held tree and the level.
    let (parent, grower) = start_pipeline(&mut s.group);
    assert!(
        wait_until(Duration::from_secs(30), || {
            memtrace_testkit::proc::held(grower)
        }),
        "the guard held the growing pipeline"
    );
    let suspended = value_of(
        prom_port,
        "memtrace_guard_actions_total{action=\"suspend\"} >= 1",
        Duration::from_secs(20),
    );
    assert!(suspended.is_some_and(|n| n >= 1.0), "{suspended:?}");
    // The same hold, counted by its typed action and outcome.
    let decided = value_of(
        prom_port,
        "memtrace_guard_decisions_total{action=\"suspend\",outcome=\"done\"} >= 1",
        Duration::from_secs(20),
    );
    assert!(decided.is_some_and(|n| n >= 1.0), "{decided:?}");
    let held = value_of(
        prom_port,
        "max_over_time(memtrace_guard_suspended_trees[1m]) >= 1",
        Duration::from_secs(20),
    );
    assert_eq!(held, Some(1.0));
    // The suspend level itself may last less than a scrape; while the tree is held the scope
    // stays above warn, and that is what the series must show.
    let level = value_of(
        prom_port,
        "max_over_time(memtrace_guard_level[1m]) >= 1",
        Duration::from_secs(20),
    );
    assert!(
        level.is_some_and(|l| l >= 1.0),
        "a pressure level seen while the tree is held: {level:?}"
    );
    let alert = value_of(
        prom_port,
        "ALERTS{alertname=\"MemtracePipelineHeld\"}",
        Duration::from_secs(20),
    );
    assert_eq!(
        alert,
        Some(1.0),
        "the held-pipeline alert is pending or firing"
    );
    guard.terminate();
    drop(parent);
    let _ = std::fs::remove_dir_all(&dir);
}
