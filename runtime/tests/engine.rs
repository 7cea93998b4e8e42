//! The engine through its embedding API: shapes, isolation, errors, globals and console output.

use std::collections::BTreeMap;

use functions_runtime::Engine;
use functions_runtime::EngineConfig;
use functions_runtime::Function;
use functions_runtime::InvokeError;
use functions_runtime::Isolation;
use functions_runtime::LogLevel;
use functions_runtime::Module;
use functions_runtime::Request;
use functions_runtime::Settings;

mod common;
use common::engine;
use common::header;
use common::run;
use common::text;

#[tokio::test]
async fn plain_function_gets_the_json_body_and_returns_json() {
    let engine = engine();
    let f = Function::javascript(
        "hello",
        "export default async (event) => ({ message: `Hello, ${event.name}!` })",
    );
    let response = run(&engine, &f, Request::json(r#"{"name":"World"}"#)).await;
    assert_eq!(response.status, 200);
    assert_eq!(text(&response), r#"{"message":"Hello, World!"}"#);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
}

#[tokio::test]
async fn fetch_handler_sees_method_url_headers_and_body() {
    let engine = engine();
    let f = Function::javascript(
        "echo",
        r#"export default {
      async fetch(request, env, ctx) {
        const body = await request.text();
        const url = new URL(request.url);
        return new Response(`${request.method} ${url.pathname} ${url.searchParams.get("q")} ${request.headers.get("x-test")} ${body}`, {
          status: 201,
          headers: { "x-reply": "yes" },
        });
      }
    }"#,
    );
    let request = Request {
        method: "PUT".into(),
        url: "http://example.com/a/b?q=1".into(),
        headers: vec![("x-test".into(), "hdr".into())],
        body: b"payload".to_vec(),
        ..Request::default()
    };
    let response = run(&engine, &f, request).await;
    assert_eq!(response.status, 201);
    assert_eq!(text(&response), "PUT /a/b 1 hdr payload");
    assert_eq!(header(&response, "x-reply"), Some("yes"));
}

/// The dispatcher builds a handler's `Request` without the constructor's checks for common
/// methods, and hands a string body over as it is: what the handler sees and answers must not
/// change.
#[tokio::test]
async fn requests_and_responses_keep_web_semantics() {
    let engine = engine();
    let f = Function::javascript(
        "shape",
        r#"export default {
      async fetch(request) {
        request.headers.set("x-added", "1");
        const text = await request.text();
        const response = new Response(JSON.stringify({
          method: request.method, url: request.url, text, used: request.bodyUsed,
          added: request.headers.get("x-added"),
        }), { headers: [["set-cookie", "a=1"], ["x-many", "1"], ["set-cookie", "b=2"], ["x-many", "2"]] });
        return response;
      }
    }"#,
    );
    let cases = [
        (
            "POST",
            "http://example.com/a/../b/%7e?q=1 2",
            "body",
            r#"{"method":"POST","url":"http://example.com/b/%7e?q=1%202","text":"body","used":true,"added":"1"}"#,
        ),
        (
            "get",
            "http://example.com/",
            "",
            r#"{"method":"GET","url":"http://example.com/","text":"","used":false,"added":"1"}"#,
        ),
        (
            "patch",
            "http://example.com/x",
            "",
            r#"{"method":"patch","url":"http://example.com/x","text":"","used":false,"added":"1"}"#,
        ),
    ];
    for (method, url, body, expected) in cases {
        let request = Request {
            method: method.into(),
            url: url.into(),
            body: body.as_bytes().to_vec(),
            ..Request::default()
        };
        let response = run(&engine, &f, request).await;
        assert_eq!(text(&response), expected, "{method} {url}");
        let headers: Vec<_> = response
            .headers
            .iter()
            .filter(|(name, _)| name != "content-type")
            .map(|(name, value)| format!("{name}: {value}"))
            .collect();
        assert_eq!(
            headers,
            [
                "set-cookie: a=1",
                "x-many: 1",
                "set-cookie: b=2",
                "x-many: 2"
            ],
            "every header the function set, in its order"
        );
    }
}

#[tokio::test]
async fn every_invocation_gets_a_fresh_isolate_by_default() {
    let engine = engine();
    let source = "let count = 0; export default () => ({ count: ++count });";
    let f = Function::javascript("counter", source);
    for _ in 0..3 {
        let response = run(&engine, &f, Request::json("{}")).await;
        assert_eq!(text(&response), r#"{"count":1}"#);
    }
}

#[tokio::test]
async fn function_isolation_keeps_one_warm_isolate() {
    let engine = engine();
    let source = "let count = 0; export default () => ({ count: ++count });";
    let warm = |version| {
        Function::new(
            "warm",
            version,
            "index.js",
            BTreeMap::from([("index.js".to_owned(), Module::javascript(source))]),
            Settings {
                isolation: Isolation::Function,
                ..Settings::default()
            },
        )
    };
    let f = warm(1);
    let fresh = Function::javascript("fresh", source);
    for expected in 1..=4 {
        let response = run(&engine, &f, Request::json("{}")).await;
        assert_eq!(text(&response), format!(r#"{{"count":{expected}}}"#));
        // Fresh isolates created and dropped between warm invocations on the same worker.
        let response = run(&engine, &fresh, Request::json("{}")).await;
        assert_eq!(text(&response), r#"{"count":1}"#);
    }
    // A new version starts from a new isolate.
    let v2 = warm(2);
    assert_eq!(
        text(&run(&engine, &v2, Request::json("{}")).await),
        r#"{"count":1}"#
    );
}

#[tokio::test]
async fn top_level_await_and_promises() {
    let engine = engine();
    let f = Function::javascript(
        "tla",
        "const value = await new Promise((r) => setTimeout(() => r(41), 5));
     export default async () => { await null; return value + 1; }",
    );
    assert_eq!(text(&run(&engine, &f, Request::json("{}")).await), "42");
}

#[tokio::test]
async fn syntax_errors_have_line_and_column() {
    let engine = engine();
    let f = Function::javascript("broken", "export default () => {\n  return 1 +;\n};\n");
    let err = engine.check(&f).await.unwrap_err();
    assert!(err.message.contains("SyntaxError"), "{err:?}");
    assert_eq!(err.line, 2, "{err:?}");
    assert!(err.column > 0, "{err:?}");
    assert!(err.file.ends_with("broken/index.js"), "{err:?}");
    engine
        .check(&Function::javascript("ok", "export default () => 1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_throwing_function_reports_message_and_stack() {
    let engine = engine();
    let f = Function::javascript(
        "thrower",
        "function inner() { throw new Error('boom'); }\nexport default () => inner();",
    );
    let outcome = engine.invoke(&f, Request::json("{}")).await;
    match outcome.result {
        Err(InvokeError::Threw { message, stack }) => {
            assert!(message.contains("boom"), "{message}");
            assert!(stack.contains("inner"), "{stack}");
            assert!(stack.contains("thrower/index.js:1"), "{stack}");
        }
        other => panic!("expected a throw, got {other:?}"),
    }
}

#[tokio::test]
async fn console_lines_are_captured_with_levels() {
    let engine = engine();
    let f = Function::javascript(
        "logger",
        "export default () => { console.log('hello', { a: 1 }); console.warn('careful'); console.error(new Error('bad').message); return 1; }",
    );
    let outcome = engine.invoke(&f, Request::json("{}")).await;
    outcome.result.unwrap();
    let lines: Vec<_> = outcome
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (LogLevel::Info, "hello { a: 1 }"),
            (LogLevel::Warn, "careful"),
            (LogLevel::Error, "bad")
        ]
    );
}

#[tokio::test]
async fn web_globals_work() {
    let engine = engine();
    let f = Function::javascript(
        "globals",
        r#"export default async () => {
      const enc = new TextEncoder().encode("héllo");
      const dec = new TextDecoder().decode(enc);
      const url = new URL("https://a.example/p?x=1&y=2");
      url.searchParams.append("z", "3");
      const cloned = structuredClone({ d: new Date(0), m: new Map([[1, 2]]) });
      const uuid = crypto.randomUUID();
      const random = crypto.getRandomValues(new Uint8Array(8));
      const t0 = performance.now();
      let fired = 0;
      await new Promise((resolve) => {
        const id = setInterval(() => { if (++fired === 3) { clearInterval(id); resolve(); } }, 1);
      });
      const cancelled = await new Promise((resolve) => {
        const t = setTimeout(() => resolve("fired"), 1);
        clearTimeout(t);
        setTimeout(() => resolve("cleared"), 5);
      });
      const micro = await new Promise((resolve) => queueMicrotask(() => resolve("micro")));
      const h = new Headers({ "X-A": "1" });
      h.append("x-a", "2");
      const res = Response.json({ ok: true }, { status: 202 });
      const req = new Request("https://a.example/", { method: "POST", body: "hi" });
      return {
        bytes: enc.length, dec, href: url.href, date: cloned.d instanceof Date, map: cloned.m.get(1),
        uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(uuid),
        random: random.length, elapsed: performance.now() >= t0, fired, cancelled, micro,
        b64: btoa("hi"), unb64: atob("aGk="), header: h.get("x-a"),
        status: res.status, resType: res.headers.get("content-type"), reqBody: await req.text(),
      };
    }"#,
    );
    let response = run(&engine, &f, Request::json("{}")).await;
    let v: serde_json::Value = serde_json::from_str(text(&response)).unwrap();
    assert_eq!(v, serde_json::from_str::<serde_json::Value>(r#"{"bytes":6,"dec":"héllo","href":"https://a.example/p?x=1&y=2&z=3","date":true,"map":2,"uuid":true,"random":8,"elapsed":true,"fired":3,"cancelled":"cleared","micro":"micro","b64":"aGk=","unb64":"hi","header":"1, 2","status":202,"resType":"application/json","reqBody":"hi"}"#).unwrap());
}

#[tokio::test]
async fn isolates_without_the_snapshot_behave_the_same() {
    let engine = Engine::new(EngineConfig {
        workers: 1,
        use_snapshot: false,
        ..EngineConfig::default()
    });
    let f = Function::javascript(
        "hello",
        "export default (e) => ({ hi: e.name, url: typeof URL })",
    );
    let response = run(&engine, &f, Request::json(r#"{"name":"x"}"#)).await;
    assert_eq!(text(&response), r#"{"hi":"x","url":"function"}"#);
}

/// A function of several source files, compiled as a deploy compiles them.
fn compiled(name: &str, entry: &str, files: &[(&str, &str)]) -> Function {
    let files: BTreeMap<String, String> = files
        .iter()
        .map(|(path, text)| (path.to_string(), text.to_string()))
        .collect();
    let modules = functions_runtime::compile_files(name, entry, &files).unwrap();
    Function::new(name, 1, entry, modules, Settings::default())
}

#[tokio::test]
async fn typescript_modules_import_each_other_json_and_data_urls() {
    let engine = engine();
    let f = compiled(
        "ts",
        "main.ts",
        &[
            (
                "main.ts",
                "import { greet, type Greeting } from './lib/greet.ts';\n\
                 import config from './config.json' with { type: 'json' };\n\
                 import { twice } from 'data:text/javascript,export const twice = (n) => n * 2;';\n\
                 export default (event: { name: string }): Greeting & { n: number } =>\n\
                   ({ ...greet(event.name, config.punctuation), n: twice(21) });\n",
            ),
            (
                "lib/greet.ts",
                "export interface Greeting { message: string }\n\
                 export function greet(name: string, p: string): Greeting {\n\
                   return { message: `Hello, ${name}${p}` };\n}\n",
            ),
            ("config.json", r#"{ "punctuation": "!" }"#),
        ],
    );
    engine.check(&f).await.unwrap();
    let response = run(&engine, &f, Request::json(r#"{"name":"TS"}"#)).await;
    assert_eq!(text(&response), r#"{"message":"Hello, TS!","n":42}"#);
}

#[tokio::test]
async fn thrown_errors_point_at_the_typescript_source() {
    let engine = engine();
    let f = compiled(
        "mapped",
        "index.ts",
        &[(
            "index.ts",
            "type Event = { fail: boolean };\n\
             interface Unused { a: number; b: string }\n\
             export default (event: Event): string => {\n\
               if (event.fail) throw new Error('mapped boom');\n\
               return 'ok';\n\
             };\n",
        )],
    );
    let err = engine
        .invoke(&f, Request::json(r#"{"fail":true}"#))
        .await
        .result
        .unwrap_err();
    let InvokeError::Threw { message, stack } = err else {
        panic!("expected a throw, got {err:?}");
    };
    assert!(message.contains("mapped boom"), "{message}");
    assert!(stack.contains("file:///mapped/index.ts:4:"), "{stack}");
}

#[tokio::test]
async fn bad_imports_fail_the_check_naming_the_import_and_the_importer() {
    let engine = engine();
    for (import, expected) in [
        ("hono", "bare specifier"),
        ("./missing.ts", "missing.ts"),
        (
            "https://example.com/x.js",
            "https imports are not supported",
        ),
        ("./data.json", "import it with { type: \"json\" }"),
    ] {
        let f = compiled(
            "imports",
            "main.ts",
            &[
                (
                    "main.ts",
                    &format!("// first line\nimport x from '{import}';\nexport default () => x;\n"),
                ),
                ("data.json", "{}"),
            ],
        );
        let err = engine.check(&f).await.unwrap_err();
        assert!(err.message.contains(expected), "{import}: {err:?}");
        assert!(err.message.contains("main.ts"), "{import}: {err:?}");
        assert_eq!(err.file, "file:///imports/main.ts", "{import}: {err:?}");
        assert_eq!((err.line, err.column), (2, 15), "{import}: {err:?}");
    }
}

#[tokio::test]
async fn typescript_syntax_errors_are_compile_errors() {
    let files = BTreeMap::from([(
        "a.ts".to_owned(),
        "export default (x: number => x;\n".to_owned(),
    )]);
    let err = functions_runtime::compile_files("syntax", "a.ts", &files).unwrap_err();
    assert_eq!(
        (err.file.as_str(), err.line),
        ("file:///syntax/a.ts", 1),
        "{err:?}"
    );
    let missing_entry = functions_runtime::compile_files("syntax", "b.ts", &BTreeMap::new());
    assert!(missing_entry.unwrap_err().message.contains("'b.ts'"));
}

/// Every fresh isolate seeds its own random number generators: `Math.random` and
/// `crypto.getRandomValues` never repeat another isolate's sequence.
#[tokio::test]
async fn fresh_isolates_do_not_share_random_sequences() {
    let engine = engine();
    let f = Function::javascript(
        "random",
        "export default () => ({ math: [Math.random(), Math.random()], crypto: Array.from(crypto.getRandomValues(new Uint32Array(4))) })",
    );
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let response = run(&engine, &f, Request::json("{}")).await;
        assert!(
            seen.insert(text(&response).to_owned()),
            "an isolate repeated another's random values: {}",
            text(&response)
        );
    }
}

#[tokio::test]
async fn a_worker_that_panics_fails_its_invocation_and_is_replaced() {
    let engine = Engine::new(EngineConfig {
        workers: 1,
        panic_on_function: Some("crash".into()),
        ..EngineConfig::default()
    });
    let hello = Function::javascript("hello", "export default (e) => ({ hi: e.name })");
    let crash = Function::javascript("crash", "export default () => 1");
    // A sleeper on the same (only) worker, under way when the worker fails: it finishes.
    let sleeper = Function::javascript(
        "sleeper",
        "export default async () => { await new Promise((r) => setTimeout(r, 300)); return 'slept'; }",
    );
    let sleeping = engine.invoke(&sleeper, Request::json("{}"));
    let crashed = engine.invoke(&crash, Request::json("{}"));
    let (slept, crashed) = tokio::join!(sleeping, crashed);
    assert!(
        matches!(crashed.result, Err(InvokeError::WorkerFailed)),
        "{:?}",
        crashed.result.err()
    );
    let slept = slept.result.expect("the invocation under way finishes");
    assert_eq!(slept.body.bytes().await.unwrap(), br#""slept""#);
    // The replacement (the engine's only worker) serves the next invocations.
    for name in ["a", "b", "c"] {
        let response = run(
            &engine,
            &hello,
            Request::json(format!(r#"{{"name":"{name}"}}"#)),
        )
        .await;
        assert_eq!(text(&response), format!(r#"{{"hi":"{name}"}}"#));
    }
}
