//! What the engine runs: a named, versioned set of modules and how it is isolated.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "js")]
use functions_ext::fetch::NetAccess;
use url::Url as ModuleSpecifier;

#[cfg(feature = "js")]
use crate::dotnet::DotnetCode;
use crate::module::Module;
#[cfg(feature = "js")]
use crate::python::PythonCode;
#[cfg(feature = "wasm")]
use crate::wasm::WasmModule;

/// How invocations of a function share isolates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// Every invocation runs in a fresh isolate from the snapshot (the default): no state survives.
    #[default]
    Invocation,
    /// Sequential invocations reuse one warm isolate, as workerd does: module state persists.
    Function,
}

impl Isolation {
    /// Parses the manifest's `isolation` value: `"invocation"` or `"function"`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "invocation" => Some(Self::Invocation),
            "function" => Some(Self::Function),
            _ => None,
        }
    }

    /// The manifest spelling of this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invocation => "invocation",
            Self::Function => "function",
        }
    }
}

/// How a function runs, besides its code: what it may reach and what it sees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Environment variables, the handler's `env` (as strings).
    pub env: BTreeMap<String, String>,
    /// How invocations share isolates.
    pub isolation: Isolation,
    /// Hosts (`host` or `host:port`) outgoing `fetch` may reach; nothing else is reachable.
    pub allow_net: Vec<String>,
    /// The function's base URL, as Deno's `--location` sets it: relative URLs given to `fetch`,
    /// `Request` and `Response.redirect` resolve against it, and `location` reflects it. `None`
    /// (the default, and what deployed functions get): no `location`, as in Workers.
    pub location: Option<ModuleSpecifier>,
    /// What one invocation may use.
    pub limits: Limits,
    /// How a WebAssembly guest's stdout becomes the response (unused by JavaScript).
    pub executor: Executor,
    /// The functions this one shares its fair share of the engine with (the host's: the API
    /// key that owns them): no function, and no group, holds more than half of the running
    /// isolates or WebAssembly instances.
    pub share_group: Option<Arc<str>>,
    /// The functions this one may call: each binding's name (its key in the handler's `env`)
    /// and the name of the function it reaches (see `Engine`'s RPC).
    pub bindings: BTreeMap<String, String>,
}

/// How a guest's standard output becomes the HTTP response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Executor {
    /// stdout is the body of a `200` (`text/plain; charset=utf-8`).
    #[default]
    Command,
    /// stdout starts with CGI headers (`Content-Type:`, `Status:`, `Location:`) and an empty
    /// line, as in WAGI and Spin.
    Wagi,
}

impl Executor {
    /// Parses the manifest's `executor`: `"command"` or `"wagi"`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "command" => Some(Self::Command),
            "wagi" => Some(Self::Wagi),
            _ => None,
        }
    }

    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Wagi => "wagi",
        }
    }
}

/// The largest response body a function may produce whole (a WebAssembly guest's stdout, a
/// JavaScript `Response` that is not a stream); a larger one fails the invocation.
pub const MAX_RESPONSE_BYTES: usize = 5 * 1024 * 1024;

/// What one invocation may use before it is stopped. JavaScript: a watchdog thread measuring
/// the worker's CPU clock calls V8's `terminate_execution`, and the isolate's heap is capped
/// (V8's near-heap-limit callback terminates it). WebAssembly: epoch interruption and a store
/// limiter on linear memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// CPU time (default 1 s). JavaScript: counted from the start of the module's top-level code
    /// and again from the handler's start, not the isolate's creation.
    pub cpu_time: Duration,
    /// Wall-clock time, including time spent waiting (default 30 s).
    pub wall_clock: Duration,
    /// Memory (default 128 MiB): a JavaScript isolate's heap, a guest's linear memory.
    pub memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_time: Duration::from_secs(1),
            wall_clock: Duration::from_secs(30),
            memory_bytes: 128 * 1024 * 1024,
        }
    }
}

/// A deployable function: ES modules (compiled, see [`Module`]) of which one, the entry, has
/// the handler as its default export. Cheap to clone; one `Function` value is one immutable version.
#[derive(Clone, Debug)]
pub struct Function(Arc<FunctionInner>);

