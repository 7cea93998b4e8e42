//! Real Workers apps, unmodified: a Hono app and an itty-router app from npm, bundled with
//! esbuild into one module each (`tests/apps`, installed by `npm ci --prefix tests/apps`).

use serde_json::Value;
use serde_json::json;

use crate::harness;
use crate::harness::Reply;
use crate::harness::Server;

fn json_of(reply: &Reply) -> Value {
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "not JSON: {:?} {}",
        reply.header("content-type"),
        reply.text()
    );
    reply.json()
}

#[test]
fn a_hono_app_answers_every_route() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    server.deploy("hono", &harness::bundle("hono", data.path()));
    let base = "/fn/hono";

    assert_eq!(
        json_of(&server.get(&format!("{base}/"))),
        json!({ "hello": "world" })
    );
    assert_eq!(
        json_of(&server.get(&format!("{base}/users/42?q=search"))),
        json!({ "id": "42", "q": "search" })
    );

    let reply = server.post(&format!("{base}/echo"), r#"{"a":[1,2]}"#);
    assert_eq!(reply.status, 201);
    assert_eq!(json_of(&reply), json!({ "received": { "a": [1, 2] } }));

    let form = b"name=Ann&age=3";
    let reply = server.request(
        "POST",
        &format!("{base}/form"),
        Some(("application/x-www-form-urlencoded", form.as_slice())),
    );
    assert_eq!(json_of(&reply), json!({ "name": "Ann", "age": "3" }));

    // cors middleware: preflight and simple requests.
    let reply = harness::request_with_headers(
        &server.base,
        "OPTIONS",
        &format!("{base}/users/1"),
        &[
            ("origin", "https://example.com"),
            ("access-control-request-method", "POST"),
        ],
    );
    assert_eq!(reply.status, 204);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://example.com")
    );
    assert!(
        reply
            .header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );

    // etag middleware: a matching If-None-Match gets 304.
    let reply = server.get(&format!("{base}/etag/data"));
    assert_eq!(reply.text(), "cached content");
    let tag = reply.header("etag").expect("an ETag");
    let reply = harness::request_with_headers(
        &server.base,
        "GET",
        &format!("{base}/etag/data"),
        &[("if-none-match", tag)],
    );
    assert_eq!(reply.status, 304);

    assert_eq!(
        server.get(&format!("{base}/digest/abc")).text(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let reply = server.get(&format!("{base}/stream"));
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    assert_eq!(reply.text(), "chunk 0\nchunk 1\nchunk 2\n");

    let reply = server.get(&format!("{base}/teapot"));
    assert_eq!((reply.status, reply.text().as_str()), (418, "I'm a teapot"));
    let reply = server.get(&format!("{base}/boom"));
    assert_eq!(reply.status, 500);
    assert_eq!(json_of(&reply), json!({ "error": "unexpected" }));
    let reply = server.get(&format!("{base}/no/such/route"));
    assert_eq!(reply.status, 404);
    assert_eq!(
        json_of(&reply),
        json!({ "error": "not found", "path": "/no/such/route" })
    );
}

#[test]
fn an_itty_router_app_answers_every_route() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    server.deploy("itty", &harness::bundle("itty", data.path()));
    let base = "/fn/itty";

    assert_eq!(
        json_of(&server.get(&format!("{base}/"))),
        json!({ "router": "itty" })
    );
    assert_eq!(
        json_of(&server.get(&format!("{base}/items/7?q=x"))),
        json!({ "id": "7", "q": "x" })
    );
    let reply = server.post(&format!("{base}/items"), r#"{"b":2}"#);
    assert_eq!(reply.status, 201);
    assert_eq!(json_of(&reply), json!({ "created": { "b": 2 } }));
    assert_eq!(
        json_of(&server.get(&format!("{base}/digest/abc"))),
        json!("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=")
    );
    let reply = server.get(&format!("{base}/stream"));
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    assert_eq!(reply.text(), "part 0\npart 1\npart 2\n");

    for (path, status, error) in [
        ("/forbidden", 403, "no entry"),
        ("/boom", 500, "unexpected"),
        ("/nothing/here", 404, "Not Found"),
    ] {
        let reply = server.get(&format!("{base}{path}"));
        assert_eq!(reply.status, status, "{path}");
        assert_eq!(
            json_of(&reply),
            json!({ "status": status, "error": error }),
            "{path}"
        );
    }
}
