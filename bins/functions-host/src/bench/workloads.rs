//! The workloads a bench runs: the function each engine serves and how it is loaded.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;

use super::Which;
use super::engines::Function;
use super::engines::Kind;
use super::load;
use super::load::Target;
use super::report::Rounds;

/// Process starts per round, for engines whose cold start is a process's.
pub const PROCESS_STARTS_PER_ROUND: usize = 10;

/// How a workload loads a running engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Requests one after another on one connection, `pause` apart.
    Sequential { count: usize, pause: Duration },
    /// `connections` connections back to back for `duration` (after a second of warm-up).
    ClosedLoop {
        connections: usize,
        duration: Duration,
    },
    /// `count` requests at once.
    Burst { count: usize },
}

impl Measure {
    /// One round against `target`, added to `rounds`.
    pub async fn run(&self, target: &Target, rounds: &mut Rounds) -> anyhow::Result<()> {
        match *self {
            Measure::Sequential { count, pause } => {
                rounds
                    .latencies
                    .extend(load::sequential(target, count, pause).await?);
            }
            Measure::ClosedLoop {
                connections,
                duration,
            } => {
                load::closed_loop(target, connections, Duration::from_secs(1)).await?;
                let (latencies, took) = load::closed_loop(target, connections, duration).await?;
                rounds
                    .rates
                    .push(latencies.len() as f64 / took.as_secs_f64());
                rounds.latencies.extend(latencies);
            }
            Measure::Burst { count } => {
                let (latencies, took) = load::burst(target, count).await?;
                rounds.walls.push(took.as_secs_f64());
                rounds.latencies.extend(latencies);
            }
        }
        Ok(())
    }
}

/// A workload: a function and how to load it.
pub struct Workload {
    pub name: String,
    pub what: String,
    pub function: Function,
    pub measure: Measure,
    /// The engines besides functions-host that run it (workerd and Deno run JavaScript, Node
    /// C#), when `--vs` names them.
    pub others: &'static [Kind],
    /// Whether, on the other engines, each sample is a process started for one request (their
    /// cold start) rather than `measure`.
    pub others_start_per_request: bool,
    /// Whether functions-host's own process start is measured too (and the others compared
    /// with it).
    pub host_starts_too: bool,
}

/// The built-in hello, as a `fetch` handler.
const HELLO: &str = "export default { fetch() { return new Response(\"Hello, World!\"); } };\n";

/// A function awaiting a one-second timer.
const SLEEPER: &str = "export default {\n  async fetch() {\n    await new Promise((resolve) => \
     setTimeout(resolve, 1000));\n    return new Response(\"ok\");\n  },\n};\n";

/// A WASI command writing `Hello, World!` to stdout (the response body).
const WASM_HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "Hello, World!\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 14))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

const PYTHON_HELLO: &str = "def handler(event):\n    return {\"message\": \"Hello, World!\"}\n";

const MATH: &str = "export default { add(a, b) { return a + b; } };\n";

const MATH_CALLER: &str = "export default {\n  async fetch(request, env) {\n    \
     return new Response(String(await env.MATH.add(1, 2)));\n  },\n};\n";

/// A JavaScript function as every engine takes it, with functions-host's `isolation` and
/// `concurrency`.
fn javascript(name: &str, source: &str, isolation: &str, concurrency: u64) -> Function {
    Function {
        name: name.to_owned(),
        source: source.to_owned(),
        manifest: serde_json::json!({
            "files": {"index.js": source},
            "isolation": isolation,
            "limits": {"concurrency": concurrency},
        }),
        before: Vec::new(),
        body: None,
        pyodide: None,
        dotnet: None,
    }
}

/// The user's function at `path`, with functions-host's `isolation`.
fn users(path: &Path, isolation: &str) -> anyhow::Result<Function> {
    let (name, mut manifest) = crate::commands::manifest_of_path(path)?;
    manifest["isolation"] = isolation.into();
    manifest["limits"] = serde_json::json!({"concurrency": 1000});
    let source = std::fs::read_to_string(path).unwrap_or_default();
    Ok(Function {
        name,
        source,
        manifest,
        before: Vec::new(),
        body: None,
        pyodide: None,
        dotnet: None,
    })
}

/// Whether the user's function is one module that workerd and Deno can run too.
fn runs_everywhere(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .is_some_and(|ext| ext == "js" || ext == "mjs")
}

