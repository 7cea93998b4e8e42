//! Python functions on Pyodide, in the engine: booted from scratch, from the baseline snapshot
//! and from their own.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;
use std::time::Instant;

use common::engine;
use common::text;
use functions_pyodide::File;
use functions_runtime::Engine;
use functions_runtime::Function;
use functions_runtime::InvokeError;
use functions_runtime::MemorySnapshot;
use functions_runtime::PyodideBuild;
use functions_runtime::PythonCode;
use functions_runtime::Request;
use functions_runtime::Settings;

/// Pyodide, downloaded (once per build directory, never from a developer's cache) and read.
fn build() -> Arc<PyodideBuild> {
    static BUILD: OnceLock<Arc<PyodideBuild>> = OnceLock::new();
    BUILD
        .get_or_init(|| {
            let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyodide");
            let registry =
                functions_pyodide::registry_from_env(functions_pyodide::DEFAULT_REGISTRY);
            let distribution =
                functions_pyodide::Distribution::cached(&cache, &registry, &mut |_| {})
                    .expect("Pyodide is downloaded");
            let read = |file| distribution.read(file).expect("a distribution file");
            Arc::new(
                PyodideBuild::new(
                    functions_pyodide::VERSION,
                    functions_pyodide::build_id(),
                    read(File::Wasm),
                    String::from_utf8(read(File::Glue)).unwrap(),
                    read(File::Stdlib),
                )
                .unwrap(),
            )
        })
        .clone()
}

fn code(files: &[(&str, &str)], snapshot: Option<Arc<MemorySnapshot>>) -> PythonCode {
    PythonCode {
        build: build(),
        files: files
            .iter()
            .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
            .collect(),
        packages: Arc::default(),
        module_file: Some("main.py".into()),
        entry: None,
        snapshot,
    }
}

/// The baseline snapshot, made once per test binary.
async fn baseline(engine: &Engine) -> Arc<MemorySnapshot> {
    static BASELINE: tokio::sync::OnceCell<Arc<MemorySnapshot>> =
        tokio::sync::OnceCell::const_new();
    BASELINE
        .get_or_init(|| async {
            let interpreter = PythonCode::interpreter(build());
            let function = Function::python("baseline", 1, interpreter, Settings::default());
            Arc::new(engine.snapshot_python(&function).await.expect("a baseline"))
        })
        .await
        .clone()
}

/// A function of `files` with its own snapshot, made from the baseline.
async fn deployed(engine: &Engine, name: &str, files: &[(&str, &str)]) -> Function {
    let base = baseline(engine).await;
    let first = Function::python(name, 1, code(files, Some(base)), Settings::default());
    let own = engine.snapshot_python(&first).await.expect("its snapshot");
    Function::python(
        name,
        1,
        code(files, Some(Arc::new(own))),
        Settings::default(),
    )
}

const HELLO: &str = "def handler(event):\n    return {\"message\": f\"Hello, {event['name']}!\"}\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_runs_from_scratch_and_from_snapshots() {
    let engine = engine();
    // Booting from scratch takes seconds of CPU.
    let mut settings = Settings::default();
    settings.limits.cpu_time = std::time::Duration::from_secs(60);
    let cold = Function::python("hello", 1, code(&[("main.py", HELLO)], None), settings);
    let response = common::run(&engine, &cold, Request::json(r#"{"name":"Ada"}"#)).await;
    assert_eq!(text(&response), r#"{"message": "Hello, Ada!"}"#);

    let warm = deployed(&engine, "hello", &[("main.py", HELLO)]).await;
    let response = common::run(&engine, &warm, Request::json(r#"{"name":"Bo"}"#)).await;
    assert_eq!(text(&response), r#"{"message": "Hello, Bo!"}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn exceptions_show_the_functions_own_traceback() {
    let engine = engine();
    let source = "def helper(n):\n    return 1 / n\n\ndef handler(event):\n    return helper(0)\n";
    let function = deployed(&engine, "boom", &[("main.py", source)]).await;
    let outcome = engine.invoke(&function, Request::json("{}")).await;
    match outcome.result {
        Err(InvokeError::Threw { message, stack }) => {
            assert!(message.contains("ZeroDivisionError"), "{message}");
            assert!(
                stack.contains("File \"/function/main.py\", line 2, in helper"),
                "{stack}"
            );
            assert!(stack.contains("return 1 / n"), "{stack}");
            assert!(!stack.contains("_functions_host"), "{stack}");
        }
        other => panic!("expected the exception, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restores_reseed_random() {
    let engine = engine();
    let source = "import random\n\ndef handler(event):\n    return random.random()\n";
    let function = deployed(&engine, "dice", &[("main.py", source)]).await;
    let mut seen = BTreeMap::new();
    for _ in 0..3 {
        let response = common::run(&engine, &function, Request::json("{}")).await;
        *seen.entry(text(&response).to_owned()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn once_a_python_function_ran_on_one_worker_every_worker_prepares_it() {
    let engine = engine();
    let function = deployed(&engine, "spread", &[("main.py", HELLO)]).await;
    engine.expect_python(&function);
    let request = || Request::json(r#"{"name":"Ada"}"#);
    common::run(&engine, &function, request()).await;
    // Preparing the next interpreter takes a worker's thread for a few hundred milliseconds:
    // the other worker prepares the function too, and the next invocations alternate.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !engine.prepared_isolates(&function).iter().all(|n| *n > 0) {
        assert!(
            Instant::now() < deadline,
            "prepared per worker: {:?}",
            engine.prepared_isolates(&function)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (first, second) = tokio::join!(
        engine.invoke(&function, request()),
        engine.invoke(&function, request())
    );
    for outcome in [first, second] {
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        assert!(outcome.timing.is_some_and(|timing| timing.ready));
    }
}
