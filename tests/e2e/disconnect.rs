//! A client that disconnects mid-invocation: its invocation keeps the function's place until it
//! is over (cancelled, or run to its end), so the next one never overlaps it.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use std::time::Instant;

use serde_json::json;

use crate::harness::Server;

#[test]
fn a_disconnected_invocation_never_overlaps_the_next() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let manifest = json!({
        "files": { "index.js": "
            export default async (event) => {
              console.log('start', event.n);
              await new Promise((resolve) => setTimeout(resolve, event.ms));
              console.log('end', event.n);
              return event.n;
            }" },
        "limits": { "concurrency": 1 },
    });
    let reply = server.put(
        "/api/functions/one-at-a-time",
        "application/json",
        manifest.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());

    // A client sends an invocation that waits 1.5 s, and hangs up once it has started.
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut client = TcpStream::connect(&address).unwrap();
    let body = r#"{"n":1,"ms":1500}"#;
    write!(
        client,
        "POST /fn/one-at-a-time/ HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server
        .log_lines("one-at-a-time")
        .contains(&"start 1".to_owned())
    {
        assert!(
            Instant::now() < deadline,
            "the first invocation never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(client);

    // The next invocation waits for the place, whatever became of the first.
    let reply = server.post("/fn/one-at-a-time/", r#"{"n":2,"ms":10}"#);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "2");

    let lines = server.log_lines("one-at-a-time");
    let position = |line: &str| lines.iter().position(|l| l.starts_with(line));
    let second_start = position("start 2").expect("the second started");
    // The first either ran to its end or was cancelled, before the second started.
    let first_over = position("end 1")
        .or_else(|| position("the invocation was cancelled: the client disconnected"))
        .unwrap_or_else(|| panic!("the first neither ended nor was cancelled: {lines:?}"));
    assert!(first_over < second_start, "{lines:?}");
}
