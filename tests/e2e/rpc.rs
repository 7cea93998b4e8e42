//! Calls between functions through bindings, end to end: JavaScript RPC (methods, structured
//! clone, errors, pipelining, RpcTargets and callbacks, fetch), capabilities that cannot be
//! forged, delegation, cycles, the depth limit, deadlines, and the hop lines with their trace
//! in both functions' logs. (Python callers and callees: `python.rs`.)

use std::time::Duration;
use std::time::Instant;

use serde_json::Value;
use serde_json::json;

use crate::harness;
use crate::harness::Server;

/// Deploys JavaScript `source` as `name` with `bindings` ({NAME: target}) and `more` manifest
/// members; it must succeed.
fn deploy(server: &Server, name: &str, source: &str, bindings: &[(&str, &str)], more: Value) {
    let bindings: serde_json::Map<String, Value> = bindings
        .iter()
        .map(|(binding, target)| ((*binding).to_owned(), json!({ "function": target })))
        .collect();
    let mut manifest = json!({ "files": { "index.js": source }, "bindings": bindings });
    if let (Some(manifest), Some(more)) = (manifest.as_object_mut(), more.as_object()) {
        manifest.extend(more.clone());
    }
    let reply = server.put(
        &format!("/api/functions/{name}"),
        "application/json",
        manifest.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 201, "deploying {name}: {}", reply.text());
}

/// Invokes `name` with an empty JSON event: the JSON it answered, which must be a 200.
fn invoke(server: &Server, name: &str) -> Value {
    let reply = server.post(&format!("/fn/{name}"), "{}");
    assert_eq!(reply.status, 200, "invoking {name}: {}", reply.text());
    reply.json()
}

/// Waits until `name`'s logs hold `count` hop lines of `kind` (a callee's lines are stored when
/// its invocation ends, which may be after its caller has answered), then checks there are no
/// more.
fn wait_for_calls_into(server: &Server, name: &str, kind: &str, count: usize) {
    let started = Instant::now();
    while calls_into(server, name, kind) < count {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name}'s logs: {:?}",
            server.log_lines(name)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(calls_into(server, name, kind), count);
}

/// How many hop lines of `kind` ("call" or "fetch") into `name` its logs hold.
fn calls_into(server: &Server, name: &str, kind: &str) -> usize {
    let prefix = format!("RPC {kind} ← ");
    server
        .log_lines(name)
        .iter()
        .filter(|line| line.starts_with(&prefix))
        .count()
}

const MATH: &str = r#"
class NotFound extends Error {
  constructor(message) { super(message); this.name = "NotFound"; }
}
export default {
  add(a, b) { return a + b; },
  echo(value) { return value; },
  boom() { throw new RangeError("too big"); },
  missing(id) { throw new NotFound(`no user ${id}`); },
  counter(start) {
    let n = start;
    return new (class Counter extends RpcTarget {
      increment(by) { n += by; return n; }
      get value() { return n; }
    })();
  },
  async twice(f, x) { return await f(await f(x)); },
  async fetch(request) {
    return new Response(`math got ${request.method} ${new URL(request.url).pathname} ${await request.text()}`, {
      status: 201,
      headers: { "x-from": "math" },
    });
  },
};
"#;

const USERS: &str = r#"
export default class Users extends WorkerEntrypoint {
  secret = "instance state";
  getUser(id) { return { id, name: `user${id}`, profile: { city: "Paris" } }; }
  greeting() { return this.env.GREETING; }
}
"#;

