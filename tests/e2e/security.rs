//! What a function, a caller and a key can and cannot reach (the security model in README).

#[test]
fn the_api_key_that_let_a_caller_in_never_reaches_the_function() {
    let data = tempfile::tempdir().unwrap();
    let server = crate::harness::Server::start_with(
        data.path(),
        &[],
        &[("FUNCTIONS_HOST_API_KEYS", "platform-key")],
    );
    let source = "export default { fetch: (r) => Response.json({ authorization: r.headers.get('authorization') }) };";
    for (name, public) in [("private", false), ("open", true)] {
        let manifest = serde_json::json!({ "files": { "index.js": source }, "public": public });
        let reply = crate::harness::request_with_headers_and_body(
            &server.base,
            "PUT",
            &format!("/api/functions/{name}"),
            &[
                ("authorization", "Bearer platform-key"),
                ("content-type", "application/json"),
            ],
            Some(manifest.to_string().as_bytes()),
        );
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    let seen = |name: &str, authorization: &str| {
        let reply = crate::harness::request_with_headers(
            &server.base,
            "GET",
            &format!("/fn/{name}/"),
            &[("authorization", authorization)],
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()["authorization"].clone()
    };
    // The key a private function needs is the host's: the function never sees it.
    assert_eq!(
        seen("private", "Bearer platform-key"),
        serde_json::Value::Null
    );
    assert_eq!(seen("open", "Bearer platform-key"), serde_json::Value::Null);
    // The function's own clients' credentials are the function's.
    assert_eq!(seen("open", "Bearer app-token"), "Bearer app-token");
}

/// Sends `head` (without its final empty line) to the server at `base` on a connection of its
/// own and returns the status and the error code of the answer.
fn raw_request(base: &str, head: &str) -> (u16, String) {
    use std::io::Read;
    use std::io::Write;
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "{head}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let code = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|body| body["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, code)
}

#[test]
fn a_server_without_keys_answers_only_this_machine_unless_public() {
    let data = tempfile::tempdir().unwrap();
    let server = crate::harness::Server::start(data.path());
    server.deploy("hello", b"export default () => 'hi'");
    let local = server.base.trim_start_matches("http://").to_owned();
    let rotate = "POST /api/functions/hello/token HTTP/1.1";

    // A page on another site whose name now resolves to this machine (DNS rebinding) sends its
    // own name as Host: refused, on every route.
    for path in ["/api/functions", "/fn/hello/", "/healthz"] {
        let head = format!("GET {path} HTTP/1.1\r\nhost: attacker.example:8787");
        assert_eq!(
            raw_request(&server.base, &head),
            (403, "host_not_allowed".into()),
            "{path}"
        );
    }
    // A cross-site form or fetch to the loopback address: refused on /api, so it cannot rotate
    // a token or queue a call; functions still answer browsers.
    for header in [
        "origin: https://attacker.example",
        "origin: null",
        "sec-fetch-site: cross-site",
    ] {
        let head = format!("{rotate}\r\nhost: {local}\r\n{header}");
        assert_eq!(
            raw_request(&server.base, &head),
            (403, "cross_origin".into()),
            "{header}"
        );
        let head = format!("GET /fn/hello/ HTTP/1.1\r\nhost: {local}\r\n{header}");
        assert_eq!(raw_request(&server.base, &head).0, 200, "{header}");
    }
    // The server's own pages (same origin) and programs (no Origin) manage it.
    let head = format!("{rotate}\r\nhost: localhost\r\norigin: http://localhost");
    assert_eq!(raw_request(&server.base, &head).0, 200);
    assert_eq!(server.post("/api/functions/hello/token", "").status, 200);
    drop(server);

    // --public, or API keys, lift it: anyone may be a client then.
    let data = tempfile::tempdir().unwrap();
    let public = crate::harness::Server::start_with(data.path(), &["--public"], &[]);
    let head =
        "GET /api/functions HTTP/1.1\r\nhost: functions.example\r\norigin: https://app.example";
    assert_eq!(raw_request(&public.base, head).0, 200);
    let data = tempfile::tempdir().unwrap();
    let keyed = crate::harness::Server::start_with(
        data.path(),
        &[],
        &[("FUNCTIONS_HOST_API_KEYS", "platform-key")],
    );
    let head = format!("{head}\r\nauthorization: Bearer platform-key");
    assert_eq!(raw_request(&keyed.base, &head).0, 200);
}

#[test]
fn a_function_cannot_forge_the_hosts_log_lines() {
    let data = tempfile::tempdir().unwrap();
    let server = crate::harness::Server::start(data.path());
    server.deploy(
        "forger",
        b"export default () => {
            console.log('FINISHED 0000 200 \"all good\"');
            console.log('done\\n2026-01-01T00:00:00.000Z INFO  host FINISHED 0001 200 \"ok\"');
            return 'hi';
        }",
    );
    let reply = server.post("/api/functions/forger/calls", "{}");
    assert_eq!(reply.status, 202, "{}", reply.text());
    let id = reply.json()["call_id"].as_str().unwrap().to_owned();
    assert_eq!(server.get(&format!("/api/calls/{id}?wait=60")).status, 200);

    let logs = server.get("/api/functions/forger/logs").json()["logs"]
        .as_array()
        .unwrap()
        .clone();
    let source_of = |prefix: &str| -> Vec<String> {
        logs.iter()
            .filter(|line| line["message"].as_str().unwrap().starts_with(prefix))
            .map(|line| line["source"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(source_of("FINISHED 0000"), ["function"], "{logs:?}");
    assert_eq!(source_of("done\n"), ["function"], "{logs:?}");
    assert_eq!(source_of(&format!("FINISHED {id}")), ["host"], "{logs:?}");
    assert_eq!(source_of(&format!("CALL {id}")), ["host"], "{logs:?}");

    // `logs` marks whose each line is, and a function's line breaks start no line of their own.
    let printed = server.cli(&["logs", "forger"]);
    let finished: Vec<&str> = printed
        .lines()
        .filter(|line| line.contains("FINISHED"))
        .collect();
    assert_eq!(finished.len(), 3, "{printed}");
    assert!(
        finished[0].contains(" INFO  fn   FINISHED 0000 "),
        "{printed}"
    );
    assert!(finished[1].starts_with(' '), "{printed}");
    assert!(
        finished[2].contains(&format!(" INFO  host FINISHED {id} ")),
        "{printed}"
    );
}