/// The workload `which` names (`None`: nothing to run on this machine, said why).
pub fn workload(which: Which, function: Option<&Path>) -> anyhow::Result<Option<Workload>> {
    let users_or = |isolation: &str, built_in: Function| match function {
        Some(path) => users(path, isolation),
        None => Ok(built_in),
    };
    let javascript_engines: &'static [Kind] = match function.is_none_or(runs_everywhere) {
        true => &[Kind::Workerd, Kind::Deno],
        false => &[],
    };
    Ok(Some(match which {
        Which::ColdStart => Workload {
            name: "cold-start".into(),
            what: "A request to a function that is not running yet. functions-host: every \
                   request gets a fresh V8 isolate from the startup snapshot (200 requests, 5 ms \
                   apart, per round). workerd and Deno keep one isolate per worker, so their \
                   cold start is a process: each sample starts the server and times its first \
                   answer (10 per round)."
                .into(),
            function: users_or("invocation", javascript("hello", HELLO, "invocation", 1000))?,
            measure: Measure::Sequential {
                count: 200,
                pause: Duration::from_millis(5),
            },
            others: javascript_engines,
            others_start_per_request: true,
            host_starts_too: true,
        },
        Which::Throughput => Workload {
            name: "throughput".into(),
            what: "A warm function (functions-host: isolation \"function\", one isolate kept) \
                   answering 8 connections back to back for 5 s per round."
                .into(),
            function: users_or("function", javascript("hello", HELLO, "function", 1000))?,
            measure: Measure::ClosedLoop {
                connections: 8,
                duration: Duration::from_secs(5),
            },
            others: javascript_engines,
            others_start_per_request: false,
            host_starts_too: false,
        },
        Which::Concurrency => Workload {
            name: "concurrency".into(),
            what: "200 requests at once, each on its own connection, to a function awaiting a \
                   1 s timer (functions-host: a fresh isolate each): wall is the time until \
                   the last answered."
                .into(),
            function: javascript("sleeper", SLEEPER, "invocation", 1000),
            measure: Measure::Burst { count: 200 },
            others: &[Kind::Workerd, Kind::Deno],
            others_start_per_request: false,
            host_starts_too: false,
        },
        Which::Wasm => {
            let wasm = wat::parse_str(WASM_HELLO).context("the built-in WebAssembly guest")?;
            let encoded = base64::engine::general_purpose::STANDARD.encode(wasm);
            Workload {
                name: "wasm".into(),
                what: "A WebAssembly (WASI command) guest writing its greeting to stdout, a \
                       fresh wasmtime instance per request, 8 connections back to back for 5 s."
                    .into(),
                function: Function {
                    name: "wasm-hello".into(),
                    source: String::new(),
                    manifest: serde_json::json!({
                        "language": "wasm",
                        "files": {"hello.wasm": encoded},
                        "limits": {"concurrency": 1000},
                    }),
                    before: Vec::new(),
                    body: None,
                    pyodide: None,
                    dotnet: None,
                },
                measure: Measure::ClosedLoop {
                    connections: 8,
                    duration: Duration::from_secs(5),
                },
                others: &[],
                others_start_per_request: false,
                host_starts_too: false,
            }
        }
        Which::Python => {
            let Some(pyodide) = pyodide() else {
                return Ok(None);
            };
            Workload {
                name: "python".into(),
                what: "A Python function (Pyodide) restored from its memory snapshot for every \
                       request, 20 requests 250 ms apart per round (each worker starts an \
                       interpreter ahead for the next one, about 100 ms of CPU)."
                    .into(),
                function: Function {
                    name: "py-hello".into(),
                    source: String::new(),
                    manifest: serde_json::json!({
                        "language": "python",
                        "files": {"main.py": PYTHON_HELLO},
                    }),
                    before: Vec::new(),
                    body: Some("{}".into()),
                    pyodide: Some(pyodide),
                    dotnet: None,
                },
                measure: Measure::Sequential {
                    count: 20,
                    pause: Duration::from_millis(250),
                },
                others: &[],
                others_start_per_request: false,
                host_starts_too: false,
            }
        }
        Which::Rpc => Workload {
            name: "rpc".into(),
            what: "An HTTP request to a warm function that awaits env.MATH.add(1, 2) on \
                   another warm function through a binding, one connection back to back for 5 s."
                .into(),
            function: Function {
                before: vec![(
                    "math".into(),
                    serde_json::json!({"files": {"index.js": MATH}, "isolation": "function"}),
                )],
                ..javascript("caller", MATH_CALLER, "function", 1000)
            }
            .with_binding("MATH", "math"),
            measure: Measure::ClosedLoop {
                connections: 1,
                duration: Duration::from_secs(5),
            },
            others: &[],
            others_start_per_request: false,
            host_starts_too: false,
        },
        Which::Csharp | Which::CsharpWarm => {
            let warm = which == Which::CsharpWarm;
            let Some(function) = csharp_hello(warm)? else {
                return Ok(None);
            };
            let (name, what, measure, others_start_per_request) = match warm {
                false => (
                    "csharp",
                    "A C# function (the .NET runtime on WebAssembly) restored from its memory \
                     snapshot for every request, 20 requests 250 ms apart per round (each worker \
                     restores the next ahead). Node's cold start is a process booting the same \
                     runtime with dotnet.create() until its first answer (10 per round).",
                    Measure::Sequential {
                        count: 20,
                        pause: Duration::from_millis(250),
                    },
                    true,
                ),
                true => (
                    "csharp-warm",
                    "The same C# function warm (functions-host: isolation \"function\"; Node: \
                     the runtime booted once), 200 requests one after another per round.",
                    Measure::Sequential {
                        count: 200,
                        pause: Duration::ZERO,
                    },
                    false,
                ),
            };
            Workload {
                name: name.into(),
                what: what.into(),
                function,
                measure,
                others: &[Kind::NodeDotnet],
                others_start_per_request,
                host_starts_too: false,
            }
        }
        Which::All | Which::Soak => unreachable!("not one workload"),
    }))
}