const CALLER: &str = r#"
export default async (event, env) => {
  const out = {};
  out.sum = await env.MATH.add(1, 2);
  const sent = {
    bytes: new Uint8Array([1, 2, 255]), map: new Map([["k", 1]]), set: new Set([3]),
    date: new Date(86400000), big: 12345678901234567890n, nested: { deep: [1, { x: "y" }] },
    nothing: undefined,
  };
  const got = await env.MATH.echo(sent);
  out.clone = [
    got.bytes instanceof Uint8Array && [...got.bytes].join(","), got.map instanceof Map && got.map.get("k"),
    got.set instanceof Set && got.set.has(3), got.date instanceof Date && got.date.getTime(),
    typeof got.big === "bigint" && got.big.toString(), got.nested.deep[1].x,
    "nothing" in got && got.nothing === undefined,
  ];
  const caught = async (call) => { try { await call(); return null; } catch (e) { return [e.name, e.message, e instanceof Error]; } };
  out.range = await caught(() => env.MATH.boom());
  out.rangeClass = await env.MATH.boom().catch((e) => e instanceof RangeError);
  out.custom = await caught(() => env.MATH.missing(7));
  out.name = await env.USERS.getUser(7).name;
  out.city = await env.USERS.getUser(8).profile.city;
  out.greeting = await env.USERS.greeting();
  out.instance = await caught(() => env.USERS.secret);
  out.inherited = await caught(() => env.MATH.hasOwnProperty("add"));
  out.handler = await caught(() => env.USERS.scheduled());
  out.plain = await caught(() => env.PLAIN.anything());
  // Serializing or printing a stub calls nothing.
  out.printed = [JSON.stringify({ m: env.MATH }), `${env.MATH}`];
  // A result that is here already goes as its value.
  const three = env.MATH.add(1, 2);
  await three;
  out.settledArg = await env.MATH.add(three, 10);
  out.ctor = await caught(() => env.MATH.constructor());
  const counter = await env.MATH.counter(10);
  await counter.increment(5);
  out.count = [await counter.increment(1), await counter.value];
  out.callback = await env.MATH.twice((x) => x * 3, 2);
  const response = await env.MATH.fetch("http://math.internal/hello", { method: "PUT", body: "hi" });
  out.fetch = [response.status, response.headers.get("x-from"), await response.text()];
  out.unsendable = await caught(() => env.MATH.echo(new WeakMap()));
  out.promiseArg = await caught(() => env.MATH.echo(Promise.resolve(1)));
  return out;
};
"#;

