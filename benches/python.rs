//! Python cold starts, side by side in one run (`cargo bench --bench python`):
//!
//! - `python/http/cold`: a hello function invoked over HTTP (release server, per-function
//!   prepared isolates off: `--prepared-isolates 0`), each invocation restoring the function's
//!   own snapshot into an interpreter the worker started ahead of time (timed once one is
//!   ready, as between invocations that are not back to back);
//! - `python/http/warm`: a function with `isolation: "function"`, one warm interpreter, on a
//!   server as `serve` starts by default;
//! - `python/engine/dedicated`, `python/engine/baseline_only`: in the engine, a fresh
//!   interpreter per invocation (none started ahead), from the function's own snapshot or from
//!   the baseline (the module imported after the restore);
//! - `python/engine/no_snapshot`: the interpreter booted from scratch (10 samples);
//! - `node/pyodide_restore`: Node restoring a snapshot of the same Pyodide build with
//!   Pyodide's own loader and calling the same hello (`benches/compare/pyodide_restore.mjs`;
//!   needs `node` and npm, which installs `pyodide@314.0.7` under the build directory).
//!
//! It prints the snapshots' sizes, and the medians of `python/http/cold` and of Node's restore
//! from rounds taken alternately, with their ratio.

#[allow(dead_code)]
#[path = "../tests/e2e/harness.rs"]
mod harness;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use criterion::Criterion;
use criterion::criterion_group;
use criterion::criterion_main;
use functions_host_client::Client;
use functions_runtime::Engine;
use functions_runtime::EngineConfig;
use functions_runtime::Function;
use functions_runtime::MemorySnapshot;
use functions_runtime::PyodideBuild;
use functions_runtime::PythonCode;
use functions_runtime::Request;
use functions_runtime::Settings;

const HELLO: &str = "def hello(name=\"World\"):\n    return {\"message\": f\"Hello, {name}!\"}\n";
const EXPECTED: &[u8] = br#"{"message": "Hello, Bench!"}"#;

fn build(dir: &Path) -> Arc<PyodideBuild> {
    let distribution = functions_pyodide::Distribution::open(dir).unwrap();
    let read = |file| distribution.read(file).unwrap();
    Arc::new(
        PyodideBuild::new(
            functions_pyodide::VERSION,
            functions_pyodide::build_id(),
            read(functions_pyodide::File::Wasm),
            String::from_utf8(read(functions_pyodide::File::Glue)).unwrap(),
            read(functions_pyodide::File::Stdlib),
        )
        .unwrap(),
    )
}

fn code(build: &Arc<PyodideBuild>, snapshot: Option<Arc<MemorySnapshot>>) -> PythonCode {
    PythonCode {
        build: build.clone(),
        files: [("main.py".to_owned(), HELLO.to_owned())].into(),
        packages: Arc::default(),
        module_file: Some("main.py".to_owned()),
        entry: None,
        snapshot,
    }
}

