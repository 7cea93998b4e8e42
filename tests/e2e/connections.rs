//! Clients that hold connections: slow heads (slowloris), idle connections, stalled bodies and
//! responses nobody reads are closed after their timeouts, connections past the cap are
//! answered 503, and a kept-alive connection carries a bounded number of requests — while the
//! server keeps answering everyone else.

use std::io::ErrorKind;
use std::io::Read;
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use crate::harness::Server;

/// How long a test waits for the server to close a connection it should close (far beyond the
/// timeouts the tests configure, so only a server that never closes it fails).
const CLOSE_DEADLINE: Duration = Duration::from_secs(30);

fn address(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Whether the server still holds `stream` open: nothing to read, and no end of stream.
fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let open = matches!(stream.peek(&mut [0; 1]), Err(err) if err.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    open
}

/// Reads what the server sends until it closes `stream`; fails the test if it has not within
/// [`CLOSE_DEADLINE`].
fn read_until_closed(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(CLOSE_DEADLINE)).unwrap();
    let mut received = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::ConnectionReset => break,
            Err(err) => panic!(
                "the server did not close the connection ({err}); received {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

#[test]
fn idle_connections_and_a_slowloris_client_leave_the_server_answering_others() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        data.path(),
        &["--header-timeout", "2s", "--max-connections", "600"],
        &[],
    );
    let address = address(&server);

    let idle: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    // A client that sends its request head one header at a time, for ever.
    let mut slow = TcpStream::connect(&address).unwrap();
    write!(slow, "GET /healthz HTTP/1.1\r\nhost: {address}\r\n").unwrap();
    let trickling = Arc::new(AtomicBool::new(true));
    let trickle = {
        let mut slow = slow.try_clone().unwrap();
        let trickling = trickling.clone();
        std::thread::spawn(move || {
            while trickling.load(Ordering::Relaxed) && slow.write_all(b"x-slow: 1\r\n").is_ok() {
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let reply = server.get("/healthz");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        idle.iter().all(still_open) && still_open(&slow),
        "the server closed the held connections before answering another client"
    );

    // The slow head is cut off at the header timeout, however steadily it trickles.
    read_until_closed(&mut slow);
    trickling.store(false, Ordering::Relaxed);
    trickle.join().unwrap();
    // So are connections that never send a request.
    for mut stream in idle.into_iter().take(3) {
        read_until_closed(&mut stream);
    }
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn connections_past_the_cap_are_answered_503_until_one_closes() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--max-connections", "3"], &[]);
    let address = address(&server);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();

    let mut extra = TcpStream::connect(&address).unwrap();
    let refusal = read_until_closed(&mut extra);
    assert!(refusal.starts_with("HTTP/1.1 503 "), "{refusal}");
    assert!(refusal.contains("too_many_connections"), "{refusal}");

    drop(held);
    // The server notices the closed connections and takes new ones again.
    let deadline = std::time::Instant::now() + CLOSE_DEADLINE;
    loop {
        let mut stream = TcpStream::connect(&address).unwrap();
        // A server still at its cap may answer 503 and close before the request is written,
        // which fails the write (a broken pipe or a reset): that is a refusal like any other.
        let sent = write!(
            stream,
            "GET /healthz HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n"
        );
        if let Err(err) = &sent {
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
                ),
                "{err}"
            );
        }
        let answer = read_until_closed(&mut stream);
        if answer.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still refused after the held connections closed: {answer}"
        );
        std::thread::yield_now();
    }
}

#[test]
fn a_kept_alive_connection_carries_the_configured_number_of_requests() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--max-requests-per-connection", "2"], &[]);
    let address = address(&server);
    let mut stream = TcpStream::connect(&address).unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nhost: {address}\r\n\r\n");

    stream.write_all(request.as_bytes()).unwrap();
    let mut first = [0; 4096];
    let n = stream.read(&mut first).unwrap();
    let first = String::from_utf8_lossy(&first[..n]).to_ascii_lowercase();
    assert!(first.starts_with("http/1.1 200 "), "{first}");
    assert!(!first.contains("connection: close"), "{first}");

    stream.write_all(request.as_bytes()).unwrap();
    let second = read_until_closed(&mut stream).to_ascii_lowercase();
    assert!(second.starts_with("http/1.1 200 "), "{second}");
    assert!(second.contains("connection: close"), "{second}");
}

#[test]
fn a_client_that_stops_sending_its_body_gets_408() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--idle-timeout", "1s"], &[]);
    let address = address(&server);
    let mut stream = TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "PUT /api/functions/stalled HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/javascript\r\ncontent-length: 100\r\n\r\nexport def"
    )
    .unwrap();
    let answer = read_until_closed(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert_eq!(server.get("/api/functions/stalled").status, 404);
}

#[test]
fn a_client_that_stops_reading_a_response_loses_its_connection() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--idle-timeout", "1s"], &[]);
    // One invocation at a time: the second client is answered only once the first client's
    // invocation has ended.
    let manifest = json!({
        "files": { "index.js": "export default { fetch() {
            return new Response(new ReadableStream({
                pull(controller) { controller.enqueue(new Uint8Array(65536)); },
            }));
        } }" },
        "limits": { "concurrency": 1, "wall_clock_ms": 900000 },
    });
    let reply = server.put(
        "/api/functions/endless",
        "application/json",
        manifest.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let address = address(&server);
    let request = format!("GET /fn/endless HTTP/1.1\r\nhost: {address}\r\n\r\n");

    let mut reader = TcpStream::connect(&address).unwrap();
    reader.write_all(request.as_bytes()).unwrap();
    let mut head = [0; 16];
    reader.read_exact(&mut head).unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200 "), "{head:?}");
    // `reader` reads no more: the server's writes stall once the buffers between are full.

    let mut next = TcpStream::connect(&address).unwrap();
    next.set_read_timeout(Some(CLOSE_DEADLINE)).unwrap();
    next.write_all(request.as_bytes()).unwrap();
    let mut head = [0; 16];
    next.read_exact(&mut head)
        .expect("the stalled response was never given up");
    assert!(head.starts_with(b"HTTP/1.1 200 "), "{head:?}");
    drop(reader);
}
