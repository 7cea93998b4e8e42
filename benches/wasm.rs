//! WebAssembly cold start (`cargo bench --bench wasm`): a WASI hello in C (`examples/c/hello.c`,
//! built with clang-19 and wasi-libc) per invocation, measured three ways:
//!
//! - `wasm/in_process`: `Engine::invoke`: a new store, instantiation from the function's
//!   `InstancePre` (pooling allocator, copy-on-write memory), `_start`, and the store's drop, on
//!   the calling task;
//! - `wasm/http`: one invocation end to end through the HTTP server (release binary).

#[allow(dead_code)]
#[path = "../tests/e2e/harness.rs"]
mod harness;

use criterion::Criterion;
use criterion::criterion_group;
use criterion::criterion_main;
use functions_runtime::Engine;
use functions_runtime::EngineConfig;
use functions_runtime::Function;
use functions_runtime::Request;
use functions_runtime::Settings;

fn wasm(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let hello = harness::build_c(
        &harness::repository().join("examples/c/hello.c"),
        dir.path(),
    );
    let binary = std::fs::read(hello).unwrap();
    let engine = Engine::new(EngineConfig {
        workers: 1,
        ..EngineConfig::default()
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let module = runtime
        .block_on(engine.compile_wasm(binary.clone()))
        .unwrap();
    let function = Function::wasm("hello", 1, module, Settings::default());
    let request = || {
        let mut request = Request::get("http://localhost/");
        request.method = "POST".into();
        request.body = b"World".to_vec();
        request
    };
    let check = |outcome: functions_runtime::Outcome| {
        assert_eq!(
            outcome.result.unwrap().body.as_full(),
            Some(&b"Hello, World!\n"[..])
        );
    };
    c.bench_function("wasm/in_process", |b| {
        b.iter(|| check(runtime.block_on(engine.invoke(&function, request()))))
    });

    let data = tempfile::tempdir().unwrap();
    let server = harness::Server::start(data.path());
    let base = server.base.clone();
    let agent = ureq::AgentBuilder::new().build();
    agent
        .put(&format!("{base}/api/functions/hello"))
        .set("content-type", "application/wasm")
        .send_bytes(&binary)
        .unwrap();
    let url = format!("{base}/fn/hello/");
    c.bench_function("wasm/http", |b| {
        b.iter(|| {
            let body = agent
                .post(&url)
                .send_string("World")
                .unwrap()
                .into_string()
                .unwrap();
            assert_eq!(body, "Hello, World!\n");
        })
    });
    drop(server);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(200);
    targets = wasm
}
criterion_main!(benches);
