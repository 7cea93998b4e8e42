//! Cold start, measured four ways in one run (`cargo bench --bench cold_start`):
//!
//! - `isolate/snapshot`: the real per-invocation path of the engine — a new isolate from the
//!   base snapshot, load a trivial handler, run it, drop the isolate;
//! - `isolate/no_snapshot`: the same with the host's JavaScript bootstrapped in every isolate;
//! - `isolate/deno_core_only`: for reference, a `JsRuntime` from a snapshot of deno_core alone
//!   (no extensions, no web platform), a script run, and the drop — deno_core's own share;
//! - `isolate/v8_floor`: a bare `v8::Isolate` from a minimal plain V8 snapshot, a context, a
//!   script run, and the drop — what V8 itself costs;
//! - `http/cold_invocation`: one invocation end to end through the HTTP server (release binary).

#[allow(dead_code)]
#[path = "../tests/e2e/harness.rs"]
mod harness;

use criterion::Criterion;
use criterion::criterion_group;
use criterion::criterion_main;
use deno_core::v8;
use functions_runtime::Engine;
use functions_runtime::EngineConfig;
use functions_runtime::Function;
use functions_runtime::Request;

const HANDLER: &str = "export default (event) => ({ ok: event.ok })";

fn engine_path(c: &mut Criterion, name: &str, use_snapshot: bool) {
    let engine = Engine::new(EngineConfig {
        workers: 1,
        use_snapshot,
        // Every invocation creates its isolate: this measures creation.
        prepared_per_worker: 0,
        ..EngineConfig::default()
    });
    let function = Function::javascript("bench", HANDLER);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    c.bench_function(name, |b| {
        b.iter(|| {
            let outcome =
                runtime.block_on(engine.invoke(&function, Request::json(r#"{"ok":true}"#)));
            assert_eq!(
                outcome.result.unwrap().body.as_full(),
                Some(&br#"{"ok":true}"#[..])
            );
        })
    });
}

/// deno_core's own startup: a runtime from a snapshot of deno_core with no extensions.
fn deno_core_only(c: &mut Criterion) {
    let _context = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = _context.enter();
    let snapshot: &'static [u8] =
        Box::leak(deno_core::JsRuntimeForSnapshot::new(Default::default()).snapshot());
    c.bench_function("isolate/deno_core_only", |b| {
        b.iter(|| {
            let mut runtime = deno_core::JsRuntime::new(deno_core::RuntimeOptions {
                startup_snapshot: Some(snapshot),
                skip_op_registration: true,
                ..Default::default()
            });
            let result = runtime
                .execute_script("bench.js", "JSON.stringify({ ok: true })")
                .unwrap();
            deno_core::scope!(scope, runtime);
            let result = deno_core::v8::Local::new(scope, result);
            assert_eq!(result.to_rust_string_lossy(scope), r#"{"ok":true}"#);
        })
    });
}

/// A snapshot holding just a default context: V8's own startup path.
fn minimal_v8_snapshot() -> &'static [u8] {
    let mut creator = v8::Isolate::snapshot_creator(None, None);
    {
        v8::scope!(let scope, &mut creator);
        let context = v8::Context::new(scope, Default::default());
        scope.set_default_context(context);
    }
    let blob = creator.create_blob(v8::FunctionCodeHandling::Keep).unwrap();
    Box::leak(blob.to_vec().into_boxed_slice())
}

fn v8_floor(c: &mut Criterion) {
    // V8 is initialised by the engine benches above (deno_core's platform and flags).
    let snapshot = minimal_v8_snapshot();
    c.bench_function("isolate/v8_floor", |b| {
        b.iter(|| {
            let mut isolate =
                v8::Isolate::new(v8::CreateParams::default().snapshot_blob(snapshot.into()));
            {
                v8::scope!(let scope, &mut isolate);
                let context = v8::Context::new(scope, Default::default());
                let scope = &mut v8::ContextScope::new(scope, context);
                let code = v8::String::new(scope, "JSON.stringify({ ok: true })").unwrap();
                let result = v8::Script::compile(scope, code, None)
                    .unwrap()
                    .run(scope)
                    .unwrap();
                assert_eq!(result.to_rust_string_lossy(scope), r#"{"ok":true}"#);
            }
            drop(isolate);
        })
    });
}

fn http_cold_invocation(c: &mut Criterion) {
    let data = tempfile::tempdir().unwrap();
    let server = harness::Server::start(data.path());
    let base = server.base.clone();
    let client = functions_host_client::Client::new(&base, None);
    client
        .deploy_source("bench", "application/javascript", HANDLER.as_bytes())
        .unwrap();
    c.bench_function("http/cold_invocation", |b| {
        b.iter(|| {
            let reply = client.invoke("bench", br#"{"ok":true}"#).unwrap();
            assert_eq!(reply.body, br#"{"ok":true}"#);
        })
    });
    drop(server);
}

fn cold_start(c: &mut Criterion) {
    engine_path(c, "isolate/snapshot", true);
    engine_path(c, "isolate/no_snapshot", false);
    deno_core_only(c);
    v8_floor(c);
    http_cold_invocation(c);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(200);
    targets = cold_start
}
criterion_main!(benches);
