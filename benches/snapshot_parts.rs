//! What each part of the web platform in the base snapshot costs every new isolate
//! (`cargo bench --bench snapshot_parts`): snapshots holding a growing set of the scripts the base
//! snapshot loads eagerly, and for each, a runtime created from it and dropped.
//!
//! - `parts/deno_core`: deno_core alone, no extension (as `isolate/deno_core_only` in `cold_start`,
//!   without running a script);
//! - `parts/extensions`: every extension of a function isolate, none of their scripts run;
//! - then, cumulatively, the scripts the dispatcher cannot do without: WebIDL with URL (which
//!   loads the console, `DOMException` and MessageChannel), then events, timers and `AbortSignal`,
//!   then text encoding and base64, then `Headers`, then `Request`, `Response` and their body;
//! - `parts/base`: the base snapshot as it is built (the above, the global scope and the
//!   warm-up).
//!
//! It prints each snapshot's size beside. The difference between two lines is what those scripts
//! cost; `extensions` against `deno_core` is what the extensions' ops and state cost.

use criterion::Criterion;
use criterion::criterion_group;
use criterion::criterion_main;
use deno_core::JsRuntime;
use deno_core::RuntimeOptions;
use deno_core::snapshot::CreateSnapshotOptions;

/// The cumulative steps: a name and the scripts it adds to the previous step.
const STEPS: &[(&str, &[&str])] = &[
    ("extensions", &[]),
    (
        "webidl_url_console",
        &[
            "ext:deno_webidl/00_webidl.js",
            "ext:deno_web/00_infra.js",
            "ext:deno_web/00_url.js",
            "ext:deno_web/01_dom_exception.js",
        ],
    ),
    (
        "events_timers_abort",
        &[
            "ext:deno_web/02_event.js",
            "ext:deno_web/02_timers.js",
            "ext:deno_web/03_abort_signal.js",
        ],
    ),
    (
        "encoding",
        &[
            "ext:deno_web/05_base64.js",
            "ext:deno_web/08_text_encoding.js",
        ],
    ),
    ("headers", &["ext:deno_fetch/20_headers.js"]),
    (
        "request_response",
        &[
            "ext:deno_fetch/22_body.js",
            "ext:deno_fetch/23_request.js",
            "ext:deno_fetch/23_response.js",
        ],
    ),
];

/// Every extension but the host's own, whose script builds the whole global scope.
fn extensions_without_global_scope() -> Vec<deno_core::Extension> {
    let mut extensions = functions_ext::extensions_for_snapshot();
    extensions.pop();
    extensions
}

/// A snapshot in which `scripts` were loaded.
fn snapshot_with(scripts: Vec<&'static str>) -> &'static [u8] {
    let load: String = scripts
        .iter()
        .map(|specifier| format!("Deno.core.loadExtScript({specifier:?});"))
        .collect();
    let output = deno_core::snapshot::create_snapshot(
        CreateSnapshotOptions {
            cargo_manifest_dir: env!("CARGO_MANIFEST_DIR"),
            startup_snapshot: None,
            skip_op_registration: false,
            extensions: extensions_without_global_scope(),
            extension_transpiler: None,
            with_runtime_cb: Some(Box::new(move |runtime| {
                runtime.execute_script("load.js", load.clone()).unwrap();
            })),
        },
        None,
    )
    .unwrap();
    Box::leak(output.output)
}

/// Benchmarks `parts/{name}`: creating a runtime with `options()` and dropping it.
fn bench_creation(c: &mut Criterion, name: &str, options: impl Fn() -> RuntimeOptions) {
    c.bench_function(&format!("parts/{name}"), |b| {
        b.iter(|| drop(JsRuntime::new(options())))
    });
}

fn parts(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = tokio.enter();
    // One idle isolate keeps V8's shared read-only heap alive, as in the engine.
    let _anchor = JsRuntime::new(RuntimeOptions {
        extensions: extensions_without_global_scope(),
        ..Default::default()
    });
    let deno_core_only: &'static [u8] =
        Box::leak(deno_core::JsRuntimeForSnapshot::new(Default::default()).snapshot());
    println!(
        "parts/deno_core: snapshot {} KiB",
        deno_core_only.len() / 1024
    );
    bench_creation(c, "deno_core", || RuntimeOptions {
        startup_snapshot: Some(deno_core_only),
        skip_op_registration: true,
        ..Default::default()
    });
    let mut scripts = Vec::new();
    for (name, added) in STEPS {
        scripts.extend_from_slice(added);
        let snapshot = snapshot_with(scripts.clone());
        println!("parts/{name}: snapshot {} KiB", snapshot.len() / 1024);
        bench_creation(c, name, || RuntimeOptions {
            startup_snapshot: Some(snapshot),
            skip_op_registration: true,
            extensions: extensions_without_global_scope(),
            ..Default::default()
        });
    }
    let base = deno_core::snapshot::create_snapshot(
        functions_ext::snapshot_options(env!("CARGO_MANIFEST_DIR"), None),
        None,
    )
    .unwrap();
    let base: &'static [u8] = Box::leak(base.output);
    println!("parts/base: snapshot {} KiB", base.len() / 1024);
    bench_creation(c, "base", || RuntimeOptions {
        startup_snapshot: Some(base),
        skip_op_registration: true,
        residual_lazy_js_sources: functions_snapshots::RESIDUAL_LAZY_JS,
        extensions: functions_ext::extensions(),
        ..Default::default()
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = parts
}
criterion_main!(benches);
