//! WebAssembly functions in the engine: the WASI command contract, limits, bad binaries, and
//! loading a stored artifact without compiling again. The guests are written in WAT here; the
//! end-to-end tests build real ones with each language's toolchain.

use std::time::Duration;
use std::time::Instant;

use functions_runtime::Engine;
use functions_runtime::Executor;
use functions_runtime::Function;
use functions_runtime::InvokeError;
use functions_runtime::Limits;
use functions_runtime::Request;
use functions_runtime::Settings;
use functions_runtime::WasmKind;

mod common;
use common::engine;
use common::header;
use common::text;

/// A WASI preview 1 command module: `$body` runs as `_start`, with helpers to write a string
/// (`$out fd ptr len`), read stdin (`$in`, to 1024) and sleep (`$sleep nanoseconds`), and the data
/// segments given.
fn wasi_module(body: &str, data: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          ;; iovec at 0, result count at 8; data from 16; input at 1024.
          (func $out (param $fd i32) (param $ptr i32) (param $len i32)
            (i32.store (i32.const 0) (local.get $ptr))
            (i32.store (i32.const 4) (local.get $len))
            (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
          (func $in (result i32)
            (i32.store (i32.const 0) (i32.const 1024))
            (i32.store (i32.const 4) (i32.const 4096))
            (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
            (i32.load (i32.const 8)))
          ;; One relative monotonic-clock subscription at 2048, its event at 2112.
          (func $sleep (param $ns i64)
            (i32.store8 (i32.const 2056) (i32.const 0))
            (i32.store (i32.const 2064) (i32.const 1))
            (i64.store (i32.const 2072) (local.get $ns))
            (i64.store (i32.const 2080) (i64.const 0))
            (i32.store16 (i32.const 2088) (i32.const 0))
            (drop (call $poll_oneoff (i32.const 2048) (i32.const 2112) (i32.const 1) (i32.const 2176))))
          {data}
          (func (export "_start") {body}))"#
    ))
    .unwrap()
}

/// Writes `Hello, ` and stdin (which it echoes) to stdout.
fn hello() -> Vec<u8> {
    wasi_module(
        "(local $n i32)
         (local.set $n (call $in))
         (call $out (i32.const 1) (i32.const 16) (i32.const 7))
         (call $out (i32.const 1) (i32.const 1024) (local.get $n))",
        r#"(data (i32.const 16) "Hello, ")"#,
    )
}

async fn wasm_function(engine: &Engine, binary: Vec<u8>, settings: Settings) -> Function {
    let module = engine.compile_wasm(binary).await.expect("compiles");
    Function::wasm("guest", 1, module, settings)
}

async fn invoke(engine: &Engine, function: &Function, body: &str) -> functions_runtime::Outcome {
    let mut request = Request::json(body.as_bytes().to_vec());
    request.url = "http://localhost/path?q=1".into();
    engine.invoke(function, request).await
}

