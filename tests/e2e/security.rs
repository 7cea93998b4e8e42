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
            console.log('wait\\rINFO  host FINISHED 0002 200 \\u001b[1A');
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
    assert_eq!(finished.len(), 4, "{printed}");
    assert!(
        finished[0].contains(" INFO  fn   FINISHED 0000 "),
        "{printed}"
    );
    assert!(finished[1].starts_with(' '), "{printed}");
    // Nor can a carriage return or a terminal escape redraw a line.
    assert!(!printed.contains(['\r', '\u{1b}']), "{printed:?}");
    assert!(
        finished[2].contains(r" INFO  fn   wait\rINFO  host FINISHED 0002 200 \u{1b}[1A"),
        "{printed}"
    );
    assert!(
        finished[3].contains(&format!(" INFO  host FINISHED {id} ")),
        "{printed}"
    );
}

/// A server with the keys `alpha`, `beta` and the admin key `root`.
fn server_with_keys(data: &std::path::Path) -> crate::harness::Server {
    crate::harness::Server::start_with(
        data,
        &[],
        &[("FUNCTIONS_HOST_API_KEYS", "alpha, beta, root admin")],
    )
}

/// A JSON request to `server` presenting `key`.
fn as_key(
    server: &crate::harness::Server,
    key: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> crate::harness::Reply {
    crate::harness::request_with_headers_and_body(
        &server.base,
        method,
        path,
        &[
            ("authorization", &format!("Bearer {key}")),
            ("content-type", "application/json"),
        ],
        body,
    )
}

#[test]
fn each_key_sees_only_its_own_functions_and_call_results() {
    let data = tempfile::tempdir().unwrap();
    let server = server_with_keys(data.path());
    let as_key = |key: &str, method: &str, path: &str, body: Option<&[u8]>| {
        as_key(&server, key, method, path, body)
    };
    let manifest = |source: &str| {
        serde_json::json!({ "files": { "index.js": source }, "public": false }).to_string()
    };
    let reply = as_key(
        "alpha",
        "PUT",
        "/api/functions/mine",
        Some(manifest("export default () => 'alpha'").as_bytes()),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let reply = as_key("alpha", "POST", "/api/functions/mine/calls", Some(b"{}"));
    assert_eq!(reply.status, 202, "{}", reply.text());
    let call = reply.json()["call_id"].as_str().unwrap().to_owned();

    // To beta, alpha's function does not exist, whatever it tries.
    for (method, path, body) in [
        ("GET", "/api/functions/mine", None),
        (
            "PUT",
            "/api/functions/mine",
            Some(manifest("export default () => 'beta'")),
        ),
        ("DELETE", "/api/functions/mine", None),
        ("GET", "/api/functions/mine/logs", None),
        ("POST", "/api/functions/mine/calls", Some("{}".to_owned())),
        ("POST", "/api/functions/mine/token", None),
        ("GET", "/fn/mine/", None),
    ] {
        let reply = as_key("beta", method, path, body.as_deref().map(str::as_bytes));
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.text());
    }
    let listed = as_key("beta", "GET", "/api/functions", None).json();
    assert_eq!(listed["functions"], serde_json::json!([]));
    // Nor does its call's result.
    let reply = as_key("beta", "GET", &format!("/api/calls/{call}?wait=30"), None);
    assert_eq!(reply.status, 404, "{}", reply.text());

    // The admin key sees everything; the owner's function is untouched.
    let listed = as_key("root", "GET", "/api/functions", None).json();
    assert_eq!(listed["functions"][0]["name"], "mine");
    let owner = listed["functions"][0]["owner"].as_str().unwrap_or_default();
    assert!(owner.starts_with("key-"), "{listed}");
    assert_eq!(
        as_key("root", "GET", "/api/functions/mine", None).status,
        200
    );
    assert_eq!(
        as_key("alpha", "GET", "/fn/mine/", None).text(),
        "\"alpha\""
    );
    let reply = as_key("alpha", "GET", &format!("/api/calls/{call}?wait=30"), None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "\"alpha\"");
    // A name another key holds is not free for the taking: beta's own function is its own.
    let reply = as_key(
        "beta",
        "PUT",
        "/api/functions/theirs",
        Some(manifest("export default () => 'beta'").as_bytes()),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(
        as_key("alpha", "DELETE", "/api/functions/theirs", None).status,
        404
    );
    assert_eq!(
        as_key("root", "DELETE", "/api/functions/theirs", None).status,
        200
    );
}

#[test]
fn a_queued_call_never_reaches_a_function_another_key_deployed_under_the_same_name() {
    // An upstream that holds the first call running until the test lets it go.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_address = upstream.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let server = server_with_keys(data.path());
    let as_key = |key: &str, method: &str, path: &str, body: Option<&[u8]>| {
        as_key(&server, key, method, path, body)
    };
    let alphas = serde_json::json!({
        "files": { "index.js": format!(
            "export default async (event) => {{
               if (event.hold) await fetch('http://{upstream_address}/').catch(() => {{}});
               return 'alpha';
             }}"
        ) },
        "limits": { "concurrency": 1 },
        "allow_net": [upstream_address],
    });
    let reply = as_key(
        "alpha",
        "PUT",
        "/api/functions/shared-name",
        Some(alphas.to_string().as_bytes()),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let call = |body: &[u8]| {
        let reply = as_key(
            "alpha",
            "POST",
            "/api/functions/shared-name/calls",
            Some(body),
        );
        assert_eq!(reply.status, 202, "{}", reply.text());
        reply.json()["call_id"].as_str().unwrap().to_owned()
    };
    let first = call(br#"{"hold":true}"#);
    let (held, _) = upstream.accept().unwrap();
    // The second waits behind the first for the function's only place.
    let second = call(b"{}");

    // Meanwhile the function is deleted, and beta deploys one of the same name.
    let reply = as_key("root", "DELETE", "/api/functions/shared-name", None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let betas = serde_json::json!({ "files": { "index.js": "export default () => 'beta'" } });
    let reply = as_key(
        "beta",
        "PUT",
        "/api/functions/shared-name",
        Some(betas.to_string().as_bytes()),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());

    drop(held);
    let reply = as_key("alpha", "GET", &format!("/api/calls/{first}?wait=60"), None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = as_key(
        "alpha",
        "GET",
        &format!("/api/calls/{second}?wait=60"),
        None,
    );
    let answer = reply.text();
    assert!(!answer.contains("beta"), "{answer}");
    assert!(answer.contains("no function named"), "{answer}");
    // Beta's function saw no call of alpha's, and its logs have no line about one.
    let logs = as_key("beta", "GET", "/api/functions/shared-name/logs", None).text();
    assert!(!logs.contains(&first) && !logs.contains(&second), "{logs}");
}
