//! Waiting holds no thread, measured end to end (`cargo bench --bench concurrency`): N clients
//! at once invoke a fresh-isolate function that awaits a 1 s timer, through the HTTP server
//! (release binary, one connection each), and the bench times until every answer is in. The
//! floor is 1 s plus creating N isolates on the machine's cores. Also printed: the server's
//! resident memory per sleeping isolate while 1,000 wait.

#[allow(dead_code)]
#[path = "../tests/e2e/harness.rs"]
mod harness;

use std::time::Duration;
use std::time::Instant;

use criterion::Criterion;
use criterion::criterion_group;
use criterion::criterion_main;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

const SLEEPER: &str = r#"{"files":{"index.js":"export default async (e) => { await new Promise((r) => setTimeout(r, 1000)); return e.n; }"},"limits":{"concurrency":1000}}"#;

/// One POST of `body` to `address` (`host:port`) over a connection of its own; the response's
/// status line.
async fn post(address: &str, path: &str, body: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    response.lines().next().unwrap_or_default().to_owned()
}

/// Sends `n` invocations at once and waits for all; every one must succeed.
async fn burst(address: &str, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let address = address.to_owned();
            tokio::spawn(
                async move { post(&address, "/fn/sleeper/", &format!(r#"{{"n":{i}}}"#)).await },
            )
        })
        .collect();
    for task in tasks {
        let status = task.await.unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap();
    kib * 1024
}

fn concurrency(c: &mut Criterion) {
    let data = tempfile::tempdir().unwrap();
    let server = harness::Server::start(data.path());
    server.put(
        "/api/functions/sleeper",
        "application/json",
        SLEEPER.as_bytes(),
    );
    let address = server.base.trim_start_matches("http://").to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Memory per sleeping isolate: resident memory while 1,000 wait, against before.
    let pid = server.pid();
    runtime.block_on(burst(&address, 10));
    let before = rss_bytes(pid);
    let during = runtime.block_on(async {
        let waiting = tokio::spawn({
            let address = address.clone();
            async move { burst(&address, 1000).await }
        });
        tokio::time::sleep(Duration::from_millis(900)).await;
        let during = rss_bytes(pid);
        waiting.await.unwrap();
        during
    });
    eprintln!(
        "resident memory: {:.1} MiB before, {:.1} MiB with 1,000 sleeping isolates: {:.2} MiB each",
        before as f64 / 1048576.0,
        during as f64 / 1048576.0,
        during.saturating_sub(before) as f64 / 1000.0 / 1048576.0
    );

    let mut group = c.benchmark_group("sleep_1s");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.warm_up_time(Duration::from_secs(3));
    for n in [200, 1000] {
        group.bench_function(format!("{n}_concurrent"), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let started = Instant::now();
                    runtime.block_on(burst(&address, n));
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
    drop(server);
}

criterion_group!(benches, concurrency);
criterion_main!(benches);