#[tokio::test]
async fn stdin_is_the_request_body_and_stdout_the_response() {
    let engine = engine();
    let f = wasm_function(&engine, hello(), Settings::default()).await;
    assert_eq!(f.wasm_module().unwrap().kind(), WasmKind::Module);
    for name in ["World", "Ada"] {
        let outcome = invoke(&engine, &f, name).await;
        let response = outcome.result.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(text(&response), format!("Hello, {name}"));
        assert_eq!(
            header(&response, "content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
}

#[tokio::test]
async fn a_non_zero_exit_fails_with_the_end_of_stderr_and_stderr_is_logged() {
    let engine = engine();
    let guest = wasi_module(
        "(call $out (i32.const 2) (i32.const 16) (i32.const 21))
         (call $proc_exit (i32.const 3))",
        r#"(data (i32.const 16) "step 1\nit went wrong\n")"#,
    );
    let f = wasm_function(&engine, guest, Settings::default()).await;
    let outcome = invoke(&engine, &f, "").await;
    match outcome.result {
        Err(InvokeError::Exited { code, stderr }) => {
            assert_eq!(code, 3);
            assert_eq!(stderr, "step 1\nit went wrong");
        }
        other => panic!("expected an exit status, got {other:?}"),
    }
    let messages: Vec<&str> = outcome.logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages, ["step 1", "it went wrong"]);
}

#[tokio::test]
async fn wagi_output_sets_the_status_and_headers() {
    let engine = engine();
    let output = "Status: 404 Not Found\nContent-Type: text/html\n\n<p>gone</p>";
    let guest = wasi_module(
        &format!(
            "(call $out (i32.const 1) (i32.const 16) (i32.const {}))",
            output.len()
        ),
        &format!("(data (i32.const 16) {output:?})"),
    );
    let settings = Settings {
        executor: Executor::Wagi,
        ..Settings::default()
    };
    let f = wasm_function(&engine, guest, settings).await;
    let response = invoke(&engine, &f, "").await.result.unwrap();
    assert_eq!(response.status, 404);
    assert_eq!(header(&response, "content-type"), Some("text/html"));
    assert_eq!(text(&response), "<p>gone</p>");
}

#[tokio::test]
async fn a_guest_that_loops_forever_is_stopped_at_its_time_limit() {
    let engine = engine();
    let settings = Settings {
        limits: Limits {
            cpu_time: Duration::from_millis(200),
            ..Limits::default()
        },
        ..Settings::default()
    };
    let spin = wasm_function(&engine, wasi_module("(loop (br 0))", ""), settings).await;
    let hello = wasm_function(&engine, hello(), Settings::default()).await;
    let started = Instant::now();
    // Both on this test's one thread: the hello finishes while the loop is still running.
    let finished = std::cell::RefCell::new(Vec::new());
    let (looped, greeted) = tokio::join!(
        async {
            let outcome = invoke(&engine, &spin, "").await;
            finished.borrow_mut().push("loop");
            outcome
        },
        async {
            let outcome = invoke(&engine, &hello, "x").await;
            finished.borrow_mut().push("hello");
            outcome
        }
    );
    assert_eq!(*finished.borrow(), ["hello", "loop"]);
    assert!(
        matches!(looped.result, Err(InvokeError::TimeLimit { limit }) if limit == Duration::from_millis(200)),
        "{:?}",
        looped.result
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(text(&greeted.result.unwrap()), "Hello, x");
    // After the loop was stopped the engine serves the next invocation normally.
    assert_eq!(
        text(&invoke(&engine, &hello, "y").await.result.unwrap()),
        "Hello, y"
    );
}

#[tokio::test]
async fn more_guests_than_the_instance_pool_holds_wait_their_turn() {
    let engine = engine();
    let nap = wasi_module("(call $sleep (i64.const 50000000))", "");
    let nap = wasm_function(&engine, nap, Settings::default()).await;
    // 300 guests that each keep their instance while they sleep: more than the pool's 256 slots.
    let calls = (0..300).map(|_| invoke(&engine, &nap, ""));
    for outcome in deno_core::futures::future::join_all(calls).await {
        assert_eq!(outcome.result.map(|r| r.status).ok(), Some(200));
    }
}

#[tokio::test]
async fn waiting_is_not_cpu_time_but_counts_against_the_wall_clock() {
    let engine = engine();
    let limits = |cpu_ms, wall_ms| Settings {
        limits: Limits {
            cpu_time: Duration::from_millis(cpu_ms),
            wall_clock: Duration::from_millis(wall_ms),
            ..Limits::default()
        },
        ..Settings::default()
    };
    // Sleeps 300 ms, then says so.
    let nap = wasi_module(
        "(call $sleep (i64.const 300000000))
         (call $out (i32.const 1) (i32.const 16) (i32.const 5))",
        r#"(data (i32.const 16) "awake")"#,
    );
    let patient = wasm_function(&engine, nap.clone(), limits(100, 5_000)).await;
    assert_eq!(
        text(&invoke(&engine, &patient, "").await.result.unwrap()),
        "awake"
    );
    let hurried = wasm_function(&engine, nap, limits(100, 150)).await;
    let outcome = invoke(&engine, &hurried, "").await;
    assert!(
        matches!(outcome.result, Err(InvokeError::TimeLimit { limit }) if limit == Duration::from_millis(150)),
        "{:?}",
        outcome.result
    );
}

#[tokio::test]
async fn a_guest_that_grows_memory_without_bound_is_stopped_at_its_memory_limit() {
    let engine = engine();
    let settings = Settings {
        limits: Limits {
            memory_bytes: 16 * 1024 * 1024,
            ..Limits::default()
        },
        ..Settings::default()
    };
    // Grows a page at a time until refused, then aborts, as a guest's allocator does.
    let bomb = wasi_module(
        "(loop (br_if 0 (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
         unreachable",
        "",
    );
    let f = wasm_function(&engine, bomb, settings).await;
    let outcome = invoke(&engine, &f, "").await;
    assert!(
        matches!(outcome.result, Err(InvokeError::MemoryLimit { limit }) if limit == 16 * 1024 * 1024),
        "{:?}",
        outcome.result
    );
}

#[tokio::test]
async fn output_over_the_limit_is_an_error_not_a_truncated_body() {
    let engine = engine();
    // 100 writes of 60,000 bytes: 6 MB, over the 5 MiB limit.
    let guest = wasi_module(
        "(local $i i32)
         (loop
           (call $out (i32.const 1) (i32.const 2048) (i32.const 60000))
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if 0 (i32.lt_u (local.get $i) (i32.const 100))))",
        "",
    );
    let f = wasm_function(&engine, guest, Settings::default()).await;
    let outcome = invoke(&engine, &f, "").await;
    assert!(
        matches!(outcome.result, Err(InvokeError::OutputTooLarge { .. })),
        "{:?}",
        outcome.result
    );
}

#[tokio::test]
async fn binaries_that_are_not_wasi_commands_do_not_compile() {
    let engine = engine();
    let cases: [(Vec<u8>, &str); 4] = [
        (b"not wasm at all".to_vec(), "not a WebAssembly binary"),
        (b"\0asm\x01\0\0\0\x01\x02".to_vec(), "invalid WebAssembly"),
        (
            wat::parse_str(
                r#"(module (import "env" "host_thing" (func)) (func (export "_start")))"#,
            )
            .unwrap(),
            "not a WASI preview 1 command",
        ),
        (
            wat::parse_str(r#"(module (func (export "run")))"#).unwrap(),
            "exports no _start",
        ),
    ];
    for (binary, expected) in cases {
        let err = engine.compile_wasm(binary).await.unwrap_err();
        assert!(err.message.contains(expected), "{expected:?} in {err:?}");
    }
}

#[tokio::test]
async fn a_stored_artifact_loads_without_compiling() {
    let engine = engine();
    let compiled = engine.compile_wasm(hello()).await.unwrap();
    assert_eq!(engine.wasm_stats().compiled, 1);

    let other = functions_runtime::Engine::new(functions_runtime::EngineConfig {
        workers: 1,
        ..Default::default()
    });
    let loaded = other
        .load_wasm(compiled.wasm().clone(), compiled.artifact())
        .unwrap();
    assert_eq!(
        (other.wasm_stats().compiled, other.wasm_stats().loaded),
        (0, 1)
    );
    let f = Function::wasm("guest", 1, loaded, Settings::default());
    assert_eq!(
        text(&invoke(&other, &f, "again").await.result.unwrap()),
        "Hello, again"
    );

    // An artifact this engine cannot use is compiled again from the binary.
    let reloaded = other
        .load_wasm(compiled.wasm().clone(), b"garbage")
        .unwrap();
    assert_eq!(other.wasm_stats().compiled, 1);
    assert_eq!(reloaded.artifact().len(), compiled.artifact().len());
}

#[tokio::test]
async fn a_wasi_command_component_runs() {
    let engine = engine();
    // A component exporting wasi:cli/run that exits with `exit(err)` when $fail is 1.
    let component = |fail: u32| {
        wat::parse_str(format!(
            r#"(component
              (import "wasi:cli/exit@0.2.0" (instance $exit
                (export "exit" (func (param "status" (result))))))
              (core func $exit_lowered (canon lower (func $exit "exit")))
              (core module $m
                (import "host" "exit" (func $exit (param i32)))
                (func (export "run") (result i32)
                  (if (i32.const {fail}) (then (call $exit (i32.const 1))))
                  (i32.const 0)))
              (core instance $host (export "exit" (func $exit_lowered)))
              (core instance $i (instantiate $m (with "host" (instance $host))))
              (func $run (result (result)) (canon lift (core func $i "run")))
              (instance $inst (export "run" (func $run)))
              (export "wasi:cli/run@0.2.0" (instance $inst)))"#
        ))
        .unwrap()
    };
    let ok = wasm_function(&engine, component(0), Settings::default()).await;
    assert_eq!(ok.wasm_module().unwrap().kind(), WasmKind::Component);
    let response = invoke(&engine, &ok, "").await.result.unwrap();
    assert_eq!((response.status, text(&response)), (200, ""));
    let failing = wasm_function(&engine, component(1), Settings::default()).await;
    assert!(matches!(
        invoke(&engine, &failing, "").await.result,
        Err(InvokeError::Exited { code: 1, .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_sleeping_in_every_place_one_function_may_hold_leave_room_for_others() {
    let engine = std::sync::Arc::new(engine());
    let nap = wasi_module("(call $sleep (i64.const 60000000000))", "");
    let nap = engine.compile_wasm(nap).await.unwrap();
    let nap = Function::wasm("sleeper", 1, nap, Settings::default());
    let hello = wasm_function(&engine, hello(), Settings::default()).await;
    // As many sleepers as guests may run at once: half of them get places, the rest wait.
    let sleepers: Vec<_> = (0..64)
        .map(|_| {
            let (engine, nap) = (engine.clone(), nap.clone());
            tokio::spawn(async move { invoke(&engine, &nap, "").await })
        })
        .collect();
    // Once the half it may hold are running...
    let started = async {
        while engine.wasm_stats().running < 32 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), started)
        .await
        .expect("the sleepers started");
    // ...and well before any sleeper wakes (or its 30 s wall clock ends it), another function
    // runs.
    let answered = tokio::time::timeout(Duration::from_secs(20), invoke(&engine, &hello, "y"))
        .await
        .expect("another function waited for the sleepers");
    assert_eq!(text(&answered.result.unwrap()), "Hello, y");
    assert!(sleepers.iter().all(|sleeper| !sleeper.is_finished()));
    for sleeper in sleepers {
        sleeper.abort();
    }
}