#[test]
fn functions_call_each_other_through_bindings() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    deploy(&server, "math", MATH, &[], json!({}));
    deploy(
        &server,
        "users",
        USERS,
        &[],
        json!({ "env": { "GREETING": "bonjour" } }),
    );
    deploy(
        &server,
        "plain",
        "export default (event) => event",
        &[],
        json!({}),
    );
    deploy(
        &server,
        "caller",
        CALLER,
        &[("MATH", "math"), ("USERS", "users"), ("PLAIN", "plain")],
        json!({}),
    );
    let out = invoke(&server, "caller");
    assert_eq!(out["sum"], 3);
    assert_eq!(
        out["clone"],
        json!([
            "1,2,255",
            1,
            true,
            86400000,
            "12345678901234567890",
            "y",
            true
        ])
    );
    assert_eq!(out["range"], json!(["RangeError", "too big", true]));
    assert_eq!(out["rangeClass"], true);
    assert_eq!(out["custom"], json!(["NotFound", "no user 7", true]));
    assert_eq!(out["name"], "user7");
    assert_eq!(out["city"], "Paris");
    assert_eq!(out["greeting"], "bonjour");
    let refused = |key: &str, needle: &str| {
        let message = out[key][1].as_str().unwrap_or_default();
        assert_eq!(out[key][0], "TypeError", "{key}: {}", out[key]);
        assert!(message.contains(needle), "{key}: {message}");
    };
    refused("instance", "instance property");
    refused("inherited", "not a method");
    refused("handler", "is the function's handler, not a method");
    refused("plain", "it has no methods to call");
    assert_eq!(out["printed"], json!(["{}", "[object RpcStub]"]));
    assert_eq!(out["settledArg"], 13);
    refused("ctor", "cannot be reached");
    refused("unsendable", "cannot be sent over RPC");
    refused("promiseArg", "Promise cannot be sent");
    assert_eq!(out["count"], json!([16, 16]));
    assert_eq!(out["callback"], 18);
    assert_eq!(out["fetch"], json!([201, "math", "math got PUT /hello hi"]));

    // A pipelined call is one call: `getUser(2).name` reaches users once.
    let before = calls_into(&server, "users", "call");
    deploy(
        &server,
        "pipeline",
        "export default async (e, env) => ({ name: await env.USERS.getUser(2).name })",
        &[("USERS", "users")],
        json!({}),
    );
    assert_eq!(invoke(&server, "pipeline")["name"], "user2");
    wait_for_calls_into(&server, "users", "call", before + 1);

    // Each hop is in both functions' logs, in the trace of the request's traceparent.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let reply = harness::request_with_headers(
        &server.base,
        "POST",
        "/fn/pipeline",
        &[("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    wait_for_calls_into(&server, "users", "call", before + 2);
    let traced = |name: &str, arrow: &str| {
        server
            .log_lines(name)
            .into_iter()
            .filter(|line| line.contains(trace))
            .inspect(|line| assert!(line.contains(arrow), "{line}"))
            .count()
    };
    assert_eq!(traced("pipeline", "RPC call → users through env.USERS"), 1);
    assert_eq!(
        traced("users", "RPC call ← pipeline through its env.USERS"),
        1
    );
}

/// Looks for the host's internals from a function with no bindings, every way it can.
const PROBER: &str = r#"
export default async (event, env) => {
  const found = [];
  const seen = new Set();
  // (Blob and File carry deno's structured-clone brand, `Symbol(Deno.core.hostObject)`: what
  // it leads to is their own serializer, tried by FORGER below.)
  const suspicious = /^op_|^ops$|^core$|^Deno$|__bootstrap|__functionsHost|internals/i;
  const walk = (object, path, depth) => {
    if (object === null || (typeof object !== "object" && typeof object !== "function")) return;
    if (seen.has(object) || depth > 3) return;
    seen.add(object);
    for (const key of Reflect.ownKeys(object)) {
      const name = String(key);
      if (suspicious.test(name)) found.push(`${path}.${name}`);
      let value;
      try { value = object[key]; } catch { continue; }
      walk(value, `${path}.${name}`, depth + 1);
    }
  };
  walk(globalThis, "globalThis", 0);
  const imports = [];
  for (const specifier of ["ext:core/ops", "ext:core/mod.js", "ext:rpc/rpc.js", "ext:host/bootstrap.js"]) {
    try { await import(specifier); imports.push(`${specifier} loaded`); } catch (e) { imports.push(e.constructor.name); }
  }
  let denied;
  try { await fetch(event.secret); denied = "fetched"; } catch (e) { denied = e.message; }
  return { found, imports, env: Object.keys(env), denied };
};
"#;

/// Holds a binding to `secret` and tries to turn objects of its own into capabilities.
const FORGER: &str = r#"
let kept = null;
export default {
  async fetch(request, env) {
    const out = {};
    const attempt = async (value) => {
      try { return `sent: ${JSON.stringify(await env.ECHO.echo(value))}`; } catch (e) { return `${e.name}: ${e.message}`; }
    };
    const brand = Symbol.for("Deno.core.hostObject");
    out.brandFunction = await attempt({ [brand]: () => ({ type: "cap", id: 1 }) });
    out.brandValue = await attempt({ [brand]: 1 });
    out.proxy = await attempt(new Proxy({}, {}));
    out.blob = await attempt(new Blob(["x"]));
    out.legit = await env.SECRET.reveal();
    // A stub kept from an earlier invocation of this warm isolate names nothing now.
    if (kept === null) {
      kept = env.SECRET;
      out.kept = "kept";
    } else {
      try { out.kept = await kept.reveal(); } catch (e) { out.kept = e.message; }
    }
    return Response.json(out);
  },
};
"#;

#[test]
fn capabilities_are_granted_never_forged() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    deploy(
        &server,
        "secret",
        "export default { reveal() { return 'top secret'; } }",
        &[],
        json!({}),
    );
    deploy(
        &server,
        "echo",
        "export default { echo(v) { return v; } }",
        &[],
        json!({}),
    );
    deploy(&server, "prober", PROBER, &[], json!({}));
    let secret_url = format!("{}/fn/secret/", server.base);
    let reply = server.post("/fn/prober", &json!({ "secret": secret_url }).to_string());
    assert_eq!(reply.status, 200, "{}", reply.text());
    let probe = reply.json();
    assert_eq!(probe["found"], json!([]), "internals reachable: {probe}");
    assert_eq!(
        probe["imports"],
        json!(["TypeError", "TypeError", "TypeError", "TypeError"])
    );
    assert_eq!(probe["env"], json!([]));
    assert!(
        probe["denied"]
            .as_str()
            .unwrap()
            .contains("is not allowed: this function may not reach any host"),
        "{probe}"
    );

    deploy(
        &server,
        "forger",
        FORGER,
        &[("SECRET", "secret"), ("ECHO", "echo")],
        json!({ "isolation": "function" }),
    );
    // Each warm isolate keeps a stub in its first invocation and tries it in the next.
    let runs: Vec<Value> = (0..6).map(|_| server.get("/fn/forger/").json()).collect();
    for out in &runs {
        for key in ["brandFunction", "brandValue", "proxy", "blob"] {
            let result = out[key].as_str().unwrap();
            assert!(
                !result.starts_with("sent") && result.contains("Error"),
                "{key}: {result}"
            );
        }
        assert_eq!(out["legit"], "top secret");
    }
    let stale = "RPC stub is no longer valid: the invocation that received it has ended";
    assert_eq!(runs[0]["kept"], "kept");
    for out in &runs {
        assert!(out["kept"] == "kept" || out["kept"] == stale, "{out}");
    }
    assert!(runs.iter().any(|out| out["kept"] == stale), "{runs:?}");
}

