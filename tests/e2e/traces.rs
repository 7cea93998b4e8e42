//! `serve --otlp-endpoint`: a span per invocation, per call through a binding and per
//! asynchronous call, received by an OTLP/HTTP receiver in the test, in the W3C trace of the
//! incoming `traceparent`, which the function's own `fetch` carries on.

use std::io::BufRead;
use std::io::BufReader;
use std::io::Read;
use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use serde_json::Value;

use crate::harness::Server;
use crate::harness::request_with_headers_and_body;

/// One request the receiver took: its path, headers (lowercase names) and body.
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// An HTTP server on a free port that answers `200 {}` to everything and keeps what it got:
/// the collector's OTLP endpoint, and the upstream the function fetches.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let kept = kept.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    // Requests one after another on the connection, until it closes.
                    while let Some(request) = read_request(&mut reader) {
                        kept.lock().unwrap().push(request);
                        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                      content-length: 2\r\n\r\n{}";
                        if reader.get_mut().write_all(answer.as_bytes()).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { url, received }
    }

    /// Every span exported so far.
    fn spans(&self) -> Vec<Value> {
        let received = self.received.lock().unwrap();
        (received.iter())
            .filter(|r| r.path == "/v1/traces")
            .flat_map(|r| {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                let spans: Vec<Value> = (body["resourceSpans"].as_array().unwrap().iter())
                    .flat_map(|resource| resource["scopeSpans"].as_array().unwrap().clone())
                    .flat_map(|scope| scope["spans"].as_array().unwrap().clone())
                    .collect();
                spans
            })
            .collect()
    }

    /// Waits (up to 20 s) for a span named `name` that `matches`.
    fn span(&self, name: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans();
            if let Some(span) = spans.iter().find(|s| s["name"] == name && matches(s)) {
                return span.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no span {name:?} among {spans:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `traceparent` the upstream got with each request to `path`.
    fn traceparents_at(&self, path: &str) -> Vec<String> {
        (self.received.lock().unwrap().iter())
            .filter(|r| r.path == path)
            .filter_map(|r| {
                (r.headers.iter())
                    .find(|(name, _)| name == "traceparent")
                    .map(|(_, value)| value.clone())
            })
            .collect()
    }
}

fn read_request(reader: &mut BufReader<std::net::TcpStream>) -> Option<Received> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = (headers.iter())
        .find(|(name, _)| name == "content-length")
        .map_or(0, |(_, value)| value.parse().unwrap_or(0));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        path,
        headers,
        body,
    })
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    (span["attributes"].as_array().unwrap().iter())
        .find(|a| a["key"] == key)
        .map_or(&Value::Null, |a| &a["value"])
}

#[test]
fn spans_follow_a_request_through_bindings_fetches_and_calls_to_a_collector() {
    let receiver = Receiver::start();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--otlp-endpoint", &receiver.url], &[]);
    server.deploy("math", b"export default { add(a, b) { return a + b; } };\n");
    let upstream = receiver.url.trim_start_matches("http://").to_owned();
    let caller = serde_json::json!({
        "files": {"index.js": "export default {\n  async fetch(request, env) {\n    \
            const sum = await env.MATH.add(1, 2);\n    \
            const upstream = await fetch(env.UPSTREAM);\n    \
            return new Response(`${sum} ${await upstream.text()}`);\n  },\n};\n"},
        "bindings": {"MATH": {"function": "math"}},
        "env": {"UPSTREAM": format!("{}/upstream", receiver.url)},
        "allow_net": [upstream],
    });
    let reply = server.put(
        "/api/functions/caller",
        "application/json",
        caller.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());

    let trace = "0af7651916cd43dd8448eb211c80319c";
    let incoming = format!("00-{trace}-b7ad6b7169203331-01");
    let reply = request_with_headers_and_body(
        &server.base,
        "POST",
        "/fn/caller/",
        &[("traceparent", &incoming)],
        Some(&b"{}"[..]),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "3 {}");

    // The invocation continues the request's trace, under the request's span.
    let invoked = receiver.span("invoke caller", |s| s["traceId"] == trace);
    assert_eq!(invoked["parentSpanId"], "b7ad6b7169203331");
    assert_eq!(invoked["kind"], 2);
    assert_eq!(invoked["status"]["code"], 1);
    assert_eq!(attribute(&invoked, "faas.name")["stringValue"], "caller");
    assert_eq!(
        attribute(&invoked, "http.response.status_code")["intValue"],
        "200"
    );
    let start: u128 = invoked["startTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: u128 = invoked["endTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(start > 0 && end >= start);
    // The call through the binding is the next hop, under the invocation's span.
    let span_id = invoked["spanId"].as_str().unwrap();
    let hop = receiver.span("rpc math", |s| s["traceId"] == trace);
    assert_eq!(hop["parentSpanId"], span_id);
    // The function's own fetch carried the trace on, with its span as the parent.
    assert_eq!(
        receiver.traceparents_at("/upstream"),
        [format!("00-{trace}-{span_id}-01")]
    );

    // An asynchronous call continues the trace of the request that queued it, and its hop
    // is under it.
    let queued_in = "4bf92f3577b34da6a3ce929d0e0e4736";
    let reply = request_with_headers_and_body(
        &server.base,
        "POST",
        "/api/functions/caller/calls",
        &[(
            "traceparent",
            &format!("00-{queued_in}-00f067aa0ba902b7-01"),
        )],
        Some(&b"{}"[..]),
    );
    assert_eq!(reply.status, 202, "{}", reply.text());
    let call = reply.json()["call_id"].as_str().unwrap().to_owned();
    let result = server.get(&format!("/api/calls/{call}?wait=30"));
    assert_eq!(result.text(), "3 {}");
    let called = receiver.span("call caller", |s| s["traceId"] == queued_in);
    assert_eq!(called["parentSpanId"], "00f067aa0ba902b7");
    let called_id = called["spanId"].as_str().unwrap().to_owned();
    receiver.span("rpc math", |s| s["parentSpanId"] == called_id.as_str());
    // Every span names the node it ran on.
    let body: Value = serde_json::from_slice(
        &(receiver.received.lock().unwrap().iter())
            .find(|r| r.path == "/v1/traces")
            .unwrap()
            .body,
    )
    .unwrap();
    let resource = &body["resourceSpans"][0]["resource"]["attributes"];
    let node = server.get("/healthz").json()["node"]["id"].clone();
    assert!(
        resource
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["key"] == "service.instance.id" && a["value"]["stringValue"] == node),
        "{resource}"
    );
}

#[test]
fn a_function_that_fails_ends_its_span_with_an_error() {
    let receiver = Receiver::start();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--otlp-endpoint", &receiver.url], &[]);
    server.deploy(
        "thrower",
        b"export default { fetch() { throw new Error('no luck'); } };\n",
    );
    assert_eq!(server.post("/fn/thrower/", "{}").status, 500);
    let span = receiver.span("invoke thrower", |_| true);
    assert_eq!(span["status"]["code"], 2);
    assert!(
        span["status"]["message"]
            .as_str()
            .unwrap()
            .contains("no luck"),
        "{span}"
    );
    assert_eq!(
        attribute(&span, "error.type")["stringValue"],
        "function_error"
    );
    // A span of its own trace: no request's traceparent to continue.
    assert!(span.get("parentSpanId").is_none(), "{span}");
}
