//! End-to-end tests: the real `functions-host` binary, started on an ephemeral port, driven over
//! HTTP and through its CLI.

mod apps;
mod bench;
mod bindings;
mod calls;
mod capnweb;
mod connections;
mod csharp;
mod dashboard;
mod dev;
mod disconnect;
mod harness;
mod limits;
mod metrics;
mod nodes;
mod openapi;
mod python;
mod rpc;
mod sdk;
mod security;
mod shutdown;
mod traces;
mod typescript;
mod wasm;

use std::sync::mpsc;
use std::time::Duration;

use harness::Server;
use harness::fixture;
use serde_json::Value;

#[test]
fn deploy_invoke_and_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let reply = server.put(
        "/api/functions/hello",
        "application/octet-stream",
        &fixture("hello.js"),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["name"], "hello");
    assert_eq!(v["version"], 1);
    assert_eq!(v["language"], "javascript");
    assert_eq!(v["url"], format!("{}/fn/hello/", server.base));

    let reply = server.post("/fn/hello/", r#"{"name":"World"}"#);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), r#"{"message":"Hello, World!"}"#);
    // An empty body: the query is the event.
    assert_eq!(
        server.get("/fn/hello/?name=Query").text(),
        r#"{"message":"Hello, Query!"}"#
    );

    let out = server.cli(&["invoke", "hello", r#"{"name":"CLI"}"#]);
    assert_eq!(out.trim(), r#"{"message":"Hello, CLI!"}"#);

    let server = server.restart();
    assert_eq!(
        server.post("/fn/hello/", r#"{"name":"again"}"#).text(),
        r#"{"message":"Hello, again!"}"#
    );
    let list = server.get("/api/functions").json();
    assert_eq!(list["functions"].as_array().unwrap().len(), 1);
    assert_eq!(list["functions"][0]["name"], "hello");
}

#[test]
fn cli_deploys_lists_shows_logs_and_removes() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let out = server.cli(&[
        "deploy",
        harness::fixture_path("echo.js").to_str().unwrap(),
        "--env",
        "GREETING=hi",
    ]);
    assert!(out.contains("Deployed echo version 1"), "{out}");
    let out = server.cli(&[
        "deploy",
        harness::fixture_path("hello.js").to_str().unwrap(),
        "--name",
        "greeter",
    ]);
    assert!(out.contains("Deployed greeter version 1"), "{out}");

    let listing = server.cli(&["ls"]);
    assert!(
        listing.contains("echo") && listing.contains("greeter"),
        "{listing}"
    );

    let v: Value = serde_json::from_str(&server.cli(&["invoke", "echo", r#"{"x":1}"#])).unwrap();
    assert_eq!(v["greeting"], "hi");
    assert_eq!(v["body"], r#"{"x":1}"#);
    server.cli(&["invoke", "greeter", r#"{"name":"Logs"}"#]);

    let logs = server.cli(&["logs", "greeter"]);
    let line = logs
        .lines()
        .find(|l| l.contains("greeting Logs"))
        .unwrap_or_else(|| panic!("{logs}"));
    // `2026-11-21T22:07:25.025Z INFO  greeting Logs`
    let timestamp = line.split_whitespace().next().unwrap();
    assert!(humantime::parse_rfc3339(timestamp).is_ok(), "{line}");
    assert!(line.contains("INFO"), "{line}");

    server.cli(&["rm", "greeter"]);
    assert_eq!(server.post("/fn/greeter/", "{}").status, 404);
    assert!(!server.cli(&["ls"]).contains("greeter"));
    let failed = server.cli_fails(&["rm", "greeter"]);
    assert!(failed.contains("no function named"), "{failed}");
}

#[test]
fn run_executes_a_file_locally_without_a_server() {
    let out = harness::cli_without_server(&[
        "run",
        harness::fixture_path("hello.js").to_str().unwrap(),
        r#"{"name":"Local"}"#,
    ]);
    assert_eq!(out.stdout.trim(), r#"{"message":"Hello, Local!"}"#);
    assert!(out.stderr.contains("greeting Local"), "{}", out.stderr);
}

#[test]
fn fetch_handlers_see_the_url_without_the_prefix() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    server.deploy("echo", &fixture("echo.js"));
    let reply = server.request(
        "PATCH",
        "/fn/echo/a/b?x=1&y=2",
        Some(("text/plain", b"body!".as_slice())),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-echo"), Some("1"));
    let v = reply.json();
    assert_eq!(v["method"], "PATCH");
    assert_eq!(v["path"], "/a/b");
    assert_eq!(v["query"], "?x=1&y=2");
    assert_eq!(v["host"], server.base.trim_start_matches("http://"));
    assert_eq!(v["prefix"], "/fn/echo");
    assert_eq!(v["body"], "body!");
    assert_eq!(server.get("/fn/echo").json()["path"], "/");
}

#[test]
fn each_invocation_gets_a_fresh_isolate_unless_isolation_is_function() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    server.deploy("fresh", &fixture("counter.js"));
    for _ in 0..5 {
        assert_eq!(server.post("/fn/fresh/", "{}").text(), r#"{"count":1}"#);
    }
    let manifest = serde_json::json!({
        "entry": "counter.js",
        "files": { "counter.js": String::from_utf8(fixture("counter.js")).unwrap() },
        "isolation": "function",
    });
    let reply = server.put(
        "/api/functions/warm",
        "application/json",
        manifest.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    for expected in 1..=5 {
        assert_eq!(
            server.post("/fn/warm/", "{}").text(),
            format!(r#"{{"count":{expected}}}"#)
        );
        assert_eq!(server.post("/fn/fresh/", "{}").text(), r#"{"count":1}"#);
    }
}

#[test]
fn a_busy_function_does_not_delay_another() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    // Three seconds of spinning: more CPU time than the default limit allows.
    let busy = serde_json::json!({
        "files": { "busy.js": String::from_utf8(fixture("busy.js")).unwrap() },
        "limits": { "cpu_ms": 10_000 },
    });
    let reply = server.put(
        "/api/functions/busy",
        "application/json",
        busy.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    server.deploy("hello", &fixture("hello.js"));
    let (done_tx, done_rx) = mpsc::channel();
    let base = server.base.clone();
    let busy = std::thread::spawn(move || {
        let reply = harness::request(&base, "GET", "/fn/busy/?ms=3000", None);
        done_tx.send(()).unwrap();
        reply
    });
    // Wait until the busy invocation is running: the server has accepted it and a worker spins.
    server.wait_for_busy_worker();
    for _ in 0..3 {
        assert_eq!(server.post("/fn/hello/", r#"{"name":"quick"}"#).status, 200);
    }
    assert_eq!(
        done_rx.try_recv(),
        Err(mpsc::TryRecvError::Empty),
        "the quick calls waited for the busy one"
    );
    assert_eq!(busy.join().unwrap().text(), "spun true");
    assert!(done_rx.recv_timeout(Duration::from_secs(1)).is_ok());
}

#[test]
fn redeploy_replaces_the_version_and_bad_code_is_never_stored() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    server.deploy("f", b"export default () => 'one'");
    let reply = server.put(
        "/api/functions/f",
        "application/javascript",
        b"export default () => 'two'",
    );
    assert_eq!(reply.json()["version"], 2);
    assert_eq!(server.post("/fn/f/", "{}").text(), r#""two""#);

    let reply = server.put(
        "/api/functions/f",
        "application/javascript",
        &fixture("syntax_error.js"),
    );
    assert_eq!(reply.status, 400);
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "compile_error");
    assert!(
        error["message"].as_str().unwrap().contains("SyntaxError"),
        "{error}"
    );
    assert_eq!(error["line"], 2, "{error}");
    assert!(error["column"].as_u64().unwrap() > 0, "{error}");
    // Still version 2, still answering.
    assert_eq!(server.get("/api/functions/f").json()["version"], 2);
    assert_eq!(server.post("/fn/f/", "{}").text(), r#""two""#);

    // A new function with bad code leaves nothing behind.
    assert_eq!(
        server
            .put(
                "/api/functions/g",
                "application/javascript",
                &fixture("syntax_error.js")
            )
            .status,
        400
    );
    assert_eq!(server.get("/api/functions/g").status, 404);
    let server = server.restart();
    assert_eq!(server.get("/api/functions/g").status, 404);
    assert_eq!(server.post("/fn/f/", "{}").text(), r#""two""#);
}

#[test]
fn bad_input_gets_the_right_status() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    server.deploy("thrower", &fixture("thrower.js"));
    server.deploy("hello", &fixture("hello.js"));

    // A function that throws: 500 with its message and stack, and the stack in its logs.
    let reply = server.post("/fn/thrower/", r#"{"what":"kaput"}"#);
    assert_eq!(reply.status, 500);
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "function_error");
    assert!(
        error["message"].as_str().unwrap().contains("boom: kaput"),
        "{error}"
    );
    let stack = error["stack"].as_str().unwrap();
    assert!(
        stack.contains("explode") && stack.contains("thrower/index.js:2"),
        "{stack}"
    );
    let logs = server.get("/api/functions/thrower/logs").json();
    assert!(
        logs["logs"][0]["message"]
            .as_str()
            .unwrap()
            .contains("boom: kaput"),
        "{logs}"
    );
    assert_eq!(logs["logs"][0]["level"], "error");

    let status = |reply: harness::Reply| {
        (
            reply.status,
            reply.json()["error"]["code"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        )
    };
    assert_eq!(
        status(server.post("/fn/missing/", "{}")),
        (404, "not_found".into())
    );
    let big = vec![b' '; 5 * 1024 * 1024 + 1];
    assert_eq!(
        status(server.request(
            "POST",
            "/fn/hello/",
            Some(("application/json", big.as_slice()))
        )),
        (413, "payload_too_large".into())
    );
    // Code may be larger than a payload, up to 50 MiB.
    let too_big_to_deploy = vec![b' '; 50 * 1024 * 1024 + 1];
    assert_eq!(
        status(server.put(
            "/api/functions/x",
            "application/javascript",
            &too_big_to_deploy
        )),
        (413, "payload_too_large".into())
    );
    assert_eq!(
        status(server.put("/api/functions/x", "application/javascript", b"")),
        (400, "bad_request".into())
    );
    assert_eq!(
        status(server.put("/api/functions/x?lang=cobol", "text/plain", b"x")),
        (400, "bad_request".into())
    );
    assert_eq!(
        status(server.put("/api/functions/x", "application/json", b"{not json")),
        (400, "bad_request".into())
    );
    assert_eq!(
        status(server.put(
            "/api/functions/",
            "application/javascript",
            b"export default () => 1"
        )),
        (400, "bad_request".into())
    );
    let long = format!("/api/functions/{}", "a".repeat(300));
    assert_eq!(
        status(server.put(&long, "application/javascript", b"export default () => 1")),
        (400, "bad_request".into())
    );
    assert_eq!(
        status(server.put(
            "/api/functions/..%2Fx",
            "application/javascript",
            b"export default () => 1"
        )),
        (400, "bad_request".into())
    );
    assert_eq!(
        status(server.post("/fn/hello/", "{not json")),
        (400, "bad_request".into())
    );
    let reply = server.request("POST", "/api/functions/hello", None);
    assert_eq!(reply.status, 405);
    assert!(reply.header("allow").is_some());
    assert_eq!(
        status(server.get("/api/nothing")),
        (404, "not_found".into())
    );
    assert_eq!(
        status(server.request("DELETE", "/api/functions/missing", None)),
        (404, "not_found".into())
    );

    // And the host is fine.
    assert_eq!(
        server.post("/fn/hello/", r#"{"name":"still here"}"#).status,
        200
    );
}

#[test]
fn a_streamed_response_passes_through_without_buffering() {
    let data = tempfile::tempdir().unwrap();
    // Isolates prepared for later requests would count in the peak too: none here.
    let server = Server::start_with(data.path(), &["--prepared-isolates", "0"], &[]);
    server.deploy("stream", &fixture("stream.js"));
    let read_all = |mb: u64| {
        let response = ureq::get(&format!("{}/fn/stream/?mb={mb}", server.base))
            .call()
            .unwrap();
        assert_eq!(response.header("transfer-encoding"), Some("chunked"));
        std::io::copy(&mut response.into_reader(), &mut std::io::sink()).unwrap()
    };
    // Warm up (an isolate, allocator arenas), then watch the peak across 100 MiB: nothing is
    // buffered, and the chunks the function drops are collected as it goes.
    assert_eq!(read_all(4), 4 << 20);
    let before = server.peak_rss_bytes();
    assert_eq!(read_all(100), 100 << 20);
    let growth = server.peak_rss_bytes().saturating_sub(before);
    assert!(
        growth < 16 << 20,
        "the server's peak memory grew by {} MiB while streaming 100 MiB",
        growth >> 20
    );
}

/// An HTTP server on an ephemeral port answering every request with `upstream says hi`.
fn upstream() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::BufRead;
            use std::io::Write;
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let mut stream = stream;
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 16\r\nconnection: close\r\n\r\nupstream says hi",
            );
        }
    });
    address
}

#[test]
fn outgoing_fetch_reaches_only_the_hosts_granted_at_deploy() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let (granted, other) = (upstream(), upstream());
    let source = format!(
        r#"export default async () => {{
      const ok = await (await fetch("http://{granted}/")).text();
      let denied;
      try {{ await fetch("http://{other}/"); }} catch (err) {{ denied = `${{err.name}}: ${{err.message}}`; }}
      return {{ ok, denied }};
    }}"#
    );
    let manifest = serde_json::json!({
        "files": { "index.js": source },
        "allow_net": [granted],
    });
    let reply = server.put(
        "/api/functions/net",
        "application/json",
        manifest.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let expected = serde_json::json!({
        "ok": "upstream says hi",
        "denied": format!(
            "TypeError: fetch to \"{other}\" is not allowed: this function may reach only {granted}"
        ),
    });
    assert_eq!(server.post("/fn/net/", "{}").json(), expected);
    // The grant is part of the stored deployment.
    let server = server.restart();
    assert_eq!(server.post("/fn/net/", "{}").json(), expected);
    assert_eq!(
        server.get("/api/functions/net").json()["allow_net"],
        serde_json::json!([granted])
    );
}

#[test]
fn api_keys_guard_the_management_api_but_not_invocation() {
    let data = tempfile::tempdir().unwrap();
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), "from-file\n").unwrap();
    let server = Server::start_with(
        data.path(),
        &[],
        &[("FUNCTIONS_HOST_API_KEYS", "alpha, beta")],
    );
    let status = |headers: &[(&str, &str)]| {
        harness::request_with_headers(&server.base, "GET", "/api/functions", headers)
    };
    let refused = status(&[]);
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["error"]["code"], "unauthorized");
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    for wrong in ["Bearer alph", "Bearer alpha2", "alpha", "Bearer "] {
        assert_eq!(status(&[("authorization", wrong)]).status, 401, "{wrong}");
    }
    assert_eq!(status(&[("authorization", "Bearer beta")]).status, 200);
    // Every /api route, and deploys too, whatever the method.
    assert_eq!(
        server
            .put(
                "/api/functions/hello",
                "application/javascript",
                &fixture("hello.js")
            )
            .status,
        401
    );
    assert_eq!(server.get("/api/functions/hello/logs").status, 401);
    assert_eq!(
        server
            .request("DELETE", "/api/functions/hello", None)
            .status,
        401
    );

    // The CLI sends FUNCTIONS_HOST_API_KEY (or --api-key); without one it says what is wrong.
    let hello = harness::fixtures().join("js/hello.js");
    let refused = server.cli_fails(&["deploy", hello.to_str().unwrap()]);
    assert!(refused.contains("requires an API key"), "{refused}");
    server.cli_with(
        &["deploy", hello.to_str().unwrap()],
        &[("FUNCTIONS_HOST_API_KEY", "alpha")],
    );
    assert!(server.cli(&["--api-key", "alpha", "ls"]).contains("hello"));
    // A function is its deployer's: another key does not see it.
    assert!(!server.cli(&["--api-key", "beta", "ls"]).contains("hello"));

    // Invocation and the health check need no key.
    assert_eq!(server.post("/fn/hello/", r#"{"name":"Ada"}"#).status, 200);
    assert_eq!(server.get("/healthz").status, 200);

    // Keys also come from a file, and a restart keeps requiring them.
    let server = server.restart();
    assert_eq!(server.get("/api/functions").status, 401);
    drop(server);
    let file = keys.path().to_str().unwrap();
    let server = Server::start_with(data.path(), &["--api-keys-file", file], &[]);
    let with = |key: &str| {
        harness::request_with_headers(
            &server.base,
            "GET",
            "/api/functions",
            &[("authorization", key)],
        )
        .status
    };
    assert_eq!((with("Bearer from-file"), with("Bearer alpha")), (200, 401));
    drop(server);
    let server = Server::start(data.path());
    assert_eq!(
        server.get("/api/functions").status,
        200,
        "no keys: an open server"
    );
}
