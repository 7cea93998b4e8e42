//! Stopping and straining the server: SIGTERM lets the work under way finish and keeps queued
//! calls for the next start; running out of file descriptors does not stop it.

use std::io::BufRead;
use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use crate::harness::Server;

/// An HTTP server on an ephemeral port that tells `arrived` when a request has come, then
/// answers it `upstream says hi` once `answer` says so.
fn held_upstream() -> (String, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (arrived_tx, arrived) = mpsc::channel();
    let (answer, answer_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 2 {
            line.clear();
        }
        arrived_tx.send(()).unwrap();
        answer_rx.recv().unwrap();
        let mut stream = stream;
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-length: 16\r\nconnection: close\r\n\r\nupstream says hi",
        );
    });
    (address, arrived, answer)
}

#[test]
fn sigterm_lets_work_under_way_finish_and_keeps_queued_calls() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let (upstream, arrived, answer) = held_upstream();
    let manifest = json!({
        "files": { "index.js": format!(
            "export default async () => ({{ upstream: await (await fetch('http://{upstream}/')).text() }});"
        ) },
        "allow_net": [upstream],
        "limits": { "concurrency": 1 },
    });
    let reply = server.put(
        "/api/functions/slow",
        "application/json",
        manifest.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    // A synchronous invocation, held in its function by the upstream, and a call queued
    // behind it (concurrency 1).
    let base = server.base.clone();
    let invocation =
        std::thread::spawn(move || crate::harness::request(&base, "POST", "/fn/slow/", None));
    arrived.recv_timeout(Duration::from_secs(60)).unwrap();
    let queued = server.post("/api/functions/slow/calls", "{}").json()["call_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let base = server.base.clone();
    let stopping = std::thread::spawn(move || server.terminate());
    // The server stops taking work before the invocation under way is done...
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let refused = functions_host_client::Client::new(&base, None)
            .send("GET", "/healthz", None)
            .is_err();
        if refused {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting connections"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // ...which still answers, and then the server exits cleanly.
    answer.send(()).unwrap();
    let reply = invocation.join().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({ "upstream": "upstream says hi" }));
    let status = stopping.join().unwrap();
    assert!(status.success(), "the server exited with {status}");

    // The queued call never started: the next server runs it, once (its function's upstream
    // is gone now, so it fails, which shows it ran).
    let server = Server::start(data.path());
    let result = server.get(&format!("/api/calls/{queued}?wait=60"));
    assert_eq!(
        result.header("x-call-state"),
        Some("failed"),
        "{}",
        result.text()
    );
    assert!(result.text().contains("fetch failed"), "{}", result.text());
    let lines = server.log_lines("slow");
    let ran = |step: &str| {
        lines
            .iter()
            .filter(|line| line.starts_with(&format!("{step} {queued}")))
            .count()
    };
    assert_eq!((ran("RUNNING"), ran("FAILED")), (1, 1), "{lines:?}");
}

#[test]
fn running_out_of_file_descriptors_does_not_stop_the_server() {
    let data = tempfile::tempdir().unwrap();
    // A cap on connections above the descriptors, so that they run out first.
    let server = Server::start_under(
        &["prlimit", "--nofile=256"],
        data.path(),
        &["--max-connections", "1000"],
        &[],
    );
    server.deploy("hello", &crate::harness::fixture("hello.js"));
    let address = server.base.trim_start_matches("http://").to_owned();
    // Connections the server must accept until it has no descriptor left.
    let held: Vec<_> = (0..400)
        .filter_map(|_| std::net::TcpStream::connect(&address).ok())
        .collect();
    assert!(held.len() > 256, "only {} connections", held.len());
    // The server has accepted all it could: it is out of descriptors.
    let open = || {
        std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
            .unwrap()
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while open() < 250 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} descriptors open",
            open()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(held);
    let reply = server.post("/fn/hello/", r#"{"name":"after the flood"}"#);
    assert_eq!(reply.status, 200, "{}", reply.text());
}
