//! Calls between functions through bindings, in process (`cargo bench --bench rpc`): a caller
//! invocation awaits `env.MATH.add(i, 1)` again and again, on a host embedded as a library (an
//! in-memory store, the engine's default workers), and times each round trip (caller isolate →
//! callee invocation → result) with `performance.now()`; criterion gets the sum of those times.
//!
//! - `rpc/warm_callee`: the callee has `isolation: "function"` (a warm isolate serves each call),
//!   calls back to back;
//! - `rpc/fresh_callee`: every call is a fresh isolate of the callee, one the worker pre-created
//!   (a pool hit): the caller waits 5 ms between calls, untimed, so that the pool is refilled
//!   (creating an isolate takes about 2 ms of a core, so back-to-back calls would time isolate
//!   creation instead).
//!
//! It also prints p50 and p99 of single round trips over 2,000 calls for both callees, and of
//! the npm capnweb client calling a warm function's `add` over HTTP batch (`/rpc/{name}` of a
//! release server; `tests/apps/capnweb/bench.mjs`, run by Node): one call per batch, and 100
//! calls in one batch.

#[allow(dead_code)]
#[path = "../tests/e2e/harness.rs"]
mod harness;

use std::time::Duration;

use criterion::Criterion;
use criterion::criterion_group;
use criterion::criterion_main;
use functions_host::DeploySource;
use functions_host::Host;
use functions_host::Manifest;
use functions_host::Request;

const CALLER: &str = r#"
export default async (event, env) => {
  const times = [];
  let sum = 0;
  for (let i = 0; i < event.n; i++) {
    if (event.pause > 0) await new Promise((resolve) => setTimeout(resolve, event.pause));
    const started = performance.now();
    sum += await env.MATH.add(i, 1);
    times.push(performance.now() - started);
  }
  return { sum, times };
};
"#;

const MATH: &str = "export default { add(a, b) { return a + b; } }";

fn manifest(source: &str, isolation: &str, bindings: &[(&str, &str)]) -> Manifest {
    Manifest {
        files: [("index.js".to_owned(), source.to_owned())].into(),
        isolation: Some(isolation.to_owned()),
        bindings: bindings
            .iter()
            .map(|(name, target)| {
                (
                    (*name).to_owned(),
                    serde_json::json!({ "function": target }),
                )
            })
            .collect(),
        limits: functions_host::FunctionLimits {
            cpu_ms: Some(60_000),
            wall_clock_ms: Some(900_000),
            ..Default::default()
        },
        ..Manifest::default()
    }
}

/// Runs one caller invocation making `n` calls, `pause_ms` apart: each call's round trip, in
/// milliseconds.
async fn calls(host: &Host, caller: &str, n: u64, pause_ms: u64) -> Vec<f64> {
    let event = serde_json::json!({ "n": n, "pause": pause_ms }).to_string();
    let response = host.invoke(caller, Request::json(event)).await.unwrap();
    let body = response.body.bytes().await.unwrap();
    let out: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(out["sum"].as_u64().unwrap(), n * (n + 1) / 2, "{out}");
    out["times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rpc(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let host = runtime.block_on(async {
        let host = Host::builder().open().await.unwrap();
        for (name, source, isolation, bindings) in [
            ("math_warm", MATH, "function", &[][..]),
            ("math_fresh", MATH, "invocation", &[][..]),
            (
                "warm_caller",
                CALLER,
                "function",
                &[("MATH", "math_warm")][..],
            ),
            (
                "fresh_caller",
                CALLER,
                "function",
                &[("MATH", "math_fresh")][..],
            ),
        ] {
            host.deploy(
                name,
                DeploySource::Manifest(manifest(source, isolation, bindings)),
            )
            .await
            .unwrap();
        }
        host
    });
    // For comparison: invocations of a plain function from the host itself, warm (back to
    // back) and fresh (5 ms apart, each on an isolate the worker pre-created).
    let mut floors = Vec::new();
    for (name, isolation, pause) in [
        ("plain_warm", "function", 0),
        ("plain_fresh", "invocation", 5),
    ] {
        let times = runtime.block_on(async {
            host.deploy(
                name,
                DeploySource::Manifest(manifest("export default (e) => e.n + 1", isolation, &[])),
            )
            .await
            .unwrap();
            let mut times = Vec::new();
            for i in 0..1_000 {
                if pause > 0 {
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                let started = std::time::Instant::now();
                let response = host
                    .invoke(name, Request::json(format!("{{\"n\":{i}}}")))
                    .await
                    .unwrap();
                response.body.bytes().await.unwrap();
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            times
        });
        floors.push((
            name,
            percentile(&times, 0.5) * 1000.0,
            percentile(&times, 0.99) * 1000.0,
        ));
    }
    let mut group = c.benchmark_group("rpc");
    let mut summary = Vec::new();
    for (id, caller, pause) in [
        ("warm_callee", "warm_caller", 0),
        ("fresh_callee", "fresh_caller", 5),
    ] {
        // Warm up both ends (and the callee's pre-created isolates), then take single times.
        runtime.block_on(calls(&host, caller, 200, pause));
        let mut times = runtime.block_on(calls(&host, caller, 2_000, pause));
        times.sort_by(f64::total_cmp);
        summary.push((
            id,
            percentile(&times, 0.5) * 1000.0,
            percentile(&times, 0.99) * 1000.0,
        ));
        if pause > 0 {
            // Criterion counts only the timed calls: keep their total small, as the pauses are
            // real time.
            group.warm_up_time(Duration::from_millis(20));
            group.measurement_time(Duration::from_millis(100));
        }
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let times = runtime.block_on(calls(&host, caller, iters, pause));
                Duration::from_secs_f64(times.iter().sum::<f64>() / 1000.0)
            })
        });
    }
    group.finish();
    for (id, p50, p99) in summary {
        println!("rpc/{id}: one round trip p50 {p50:.1} µs, p99 {p99:.1} µs (2,000 calls)");
    }
    for (name, p50, p99) in floors {
        println!("host.invoke of {name}: p50 {p50:.1} µs, p99 {p99:.1} µs (1,000 invocations)");
    }
    capnweb_batch();
}

/// The capnweb client's calls over HTTP batch, timed by Node (see the module's docs).
fn capnweb_batch() {
    let script = harness::fixtures().join("../apps/capnweb/bench.mjs");
    if !harness::fixtures()
        .join("../apps/node_modules/capnweb")
        .exists()
    {
        println!("capnweb: skipped (run `npm ci --prefix tests/apps` for its client)");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let server = harness::Server::start(data.path());
    let manifest = serde_json::json!({
        "files": { "index.js": MATH },
        "isolation": "function",
    });
    let reply = server.put(
        "/api/functions/math",
        "application/json",
        manifest.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let out = harness::command("node")
        .arg(&script)
        .args([&format!("{}/rpc/math", server.base), "500"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let times: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (label, key) in [
        ("one call per batch", "one"),
        ("100 calls in one batch", "hundred"),
    ] {
        println!(
            "capnweb/http_batch ({label}, Node's client): p50 {} µs, p99 {} µs",
            times[key]["p50"], times[key]["p99"]
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = rpc
}
criterion_main!(benches);
