//! capnweb at `/rpc/{name}`, end to end: the npm `capnweb` client (`tests/apps/capnweb/client.mjs`,
//! run by Node) calls a function's default export over HTTP batch and WebSocket; the wire shape
//! of a batch, the HTTP errors, and the function's log line are checked here.

use serde_json::json;

use crate::harness;
use crate::harness::Reply;
use crate::harness::Server;

const KEY: &str = "alpha";

/// The function the client calls.
const API: &str = r#"
class Counter extends RpcTarget {
  #n;
  constructor(n) { super(); this.#n = n; }
  increment(by = 1) { this.#n += by; return this.#n; }
  get value() { return this.#n; }
}
class NotFound extends Error {
  constructor(message) { super(message); this.name = "NotFound"; }
}
const users = {
  1: { id: 1, name: "Ada", tags: ["math", "engines"] },
  2: { id: 2, name: "Grace", tags: [] },
};
export default {
  add(a, b) { return a + b; },
  greet(name) { return `Hello, ${name}!`; },
  getUser(id) {
    if (!(id in users)) throw new NotFound(`no user ${id}`);
    return users[id];
  },
  listUsers() { return Object.values(users); },
  counter(start) { return new Counter(start); },
  fail(message) { throw new TypeError(message); },
  whereAmI() { throw new Error("where am I"); },
  describe(value) {
    return {
      date: value.when instanceof Date,
      ms: value.when.getTime(),
      bytes: value.data instanceof Uint8Array,
      sum: value.data.reduce((a, b) => a + b, 0),
      big: typeof value.big === "bigint",
      doubled: value.big * 2n,
    };
  },
  roundTrip(value) { return value; },
  makeBytes(n) { return new Uint8Array(n).map((_, i) => i); },
  special() { return { u: undefined, inf: Infinity, neg: -Infinity, nan: NaN, arr: [[1, 2], []] }; },
  asMap() { return new Map([["a", 1]]); },
  async twice(callback, x) { return await callback(await callback(x)); },
};
"#;

const VAULT: &str = r#"export default { secret() { return "the vault is open"; } };"#;

/// A server with an API key, `api` (public) and `vault` (private) deployed.
fn server(data: &std::path::Path) -> Server {
    let server = Server::start_with(data, &[], &[("FUNCTIONS_HOST_API_KEYS", KEY)]);
    for (name, source, public) in [("api", API, true), ("vault", VAULT, false)] {
        let manifest = json!({ "files": { "index.js": source }, "public": public });
        let reply = harness::request_with_headers_and_body(
            &server.base,
            "PUT",
            &format!("/api/functions/{name}"),
            &[
                ("authorization", &format!("Bearer {KEY}")),
                ("content-type", "application/json"),
            ],
            Some(manifest.to_string().as_bytes()),
        );
        assert_eq!(reply.status, 201, "deploying {name}: {}", reply.text());
    }
    server
}

/// A raw HTTP batch: the lines posted to `/rpc/{name}`.
fn post_batch(server: &Server, name: &str, lines: &[&str]) -> Reply {
    server.request(
        "POST",
        &format!("/rpc/{name}"),
        Some(("text/plain", lines.join("\n").as_bytes())),
    )
}

#[test]
fn the_capnweb_client_calls_a_function_over_http_batch_and_websocket() {
    let data = tempfile::tempdir().unwrap();
    let server = server(data.path());
    let script = harness::fixtures().join("../apps/capnweb/client.mjs");
    assert!(
        harness::fixtures()
            .join("../apps/node_modules/capnweb")
            .exists(),
        "capnweb is missing: install the test apps' packages with `npm ci --prefix tests/apps` (.ci/run does)"
    );
    let out = harness::command("node")
        .arg("--experimental-websocket")
        .arg(&script)
        .args([&server.base, KEY])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the capnweb client failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for check in [
        "batch: a method call",
        "batch: pipelining in one request",
        "batch: errors keep their type and message",
        "batch: Uint8Array, Date and bigint both ways",
        "batch: undefined, non-finite numbers and nested arrays",
        "batch: a Map is refused with a TypeError",
        "batch: map() runs on the server",
        "batch: a callback cannot be called back",
        "websocket: RpcTargets, callbacks, pipelining and errors",
        "private: refused without the key, served with it",
    ] {
        assert!(
            stdout.lines().any(|line| line == format!("ok {check}")),
            "{check}: not checked\n{stdout}"
        );
    }
    assert_eq!(stdout.lines().last(), Some("done"), "{stdout}");

    // Each session is logged in the function's logs, with its trace.
    let reply = harness::request_with_headers(
        &server.base,
        "GET",
        "/api/functions/api/logs",
        &[("authorization", &format!("Bearer {KEY}"))],
    );
    let logs: Vec<String> = reply.json()["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|line| line["message"].as_str().map(str::to_owned))
        .collect();
    for transport in ["HTTP batch", "WebSocket"] {
        let line =
            format!("RPC capnweb session ({transport}) from a client outside (traceparent 00-");
        assert!(
            logs.iter().any(|l| l.starts_with(&line)),
            "no {transport} session in {logs:#?}"
        );
    }
}

#[test]
fn a_batch_answers_in_capnwebs_wire_format() {
    let data = tempfile::tempdir().unwrap();
    let server = server(data.path());
    // Two calls, the second on the first's result (pipelined), only the second pulled: one
    // answer, and the stack of a thrown error stays on the server.
    let reply = post_batch(
        &server,
        "api",
        &[
            r#"["push",["pipeline",0,["getUser"],[1]]]"#,
            r#"["push",["pipeline",0,["greet"],[["pipeline",1,["name"]]]]]"#,
            r#"["pull",2]"#,
            r#"["push",["pipeline",0,["whereAmI"],[]]]"#,
            r#"["pull",3]"#,
            r#"["push",["pipeline",0,["roundTrip"],[{"a":[["x"]],"__proto__":{"b":1},"toJSON":1}]]]"#,
            r#"["pull",4]"#,
        ],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            r#"["reject",3,["error","Error","where am I"]]"#,
            r#"["resolve",2,"Hello, Ada!"]"#,
            r#"["resolve",4,{"a":[["x"]]}]"#,
        ]
    );
    // A promise the client sends is awaited until the client resolves it (then released), or
    // refused when the batch ends without it.
    let reply = post_batch(
        &server,
        "api",
        &[
            r#"["push",["pipeline",0,["roundTrip"],[["promise",-1]]]]"#,
            r#"["pull",1]"#,
            r#"["resolve",-1,[[["date",5],["bigint","7"]]]]"#,
        ],
    );
    assert_eq!(
        reply.text(),
        "[\"release\",-1,1]\n[\"resolve\",1,[[[\"date\",5],[\"bigint\",\"7\"]]]]"
    );
    let reply = post_batch(
        &server,
        "api",
        &[
            r#"["push",["pipeline",0,["roundTrip"],[["promise",-1]]]]"#,
            r#"["pull",1]"#,
        ],
    );
    assert!(
        reply.text().contains("ended before the client resolved"),
        "{}",
        reply.text()
    );
    // Nothing pulled: an empty answer.
    let reply = post_batch(
        &server,
        "api",
        &[r#"["push",["pipeline",0,["add"],[1,2]]]"#],
    );
    assert_eq!((reply.status, reply.text()), (200, String::new()));
    // What is not capnweb ends the session with an abort message.
    let reply = post_batch(&server, "api", &[r#"{"not":"a message"}"#]);
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .text()
            .starts_with(r#"["abort",["error","TypeError","bad RPC message: "#),
        "{}",
        reply.text()
    );
    let reply = post_batch(
        &server,
        "api",
        &[r#"["stream",["pipeline",0,["add"],[1,2]]]"#],
    );
    assert!(reply.text().contains("streams"), "{}", reply.text());
}

#[test]
fn rpc_errors_have_their_http_statuses() {
    let data = tempfile::tempdir().unwrap();
    let server = server(data.path());
    let code = |reply: Reply| {
        (
            reply.status,
            reply.json()["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    assert_eq!(
        code(post_batch(&server, "missing", &["[\"pull\",1]"])),
        (404, "not_found".into())
    );
    assert_eq!(
        code(post_batch(&server, "vault", &["[\"pull\",1]"])),
        (401, "unauthorized".into())
    );
    let reply = server.request("PUT", "/rpc/api", None);
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST, GET"));
    assert_eq!(
        code(server.get("/rpc/api")),
        (426, "upgrade_required".into())
    );
    let big = vec![b' '; 5 * 1024 * 1024 + 1];
    assert_eq!(
        code(server.request("POST", "/rpc/api", Some(("text/plain", big.as_slice())))),
        (413, "payload_too_large".into())
    );
}
