//! Python functions end to end: deployed to the real server (over HTTP and with the CLI) and
//! called over HTTP, restored from their memory snapshots.
//!
//! Pyodide is downloaded once per build directory (never taken from a developer's cache) and
//! given to the servers as a local copy (`FUNCTIONS_HOST_PYODIDE`); the CLI test downloads it
//! itself, into a cache of its own.

use std::path::Path;

use serde_json::Value;
use serde_json::json;

use crate::harness::Server;
use crate::harness::pyodide;
use crate::harness::repository;

fn start(data: &Path) -> Server {
    Server::start_with(
        data,
        &[],
        &[("FUNCTIONS_HOST_PYODIDE", pyodide().to_str().unwrap())],
    )
}

/// Deploys a manifest of Python `files` (and more members); the reply.
fn deploy(server: &Server, name: &str, files: Value, more: Value) -> crate::harness::Reply {
    let mut manifest = json!({ "files": files });
    if let (Some(manifest), Some(more)) = (manifest.as_object_mut(), more.as_object()) {
        manifest.extend(more.clone());
    }
    server.put(
        &format!("/api/functions/{name}"),
        "application/json",
        manifest.to_string().as_bytes(),
    )
}

fn deployed(server: &Server, name: &str, files: Value, more: Value) {
    let reply = deploy(server, name, files, more);
    assert_eq!(reply.status, 201, "deploying {name}: {}", reply.text());
    assert_eq!(reply.json()["language"], "python");
}

const STDLIB: &str = r#"
import asyncio, collections, datetime, decimal, hashlib, json, re

async def handler(event):
    await asyncio.sleep(0.01)
    words = re.findall(r"\w+", event["text"])
    return {
        "counts": collections.Counter(words).most_common(1),
        "sum": str(decimal.Decimal("0.1") + decimal.Decimal("0.2")),
        "sha": hashlib.sha256(b"abc").hexdigest()[:8],
        "year": datetime.date(2024, 2, 29).isoformat(),
        "json": json.loads('{"a": [1]}'),
    }
"#;

#[test]
fn python_shapes_errors_logs_and_randomness_over_http() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path());

    // A named entry, picked as the module's only public function, deployed with the CLI:
    // the JSON object's members are its keyword arguments.
    let out = server.cli(&[
        "deploy",
        repository()
            .join("examples/python/hello.py")
            .to_str()
            .unwrap(),
    ]);
    assert!(out.contains("Deployed hello version 1 (python)"), "{out}");
    let reply = server.post("/fn/hello/", r#"{"name":"Ada"}"#);
    assert_eq!(
        (reply.status, reply.text()),
        (200, r#"{"message": "Hello, Ada!"}"#.to_owned())
    );
    assert_eq!(
        server.get("/fn/hello/").text(),
        r#"{"message": "Hello, World!"}"#
    );
    // Starting the interpreter writes nothing to the function's logs.
    let logs = server.get("/api/functions/hello/logs").json();
    let written: Vec<&Value> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|line| line["source"] == "function")
        .collect();
    assert!(written.is_empty(), "{written:?}");
    // A list is positional arguments; a named entry in a file with other functions.
    deployed(
        &server,
        "adder",
        json!({"main.py": "def helper():\n    pass\n\ndef add(a, b):\n    return a + b\n"}),
        json!({"entry": "main.py:add"}),
    );
    assert_eq!(server.post("/fn/adder/", "[2, 3]").text(), "5");
    assert_eq!(server.post("/fn/adder/", r#"{"a": 1, "b": 2}"#).text(), "3");

    // handler(event), async, importing the standard library.
    deployed(&server, "stdlib", json!({"main.py": STDLIB}), json!({}));
    let reply = server.post("/fn/stdlib/", r#"{"text":"a b a"}"#);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"counts": [["a", 2]], "sum": "0.3", "sha": "ba7816bf", "year": "2024-02-29",
               "json": {"a": [1]}})
    );

    // on_fetch(request, env) with JavaScript's Request and Response, env in os.environ too.
    let worker = "import os\nfrom js import Response, URL\n\n\
                  async def on_fetch(request, env):\n    \
                  path = URL.new(request.url).pathname\n    \
                  body = f\"{env.GREETING} {os.environ['GREETING']} {request.method} {path}\"\n    \
                  return Response.new(body, status=201)\n";
    deployed(
        &server,
        "worker",
        json!({"main.py": worker}),
        json!({"env": {"GREETING": "hi"}}),
    );
    let reply = server.get("/fn/worker/some/where");
    assert_eq!(
        (reply.status, reply.text()),
        (201, "hi hi GET /some/where".to_owned())
    );

    // on_fetch must return a Response: a str is a clear error.
    deployed(
        &server,
        "stringy",
        json!({"main.py": "def on_fetch(request, env):\n    return 'not a response'\n"}),
        json!({}),
    );
    let reply = server.get("/fn/stringy/");
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(
        reply.error_message().contains("must return a Response"),
        "{}",
        reply.text()
    );

    // An exception: a 500 whose traceback names the function's own file and line.
    let boom = "def divide(n):\n    return 1 / n\n\ndef handler(event):\n    print('dividing')\n    return divide(0)\n";
    deployed(&server, "boom", json!({"main.py": boom}), json!({}));
    let reply = server.post("/fn/boom/", "{}");
    assert_eq!(reply.status, 500, "{}", reply.text());
    let error = reply.json();
    let stack = error["error"]["stack"].as_str().unwrap_or_default();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ZeroDivisionError"),
        "{error}"
    );
    assert!(
        stack.contains("File \"/function/main.py\", line 2, in divide"),
        "{stack}"
    );
    assert!(!stack.contains("_functions_host"), "{stack}");
    // print() went to the function's logs.
    assert!(
        server
            .log_lines("boom")
            .iter()
            .any(|line| line == "dividing"),
        "{:?}",
        server.log_lines("boom")
    );

    // Every invocation restores the snapshot, then reseeds: no two see the same numbers.
    deployed(
        &server,
        "dice",
        json!({"main.py": "import os, random\n\ndef handler(event):\n    return [random.random(), os.urandom(8).hex()]\n"}),
        json!({}),
    );
    let rolls: Vec<String> = (0..3)
        .map(|_| server.post("/fn/dice/", "{}").text())
        .collect();
    assert_ne!(rolls[0], rolls[1]);
    assert_ne!(rolls[1], rolls[2]);
    assert_ne!(rolls[0], rolls[2]);
}

