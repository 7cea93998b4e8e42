//! Asynchronous calls against the real server: FIFO order within a function's concurrency,
//! results fetched once, durability across SIGKILL, a full queue, and the result cache.

use std::collections::HashMap;
use std::time::Duration;
use std::time::Instant;

use serde_json::Value;
use serde_json::json;

use crate::harness::Server;

/// Deploys a JavaScript function from a manifest with `limits`.
pub(crate) fn deploy(server: &Server, name: &str, source: &str, limits: Value) {
    let manifest = json!({ "files": { "index.js": source }, "limits": limits });
    let reply = server.put(
        &format!("/api/functions/{name}"),
        "application/json",
        manifest.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
}

/// Queues a call; returns its id.
pub(crate) fn call(server: &Server, name: &str, payload: &str) -> String {
    let reply = server.post(&format!("/api/functions/{name}/calls"), payload);
    assert_eq!(reply.status, 202, "{}", reply.text());
    reply.json()["call_id"].as_str().unwrap().to_owned()
}

/// All of `name`'s log lines, oldest first.
pub(crate) fn all_log_lines(server: &Server, name: &str) -> Vec<String> {
    server
        .get(&format!("/api/functions/{name}/logs?limit=10000"))
        .json()["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["message"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until a log line of `name` starts with `prefix`.
fn wait_for_log(server: &Server, name: &str, prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !all_log_lines(server, name)
        .iter()
        .any(|line| line.starts_with(prefix))
    {
        assert!(Instant::now() < deadline, "no log line {prefix:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The ids of the lines of one lifecycle step, in log order.
fn ids_of(lines: &[String], step: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| line.strip_prefix(&format!("{step} ")))
        .map(|rest| rest.split(' ').next().unwrap().to_owned())
        .collect()
}

/// Asserts that a function's lifecycle lines never show more than `max` calls running at once.
pub(crate) fn assert_at_most_running(lines: &[String], max: usize) {
    let mut running = 0usize;
    for line in lines {
        if line.starts_with("RUNNING ") {
            running += 1;
            assert!(running <= max, "{running} calls running at once");
        } else if line.starts_with("FINISHED ") || line.starts_with("FAILED ") {
            running -= 1;
        }
    }
}

/// Asserts `logged` is `expected`, saying where they part (the lists are long).
fn assert_same_order(logged: &[String], expected: &[String], step: &str) {
    let parted = logged.iter().zip(expected).position(|(a, b)| a != b);
    assert!(
        parted.is_none() && logged.len() == expected.len(),
        "{step} lines: {} of {}, first out of order at {parted:?}",
        logged.len(),
        expected.len()
    );
}

#[test]
fn a_thousand_calls_with_concurrency_four_run_once_in_order() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    deploy(
        &server,
        "double",
        "export default (e) => { console.log('ran', e.n); return { n: e.n * 2 }; }",
        json!({ "concurrency": 4 }),
    );
    let ids: Vec<String> = (0..1000)
        .map(|n| call(&server, "double", &format!(r#"{{"n":{n}}}"#)))
        .collect();
    for (n, id) in ids.iter().enumerate() {
        let reply = server.get(&format!("/api/calls/{id}?wait=120"));
        assert_eq!(reply.status, 200, "call {n}: {}", reply.text());
        assert_eq!(reply.json(), json!({ "n": n * 2 }));
        assert_eq!(reply.header("x-call-state"), Some("finished"));
        // Fetched once: then it is gone.
        assert_eq!(server.get(&format!("/api/calls/{id}")).status, 404);
    }
    let lines = all_log_lines(&server, "double");
    // Each ran exactly once, and they started in the order they came.
    let mut runs: HashMap<&str, usize> = HashMap::new();
    for line in &lines {
        if let Some(n) = line.strip_prefix("ran ") {
            *runs.entry(n).or_default() += 1;
        }
    }
    assert_eq!(runs.len(), 1000);
    assert!(runs.values().all(|count| *count == 1));
    assert_same_order(&ids_of(&lines, "CALL"), &ids, "CALL");
    assert_same_order(&ids_of(&lines, "RUNNING"), &ids, "RUNNING");
    assert_eq!(ids_of(&lines, "FINISHED").len(), 1000);
    assert!(!ids_of(&lines, "PENDING").is_empty(), "none had to wait");
    // Never more than four at once.
    assert_at_most_running(&lines, 4);
    let first = lines.iter().find(|l| l.starts_with("CALL ")).unwrap();
    assert!(first.ends_with(r#"{"n":0}"#), "{first}");
    let finished = lines
        .iter()
        .find(|l| l.starts_with(&format!("FINISHED {}", ids[0])))
        .unwrap();
    assert!(finished.ends_with(r#"200 {"n":0}"#), "{finished}");
}

#[test]
fn a_sigkill_loses_no_queued_call_and_fails_the_running_one() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    // Call 0 takes long enough to be running when the server is killed.
    deploy(
        &server,
        "slow",
        "export default async (e) => {
           console.log('ran', e.n);
           await new Promise((r) => setTimeout(r, e.n === 0 ? 20000 : 20));
           return { n: e.n };
         }",
        json!({ "concurrency": 1, "wall_clock_ms": 60000 }),
    );
    let ids: Vec<String> = (0..10)
        .map(|n| call(&server, "slow", &format!(r#"{{"n":{n}}}"#)))
        .collect();
    wait_for_log(&server, "slow", &format!("RUNNING {}", ids[0]));
    let pending = server.get(&format!("/api/calls/{}", ids[5]));
    assert_eq!(pending.status, 202);
    assert_eq!(pending.json()["state"], "pending");
    let server = server.restart();

    let failed = server.get(&format!("/api/calls/{}?wait=60", ids[0]));
    assert_eq!(failed.status, 500, "{}", failed.text());
    assert_eq!(failed.json()["error"]["code"], "host_restarted");
    assert_eq!(failed.header("x-call-state"), Some("failed"));
    for (n, id) in ids.iter().enumerate().skip(1) {
        let reply = server.get(&format!("/api/calls/{id}?wait=60"));
        assert_eq!(reply.status, 200, "call {n}: {}", reply.text());
        assert_eq!(reply.json(), json!({ "n": n }));
    }
    let lines = all_log_lines(&server, "slow");
    for n in 1..10 {
        let runs = lines.iter().filter(|l| **l == format!("ran {n}")).count();
        assert_eq!(runs, 1, "call {n} ran {runs} times");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("FAILED {} host restarted", ids[0]))),
        "{lines:?}"
    );
    assert_same_order(&ids_of(&lines, "RUNNING")[1..], &ids[1..], "RUNNING");
}

#[test]
fn a_full_queue_answers_429_and_rotated_results_410() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        data.path(),
        &["--max-queued", "2", "--result-cap-bytes", "2500"],
        &[],
    );
    deploy(
        &server,
        "wait",
        "export default async (e) => { await new Promise((r) => setTimeout(r, e.ms)); return 'x'.repeat(1000); }",
        json!({ "concurrency": 1 }),
    );
    let first = call(&server, "wait", r#"{"ms":2000}"#);
    wait_for_log(&server, "wait", &format!("RUNNING {first}"));
    let queued = [
        call(&server, "wait", r#"{"ms":0}"#),
        call(&server, "wait", r#"{"ms":0}"#),
    ];
    let refused = server.post("/api/functions/wait/calls", r#"{"ms":0}"#);
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "queue_full");
    // Synchronous invocations wait in the same line.
    assert_eq!(server.post("/fn/wait/", r#"{"ms":0}"#).status, 429);

    // Three results of about 1 kB each: the oldest is rotated out of the 2.5 kB cache.
    let last = &queued[1];
    assert_eq!(
        server.get(&format!("/api/calls/{last}?wait=60")).status,
        200
    );
    let gone = server.get(&format!("/api/calls/{first}"));
    assert_eq!(gone.status, 410, "{}", gone.text());
    assert_eq!(server.get(&format!("/api/calls/{}", queued[0])).status, 200);
    assert_eq!(server.get("/api/calls/nonsense").status, 404);
    assert_eq!(
        server.get(&format!("/api/calls/{first}?wait=soon")).status,
        400
    );
    assert_eq!(server.post("/api/functions/nobody/calls", "{}").status, 404);
    assert_eq!(server.get("/api/functions/wait/calls").status, 405);
}

#[test]
fn the_cli_calls_and_gets_results() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    server.deploy("hello", &crate::harness::fixture("hello.js"));
    let payload = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(payload.path(), r#"{"name":"Async"}"#).unwrap();
    let id = crate::harness::cli_with_stdin(&server.base, &["call", "hello"], payload.path());
    let id = id.trim();
    assert_eq!(id.len(), 32, "{id}");
    let result = server.cli(&["get", "--wait", id]);
    assert!(result.contains("Hello, Async!"), "{result}");
    let again = server.cli_fails(&["get", id]);
    assert!(again.contains("404"), "{again}");
}

#[test]
fn private_functions_call_addresses_and_request_quotas() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        data.path(),
        &[],
        &[(
            "FUNCTIONS_HOST_API_KEYS",
            "owner, metered requests=3/minute",
        )],
    );
    let owner = [("authorization", "Bearer owner")];
    let as_owner = |method: &str, path: &str, body: Option<&[u8]>| {
        let mut headers = owner.to_vec();
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        crate::harness::request_with_headers_and_body(&server.base, method, path, &headers, body)
    };
    let manifest = json!({
        "files": { "index.js": "export default (e) => ({ hi: e.name ?? 'nobody' })" },
        "public": false,
    });
    let deployed = as_owner(
        "PUT",
        "/api/functions/secret",
        Some(manifest.to_string().as_bytes()),
    );
    assert_eq!(deployed.status, 201, "{}", deployed.text());
    assert_eq!(deployed.json()["public"], false);
    let call_url = deployed.json()["call_url"].as_str().unwrap().to_owned();
    let call_path = call_url.strip_prefix(&server.base).unwrap().to_owned();

    // A private function needs a key at /fn/, but not at its call address.
    assert_eq!(server.post("/fn/secret/", "{}").status, 401);
    assert_eq!(
        as_owner("POST", "/fn/secret/", Some(b"{}")).text(),
        r#"{"hi":"nobody"}"#
    );
    assert_eq!(
        server.post(&call_path, r#"{"name":"Ada"}"#).text(),
        r#"{"hi":"Ada"}"#
    );
    let wrong = call_path.replace("/secret/", "/secret/0");
    assert_eq!(server.post(&wrong, "{}").status, 404);

    // Rotating the token retires the old address.
    let rotated = as_owner("POST", "/api/functions/secret/token", None);
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let new_url = rotated.json()["call_url"].as_str().unwrap().to_owned();
    assert_ne!(new_url, call_url);
    assert_eq!(server.post(&call_path, "{}").status, 404);
    let new_path = new_url.strip_prefix(&server.base).unwrap();
    assert_eq!(server.post(new_path, "{}").status, 200);
    // It survives a restart.
    let server = server.restart();
    assert_eq!(server.post(new_path, "{}").status, 200);

    // A key's request quota: three a minute, then 429 with Retry-After.
    let metered = [("authorization", "Bearer metered")];
    for _ in 0..3 {
        let reply =
            crate::harness::request_with_headers(&server.base, "GET", "/api/functions", &metered);
        assert_eq!(reply.status, 200);
    }
    let spent =
        crate::harness::request_with_headers(&server.base, "GET", "/api/functions", &metered);
    assert_eq!(spent.status, 429, "{}", spent.text());
    assert_eq!(spent.json()["error"]["code"], "quota_exceeded");
    let retry_after: u64 = spent.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Other keys are not affected.
    let other = crate::harness::request_with_headers(&server.base, "GET", "/api/functions", &owner);
    assert_eq!(other.status, 200);
}

#[test]
fn a_keys_concurrency_quota_spans_its_functions() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        data.path(),
        &[],
        &[("FUNCTIONS_HOST_API_KEYS", "tenant concurrency=1")],
    );
    let key = [
        ("authorization", "Bearer tenant"),
        ("content-type", "application/json"),
    ];
    let send = |method: &str, path: &str, body: &[u8]| {
        crate::harness::request_with_headers_and_body(&server.base, method, path, &key, Some(body))
    };
    let nap =
        "export default async () => { await new Promise((r) => setTimeout(r, 200)); return 'ok'; }";
    for name in ["a", "b"] {
        let manifest = json!({ "files": { "index.js": nap } });
        let reply = send(
            "PUT",
            &format!("/api/functions/{name}"),
            manifest.to_string().as_bytes(),
        );
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    let ids: Vec<(&str, String)> = ["a", "b", "a"]
        .into_iter()
        .map(|name| {
            let reply = send("POST", &format!("/api/functions/{name}/calls"), b"{}");
            assert_eq!(reply.status, 202, "{}", reply.text());
            (name, reply.json()["call_id"].as_str().unwrap().to_owned())
        })
        .collect();
    for (_, id) in &ids {
        let reply = send("GET", &format!("/api/calls/{id}?wait=60"), b"");
        assert_eq!(reply.text(), "\"ok\"");
    }
    // One at a time, across both functions, in arrival order: each starts after the one before
    // it finished (log line ids are global).
    let line_id = |name: &str, prefix: String| -> i64 {
        let logs = send("GET", &format!("/api/functions/{name}/logs"), b"").json();
        logs["logs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|line| line["message"].as_str().unwrap().starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {prefix}"))["id"]
            .as_i64()
            .unwrap()
    };
    for pair in ids.windows(2) {
        let finished = line_id(pair[0].0, format!("FINISHED {}", pair[0].1));
        let started = line_id(pair[1].0, format!("RUNNING {}", pair[1].1));
        assert!(started > finished, "{pair:?} overlapped");
    }
}

#[test]
fn after_a_sigkill_only_the_calls_that_had_started_fail() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    deploy(
        &server,
        "busy",
        "export default async (e) => {
           console.log('ran', e.n);
           await new Promise((r) => setTimeout(r, e.after ? 10 : 2000));
           return { n: e.n };
         }",
        json!({ "concurrency": 2, "wall_clock_ms": 60000 }),
    );
    let ids: Vec<String> = (0..10)
        .map(|n| call(&server, "busy", &format!(r#"{{"n":{n}}}"#)))
        .collect();
    wait_for_log(&server, "busy", &format!("RUNNING {}", ids[1]));
    let lines = all_log_lines(&server, "busy");
    assert_eq!(ids_of(&lines, "RUNNING"), ids[..2], "only two started");
    let server = server.restart();

    for (n, id) in ids.iter().enumerate() {
        let reply = server.get(&format!("/api/calls/{id}?wait=60"));
        if n < 2 {
            assert_eq!(reply.status, 500, "call {n}: {}", reply.text());
            assert_eq!(reply.json()["error"]["code"], "host_restarted");
        } else {
            assert_eq!(reply.status, 200, "call {n}: {}", reply.text());
            assert_eq!(reply.json(), json!({ "n": n }));
        }
    }
    let lines = all_log_lines(&server, "busy");
    // The two killed calls' console lines died with the host; the others ran once each.
    for n in 2..10 {
        let runs = lines.iter().filter(|l| **l == format!("ran {n}")).count();
        assert_eq!(runs, 1, "call {n} ran {runs} times");
    }
    let restarted: Vec<String> = ids_of(&lines, "FAILED");
    assert_eq!(restarted, ids[..2]);
}

#[test]
fn an_async_call_sees_the_request_a_synchronous_invocation_would() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    server.deploy("echo", &crate::harness::fixture("echo.js"));
    let direct = server.post("/fn/echo/?x=1&y=two", r#"{"a":1}"#).json();
    let reply = server.post("/api/functions/echo/calls?x=1&y=two", r#"{"a":1}"#);
    assert_eq!(reply.status, 202, "{}", reply.text());
    let id = reply.json()["call_id"].as_str().unwrap().to_owned();
    let called = server.get(&format!("/api/calls/{id}?wait=60")).json();
    for key in ["method", "path", "query", "host", "prefix", "body"] {
        assert_eq!(called[key], direct[key], "{key}: {called} against {direct}");
    }
    assert_eq!(called["query"], "?x=1&y=two");
    assert_eq!(called["prefix"], "/fn/echo");
}

#[test]
fn a_call_streaming_without_end_is_cut_at_the_limit_while_reading() {
    let data = tempfile::tempdir().unwrap();
    // Isolates prepared for later requests would count in the peak too: none here.
    let server = Server::start_with(data.path(), &["--prepared-isolates", "0"], &[]);
    server.deploy("stream", &crate::harness::fixture("stream.js"));
    // Warm up (an isolate, allocator arenas), then watch the peak across a 200 MiB stream.
    let small = call(&server, "stream", "");
    assert_eq!(
        server
            .get(&format!("/api/calls/{small}?wait=60"))
            .body
            .len(),
        1 << 20
    );
    let before = server.peak_rss_bytes();
    let id = server.post("/api/functions/stream/calls?mb=200", "").json()["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = server.get(&format!("/api/calls/{id}?wait=60"));
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "output_too_large");
    assert_eq!(reply.header("x-call-state"), Some("failed"));
    let growth = server.peak_rss_bytes().saturating_sub(before);
    assert!(
        growth < 24 << 20,
        "the server's peak memory grew by {} MiB for a call streaming 200 MiB",
        growth >> 20
    );
}