impl Function {
    /// The function with a binding `NAME` to `target` (functions-host's manifest).
    fn with_binding(mut self, name: &str, target: &str) -> Self {
        self.manifest["bindings"] = serde_json::json!({ name: {"function": target} });
        self
    }
}

const CSHARP_HELLO: &str = "public class Functions\n{\n    public static string Hello(string name) \
     => \"Hello, \" + name + \"!\";\n}\n";

/// The C# hello, compiled with the compiler on this machine, warm or fresh per request; `None`
/// (said why) when the runtime or a compiler cannot be had.
fn csharp_hello(warm: bool) -> anyhow::Result<Option<Function>> {
    let Some(runtime) = dotnet_runtime() else {
        return Ok(None);
    };
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("Hello.cs");
    std::fs::write(&source, CSHARP_HELLO)?;
    let files = match crate::csharp::files(&source) {
        Ok((files, _)) => files,
        Err(err) => {
            eprintln!("csharp: skipped: {err:#}");
            return Ok(None);
        }
    };
    let isolation = if warm { "function" } else { "invocation" };
    Ok(Some(Function {
        name: "cs-hello".into(),
        source: String::new(),
        manifest: serde_json::json!({
            "language": "csharp",
            "entry": "Functions.Hello",
            "files": files,
            "isolation": isolation,
            "limits": {"concurrency": 1000},
        }),
        before: Vec::new(),
        body: Some("\"World\"".into()),
        pyodide: None,
        dotnet: Some(runtime),
    }))
}

/// The .NET runtime's files, downloaded into the user's cache the first time; `None` (said
/// why) when they cannot be had.
pub fn dotnet_runtime() -> Option<std::path::PathBuf> {
    let runtime = functions_host::LanguageRuntime::Dotnet;
    let setup = functions_host::RuntimeSetup::for_user(runtime);
    if let Some(local) = setup.local {
        return Some(local);
    }
    let progress = crate::commands::download_progress("the .NET runtime (C# for functions)");
    let mut report = |p: functions_host::DownloadProgress| progress(p);
    match functions_dotnet::Runtime::cached(&setup.cache, &setup.registry, &mut report) {
        Ok(runtime) => Some(runtime.dir().to_owned()),
        Err(err) => {
            eprintln!("csharp: skipped: the .NET runtime cannot be had ({err:#})");
            None
        }
    }
}

/// Pyodide's files, downloaded into the user's cache the first time; `None` (said why) when
/// they cannot be had.
pub fn pyodide() -> Option<std::path::PathBuf> {
    let runtime = functions_host::LanguageRuntime::Pyodide;
    let setup = functions_host::RuntimeSetup::for_user(runtime);
    if let Some(local) = setup.local {
        return Some(local);
    }
    let progress = crate::commands::download_progress("Pyodide (Python for functions)");
    let mut report = |p: functions_host::DownloadProgress| progress(p);
    match functions_pyodide::Distribution::cached(&setup.cache, &setup.registry, &mut report) {
        Ok(distribution) => Some(distribution.dir().to_owned()),
        Err(err) => {
            eprintln!("python: skipped: Pyodide cannot be had ({err:#})");
            None
        }
    }
}
