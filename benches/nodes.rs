//! Several nodes on one PostgreSQL (`cargo bench --bench nodes`), against the release binary and
//! a throw-away PostgreSQL server of the machine's installation (fsync on, as in production):
//!
//! - `async_calls/1_node` and `async_calls/3_nodes`: 1,000 asynchronous calls of a function that
//!   awaits a 10 ms timer (concurrency 32), made by 16 clients spread over the nodes, each call's
//!   result fetched with `?wait=` from a node other than the one that took it; timed from the
//!   first call until the last result is in (criterion reports calls per second).
//! - `invoke/sqlite`, `invoke/postgres`: one synchronous invocation over HTTP of a warm function
//!   that writes one console line (its response waits until the line is stored), on a node of
//!   each store, alternating in one run: the latency the store adds to an invocation.
//! - `call_round_trip/sqlite`, `call_round_trip/postgres`: one asynchronous call and its result
//!   (`POST .../calls` then `GET /api/calls/{id}?wait=10`).

#[allow(dead_code)]
#[path = "../tests/e2e/harness.rs"]
mod harness;

use std::time::Duration;
use std::time::Instant;

use criterion::Criterion;
use criterion::Throughput;
use criterion::criterion_group;
use criterion::criterion_main;
use harness::Server;

/// Calls per `async_calls` iteration.
const CALLS: usize = 1000;

/// Clients making them at once.
const CLIENTS: usize = 16;

const SLEEPER: &str = r#"{"files":{"index.js":"export default async (e) => { await new Promise((r) => setTimeout(r, 10)); return e.n; }"},"limits":{"concurrency":32}}"#;

const LOGGER: &str = "export default (e) => { console.log('hello', e.n); return e.n; }";

/// Makes `CALLS` calls over `nodes` from `CLIENTS` threads, then fetches every result from the
/// next node; every one must have finished.
fn calls_over(nodes: &[Server]) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| {
                let mut made = Vec::new();
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= CALLS {
                        break;
                    }
                    let node = n % nodes.len();
                    let reply = nodes[node]
                        .post("/api/functions/sleeper/calls", &format!(r#"{{"n":{n}}}"#));
                    assert_eq!(reply.status, 202, "{}", reply.text());
                    made.push((node, reply.json()["call_id"].as_str().unwrap().to_owned()));
                }
                for (node, id) in made {
                    let reply =
                        nodes[(node + 1) % nodes.len()].get(&format!("/api/calls/{id}?wait=60"));
                    assert_eq!(reply.status, 200, "{}", reply.text());
                }
            });
        }
    });
}

/// `count` nodes on a new database of `cluster`, each with a directory in `dirs`, `sleeper`
/// deployed and served by all.
fn nodes(
    cluster: &functions_test_postgres::Cluster,
    count: usize,
    dirs: &[tempfile::TempDir],
) -> Vec<Server> {
    let url = cluster.create_database();
    let nodes: Vec<Server> = dirs[..count]
        .iter()
        .map(|dir| Server::start_with(dir.path(), &["--store", &url], &[]))
        .collect();
    let reply = nodes[0].put(
        "/api/functions/sleeper",
        "application/json",
        SLEEPER.as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    for node in &nodes {
        let started = Instant::now();
        while node.post("/fn/sleeper", r#"{"n":0}"#).status != 200 {
            assert!(started.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(10));
        }
        // Each counts every node before it takes its share.
        while node.get("/healthz").json()["node"]["nodes"] != count as u64 {
            assert!(started.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    nodes
}

fn several_nodes(c: &mut Criterion) {
    let cluster = functions_test_postgres::Cluster::start_durable();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();

    let mut group = c.benchmark_group("async_calls");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(3));
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(CALLS as u64));
    for count in [1, 3] {
        let nodes = nodes(&cluster, count, &dirs);
        let name = if count == 1 {
            "1_node".to_owned()
        } else {
            format!("{count}_nodes")
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let started = Instant::now();
                for _ in 0..iterations {
                    calls_over(&nodes);
                }
                started.elapsed()
            })
        });
    }
    group.finish();

    // One node on each store, side by side.
    let sqlite_dir = tempfile::tempdir().unwrap();
    let sqlite = Server::start(sqlite_dir.path());
    let pg_dir = tempfile::tempdir().unwrap();
    let url = cluster.create_database();
    let postgres = Server::start_with(pg_dir.path(), &["--store", &url], &[]);
    let stores = [("sqlite", &sqlite), ("postgres", &postgres)];
    for (_, server) in stores {
        server.deploy("logger", LOGGER.as_bytes());
    }
    let mut group = c.benchmark_group("invoke");
    group.sample_size(200);
    for (store, server) in stores {
        group.bench_function(store, |b| {
            b.iter(|| {
                let reply = server.post("/fn/logger", r#"{"n":1}"#);
                assert_eq!(reply.status, 200);
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("call_round_trip");
    group.sample_size(100);
    for (store, server) in stores {
        group.bench_function(store, |b| {
            b.iter(|| {
                let reply = server.post("/api/functions/logger/calls", r#"{"n":1}"#);
                let id = reply.json()["call_id"].as_str().unwrap().to_owned();
                let result = server.get(&format!("/api/calls/{id}?wait=10"));
                assert_eq!(result.status, 200);
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = several_nodes
}
criterion_main!(benches);
