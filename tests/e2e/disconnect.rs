//! A client that disconnects mid-invocation: its invocation is cancelled (its isolate stopped,
//! and logged so) before the function's place is given back, so the next invocation never
//! overlaps it.

use std::io::Read;
use std::io::Write;
use std::net::TcpListener;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use crate::harness::Server;

#[test]
fn a_disconnected_invocation_is_cancelled_before_the_next_starts() {
    // An upstream that tells the test when the function's request arrived, and never answers:
    // the first invocation is provably running (and would wait for ever) when its client leaves.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_address = upstream.local_addr().unwrap().to_string();
    let (arrived, arrival) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in upstream.incoming().flatten() {
            let _ = stream.read(&mut [0; 1024]);
            let _ = arrived.send(());
            held.push(stream);
        }
    });

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let source = format!(
        "export default async (event) => {{
           console.log('start', event.n);
           if (event.hang) await fetch('http://{upstream_address}/');
           console.log('end', event.n);
           return event.n;
         }}"
    );
    let manifest = json!({
        "files": { "index.js": source },
        "limits": { "concurrency": 1 },
        "allow_net": [upstream_address],
    });
    let reply = server.put(
        "/api/functions/one-at-a-time",
        "application/json",
        manifest.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());

    let address = server.base.trim_start_matches("http://").to_owned();
    let mut client = TcpStream::connect(&address).unwrap();
    let body = r#"{"n":1,"hang":true}"#;
    write!(
        client,
        "POST /fn/one-at-a-time/ HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    arrival
        .recv_timeout(Duration::from_secs(30))
        .expect("the first invocation reached its upstream");
    drop(client);

    // The next invocation waits for the place, which the first gives back once cancelled.
    let reply = server.post("/fn/one-at-a-time/", r#"{"n":2}"#);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "2");

    let logs = server.get("/api/functions/one-at-a-time/logs").json()["logs"]
        .as_array()
        .unwrap()
        .clone();
    let at = |message: &str| {
        logs.iter()
            .find(|line| line["message"] == message)
            .and_then(|line| line["timestamp"].as_str())
            .unwrap_or_else(|| panic!("no log line {message:?}: {logs:?}"))
            .to_owned()
    };
    let cancelled = at("the invocation was cancelled: the client disconnected");
    assert!(at("start 1") <= cancelled, "{logs:?}");
    assert!(
        cancelled <= at("start 2"),
        "the second started before the first was over: {logs:?}"
    );
    assert!(
        !logs.iter().any(|line| line["message"] == "end 1"),
        "the first ran on after its client left: {logs:?}"
    );
}
