//! JavaScript functions past their limits: each is stopped with the right error while a
//! well-behaved function keeps answering on the other worker, and the worker that ran it serves
//! the next invocation normally.

mod common;

use std::time::Duration;
use std::time::Instant;

use common::engine;
use common::limited;
use common::run;
use common::text;
use functions_runtime::Engine;
use functions_runtime::Function;
use functions_runtime::InvokeError;
use functions_runtime::Isolation;
use functions_runtime::Limits;
use functions_runtime::Outcome;
use functions_runtime::Request;

fn hello() -> Function {
    Function::javascript("hello", "export default (e) => ({ hi: e.name })")
}

/// Runs `bad` while the hello function answers ten times on the other worker; returns
/// `bad`'s outcome and how long it took.
async fn alongside_hello(engine: &Engine, bad: &Function) -> (Outcome, Duration) {
    let started = Instant::now();
    let bad_run = async {
        let outcome = engine.invoke(bad, Request::json("{}")).await;
        (outcome, started.elapsed())
    };
    let good_runs = async {
        for _ in 0..10 {
            let response = run(engine, &hello(), Request::json(r#"{"name":"Ada"}"#)).await;
            assert_eq!(text(&response), r#"{"hi":"Ada"}"#);
        }
    };
    let (bad, ()) = tokio::join!(bad_run, good_runs);
    // Both workers serve normally afterwards.
    for _ in 0..4 {
        let response = run(engine, &hello(), Request::json(r#"{"name":"Bo"}"#)).await;
        assert_eq!(text(&response), r#"{"hi":"Bo"}"#);
    }
    bad
}

fn cpu(ms: u64) -> Limits {
    Limits {
        cpu_time: Duration::from_millis(ms),
        ..Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infinite_loop_is_stopped_at_its_cpu_time() {
    let engine = engine();
    for isolation in [Isolation::Invocation, Isolation::Function] {
        let spin = limited(
            "spin",
            "export default () => { for (;;) {} }",
            cpu(300),
            isolation,
        );
        let (outcome, took) = alongside_hello(&engine, &spin).await;
        assert!(
            matches!(outcome.result, Err(InvokeError::TimeLimit { limit }) if limit == Duration::from_millis(300)),
            "{:?}",
            outcome.result
        );
        // The limit plus a margin for isolate creation and a loaded 2-core machine.
        assert!(
            took < Duration::from_secs(3),
            "{isolation:?}: took {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn top_level_code_that_never_ends_is_stopped_too() {
    let engine = engine();
    let spin = limited(
        "spin-at-load",
        "for (;;) {}\nexport default () => 1",
        cpu(200),
        Isolation::Invocation,
    );
    let (outcome, _) = alongside_hello(&engine, &spin).await;
    assert!(
        matches!(outcome.result, Err(InvokeError::TimeLimit { .. })),
        "{:?}",
        outcome.result
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cpu_time_counts_from_the_handler_not_from_module_evaluation() {
    let engine = engine();
    // 150 ms of top-level work, then a 150 ms handler: each within its 250 ms budget.
    let source = "const busy = (ms) => { const end = Date.now() + ms; while (Date.now() < end) {} };\n\
                  busy(150);\n\
                  export default () => { busy(150); return 'done'; }";
    let function = limited("two-parts", source, cpu(250), Isolation::Invocation);
    let response = run(&engine, &function, Request::json("{}")).await;
    assert_eq!(text(&response), "\"done\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_counts_against_the_wall_clock_but_not_cpu_time() {
    let engine = engine();
    let nap = "export default async () => { await new Promise((r) => setTimeout(r, 400)); return 'awake'; }";
    let patient = limited("patient", nap, cpu(100), Isolation::Invocation);
    let response = run(&engine, &patient, Request::json("{}")).await;
    assert_eq!(text(&response), "\"awake\"");

    let hurried = limited(
        "hurried",
        nap,
        Limits {
            wall_clock: Duration::from_millis(150),
            ..Limits::default()
        },
        Isolation::Function,
    );
    let (outcome, took) = alongside_hello(&engine, &hurried).await;
    assert!(
        matches!(outcome.result, Err(InvokeError::TimeLimit { limit }) if limit == Duration::from_millis(150)),
        "{:?}",
        outcome.result
    );
    assert!(took < Duration::from_millis(400), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_bomb_is_stopped_at_its_memory_limit() {
    let engine = engine();
    let limits = Limits {
        memory_bytes: 64 * 1024 * 1024,
        ..Limits::default()
    };
    for (name, source) in [
        (
            "arrays",
            "export default () => { const keep = []; for (;;) keep.push(new Array(100000).fill(keep.length)); }",
        ),
        (
            "typed-arrays",
            "export default () => { const keep = []; for (;;) keep.push(new Uint8Array(8 * 1024 * 1024).fill(1)); }",
        ),
        (
            "one-huge-buffer",
            "export default () => new ArrayBuffer(256 * 1024 * 1024).byteLength",
        ),
        (
            "one-huge-array",
            "export default () => new Array(20_000_000).fill(1.5).length",
        ),
    ] {
        let bomb = limited(name, source, limits.clone(), Isolation::Invocation);
        let (outcome, _) = alongside_hello(&engine, &bomb).await;
        assert!(
            matches!(outcome.result, Err(InvokeError::MemoryLimit { limit }) if limit == 64 * 1024 * 1024),
            "{name}: {:?}",
            outcome.result
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_recursion_is_a_range_error_from_the_function() {
    let engine = engine();
    let deep = Function::javascript(
        "deep",
        "const down = (n) => down(n + 1) + 1;\nexport default () => down(0)",
    );
    let (outcome, _) = alongside_hello(&engine, &deep).await;
    match outcome.result {
        Err(InvokeError::Threw { message, stack }) => {
            assert!(
                message.contains("RangeError: Maximum call stack size exceeded"),
                "{message}"
            );
            assert!(stack.contains("index.js:1"), "{stack}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_strings_fail_cleanly() {
    let engine = engine();
    // Longer than V8 allows a string to be: the function's own RangeError.
    let too_long = Function::javascript(
        "too-long",
        "export default () => 'x'.repeat(2 ** 30).length",
    );
    let (outcome, _) = alongside_hello(&engine, &too_long).await;
    assert!(
        matches!(&outcome.result, Err(InvokeError::Threw { message, .. }) if message.contains("RangeError: Invalid string length")),
        "{:?}",
        outcome.result
    );
    // Longer than the heap holds: the memory limit.
    let too_big = limited(
        "too-big",
        "export default () => { let s = 'ab'; while (s.length < 2 ** 28) s = (s + s).split('').join(''); return s.length; }",
        Limits {
            memory_bytes: 64 * 1024 * 1024,
            ..Limits::default()
        },
        Isolation::Invocation,
    );
    let (outcome, _) = alongside_hello(&engine, &too_big).await;
    assert!(
        matches!(outcome.result, Err(InvokeError::MemoryLimit { .. })),
        "{:?}",
        outcome.result
    );
    // A response body over 5 MiB: an error, not a truncated body.
    let too_much = Function::javascript(
        "too-much",
        "export default { fetch: () => new Response('x'.repeat(6 * 1024 * 1024)) }",
    );
    let (outcome, _) = alongside_hello(&engine, &too_much).await;
    assert!(
        matches!(outcome.result, Err(InvokeError::OutputTooLarge { limit }) if limit == 5 * 1024 * 1024),
        "{:?}",
        outcome.result
    );
}

/// The CPU time this process has used (all its threads, Web Crypto's pool included).
fn process_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

const PBKDF2_KEY: &str = r#"const key = await crypto.subtle.importKey("raw", new Uint8Array(16), "PBKDF2", false, ["deriveBits"]);
const params = { name: "PBKDF2", hash: "SHA-512", salt: new Uint8Array(16), iterations: 100000 };"#;

#[tokio::test(flavor = "multi_thread")]
async fn web_crypto_work_on_other_threads_is_charged_to_the_cpu_time() {
    let engine = engine();
    // What one derivation costs here, measured by the function itself with room to spare.
    let one = limited(
        "one-derivation",
        &format!(
            "{PBKDF2_KEY}\nexport default async () => {{ const start = Date.now(); \
             await crypto.subtle.deriveBits(params, key, 512); return Date.now() - start; }}"
        ),
        cpu(10_000),
        Isolation::Invocation,
    );
    let response = run(&engine, &one, Request::json("{}")).await;
    let job = Duration::from_millis(text(&response).parse::<u64>().unwrap().max(1));

    // Two hundred at once: they run one at a time, each charged as it ends, until the budget is
    // spent; the rest never start.
    let many = limited(
        "many-derivations",
        &format!(
            "{PBKDF2_KEY}\nexport default async () => {{ \
               const jobs = []; \
               for (let i = 0; i < 200; i++) jobs.push(crypto.subtle.deriveBits(params, key, 512).then(() => console.log('derived'))); \
               await Promise.all(jobs); return 'all derived'; }}"
        ),
        cpu(100),
        Isolation::Invocation,
    );
    let before = process_cpu();
    let outcome = engine.invoke(&many, Request::json("{}")).await;
    let used = process_cpu() - before;
    assert!(
        matches!(outcome.result, Err(InvokeError::TimeLimit { limit }) if limit == Duration::from_millis(100)),
        "{:?}",
        outcome.result
    );
    let derived = outcome
        .logs
        .iter()
        .filter(|line| line.message == "derived")
        .count();
    // The bounds leave room for the other tests of this binary, running meanwhile.
    assert!(
        derived < 50,
        "{derived} derivations of {job:?} ran on a 100 ms budget"
    );
    assert!(
        used < job * 50,
        "the invocation used {used:?} of CPU time; all 200 derivations take about {:?}",
        job * 200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn web_crypto_parameters_that_no_budget_could_stop_are_refused() {
    let engine = engine();
    let source = format!(
        r#"{PBKDF2_KEY}
const bigRsa = {{ kty: "RSA", n: "_".repeat(1364) + "_w", e: "AQAB" }};
const outcome = async (work) => {{
  try {{ await work(); return "done"; }} catch (err) {{ return `${{err.name}}: ${{err.message}}`; }}
}};
export default async () => ({{
  iterations: await outcome(() => crypto.subtle.deriveBits({{ ...params, iterations: 20000000 }}, key, 512)),
  bits: await outcome(() => crypto.subtle.deriveBits(params, key, 1 << 20)),
  derivedKey: await outcome(() => crypto.subtle.deriveKey(params, key, {{ name: "HMAC", hash: "SHA-512", length: 1 << 20 }}, false, ["sign"])),
  // A getter that answers the check one thing and the operation another gets one read.
  changing: await outcome(() => {{ let reads = 0; return crypto.subtle.deriveBits({{ ...params, get iterations() {{ return reads++ ? 20000000 : 1000; }} }}, key, 512); }}),
  rsa: await outcome(() => crypto.subtle.generateKey({{ name: "RSA-PSS", modulusLength: 16384, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }}, false, ["sign"])),
  allowed: await outcome(() => crypto.subtle.deriveBits({{ ...params, iterations: 1000 }}, key, 512)),
  argon2Memory: await outcome(() => crypto.subtle.deriveBits({{ name: "Argon2id", memory: 4194304, passes: 1, parallelism: 1, nonce: new Uint8Array(16) }}, key, 256)),
  argon2Passes: await outcome(() => crypto.subtle.deriveBits({{ name: "Argon2id", memory: 8, passes: 1000000, parallelism: 1, nonce: new Uint8Array(16) }}, key, 256)),
  argon2Bits: await outcome(() => crypto.subtle.deriveBits({{ name: "Argon2id", memory: 8, passes: 1, parallelism: 1, nonce: new Uint8Array(16) }}, key, 2 ** 32 - 8)),
  digestOutput: await outcome(() => crypto.subtle.digest({{ name: "cSHAKE256", outputLength: 2 ** 32 - 8 }}, new Uint8Array(1))),
  digestAllowed: await outcome(() => crypto.subtle.digest({{ name: "cSHAKE256", outputLength: 256 }}, new Uint8Array(1))),
  // Negative numbers are read as Web Crypto reads them: modulo 2 ** 32.
  negativePasses: await outcome(() => crypto.subtle.deriveBits({{ name: "Argon2id", memory: 8, passes: -1, parallelism: 1, nonce: new Uint8Array(16) }}, key, 256)),
  negativeOutput: await outcome(() => crypto.subtle.digest({{ name: "cSHAKE256", outputLength: -8 }}, new Uint8Array(1))),
  negativeBits: await outcome(() => crypto.subtle.deriveBits(params, key, -8)),
  nodeBridges: [
    typeof CryptoKey.exportNodeMaterial, typeof CryptoKey.importSync, typeof CryptoKey.fromCloneData,
    Crypto.registerSymbols(Symbol(), Symbol()),
  ],
  // An imported key may be of any size: an 8,192-bit modulus, every bit set.
  importedRsa: await outcome(async () => {{
    const key = await crypto.subtle.importKey("jwk", bigRsa, {{ name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }}, false, ["verify"]);
    return crypto.subtle.verify("RSASSA-PKCS1-v1_5", key, new Uint8Array(1024), new Uint8Array(1));
  }}),
  unwrappedWithBigRsa: await outcome(async () => {{
    const key = await crypto.subtle.importKey("jwk", bigRsa, {{ name: "RSA-OAEP", hash: "SHA-256" }}, false, ["wrapKey"]);
    return crypto.subtle.unwrapKey("raw", new Uint8Array(1024), key, "RSA-OAEP", "AES-GCM", false, ["encrypt"]);
  }}),
}});"#
    );
    let function = limited("capped", &source, cpu(10_000), Isolation::Invocation);
    let response = run(&engine, &function, Request::json("{}")).await;
    let v: serde_json::Value = serde_json::from_str(text(&response)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "iterations": "NotSupportedError: PBKDF2 with more than 100000 iterations is not supported (iterations 20000000)",
            "bits": "NotSupportedError: PBKDF2 derives at most 2048 bits (length 1048576)",
            "derivedKey": "NotSupportedError: PBKDF2 derives at most 2048 bits (length 1048576)",
            "changing": "done",
            "rsa": "NotSupportedError: RSA keys of more than 4096 bits are not supported (modulusLength 16384)",
            "allowed": "done",
            "argon2Memory": "NotSupportedError: Argon2 with more than 65536 KiB of memory or 10 passes is not supported (memory 4194304, passes 1)",
            "argon2Passes": "NotSupportedError: Argon2 with more than 65536 KiB of memory or 10 passes is not supported (memory 8, passes 1000000)",
            "argon2Bits": "NotSupportedError: deriving more than 8388608 bits is not supported (length 4294967288)",
            "digestOutput": "NotSupportedError: an output of more than 8388608 bits is not supported (outputLength 4294967288)",
            "digestAllowed": "done",
            "negativePasses": "NotSupportedError: Argon2 with more than 65536 KiB of memory or 10 passes is not supported (memory 8, passes 4294967295)",
            "negativeOutput": "NotSupportedError: an output of more than 8388608 bits is not supported (outputLength 4294967288)",
            "negativeBits": "NotSupportedError: deriving more than 8388608 bits is not supported (length 4294967288)",
            "nodeBridges": ["undefined", "undefined", "undefined", false],
            "importedRsa": "NotSupportedError: RSA keys of more than 4096 bits are not supported (modulusLength 8192)",
            "unwrappedWithBigRsa": "NotSupportedError: RSA keys of more than 4096 bits are not supported (modulusLength 8192)",
        })
    );
}

/// Runs sleepers (each invocation connects to the test, then waits for an answer that never
/// comes) on an engine of four isolates; once the two that may run hold their isolates, runs
/// `hello`: it must answer although two isolates are still free for the others to take.
async fn answers_beside(sleepers: &[(&str, Option<&str>)]) {
    let engine = std::sync::Arc::new(Engine::new(functions_runtime::EngineConfig {
        workers: 2,
        max_isolates: 4,
        ..functions_runtime::EngineConfig::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let running: Vec<_> = sleepers
        .iter()
        .map(|(name, group)| {
            let (engine, sleeper) = (engine.clone(), sleeper(name, *group, address));
            tokio::spawn(async move { engine.invoke(&sleeper, Request::json("{}")).await })
        })
        .collect();
    // Half of the four isolates is as many as one function or group may hold.
    let mut held = Vec::new();
    while held.len() < 2 {
        let accepted = tokio::time::timeout(Duration::from_secs(60), listener.accept()).await;
        held.push(accepted.expect("the sleepers started").unwrap().0);
    }
    let answered = tokio::time::timeout(
        Duration::from_secs(20),
        run(&engine, &hello(), Request::json(r#"{"name":"Ada"}"#)),
    )
    .await
    .expect("another function waited for the sleepers");
    assert_eq!(text(&answered), r#"{"hi":"Ada"}"#);
    assert!(running.iter().all(|sleeper| !sleeper.is_finished()));
    for sleeper in running {
        sleeper.abort();
    }
}

/// A function that asks `address` and waits for its answer.
fn sleeper(name: &str, group: Option<&str>, address: std::net::SocketAddr) -> Function {
    Function::new(
        name,
        1,
        "index.js",
        std::collections::BTreeMap::from([(
            "index.js".to_owned(),
            functions_runtime::Module::javascript(format!(
                "export default async () => {{ await fetch('http://{address}/'); return 1; }}"
            )),
        )]),
        functions_runtime::Settings {
            limits: Limits {
                wall_clock: Duration::from_secs(120),
                ..Limits::default()
            },
            allow_net: vec![address.to_string()],
            share_group: group.map(Into::into),
            ..functions_runtime::Settings::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_whose_sleepers_fill_its_share_of_isolates_leaves_room_for_others() {
    answers_beside(&[("sleeper", None); 6]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn so_does_a_group_of_functions() {
    let key = Some("one-key");
    answers_beside(&[("a", key), ("b", key), ("c", key), ("d", key)]).await;
}

/// A WebAssembly module whose exported `grow()` grows its own memory a page at a time for ever,
/// writing to each new page (no JavaScript sees the growth), as a JavaScript array of its bytes.
fn growing_module() -> String {
    let bytes = wat::parse_str(
        r#"(module
          (memory 1)
          (func (export "grow")
            (local $page i32)
            (loop $more
              (local.set $page (memory.grow (i32.const 1)))
              (i32.store (i32.mul (local.get $page) (i32.const 65536)) (i32.const 1))
              (br $more))))"#,
    )
    .unwrap();
    format!("{bytes:?}")
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_outside_the_heap_counts_against_the_memory_limit() {
    let engine = engine();
    const LIMIT: u64 = 32 * 1024 * 1024;
    let limits = Limits {
        memory_bytes: LIMIT,
        ..Limits::default()
    };
    let grow = format!(
        "export default () => {{ const module = new WebAssembly.Module(new Uint8Array({})); \
         new WebAssembly.Instance(module).exports.grow(); }}",
        growing_module()
    );
    for (name, source) in [
        (
            "resizable-buffer",
            "export default () => { const b = new ArrayBuffer(1, { maxByteLength: 256 << 20 }); \
             b.resize(256 << 20); new Uint8Array(b).fill(1); return b.byteLength; }",
        ),
        (
            "growable-shared-buffer",
            "const SharedArrayBuffer = new WebAssembly.Memory({ initial: 0, maximum: 1, shared: true }).buffer.constructor; \
             export default () => { const b = new SharedArrayBuffer(1, { maxByteLength: 256 << 20 }); \
             b.grow(256 << 20); new Uint8Array(b).fill(1); return b.byteLength; }",
        ),
        (
            "shared-buffers-by-slicing",
            "export default () => { const b = new WebAssembly.Memory({ initial: 128, maximum: 128, shared: true }).buffer; \
             const keep = []; for (;;) keep.push(b.slice(0)); }",
        ),
        (
            "shared-buffers-sliced-without-a-constructor",
            "export default () => { const b = new WebAssembly.Memory({ initial: 128, maximum: 128, shared: true }).buffer; \
             Object.getPrototypeOf(b).constructor = undefined; \
             const keep = []; for (;;) keep.push(b.slice(0)); }",
        ),
        (
            "webassembly-memories",
            "export default () => { const keep = []; for (let i = 0; i < 3; i++) { \
             const memory = new WebAssembly.Memory({ initial: 4096 }); \
             new Uint8Array(memory.buffer).fill(1); keep.push(memory); } return keep.length; }",
        ),
        ("memory-grown-by-webassembly", grow.as_str()),
        (
            "blobs",
            "export default () => { const bytes = new Uint8Array(8 << 20); const keep = []; \
             for (let i = 0; i < 50; i++) keep.push(new Blob([bytes])); return keep.length; }",
        ),
        (
            "encoded-strings",
            "export default () => { const text = 'x'.repeat(4 << 20); const keep = []; \
             for (let i = 0; i < 100; i++) keep.push(new TextEncoder().encode(text)); return keep.length; }",
        ),
    ] {
        let hog = limited(name, source, limits.clone(), Isolation::Invocation);
        let (outcome, _) = alongside_hello(&engine, &hog).await;
        assert!(
            matches!(outcome.result, Err(InvokeError::MemoryLimit { limit }) if limit == LIMIT),
            "{name}: {:?}",
            outcome.result
        );
    }
    // Garbage is not counted: ten times the limit made and dropped, 4 MiB at a time.
    let churn = limited(
        "churn",
        "export default () => { const text = 'x'.repeat(4 << 20); let total = 0; \
         for (let i = 0; i < 80; i++) total += new TextEncoder().encode(text).length; return total; }",
        limits,
        Isolation::Invocation,
    );
    let response = run(&engine, &churn, Request::json("{}")).await;
    assert_eq!(text(&response), (80u64 << 22).to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn sliced_shared_buffers_hold_the_bytes_asked_for() {
    let engine = engine();
    let slicer = limited(
        "slicer",
        "export default () => { const b = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer; \
         new Uint8Array(b).set([1, 2, 3, 4, 5, 6]); \
         const views = [b.slice(1, 4), b.slice(-65534, -65532), b.slice(3), b.slice(5, 2), b.slice(NaN, Infinity)]; \
         let refused = ''; try { Object.getPrototypeOf(b).slice.call(new ArrayBuffer(4)); } catch (e) { refused = e.name; } \
         return { bytes: views.map((v) => [...new Uint8Array(v, 0, Math.min(v.byteLength, 3))]), \
           lengths: views.map((v) => v.byteLength), \
           shared: views.every((v) => Object.getPrototypeOf(v) === Object.getPrototypeOf(b)), refused }; }",
        Limits::default(),
        Isolation::Invocation,
    );
    let response = run(&engine, &slicer, Request::json("{}")).await;
    let answer: serde_json::Value = serde_json::from_str(text(&response)).unwrap();
    assert_eq!(
        answer,
        serde_json::json!({
            "bytes": [[2, 3, 4], [3, 4], [4, 5, 6], [], [1, 2, 3]],
            "lengths": [3, 2, 65533, 0, 65536],
            "shared": true,
            "refused": "TypeError",
        })
    );
}