#[test]
fn a_python_loop_is_stopped_while_others_are_answered_and_snapshots_survive_restarts() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path());
    deployed(
        &server,
        "spin",
        json!({"main.py": "def handler(event):\n    while True:\n        pass\n"}),
        // Starting from the snapshot counts against the limit too (checked at deploy), and on a
        // loaded 2-core machine it has come near 300 ms.
        json!({"limits": {"cpu_ms": 1000}}),
    );
    deployed(
        &server,
        "hello",
        json!({"main.py": "def handler(event):\n    return 'hi ' + event['name']\n"}),
        json!({}),
    );
    let base = server.base.clone();
    let spinning = std::thread::spawn(move || {
        crate::harness::request(
            &base,
            "POST",
            "/fn/spin/",
            Some(("application/json", b"{}")),
        )
    });
    server.wait_for_busy_worker();
    let reply = server.post("/fn/hello/", r#"{"name":"meanwhile"}"#);
    assert_eq!(
        (reply.status, reply.text()),
        (200, "\"hi meanwhile\"".to_owned())
    );
    let spun = spinning.join().unwrap();
    assert_eq!(spun.status, 504, "{}", spun.text());
    // The worker lives on.
    assert_eq!(server.post("/fn/hello/", r#"{"name":"after"}"#).status, 200);
    // So does it after a function that takes all the memory it can.
    deployed(
        &server,
        "hog",
        json!({"main.py": "def handler(event):\n    blocks = []\n    while True:\n        blocks.append(bytearray(8 << 20))\n"}),
        json!({}),
    );
    let reply = server.post("/fn/hog/", "{}");
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "memory_limit");
    assert_eq!(server.post("/fn/hello/", r#"{"name":"still"}"#).status, 200);

    // An asynchronous call.
    let reply = server.post("/api/functions/hello/calls", r#"{"name":"later"}"#);
    assert_eq!(reply.status, 202, "{}", reply.text());
    let id = reply.json()["call_id"].as_str().unwrap().to_owned();
    let result = server.get(&format!("/api/calls/{id}?wait=60"));
    assert_eq!(
        (result.status, result.text()),
        (200, "\"hi later\"".to_owned())
    );

    // A pure-Python requirement (and its dependency), from requirements.txt beside the
    // module, deployed with the CLI: imported at the top, and lazily.
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("main.py"),
        "from dateutil import parser\n\ndef handler(event):\n    \
         from dateutil import relativedelta\n    import six\n    \
         when = parser.parse(event['when'])\n    \
         later = when + relativedelta.relativedelta(months=1)\n    \
         return [later.isoformat(), six.PY3]\n",
    )
    .unwrap();
    std::fs::write(
        project.path().join("requirements.txt"),
        "# dates\npython-dateutil==2.9.0.post0\n",
    )
    .unwrap();
    let out = server.cli(&[
        "deploy",
        project.path().join("main.py").to_str().unwrap(),
        "--name",
        "dates",
    ]);
    assert!(out.contains("Deployed dates version 1 (python)"), "{out}");
    let dates = || server.post("/fn/dates/", r#"{"when":"2024-01-31 10:00"}"#);
    let reply = dates();
    assert_eq!(
        (reply.status, reply.text()),
        (200, r#"["2024-02-29T10:00:00", true]"#.to_owned())
    );

    // The baseline and the functions' snapshots were made once; a restarted server restores
    // them as they were stored.
    let made = server.get("/healthz").json()["python"]["snapshots_made"].clone();
    assert_eq!(made, 5, "the baseline and four functions");
    let server = server.restart();
    assert_eq!(
        server.post("/fn/hello/", r#"{"name":"again"}"#).text(),
        "\"hi again\""
    );
    let reply = server.post("/fn/dates/", r#"{"when":"2024-01-31 10:00"}"#);
    assert_eq!(reply.text(), r#"["2024-02-29T10:00:00", true]"#);

    // A stored snapshot this host cannot restore (as after an upgrade of Pyodide or of the
    // host) is made again as the host starts, and stored: the next start restores it.
    let db = rusqlite::Connection::open(data.path().join("functions.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE runtime_code SET snapshot = x'00' WHERE name = 'hello'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    let server = server.restart();
    assert_eq!(server.get("/healthz").json()["python"]["snapshots_made"], 1);
    assert_eq!(
        server.post("/fn/hello/", r#"{"name":"remade"}"#).text(),
        "\"hi remade\""
    );
    let server = server.restart();
    assert_eq!(server.get("/healthz").json()["python"]["snapshots_made"], 0);
    assert_eq!(
        server.post("/fn/hello/", r#"{"name":"kept"}"#).text(),
        "\"hi kept\""
    );
    assert_eq!(server.get("/healthz").json()["python"]["snapshots_made"], 0);
    let info = server.get("/api/functions/hello").json();
    assert_eq!(info["files"], json!(["main.py"]));
    assert!(info["python"]["snapshot_bytes"].as_u64().unwrap() > 1_000_000);
}

#[test]
fn python_deploys_that_cannot_run_are_refused_with_the_reason() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path());
    // An error at import: a 400 naming the file and line, the traceback as its message.
    let reply = deploy(
        &server,
        "broken",
        json!({"main.py": "import util\n", "util.py": "x = 1\ny = undefined_name\n"}),
        json!({}),
    );
    assert_eq!(reply.status, 400, "{}", reply.text());
    let error = reply.json()["error"].clone();
    assert_eq!(
        (error["file"].clone(), error["line"].clone()),
        (json!("util.py"), json!(2))
    );
    assert!(
        error["message"].as_str().unwrap().contains("NameError"),
        "{error}"
    );
    // No entry to call.
    let reply = deploy(
        &server,
        "entryless",
        json!({"main.py": "def one():\n    pass\n\ndef two():\n    pass\n"}),
        json!({}),
    );
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply.error_message().contains("no entry"),
        "{}",
        reply.text()
    );
    // A named entry that is not there.
    let reply = deploy(
        &server,
        "missing",
        json!({"main.py": "def handler(event):\n    pass\n"}),
        json!({"entry": "main.py:nope"}),
    );
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.error_message().contains("'nope'"), "{}", reply.text());
    // A module that needs more memory than the function may use: refused at deploy, not at
    // every invocation.
    let reply = deploy(
        &server,
        "big",
        json!({"main.py": "DATA = bytearray(80 << 20)\n\ndef handler(event):\n    return len(DATA)\n"}),
        json!({"limits": {"memory_mb": 64}}),
    );
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.error_message().contains("memory"), "{}", reply.text());
    // A requirement with no pure-Python wheel is named.
    let reply = deploy(
        &server,
        "native",
        json!({"main.py": "import numpy\n\ndef handler(event):\n    pass\n"}),
        json!({"requirements": ["numpy"]}),
    );
    assert_eq!(reply.status, 400, "{}", reply.text());
    let message = reply.error_message();
    assert!(
        message.contains("numpy") && message.contains("pure-Python"),
        "{message}"
    );
    // Nothing of these was stored.
    assert_eq!(server.get("/api/functions").json()["functions"], json!([]));
}

#[test]
fn new_python_projects_run_locally_and_fetch_pyodide_themselves() {
    let work = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = crate::harness::command(crate::harness::BINARY)
        .current_dir(work.path())
        .args(["new", "greeter", "--lang", "python"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = crate::harness::command(crate::harness::BINARY)
        .current_dir(work.path())
        .args(["run", "greeter", r#"{"name":"New"}"#])
        .env("XDG_CACHE_HOME", cache.path())
        .env_remove("FUNCTIONS_HOST_PYODIDE")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), r#"{"message": "Hello, New!"}"#);
    assert!(stderr.contains("Downloading Pyodide"), "{stderr}");
    // Downloaded once: the next run uses the cached copy and baseline.
    let out = crate::harness::command(crate::harness::BINARY)
        .current_dir(work.path())
        .args(["run", "greeter"])
        .env("XDG_CACHE_HOME", cache.path())
        .env_remove("FUNCTIONS_HOST_PYODIDE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Downloading"));
}

#[test]
fn python_functions_call_and_are_called_through_bindings() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path());
    deployed(
        &server,
        "pymath",
        json!({ "main.py": r#"
def add(a, b):
    return a + b

def greet(name, punctuation="!"):
    return {"message": f"Hello, {name}{punctuation}"}

async def double(x):
    return x * 2

def fail():
    raise ValueError("bad value")

def handler(event):
    return event
"# }),
        json!({}),
    );
    let js = |name: &str, source: &str, bindings: Value| {
        let manifest = json!({ "files": { "index.js": source }, "bindings": bindings });
        let reply = server.put(
            &format!("/api/functions/{name}"),
            "application/json",
            manifest.to_string().as_bytes(),
        );
        assert_eq!(reply.status, 201, "deploying {name}: {}", reply.text());
    };
    js(
        "jscaller",
        r#"export default async (e, env) => {
          const caught = async (call) => { try { await call(); } catch (err) { return [err.name, err.message]; } };
          return {
            add: await env.PY.add(2, 3),
            keywords: await env.PY.greet({ name: "Ada" }),
            positional: await env.PY.greet("Bob", "?"),
            pipelined: await env.PY.greet({ name: "Cy" }).message,
            awaited: await env.PY.double(21),
            raised: await caught(() => env.PY.fail()),
            private: await caught(() => env.PY._secret()),
          };
        }"#,
        json!({ "PY": { "function": "pymath" } }),
    );
    let reply = server.post("/fn/jscaller", "{}");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let out = reply.json();
    assert_eq!(out["add"], 5);
    assert_eq!(out["keywords"], json!({ "message": "Hello, Ada!" }));
    assert_eq!(out["positional"], json!({ "message": "Hello, Bob?" }));
    assert_eq!(out["pipelined"], "Hello, Cy!");
    assert_eq!(out["awaited"], 42);
    assert_eq!(out["raised"], json!(["ValueError", "bad value"]));
    assert_eq!(out["private"][0], "TypeError");

    js(
        "jsmath",
        "export default { add(a, b) { return a + b; }, user(id) { return { id, name: `user${id}` }; } }",
        json!({}),
    );
    deployed(
        &server,
        "pycaller",
        json!({ "main.py": r#"
from js import Response

async def on_fetch(request, env):
    total = await env.MATH.add(1, 2)
    user = await env.MATH.user(3)
    return Response.new(f"{total} {user.name}")
"# }),
        json!({ "bindings": { "MATH": { "function": "jsmath" } } }),
    );
    let reply = server.get("/fn/pycaller/");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "3 user3");
}
