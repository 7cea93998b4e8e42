//! Functions past their limits over HTTP: each gets the right error while a well-behaved
//! function keeps answering, and the server lives on.

use serde_json::json;

use crate::harness;
use crate::harness::Server;

#[test]
fn runaway_functions_get_the_right_errors_while_others_answer() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    server.deploy("hello", &harness::fixture("hello.js"));
    let bad = [
        (
            "spin",
            "export default () => { for (;;) {} }",
            504,
            "time_limit",
        ),
        (
            "bomb",
            "export default () => { const keep = []; for (;;) keep.push(new Array(100000).fill(keep.length)); }",
            500,
            "memory_limit",
        ),
        (
            "deep",
            "const down = (n) => down(n + 1) + 1;\nexport default () => down(0)",
            500,
            "function_error",
        ),
        (
            "huge",
            "export default { fetch: () => new Response('x'.repeat(6 * 1024 * 1024)) }",
            500,
            "output_too_large",
        ),
    ];
    for (name, source, ..) in &bad {
        let manifest = json!({
            "files": { "index.js": source },
            "limits": { "cpu_ms": 500, "memory_mb": 64 },
        });
        let reply = server.put(
            &format!("/api/functions/{name}"),
            "application/json",
            manifest.to_string().as_bytes(),
        );
        assert_eq!(reply.status, 201, "{name}: {}", reply.text());
    }
    let base = server.base.clone();
    let runs: Vec<_> = bad
        .iter()
        .map(|(name, _, status, code)| {
            let base = base.clone();
            let (name, status, code) = (name.to_string(), *status, *code);
            std::thread::spawn(move || {
                let reply = harness::request(&base, "POST", &format!("/fn/{name}/"), None);
                assert_eq!(reply.status, status, "{name}: {}", reply.text());
                assert_eq!(reply.json()["error"]["code"], code, "{name}");
                reply.json()["error"]["message"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        })
        .collect();
    for _ in 0..20 {
        let reply = server.post("/fn/hello/", r#"{"name":"Ada"}"#);
        assert_eq!(reply.status, 200);
    }
    let messages: Vec<String> = runs.into_iter().map(|run| run.join().unwrap()).collect();
    assert!(messages[0].contains("500 ms"), "{}", messages[0]);
    assert!(
        messages[2].contains("Maximum call stack size exceeded"),
        "{}",
        messages[2]
    );
    // The server and both workers serve on.
    for _ in 0..4 {
        assert_eq!(server.post("/fn/hello/", r#"{"name":"Bo"}"#).status, 200);
    }
    assert!(
        server
            .log_lines("spin")
            .iter()
            .any(|l| l.contains("time limit"))
    );
}
