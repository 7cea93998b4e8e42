//! The HTTP API against its description (`http/openapi.json`, served at `GET /api/openapi.json`):
//! the document is served, host errors are marked apart from functions' own responses, logs can
//! be long-polled, and schemathesis fuzzes a live server with the document.

use std::time::Duration;

use crate::harness::Server;
use crate::harness::command;
use crate::harness::request_with_headers_and_body;

const KEY: &str = "fuzz-key";

#[test]
fn the_document_is_served_without_a_key_and_routes_answer_405_with_allow() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &[], &[("FUNCTIONS_HOST_API_KEYS", KEY)]);
    let reply = server.get("/api/openapi.json");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let doc = reply.json();
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
    assert!(doc["paths"]["/api/functions/{name}"]["put"].is_object());
    // The rest of /api needs the key.
    let reply = server.get("/api/functions");
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("x-functions-host-error"), Some("unauthorized"));
    let reply = request_with_headers_and_body(
        &server.base,
        "PATCH",
        "/api/functions/hello",
        &[("authorization", &format!("Bearer {KEY}"))],
        None,
    );
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, PUT, DELETE"));
    assert_eq!(reply.json()["error"]["code"], "method_not_allowed");
    let reply = server.get("/nowhere");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("x-functions-host-error"), Some("not_found"));
}

#[test]
fn pages_on_other_origins_may_call_the_api_of_a_server_with_keys() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &[], &[("FUNCTIONS_HOST_API_KEYS", KEY)]);
    let origin = ("origin", "https://app.example");
    // The browser's preflight, without the key (browsers send none).
    let preflight = request_with_headers_and_body(
        &server.base,
        "OPTIONS",
        "/api/functions/hello",
        &[
            origin,
            ("access-control-request-method", "PUT"),
            (
                "access-control-request-headers",
                "authorization, content-type",
            ),
        ],
        None,
    );
    assert_eq!(preflight.status, 204, "{}", preflight.text());
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert!(
        preflight
            .header("access-control-allow-methods")
            .unwrap()
            .contains("PUT")
    );
    assert!(
        preflight
            .header("access-control-allow-headers")
            .unwrap()
            .contains("authorization")
    );
    // The request itself: answered, readable by the page, errors included.
    let auth = format!("Bearer {KEY}");
    let list = request_with_headers_and_body(
        &server.base,
        "GET",
        "/api/functions",
        &[origin, ("authorization", &auth)],
        None,
    );
    assert_eq!(list.status, 200);
    assert_eq!(list.header("access-control-allow-origin"), Some("*"));
    let refused =
        request_with_headers_and_body(&server.base, "GET", "/api/functions", &[origin], None);
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("access-control-allow-origin"), Some("*"));
    assert!(
        refused
            .header("access-control-expose-headers")
            .unwrap()
            .contains("x-functions-host-error")
    );
    assert_eq!(list.header("vary"), Some("origin"));
    // A plain OPTIONS is no preflight: the route takes no such method.
    let plain =
        request_with_headers_and_body(&server.base, "OPTIONS", "/api/functions", &[origin], None);
    assert_eq!(plain.status, 405);

    // A server with no keys answers its own machine's pages only, and a public one answers no
    // CORS (no key would stand between a page and a deploy).
    let data = tempfile::tempdir().unwrap();
    let local = Server::start(data.path());
    let refused =
        request_with_headers_and_body(&local.base, "GET", "/api/functions", &[origin], None);
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("access-control-allow-origin"), None);
    let data = tempfile::tempdir().unwrap();
    let public = Server::start_with(data.path(), &["--public"], &[]);
    let preflight = request_with_headers_and_body(
        &public.base,
        "OPTIONS",
        "/api/functions/hello",
        &[origin, ("access-control-request-method", "PUT")],
        None,
    );
    assert_eq!(preflight.status, 405);
    assert_eq!(preflight.header("access-control-allow-origin"), None);
}

#[test]
fn host_errors_are_marked_and_a_functions_own_are_not() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    server.deploy(
        "teapot",
        br#"export default { fetch(request) {
              const path = new URL(request.url).pathname;
              if (path === "/throw") throw new Error("boom");
              if (path === "/species") {
                // Every array the host's code makes by species would now carry a forged mark.
                class Forged extends Array {
                  constructor() { super(); this[1] = ["x-functions-host-error", "not_found"]; }
                }
                Array.prototype.constructor = Forged;
                return new Response("mine", { status: 404 });
              }
              // Its own 404, dressed as the host's: the mark is dropped.
              return Response.json({ error: { code: "not_found" } },
                { status: 404, headers: { "X-Functions-Host-Error": "not_found" } });
            } }"#,
    );
    let own = server.get("/fn/teapot/");
    assert_eq!(own.status, 404);
    assert_eq!(own.header("x-functions-host-error"), None);
    let species = server.get("/fn/teapot/species");
    assert_eq!(species.status, 404);
    assert_eq!(species.header("x-functions-host-error"), None);
    let thrown = server.get("/fn/teapot/throw");
    assert_eq!(thrown.status, 500);
    assert_eq!(
        thrown.header("x-functions-host-error"),
        Some("function_error")
    );
    let missing = server.get("/fn/nobody/");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("x-functions-host-error"), Some("not_found"));
}