#[derive(Debug)]
#[cfg_attr(
    not(feature = "js"),
    allow(dead_code, reason = "what the JavaScript engine reads")
)]
pub(crate) struct FunctionInner {
    /// Tells this value (and its clones) from every other `Function` made in the process, even
    /// of the same name and version: prepared isolates are matched to their function by it.
    pub id: u64,
    pub name: String,
    pub version: u64,
    /// `file:///{name}/`: every module's URL is this joined with its path.
    pub root: ModuleSpecifier,
    pub specifier: ModuleSpecifier,
    pub modules: BTreeMap<String, Module>,
    pub settings: Settings,
    /// `settings.allow_net` as isolates install it, built once.
    #[cfg(feature = "js")]
    pub net: Result<NetAccess, String>,
    /// The compiled code of a WebAssembly function (which has no `modules` then).
    #[cfg(feature = "wasm")]
    pub wasm: Option<WasmModule>,
    /// The code of a Python function (which has no `modules` then).
    #[cfg(feature = "js")]
    pub python: Option<PythonCode>,
    /// The code of a C# function (which has no `modules` then).
    #[cfg(feature = "js")]
    pub dotnet: Option<DotnetCode>,
}

impl Function {
    /// A function named `name` whose one module, `index.js`, is `source` (version 1, default
    /// [`Settings`]: no env, fresh isolates, no network).
    pub fn javascript(name: &str, source: impl Into<Arc<str>>) -> Self {
        let module = Module::javascript(source);
        Self::new(
            name,
            1,
            "index.js",
            BTreeMap::from([("index.js".to_owned(), module)]),
            Settings::default(),
        )
    }

    /// A function with every field given: `modules` by path (as [`crate::compile_files`] returns
    /// them), `entry` the path of the one whose default export is the handler.
    pub fn new(
        name: &str,
        version: u64,
        entry: &str,
        modules: BTreeMap<String, Module>,
        settings: Settings,
    ) -> Self {
        let root = root_of(name);
        let specifier = root
            .join(entry)
            .unwrap_or_else(|_| root.join("index.js").unwrap());
        Self(Arc::new(FunctionInner {
            id: next_id(),
            name: name.to_owned(),
            version,
            root,
            specifier,
            modules,
            #[cfg(feature = "js")]
            net: NetAccess::new(&settings.allow_net),
            settings,
            #[cfg(feature = "wasm")]
            wasm: None,
            #[cfg(feature = "js")]
            python: None,
            #[cfg(feature = "js")]
            dotnet: None,
        }))
    }

    /// A WebAssembly function: `module` compiled by [`crate::Engine::compile_wasm`] (or loaded
    /// by [`crate::Engine::load_wasm`]) of the engine that runs it.
    #[cfg(feature = "wasm")]
    pub fn wasm(name: &str, version: u64, module: WasmModule, settings: Settings) -> Self {
        let root = root_of(name);
        Self(Arc::new(FunctionInner {
            id: next_id(),
            name: name.to_owned(),
            version,
            specifier: root.join("main.wasm").unwrap(),
            root,
            modules: BTreeMap::new(),
            #[cfg(feature = "js")]
            net: NetAccess::new(&settings.allow_net),
            settings,
            wasm: Some(module),
            #[cfg(feature = "js")]
            python: None,
            #[cfg(feature = "js")]
            dotnet: None,
        }))
    }

    /// A Python function: `code` runs on Pyodide in an isolate of its own for each invocation
    /// (or a warm one, with [`Isolation::Function`]).
    #[cfg(feature = "js")]
    pub fn python(name: &str, version: u64, code: PythonCode, settings: Settings) -> Self {
        let file = code.module_file.clone().unwrap_or_else(|| "main.py".into());
        Self::on_runtime(name, version, &file, settings, Some(code), None)
    }

    /// A C# function: `code` runs on the .NET WebAssembly runtime in an isolate of its own for
    /// each invocation (or a warm one, with [`Isolation::Function`]).
    #[cfg(feature = "js")]
    pub fn dotnet(name: &str, version: u64, code: DotnetCode, settings: Settings) -> Self {
        let file = format!("{}.dll", code.assembly);
        Self::on_runtime(name, version, &file, settings, None, Some(code))
    }