/// A server on its own data directory, with hello deployed as `hello` (and as `warm`, with a
/// warm interpreter); waits until its workers have their interpreters ready.
fn server(data: &Path, pyodide: &Path, args: &[&str]) -> (harness::Server, Client) {
    let server = harness::Server::start_with(
        data,
        args,
        &[("FUNCTIONS_HOST_PYODIDE", pyodide.to_str().unwrap())],
    );
    let client = Client::new(&server.base, None);
    for (name, isolation) in [("hello", "invocation"), ("warm", "function")] {
        let manifest = serde_json::json!({"files": {"main.py": HELLO}, "isolation": isolation});
        let reply = server.put(
            &format!("/api/functions/{name}"),
            "application/json",
            manifest.to_string().as_bytes(),
        );
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    wait_for_interpreters(&server);
    (server, client)
}

/// Waits until every worker of `server` holds a prepared interpreter.
fn wait_for_interpreters(server: &harness::Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.get("/healthz").json()["python"]["interpreters_ready"] != 2 {
        assert!(Instant::now() < deadline, "no interpreters were prepared");
        std::thread::yield_now();
    }
}

fn invoke(client: &Client, name: &str) {
    let reply = client.invoke(name, br#"{"name":"Bench"}"#).unwrap();
    assert_eq!(reply.body, EXPECTED);
}

/// One cold invocation of `hello` once an interpreter is ready: its time.
fn cold_invocation(server: &harness::Server, client: &Client) -> Duration {
    wait_for_interpreters(server);
    let start = Instant::now();
    invoke(client, "hello");
    start.elapsed()
}

/// Node's restore-and-call times, in milliseconds, and its snapshot's size.
fn node_restores(rounds: usize) -> Option<(Vec<f64>, u64)> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("node-pyodide");
    if !dir.join("node_modules/pyodide/pyodide.mjs").is_file() {
        std::fs::create_dir_all(&dir).ok()?;
        let installed = harness::command("npm")
            .args(["install", "--silent", "--prefix"])
            .arg(&dir)
            .arg(format!("pyodide@{}", functions_pyodide::VERSION))
            .status()
            .ok()?;
        if !installed.success() {
            return None;
        }
    }
    let script = harness::repository().join("benches/compare/pyodide_restore.mjs");
    let out = harness::command("node")
        .arg(script)
        .arg(&dir)
        .arg(rounds.to_string())
        .output()
        .ok()?;
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let times = reply["times_ms"]
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    Some((times, reply["snapshot_bytes"].as_u64()?))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn python(c: &mut Criterion) {
    let pyodide = harness::pyodide();

    // Over HTTP.
    let cold_data = tempfile::tempdir().unwrap();
    let (cold_server, cold_client) =
        server(cold_data.path(), pyodide, &["--prepared-isolates", "0"]);
    c.bench_function("python/http/cold", |b| {
        b.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| cold_invocation(&cold_server, &cold_client))
                .sum()
        })
    });
    let warm_data = tempfile::tempdir().unwrap();
    let (warm_server, warm_client) = server(warm_data.path(), pyodide, &[]);
    c.bench_function("python/http/warm", |b| {
        b.iter(|| invoke(&warm_client, "warm"))
    });
    let info = warm_server.get("/api/functions/hello").json();
    let dedicated_bytes = info["python"]["snapshot_bytes"].as_u64().unwrap();
    let baseline_bytes = std::fs::read_dir(warm_data.path().join("pyodide"))
        .unwrap()
        .filter_map(Result::ok)
        .find(|entry| entry.file_name().to_string_lossy().ends_with(".snapshot"))
        .map(|entry| entry.metadata().unwrap().len())
        .unwrap_or(0);
    drop(warm_server);

    // In the engine, with no interpreter started ahead.
    let build = build(pyodide);
    let engine = Engine::new(EngineConfig {
        workers: 1,
        prepared_per_worker: 0,
        prepare_python: false,
        ..EngineConfig::default()
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let interpreter = Function::python(
        "baseline",
        1,
        PythonCode::interpreter(build.clone()),
        Settings::default(),
    );
    let baseline = Arc::new(
        runtime
            .block_on(engine.snapshot_python(&interpreter))
            .unwrap(),
    );
    let on_baseline = Function::python(
        "hello",
        1,
        code(&build, Some(baseline.clone())),
        Settings::default(),
    );
    let own = runtime
        .block_on(engine.snapshot_python(&on_baseline))
        .unwrap();
    let dedicated = Function::python(
        "hello",
        1,
        code(&build, Some(Arc::new(own))),
        Settings::default(),
    );
    let mut from_scratch_settings = Settings::default();
    from_scratch_settings.limits.cpu_time = Duration::from_secs(60);
    let from_scratch = Function::python("hello", 1, code(&build, None), from_scratch_settings);
    let invoke_in_engine = |function: &Function| {
        let outcome =
            runtime.block_on(engine.invoke(function, Request::json(r#"{"name":"Bench"}"#)));
        assert_eq!(outcome.result.unwrap().body.as_full(), Some(EXPECTED));
    };
    let mut group = c.benchmark_group("python/engine");
    group.bench_function("dedicated", |b| b.iter(|| invoke_in_engine(&dedicated)));
    group.bench_function("baseline_only", |b| {
        b.iter(|| invoke_in_engine(&on_baseline))
    });
    group.sample_size(10);
    group.bench_function("no_snapshot", |b| {
        b.iter(|| invoke_in_engine(&from_scratch))
    });
    group.finish();
    drop(engine);

    // Side by side with Node, in alternating rounds.
    let mut ours = Vec::new();
    let mut node = Vec::new();
    let mut node_snapshot = 0;
    for _ in 0..3 {
        for _ in 0..10 {
            ours.push(cold_invocation(&cold_server, &cold_client).as_secs_f64() * 1000.0);
        }
        match node_restores(10) {
            Some((times, bytes)) => {
                node.extend(times);
                node_snapshot = bytes;
            }
            None => break,
        }
    }
    println!(
        "snapshot sizes: baseline {baseline_bytes} bytes stored, hello's own \
         {dedicated_bytes} bytes stored (Node's, whole: {node_snapshot} bytes)"
    );
    let ours = median(ours);
    if node.is_empty() {
        println!(
            "python/http/cold median {ours:.1} ms; Node's restore could not be run (node, npm)"
        );
    } else {
        let theirs = median(node);
        println!(
            "python/http/cold median {ours:.1} ms; Node restoring the same Pyodide's snapshot \
             (loadPyodide _loadSnapshot + call) median {theirs:.1} ms; ratio {:.2}",
            ours / theirs
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = python
}
criterion_main!(benches);