/// A WorkerEntrypoint that passes what it is given on, or calls on through `NEXT`.
const HOP: &str = r#"
export default class extends WorkerEntrypoint {
  async hops() { return this.env.NEXT === undefined ? 0 : 1 + await this.env.NEXT.hops(); }
  async use(math) { return await math.add(2, 3); }
  async bump(counter) { return await counter.increment(10); }
  async fetch() {
    try { return Response.json({ hops: await this.hops() }); } catch (e) { return Response.json({ error: `${e.name}: ${e.message}` }); }
  }
}
"#;

#[test]
fn delegation_cycles_depth_and_deadlines() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    deploy(&server, "math", MATH, &[], json!({}));

    // Delegation: `a` passes its binding to `math`, and a counter it got from `math`, to `b`,
    // which has no binding of its own: b uses both.
    deploy(&server, "b", HOP, &[], json!({}));
    deploy(
        &server,
        "a",
        r#"export default async (e, env) => {
          const counter = await env.MATH.counter(1);
          return { sum: await env.B.use(env.MATH), bumped: await env.B.bump(counter), after: await counter.value };
        }"#,
        &[("MATH", "math"), ("B", "b")],
        json!({}),
    );
    assert_eq!(
        invoke(&server, "a"),
        json!({ "sum": 5, "bumped": 11, "after": 11 })
    );

    // A cycle ends with a clear error.
    deploy(&server, "x", HOP, &[], json!({}));
    deploy(&server, "y", HOP, &[("NEXT", "x")], json!({}));
    deploy(&server, "x", HOP, &[("NEXT", "y")], json!({}));
    assert_eq!(
        server.get("/fn/x/").json()["error"],
        "Error: RPC cycle: x → y → x"
    );

    // 16 calls deep is allowed; the 17th is refused.
    deploy(&server, "d17", HOP, &[], json!({}));
    for i in (0..17).rev() {
        let next = format!("d{}", i + 1);
        deploy(
            &server,
            &format!("d{i}"),
            HOP,
            &[("NEXT", &next)],
            json!({}),
        );
    }
    assert_eq!(server.get("/fn/d1/").json(), json!({ "hops": 16 }));
    let error = server.get("/fn/d0/").json()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.starts_with(
            "RangeError: RPC call depth limit (16) exceeded: d0 → d1 → d2 → d3 → d4 → d5"
        ) && error.ends_with("d16 → d17"),
        "{error}"
    );

    // A callee runs within its caller's deadline: when the caller's wall clock ends, so does
    // the callee (whose own limit is 30 s).
    deploy(
        &server,
        "sleeper",
        "export default { nap() { return new Promise((r) => setTimeout(r, 20_000)); } }",
        &[],
        json!({}),
    );
    deploy(
        &server,
        "hurried",
        "export default async (e, env) => { await env.SLEEPER.nap(); return 'woke'; }",
        &[("SLEEPER", "sleeper")],
        json!({ "limits": { "wall_clock_ms": 1000 } }),
    );
    let started = Instant::now();
    let reply = server.post("/fn/hurried", "{}");
    assert_eq!(reply.status, 504, "{}", reply.text());
    let stopped = |server: &Server| {
        server
            .log_lines("sleeper")
            .iter()
            .any(|line| line.contains("time limit"))
    };
    while !stopped(&server) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the callee was not stopped at its caller's deadline: {:?}",
            server.log_lines("sleeper")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_webassembly_function_is_reached_with_fetch() {
    let data = tempfile::tempdir().unwrap();
    let build = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let wasm = harness::build_c(
        &harness::repository().join("examples/c/hello.c"),
        build.path(),
    );
    let reply = server.put(
        "/api/functions/hello",
        "application/wasm",
        &std::fs::read(wasm).unwrap(),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    deploy(
        &server,
        "front",
        r#"export default async (e, env) => {
          const response = await env.HELLO.fetch("http://hello.internal/", { method: "POST", body: "Ada" });
          let method;
          try { await env.HELLO.greet("Ada"); } catch (err) { method = err.message; }
          return { status: response.status, text: await response.text(), method };
        }"#,
        &[("HELLO", "hello")],
        json!({}),
    );
    let out = invoke(&server, "front");
    assert_eq!(out["status"], 200);
    assert_eq!(out["text"], "Hello, Ada!\n");
    assert_eq!(
        out["method"],
        "hello is a WebAssembly function: it has no methods to call; send it a request with fetch()"
    );
    wait_for_calls_into(&server, "hello", "fetch", 1);
}

