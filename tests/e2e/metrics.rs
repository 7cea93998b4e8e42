//! `GET /metrics` read by Prometheus' own checker (`promtool check metrics`, from Debian's
//! `prometheus`) and parsed by a Prometheus text parser; `GET /api/metrics`, the dashboard's JSON.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use crate::harness::Server;
use crate::harness::command;
use crate::harness::fixture;
use crate::harness::request_with_headers;

/// `/metrics` as `key` reads it, checked by promtool and parsed.
fn scrape(server: &Server, key: Option<&str>) -> prometheus_parse::Scrape {
    let bearer = key.map(|key| format!("Bearer {key}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|value| ("authorization", value.as_str()))
        .collect();
    let reply = request_with_headers(&server.base, "GET", "/metrics", &headers);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = reply.text();
    promtool_accepts(&text);
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("the metrics parse")
}

/// Fails unless Prometheus' `promtool check metrics` accepts `text` (its parser and linter).
fn promtool_accepts(text: &str) {
    let mut promtool = command("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus; tests/setup.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool rejects the metrics: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The sum of the samples of `metric` whose labels include `labels` (a histogram's count, for
/// a histogram).
fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .filter(|sample| {
            labels
                .iter()
                .all(|(name, value)| sample.labels.get(name) == Some(*value))
        })
        .map(|sample| match &sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                let last = buckets.last().expect("a histogram has buckets");
                assert!(last.less_than.is_infinite(), "the last bucket is +Inf");
                last.count
            }
            prometheus_parse::Value::Summary(_) => panic!("no summaries"),
        })
        .sum()
}

/// Waits (up to 20 s) until `condition` holds for a fresh scrape.
fn wait_for_scrape(
    server: &Server,
    what: &str,
    condition: impl Fn(&prometheus_parse::Scrape) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let scrape = scrape(server, None);
        if condition(&scrape) {
            return;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_count_invocations_calls_and_their_time_in_prometheus_text() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    server.deploy("hello", &fixture("hello.js"));
    server.deploy("thrower", &fixture("thrower.js"));
    for _ in 0..3 {
        assert_eq!(server.post("/fn/hello/", r#"{"name":"m"}"#).status, 200);
    }
    for _ in 0..2 {
        assert_eq!(server.post("/fn/thrower/", "{}").status, 500);
    }
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let reply = server.post("/api/functions/hello/calls", r#"{"name":"c"}"#);
            assert_eq!(reply.status, 202, "{}", reply.text());
            reply.json()["call_id"].as_str().unwrap().to_owned()
        })
        .collect();
    for id in &ids {
        assert_eq!(server.get(&format!("/api/calls/{id}?wait=30")).status, 200);
    }
    let s = scrape(&server, None);
    let invocations = "functions_host_invocations_total";
    let hello = ("function", "hello");
    let js = ("language", "javascript");
    assert_eq!(
        value(
            &s,
            invocations,
            &[hello, js, ("via", "invocation"), ("outcome", "ok")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &s,
            invocations,
            &[hello, ("via", "call"), ("outcome", "ok")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &s,
            invocations,
            &[("function", "thrower"), ("outcome", "function_error")]
        ),
        2.0
    );
    let calls = "functions_host_calls_total";
    assert_eq!(value(&s, calls, &[hello, ("event", "queued")]), 2.0);
    assert_eq!(value(&s, calls, &[hello, ("event", "finished")]), 2.0);
    // Every one that ran was timed: its wait for a turn, its start, its run.
    for histogram in [
        "functions_host_queue_wait_seconds",
        "functions_host_start_seconds",
        "functions_host_run_seconds",
        "functions_host_invocation_seconds",
    ] {
        assert_eq!(value(&s, histogram, &[hello]), 5.0, "{histogram}");
    }
    assert_eq!(value(&s, "functions_host_pool_total", &[hello]), 5.0);
    assert!(
        value(
            &s,
            "functions_host_store_seconds",
            &[("operation", "add_call")]
        ) >= 2.0
    );
    assert!(
        value(
            &s,
            "functions_host_store_seconds",
            &[("operation", "append_logs")]
        ) >= 1.0
    );
    assert!(value(&s, "functions_host_isolates", &[]) >= 1.0);
    assert_eq!(value(&s, "functions_host_functions", &[]), 2.0);
    assert_eq!(value(&s, "functions_host_nodes", &[]), 1.0);

    // The dashboard's JSON counts the same.
    let summary = server.get("/api/metrics").json();
    assert_eq!(summary["step_seconds"], 10);
    assert_eq!(summary["functions"]["hello"]["invocations"], 5);
    assert_eq!(summary["functions"]["thrower"]["errors"], 2);
    let history = summary["history"].as_array().unwrap();
    let current = history.last().unwrap();
    assert_eq!(current["partial"], true);
    let in_history: u64 = history
        .iter()
        .map(|sample| sample["invocations"].as_u64().unwrap())
        .sum();
    assert_eq!(in_history, 7, "{summary}");
    // Each step with invocations has their percentiles; a step without has none.
    for sample in history {
        let p50 = sample["latency_ms"]["p50"].as_f64();
        match sample["invocations"].as_u64().unwrap() {
            0 => assert!(sample["latency_ms"].is_null(), "{sample}"),
            _ => assert!(p50.unwrap() > 0.0, "{sample}"),
        }
    }
}

#[test]
fn metrics_show_what_runs_and_what_waits_for_its_turn() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let manifest = serde_json::json!({
        "files": {"index.js": "export default async () => { \
            await new Promise((resolve) => setTimeout(resolve, 1500)); return { ok: true }; }"},
        "limits": {"concurrency": 1},
    });
    let reply = server.put(
        "/api/functions/slow",
        "application/json",
        manifest.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let base = server.base.clone();
    let invocations: Vec<_> = (0..3)
        .map(|_| {
            let base = base.clone();
            std::thread::spawn(move || crate::harness::request(&base, "POST", "/fn/slow/", None))
        })
        .collect();
    let slow = ("function", "slow");
    wait_for_scrape(&server, "one running and two waiting", |s| {
        value(s, "functions_host_running", &[slow]) == 1.0
            && value(s, "functions_host_queued", &[slow]) == 2.0
    });
    let ids: Vec<String> = (0..2)
        .map(|_| {
            server.post("/api/functions/slow/calls", "{}").json()["call_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    wait_for_scrape(&server, "two calls pending or claimed", |s| {
        value(s, "functions_host_calls", &[slow]) == 2.0
    });
    for invocation in invocations {
        assert_eq!(invocation.join().unwrap().status, 200);
    }
    for id in &ids {
        assert_eq!(server.get(&format!("/api/calls/{id}?wait=30")).status, 200);
    }
    // A call's result can be read a moment before its place is given back (it holds the
    // place until the result is stored).
    wait_for_scrape(&server, "nothing running and no calls", |s| {
        value(s, "functions_host_running", &[slow]) == 0.0
            && value(s, "functions_host_calls", &[slow]) == 0.0
    });
    let s = scrape(&server, None);
    // The first had its turn at once; the others waited while the one before them ran.
    let within_a_second = s
        .samples
        .iter()
        .find(|sample| {
            sample.metric == "functions_host_queue_wait_seconds"
                && sample.labels.get("function") == Some("slow")
                && sample.labels.get("via") == Some("invocation")
        })
        .and_then(|sample| match &sample.value {
            prometheus_parse::Value::Histogram(buckets) => buckets
                .iter()
                .find(|bucket| bucket.less_than == 1.0)
                .map(|bucket| bucket.count),
            _ => None,
        });
    assert_eq!(within_a_second, Some(1.0));
}

#[test]
fn with_keys_the_metrics_need_one_and_show_a_tenant_its_own_functions() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        data.path(),
        &[],
        &[("FUNCTIONS_HOST_API_KEYS", "alpha, beta, root admin")],
    );
    for (key, name) in [("alpha", "mine"), ("beta", "theirs")] {
        let auth = format!("Bearer {key}");
        let reply = crate::harness::request_with_headers_and_body(
            &server.base,
            "PUT",
            &format!("/api/functions/{name}"),
            &[
                ("authorization", &auth),
                ("content-type", "application/javascript"),
            ],
            Some(&fixture("hello.js")),
        );
        assert_eq!(reply.status, 201, "{}", reply.text());
        let reply = crate::harness::request_with_headers_and_body(
            &server.base,
            "POST",
            &format!("/fn/{name}/"),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(br#"{"name":"k"}"#),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(server.get("/metrics").status, 401);
    assert_eq!(server.get("/api/metrics").status, 401);
    let alpha = scrape(&server, Some("alpha"));
    let invocations = "functions_host_invocations_total";
    assert_eq!(value(&alpha, invocations, &[("function", "mine")]), 1.0);
    assert!(
        !alpha
            .samples
            .iter()
            .any(|s| s.labels.get("function") == Some("theirs"))
    );
    assert!(value(&alpha, "functions_host_isolates", &[]) >= 1.0);
    let root = scrape(&server, Some("root"));
    assert_eq!(value(&root, invocations, &[]), 2.0);
    let summary = request_with_headers(
        &server.base,
        "GET",
        "/api/metrics",
        &[("authorization", "Bearer beta")],
    )
    .json();
    let functions: Vec<&String> = summary["functions"].as_object().unwrap().keys().collect();
    assert_eq!(functions, ["theirs"]);
    let counted: u64 = summary["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sample| sample["invocations"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 1);
}