    /// A function whose code runs on a WebAssembly runtime in its isolate (Python's or .NET's),
    /// named by `file` in its stack traces.
    #[cfg(feature = "js")]
    fn on_runtime(
        name: &str,
        version: u64,
        file: &str,
        settings: Settings,
        python: Option<PythonCode>,
        dotnet: Option<DotnetCode>,
    ) -> Self {
        let root = root_of(name);
        Self(Arc::new(FunctionInner {
            id: next_id(),
            name: name.to_owned(),
            version,
            specifier: root
                .join(file)
                .unwrap_or_else(|_| root.join("main").unwrap()),
            root,
            modules: BTreeMap::new(),
            net: NetAccess::new(&settings.allow_net),
            settings,
            #[cfg(feature = "wasm")]
            wasm: None,
            python,
            dotnet,
        }))
    }

    /// Its Python code, when it is a Python function.
    #[cfg(feature = "js")]
    pub fn python_code(&self) -> Option<&PythonCode> {
        self.0.python.as_ref()
    }

    /// Whether its isolates hold a WebAssembly runtime's memory (Python's, .NET's): tens of MiB
    /// each, so fewer are kept.
    #[cfg(feature = "js")]
    pub(crate) fn holds_runtime(&self) -> bool {
        self.python_code().is_some() || self.dotnet_code().is_some()
    }

    /// Whether its isolates restore a memory snapshot (a Python or C# function's, once made):
    /// each takes a worker's thread for tens of milliseconds to prepare.
    #[cfg(feature = "js")]
    pub(crate) fn restores_snapshot(&self) -> bool {
        self.python_code()
            .is_some_and(|code| code.snapshot.is_some())
            || self
                .dotnet_code()
                .is_some_and(|code| code.snapshot.is_some())
    }

    /// Its C# code, when it is a C# function.
    #[cfg(feature = "js")]
    pub fn dotnet_code(&self) -> Option<&DotnetCode> {
        self.0.dotnet.as_ref()
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// What tells this function value (and its clones) from any other, whatever its name and
    /// version.
    #[cfg(feature = "js")]
    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    /// The deployment version this value holds.
    pub fn version(&self) -> u64 {
        self.0.version
    }

    /// How its invocations share isolates.
    pub fn isolation(&self) -> Isolation {
        self.0.settings.isolation
    }

    /// Who this function's invocations hold places for, under the engine's fair shares.
    pub(crate) fn holder(&self) -> crate::share::Holder {
        crate::share::Holder {
            function: self.0.name.as_str().into(),
            group: self.0.settings.share_group.clone(),
        }
    }

    /// Its env, isolation and permissions.
    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    /// Its compiled WebAssembly, when it is a WebAssembly function.
    #[cfg(feature = "wasm")]
    pub fn wasm_module(&self) -> Option<&WasmModule> {
        self.0.wasm.as_ref()
    }

    /// Its modules, by path.
    pub fn modules(&self) -> &BTreeMap<String, Module> {
        &self.0.modules
    }

    /// What its `fetch` may reach; `Err` when `allow_net` holds something that is not a host.
    #[cfg(feature = "js")]
    pub(crate) fn net_access(&self) -> Result<&NetAccess, &String> {
        self.0.net.as_ref()
    }

    #[cfg(feature = "js")]
    pub(crate) fn root(&self) -> &ModuleSpecifier {
        &self.0.root
    }

    /// The path of `url` inside the function (the URL itself when it is not one of its files).
    #[cfg(feature = "js")]
    pub(crate) fn path_of(&self, url: &str) -> String {
        url.strip_prefix(self.0.root.as_str())
            .unwrap_or(url)
            .to_owned()
    }

    /// The function's own module at `url`, if it is one.
    #[cfg(feature = "js")]
    pub(crate) fn module_at(&self, url: &str) -> Option<&Module> {
        self.0.modules.get(url.strip_prefix(self.0.root.as_str())?)
    }

    #[cfg(feature = "js")]
    pub(crate) fn inner(&self) -> &FunctionInner {
        &self.0
    }
}

/// A new [`FunctionInner::id`].
fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// `file:///{name}/`, the URL under which a function's modules live.
pub(crate) fn root_of(name: &str) -> ModuleSpecifier {
    ModuleSpecifier::parse(&format!("file:///{name}/"))
        .unwrap_or_else(|_| ModuleSpecifier::parse("file:///function/").unwrap())
}
