//! Would a startup snapshot per function, taken at deploy with the function's module already
//! evaluated, make its isolates cheaper to create? `cargo bench --bench function_snapshot`
//! measures, for a hello module and for the Hono test app bundled by esbuild (`tests/apps`,
//! installed by `tests/setup.sh`):
//!
//! - `prepare/base/{app}`: what preparing an isolate does today — a runtime from the base
//!   snapshot, then the module loaded, compiled and evaluated — and the drop;
//! - `prepare/function_snapshot/{app}`: a runtime from a snapshot of the base snapshot in which
//!   the module was already evaluated, its namespace looked up — and the drop.
//!
//! It prints each snapshot's size beside. Both use the real base snapshot and extensions.

#[allow(dead_code)]
#[path = "../tests/e2e/harness.rs"]
mod harness;

use std::rc::Rc;

use criterion::Criterion;
use criterion::criterion_group;
use criterion::criterion_main;
use deno_core::JsRuntime;
use deno_core::ModuleId;
use deno_core::ModuleSpecifier;
use deno_core::RuntimeOptions;
use deno_core::StaticModuleLoader;

const HELLO: &str = "export default { fetch: () => new Response('Hello, World!') };";

fn options(snapshot: &'static [u8], module: &Module) -> RuntimeOptions {
    RuntimeOptions {
        module_loader: Some(Rc::new(StaticModuleLoader::with(
            module.specifier.clone(),
            module.source.clone(),
        ))),
        startup_snapshot: Some(snapshot),
        residual_lazy_js_sources: functions_snapshots::RESIDUAL_LAZY_JS,
        extensions: functions_ext::extensions(),
        ..Default::default()
    }
}

struct Module {
    specifier: ModuleSpecifier,
    source: String,
}

/// Loads and evaluates `module` as the main module of `js`.
async fn evaluate(js: &mut JsRuntime, module: &Module) -> ModuleId {
    let id = js.load_main_es_module(&module.specifier).await.unwrap();
    let evaluation = js.mod_evaluate(id);
    js.with_event_loop_future(evaluation, Default::default())
        .await
        .unwrap();
    id
}

/// A function snapshot: built as the base snapshot is (every extension run, the dispatch path
/// warmed up), with `module` evaluated too; its bytes, the module's id in it, and the lazily
/// loaded scripts it does not hold. (deno_core 0.413 cannot snapshot a runtime that was itself
/// created from a snapshot holding lazily loaded scripts, so it starts from scratch, which takes
/// as long as building the base snapshot: about a second.)
fn function_snapshot(
    module: &Module,
) -> (&'static [u8], ModuleId, Vec<(&'static str, &'static str)>) {
    let id = Rc::new(std::cell::Cell::new(None));
    let (specifier, source, evaluated) =
        (module.specifier.clone(), module.source.clone(), id.clone());
    let evaluate_module = move |runtime: &mut deno_core::JsRuntimeForSnapshot| {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        evaluated.set(Some(tokio.block_on(async {
            let loaded = runtime
                .load_main_es_module_from_code(&specifier, source.clone())
                .await
                .unwrap();
            let evaluation = runtime.mod_evaluate(loaded);
            runtime
                .with_event_loop_future(evaluation, Default::default())
                .await
                .unwrap();
            loaded
        })));
    };
    let output = deno_core::snapshot::create_snapshot(
        functions_ext::snapshot_options(
            env!("CARGO_MANIFEST_DIR"),
            Some(Box::new(evaluate_module)),
        ),
        None,
    )
    .unwrap();
    let residual = functions_snapshots::RESIDUAL_LAZY_JS
        .iter()
        .filter(|(specifier, _)| {
            !output
                .consumed_lazy_specifiers
                .iter()
                .any(|s| s == specifier)
        })
        .copied()
        .collect();
    (Box::leak(output.output), id.get().unwrap(), residual)
}

fn has_default_export(js: &mut JsRuntime, id: ModuleId) -> bool {
    let namespace = js.get_module_namespace(id).unwrap();
    deno_core::scope!(scope, js);
    let namespace = deno_core::v8::Local::new(scope, namespace);
    let key = deno_core::v8::String::new(scope, "default").unwrap();
    namespace
        .get(scope, key.into())
        .is_some_and(|value| value.is_object())
}

fn prepare(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // V8 sets up the read-only heap it shares between isolates when the first one is created and
    // tears it down with the last: one idle isolate stays alive throughout, as in the engine.
    let _anchor = JsRuntime::new(RuntimeOptions {
        startup_snapshot: Some(functions_snapshots::BASE_SNAPSHOT),
        skip_op_registration: true,
        residual_lazy_js_sources: functions_snapshots::RESIDUAL_LAZY_JS,
        extensions: functions_ext::extensions(),
        ..Default::default()
    });
    let bundles = tempfile::tempdir().unwrap();
    let hono = String::from_utf8(harness::bundle("hono", bundles.path())).unwrap();
    // The Hono app's etag middleware looks at `crypto.subtle` when it is set up, at the module's
    // top level; Web Crypto's objects live in V8's C++ heap, which a snapshot cannot hold, so
    // that app cannot be snapshotted once evaluated. The same app without that one line can.
    let etag = "app.use(\"/etag/*\", etag());";
    assert!(
        hono.contains(etag),
        "the Hono bundle no longer sets up etag that way"
    );
    let apps = [
        ("hello", HELLO.to_owned(), true),
        ("hono", hono.clone(), false),
        ("hono_without_etag", hono.replace(etag, ""), true),
    ];
    for (app, source, snapshottable) in apps {
        let module = Module {
            specifier: ModuleSpecifier::parse(&format!("file:///{app}.js")).unwrap(),
            source,
        };
        c.bench_function(&format!("prepare/base/{app}"), |b| {
            b.iter(|| {
                let mut js = JsRuntime::new(RuntimeOptions {
                    skip_op_registration: true,
                    ..options(functions_snapshots::BASE_SNAPSHOT, &module)
                });
                let id = tokio.block_on(evaluate(&mut js, &module));
                assert!(has_default_export(&mut js, id));
            })
        });
        if !snapshottable {
            continue;
        }
        let (snapshot, id, residual) = function_snapshot(&module);
        let residual: &'static [(&str, &str)] = Box::leak(residual.into_boxed_slice());
        println!(
            "{app}: module {} KiB; base snapshot {} KiB, function snapshot {} KiB",
            module.source.len() / 1024,
            functions_snapshots::BASE_SNAPSHOT.len() / 1024,
            snapshot.len() / 1024
        );
        c.bench_function(&format!("prepare/function_snapshot/{app}"), |b| {
            b.iter(|| {
                let mut js = JsRuntime::new(RuntimeOptions {
                    skip_op_registration: true,
                    residual_lazy_js_sources: residual,
                    ..options(snapshot, &module)
                });
                assert!(has_default_export(&mut js, id));
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = prepare
}
criterion_main!(benches);