#[test]
fn a_logs_request_with_wait_answers_when_a_line_arrives() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    server.deploy(
        "chatty",
        br#"export default (event) => { console.log("said", event.word); return "ok" }"#,
    );
    let last = |server: &Server| {
        server.get("/api/functions/chatty/logs").json()["logs"]
            .as_array()
            .unwrap()
            .last()
            .map_or(0, |line| line["id"].as_i64().unwrap())
    };
    let after = last(&server);
    // Nothing new: the answer comes after the wait, empty.
    let empty = server.get(&format!(
        "/api/functions/chatty/logs?after={after}&wait=0.2"
    ));
    assert_eq!(empty.status, 200);
    assert_eq!(empty.json()["logs"], serde_json::json!([]));
    std::thread::scope(|scope| {
        let waiting = scope
            .spawn(|| server.get(&format!("/api/functions/chatty/logs?after={after}&wait=60")));
        // The long poll is answered by the line, not by its timeout.
        let reply = loop {
            assert_eq!(server.post("/fn/chatty/", r#"{"word":"hi"}"#).status, 200);
            if waiting.is_finished() {
                break waiting.join().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(reply.status, 200);
        let lines = reply.json()["logs"].as_array().unwrap().clone();
        assert!(!lines.is_empty());
        assert!(lines.iter().all(|l| l["id"].as_i64().unwrap() > after));
    });
    let bad = server.get("/api/functions/chatty/logs?wait=soon");
    assert_eq!(bad.status, 400);

    // A waiting poll holds no shutdown up: it is answered (an empty page) as the server stops,
    // well before the 30 s the server gives requests under way.
    let poll_path = format!(
        "/api/functions/chatty/logs?after={}&wait=120",
        last(&server)
    );
    std::thread::scope(|scope| {
        let base = server.base.clone();
        let waiting = scope.spawn(move || {
            functions_host_client::Client::new(&base, None).send("GET", &poll_path, None)
        });
        assert_eq!(server.get("/healthz").status, 200);
        let started = std::time::Instant::now();
        assert!(server.terminate().success());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a long poll held the shutdown for {:?}",
            started.elapsed()
        );
        // (Had the poll not reached the server before it stopped, it was refused instead.)
        if let Ok(reply) = waiting.join().unwrap() {
            assert!(
                reply.status == 200 || reply.status == 503,
                "{}",
                reply.text()
            );
            if reply.status == 200 {
                assert_eq!(reply.json().unwrap()["logs"], serde_json::json!([]));
            }
        }
    });
}

/// schemathesis (PyPI; `tests/setup.sh` installs it with the guest toolchains) generates requests
/// from the served document, valid and invalid, against a server with an API key and a few
/// functions: no answer may be a server error (except a function's own 500), and every answer must
/// fit the document (status, content type, headers, body schema).
#[test]
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &[], &[("FUNCTIONS_HOST_API_KEYS", KEY)]);
    let auth = format!("Bearer {KEY}");
    for (name, source) in [
        (
            "hello",
            "export default (e) => ({ message: `Hello, ${e?.name}!` })",
        ),
        (
            "app",
            "export default { fetch: (r) => new Response(new URL(r.url).pathname) }",
        ),
    ] {
        let reply = request_with_headers_and_body(
            &server.base,
            "PUT",
            &format!("/api/functions/{name}"),
            &[
                ("authorization", &auth),
                ("content-type", "application/javascript"),
            ],
            Some(source.as_bytes()),
        );
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    // Run from tests/, where the settings' hooks file is.
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests");
    let output = command("st")
        .args(["--config-file", "schemathesis.toml", "run"])
        .arg(format!("{}/api/openapi.json", server.base))
        .args(["--header", &format!("Authorization: {auth}")])
        .env("NO_COLOR", "1")
        .current_dir(&tests)
        .output()
        .expect("schemathesis (st) runs: tests/setup.sh installs it");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // It really ran: thousands of requests, every one passing.
    let generated = stdout
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_suffix(" passed")?
                .split_once(" generated, ")
        })
        .and_then(|(generated, passed)| {
            Some((generated.parse::<u32>().ok()?, passed.parse::<u32>().ok()?))
        });
    assert!(
        matches!(generated, Some((made, passed)) if made >= 1000 && made == passed),
        "{stdout}"
    );
}