#[test]
fn a_warm_callee_gets_its_limits_for_each_call() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    // Each call spins 30 ms of its 100 ms CPU time; twelve calls in one caller invocation
    // (one session: the callee is warm) take 360 ms, and pauses put them past its 500 ms wall
    // clock: each call has its limits afresh. One call spinning past them is stopped.
    deploy(
        &server,
        "spinner",
        "export default { spin(ms) { const end = Date.now() + ms; while (Date.now() < end) {} return ms; } }",
        &[],
        json!({ "isolation": "function", "limits": { "cpu_ms": 100, "wall_clock_ms": 500 } }),
    );
    deploy(
        &server,
        "patient",
        r#"export default async (e, env) => {
          let total = 0;
          for (let i = 0; i < 12; i++) {
            total += await env.SPIN.spin(30);
            await new Promise((r) => setTimeout(r, 20));
          }
          let stopped;
          try { await env.SPIN.spin(400); } catch (err) { stopped = err.message; }
          return { total, stopped, after: await env.SPIN.spin(1) };
        }"#,
        &[("SPIN", "spinner")],
        json!({ "limits": { "cpu_ms": 1000 } }),
    );
    let out = invoke(&server, "patient");
    assert_eq!(out["total"], 360);
    let stopped = out["stopped"].as_str().unwrap_or_default();
    assert!(stopped.contains("time limit"), "{out}");
    // A new session serves the calls after a stopped one.
    assert_eq!(out["after"], 1);
}

#[test]
fn a_call_waiting_for_a_place_is_dropped_when_its_caller_ends() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    // slow's one place is held for 1.5 s after it answers a request (ctx.waitUntil).
    deploy(
        &server,
        "slow",
        r#"const sleep = (ms) => new Promise((r) => setTimeout(() => r(ms), ms));
        export default {
          fetch(request, env, ctx) { ctx.waitUntil(sleep(1500)); return new Response("held"); },
          wait(ms) { return sleep(ms); },
        }"#,
        &[],
        json!({ "limits": { "concurrency": 1 } }),
    );
    let caller = |name: &str, wall_ms: u64| {
        deploy(
            &server,
            name,
            "export default async (e, env) => env.SLOW.wait(1)",
            &[("SLOW", "slow")],
            json!({ "limits": { "wall_clock_ms": wall_ms } }),
        );
    };
    caller("impatient", 300);
    caller("probe", 30_000);
    assert_eq!(server.get("/fn/slow/").text(), "held");
    // impatient waits for slow's place and runs out of time first.
    assert_eq!(server.post("/fn/impatient", "{}").status, 504);
    // A call queued after impatient's, in the same FIFO lane: impatient's was given up.
    assert_eq!(invoke(&server, "probe"), json!(1));
    wait_for_calls_into(&server, "slow", "call", 1);
    let arrivals: Vec<String> = server
        .log_lines("slow")
        .into_iter()
        .filter(|line| line.starts_with("RPC call ← "))
        .collect();
    assert!(arrivals[0].starts_with("RPC call ← probe "), "{arrivals:?}");
}
