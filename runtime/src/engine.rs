//! The embedding API: an [`Engine`] runs [`Function`]s on its worker threads.

use std::pin::Pin;
use std::sync::Arc;
#[cfg(feature = "wasm")]
use std::sync::OnceLock;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;
use std::time::Instant;

use functions_types::ConsoleOutput;
use functions_types::LogLine;
use tokio::sync::oneshot;

use crate::Request;
use crate::Response;
use crate::error::CompileError;
use crate::error::InvokeError;
use crate::function::Function;
#[cfg(feature = "js")]
use crate::pool::Pool;
#[cfg(feature = "js")]
use crate::pool::PoolConfig;
#[cfg(feature = "wasm")]
use crate::wasm::WasmEngine;
#[cfg(feature = "wasm")]
use crate::wasm::WasmModule;
#[cfg(feature = "wasm")]
use crate::wasm::WasmStats;

/// How an [`Engine`] is set up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Worker threads (default: the number of cores). Each runs the event loops of many
    /// isolates; an invocation holds a thread only while its JavaScript runs.
    pub workers: usize,
    /// Create isolates from the base startup snapshot (the default). `false` runs all of the
    /// host's JavaScript bootstrap in every isolate instead: only useful to measure the difference.
    pub use_snapshot: bool,
    /// The most JavaScript invocations that run at once, host-wide (each in an isolate of its
    /// own); more wait their turn in arrival order. Default: one per 16 MiB of half the
    /// machine's memory ([`default_max_isolates`]).
    pub max_isolates: usize,
    /// Isolates each worker keeps pre-created (module evaluated, each for one invocation) for
    /// recently invoked fresh-isolate functions (default 32; 0 keeps none, so every invocation
    /// creates its isolate).
    pub prepared_per_worker: usize,
    /// Each worker keeps a Python interpreter started ahead of time (Pyodide instantiated and
    /// linked, for the build and memory limit of the Python functions it ran recently), so that
    /// a cold start of a Python function only restores the function's snapshot into it; and
    /// once a Python or C# function is invoked on one worker, every worker keeps its isolates
    /// prepared (default true).
    pub prepare_python: bool,
    /// For tests of how the engine contains a failing worker: a worker panics when it starts
    /// an invocation of the function with this name.
    #[doc(hidden)]
    pub panic_on_function: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            use_snapshot: true,
            max_isolates: default_max_isolates(),
            prepared_per_worker: 32,
            prepare_python: true,
            panic_on_function: None,
        }
    }
}

/// The variables that would send functions' outgoing requests through a proxy (deno_fetch
/// reads them whenever it makes a client).
const PROXY_VARIABLES: [&str; 6] = [
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
];

/// Makes functions connect directly, as they do in workerd, by removing the proxy variables
/// (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`) from the process's environment; the ones that
/// were set. A proxy would resolve the names functions fetch itself, where `allow_net`'s check
/// of the addresses they lead to (never this machine or its private networks unless granted)
/// cannot see them. `functions-host serve` and `run` call it; so should a program that embeds
/// the engine and has those variables set.
///
/// # Safety
///
/// It changes the environment: call it before the program starts any other thread (first
/// thing in `main`), as [`std::env::remove_var`] requires.
pub unsafe fn connect_directly() -> Vec<&'static str> {
    let set: Vec<&'static str> = PROXY_VARIABLES
        .into_iter()
        .filter(|variable| std::env::var_os(variable).is_some())
        .collect();
    for variable in &set {
        // SAFETY: no other thread exists (the caller's promise).
        unsafe { std::env::remove_var(variable) };
    }
    set
}

/// The default cap on invocations running at once: half the machine's memory, at 16 MiB an
/// isolate (an idle one from the snapshot takes a few MiB; most invocations allocate a little
/// more), at least 64.
pub fn default_max_isolates() -> usize {
    const PER_ISOLATE: u64 = 16 * 1024 * 1024;
    let memory = physical_memory().unwrap_or(4 * 1024 * 1024 * 1024);
    usize::try_from(memory / 2 / PER_ISOLATE)
        .unwrap_or(usize::MAX)
        .max(64)
}

/// The machine's physical memory, in bytes.
fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let (pages, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && page_size > 0).then(|| pages as u64 * page_size as u64)
}

/// Cancels an invocation: [`Cancel::cancel`] stops it (its isolate is dropped; WebAssembly
/// guests stop) and it ends with [`InvokeError::Cancelled`]. Cloned handles cancel the same
/// invocation; work already past the response (a streamed body, `ctx.waitUntil`) is not
/// cancelled.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<CancelInner>);

#[derive(Debug, Default)]
struct CancelInner {
    reason: std::sync::Mutex<Option<String>>,
    cancelled: tokio::sync::Notify,
}

impl Cancel {
    /// A handle that has not cancelled anything yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the invocation, saying why (the first reason stands).
    pub fn cancel(&self, reason: impl Into<String>) {
        let mut slot = self.0.reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason.into());
        }
        drop(slot);
        self.0.cancelled.notify_waiters();
    }

    /// Resolves, with the reason, once the invocation is cancelled.
    pub async fn cancelled(&self) -> String {
        loop {
            let notified = self.0.cancelled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(reason) = self
                .0
                .reason
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                return reason;
            }
            notified.await;
        }
    }
}

/// Holds a JavaScript invocation at its start: the engine says when the isolate is about to run
/// the handler, and runs it once the caller lets it (after it recorded that the invocation
/// started, say). Made by [`start_gate`].
#[derive(Debug)]
pub struct StartGate(oneshot::Sender<oneshot::Sender<()>>);

impl StartGate {
    /// Tells the caller the handler is about to run and waits until it says go (or went away).
    pub(crate) async fn open(self) {
        let (go, gone) = oneshot::channel();
        if self.0.send(go).is_ok() {
            let _ = gone.await;
        }
    }
}

/// The caller's side of a [`StartGate`].
#[derive(Debug)]
pub struct Starting(oneshot::Receiver<oneshot::Sender<()>>);

impl Starting {
    /// Resolves when the handler is about to run, with the [`Go`] that lets it; `None` when the
    /// invocation ended before (its isolate failed to load, or it was cancelled).
    pub async fn ready(self) -> Option<Go> {
        self.0.await.ok().map(Go)
    }
}

/// Lets a held invocation start (dropping it does too).
#[derive(Debug)]
pub struct Go(oneshot::Sender<()>);

impl Go {
    /// Lets the handler run.
    pub fn go(self) {
        let _ = self.0.send(());
    }
}

/// A [`StartGate`] for [`Controls::start`] and the caller's side of it.
pub fn start_gate() -> (StartGate, Starting) {
    let (ready, starting) = oneshot::channel();
    (StartGate(ready), Starting(starting))
}

/// What a caller may do to one invocation besides giving its function and request.
#[derive(Debug, Default)]
pub struct Controls {
    /// Cancels it (see [`Cancel`]).
    pub cancel: Option<Cancel>,
    /// Holds the invocation before its handler (or WebAssembly guest) runs (see
    /// [`start_gate`]).
    pub start: Option<StartGate>,
    /// How it was reached, when another function called it (a fetch through a binding): its
    /// deadline and depth apply, and its trace continues. `None`: a root invocation, whose
    /// trace continues the request's `traceparent` header, if it has one.
    #[cfg(feature = "js")]
    pub chain: Option<crate::CallChain>,
}

/// What one invocation produced by the time its handler responded: the response or error, and
/// the console output until then.
#[derive(Debug)]
pub struct Outcome {
    /// The response, or why there is none. A streamed body ([`crate::ResponseBody::Stream`])
    /// is still being produced.
    pub result: Result<Response, InvokeError>,
    /// Console lines, in order, with their timestamps.
    pub logs: Vec<LogLine>,
    /// Console lines dropped because the invocation wrote more than the per-invocation cap.
    pub dropped_log_lines: usize,
    /// When the function still runs after its response (streaming its body, or finishing
    /// `ctx.waitUntil` work): resolves once it is done.
    pub after_response: Option<AfterResponse>,
    /// How long it took to start and to respond; `None` when it never started (it failed to
    /// load, was cancelled first, or the engine stopped).
    pub timing: Option<Timing>,
    /// Where it sits in its W3C trace (JavaScript and Python invocations that started).
    pub trace: Option<Trace>,
}

impl Outcome {
    pub(crate) fn new(result: Result<Response, InvokeError>, output: ConsoleOutput) -> Self {
        Self {
            result,
            logs: output.lines,
            dropped_log_lines: output.dropped,
            after_response: None,
            timing: None,
            trace: None,
        }
    }
}

/// An invocation's place in its W3C trace: the trace, its own span, and the span it continues
/// (its caller's, or the incoming request's `traceparent`'s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The trace's id.
    pub trace_id: [u8; 16],
    /// The invocation's span id (what the requests and calls it makes carry as their parent).
    pub span_id: [u8; 8],
    /// The span it continues, if any.
    pub parent_span_id: Option<[u8; 8]>,
}

#[cfg(feature = "js")]
impl Trace {
    /// The place of the invocation whose call chain is `chain`.
    pub(crate) fn of(chain: &crate::CallChain) -> Self {
        let (trace_id, span_id, parent_span_id) = chain.trace();
        Self {
            trace_id,
            span_id,
            parent_span_id,
        }
    }
}

/// The request's W3C `traceparent` header, if it has one.
#[cfg(feature = "js")]
pub(crate) fn traceparent(request: &Request) -> Option<&str> {
    request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("traceparent"))
        .map(|(_, value)| value.as_str())
}

/// Where an invocation's time went inside the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// From the engine receiving it to its isolate (or WebAssembly instance) being ready to run
    /// the handler: a wait for a place under the cap on isolates, and creating the isolate and
    /// loading the module (or restoring a snapshot, or instantiating) unless one was ready.
    pub start: Duration,
    /// From then until the handler responded (or failed).
    pub run: Duration,
    /// Whether it ran on an isolate prepared ahead or kept warm (a pool hit), rather than one
    /// made for it on the request's path. WebAssembly instances are always made for it.
    pub ready: bool,
}

impl Timing {
    /// The timing of an invocation received at `received` whose isolate (or instance) was ready
    /// at `started`, measured now.
    pub(crate) fn since(received: Instant, started: Instant, ready: bool) -> Self {
        Self {
            start: started.saturating_duration_since(received),
            run: started.elapsed(),
            ready,
        }
    }
}

/// How the part of an invocation after its response ended, and what it logged.
#[derive(Debug)]
pub struct Finished {
    /// Why it failed (the body's stream errored, the worker stopped), if it did.
    pub error: Option<InvokeError>,
    /// Console lines written after the response.
    pub logs: Vec<LogLine>,
    /// Console lines dropped past the per-invocation cap.
    pub dropped_log_lines: usize,
}

impl Finished {
    pub(crate) fn new(error: Option<InvokeError>, output: ConsoleOutput) -> Self {
        Self {
            error,
            logs: output.lines,
            dropped_log_lines: output.dropped,
        }
    }
}

/// A future of the [`Finished`] report of an invocation that runs on after its response.
#[derive(Debug)]
pub struct AfterResponse(oneshot::Receiver<Finished>);

impl AfterResponse {
    #[cfg(feature = "js")]
    pub(crate) fn channel() -> (oneshot::Sender<Finished>, Self) {
        let (sender, receiver) = oneshot::channel();
        (sender, Self(receiver))
    }
}

impl Future for AfterResponse {
    type Output = Finished;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Finished> {
        Pin::new(&mut self.0).poll(cx).map(|finished| {
            finished.unwrap_or_else(|_| {
                Finished::new(Some(InvokeError::EngineStopped), ConsoleOutput::default())
            })
        })
    }
}

/// Runs functions: JavaScript on its worker threads (dropping the engine lets the invocations
/// under way finish, then stops them), WebAssembly on the caller's task.
pub struct Engine {
    /// The worker threads that run JavaScript.
    #[cfg(feature = "js")]
    pool: Pool,
    /// The wasmtime engine, created when the first WebAssembly function is compiled or loaded.
    #[cfg(feature = "wasm")]
    wasm: Arc<OnceLock<WasmEngine>>,
    /// Python memory snapshots made so far.
    #[cfg(feature = "js")]
    python_snapshots: std::sync::atomic::AtomicU64,
    /// C# memory snapshots made so far.
    #[cfg(feature = "js")]
    dotnet_snapshots: std::sync::atomic::AtomicU64,
}

impl Engine {
    /// Starts the worker threads (JavaScript; WebAssembly runs on the caller's tasks).
    pub fn new(config: EngineConfig) -> Self {
        #[cfg(not(feature = "js"))]
        let _ = config;
        Self {
            #[cfg(feature = "js")]
            pool: {
                use_fast_entropy();
                let snapshot = config
                    .use_snapshot
                    .then_some(functions_snapshots::BASE_SNAPSHOT);
                Pool::new(PoolConfig {
                    workers: config.workers,
                    snapshot,
                    max_isolates: config.max_isolates,
                    prepared_per_worker: config.prepared_per_worker,
                    prepare_python: config.prepare_python,
                    panic_on_function: config.panic_on_function.map(Into::into),
                })
            },
            #[cfg(feature = "wasm")]
            wasm: Arc::new(OnceLock::new()),
            #[cfg(feature = "js")]
            python_snapshots: Default::default(),
            #[cfg(feature = "js")]
            dotnet_snapshots: Default::default(),
        }
    }

    #[cfg(feature = "wasm")]
    fn wasm(&self) -> &WasmEngine {
        self.wasm.get_or_init(WasmEngine::new)
    }

    /// Compiles a WebAssembly binary (a WASI preview 1 command module or a WASI 0.2
    /// `wasi:cli/command` component) for [`Function::wasm`], checking that its imports are WASI's.
    /// Compiling takes a while for large binaries; it runs on a thread of its own.
    #[cfg(feature = "wasm")]
    pub async fn compile_wasm(
        &self,
        wasm: impl Into<Arc<[u8]>>,
    ) -> Result<WasmModule, CompileError> {
        let wasm = wasm.into();
        let engines = self.wasm.clone();
        let (reply, result) = oneshot::channel();
        std::thread::Builder::new()
            .name("functions-wasm-compile".into())
            .spawn(move || {
                let _ = reply.send(engines.get_or_init(WasmEngine::new).compile(wasm));
            })
            .expect("spawning a compile thread");
        result.await.unwrap_or_else(|_| {
            Err(CompileError {
                message: "the compiler thread failed".into(),
                file: String::new(),
                line: 0,
                column: 0,
            })
        })
    }

    /// A stored WebAssembly function's code: `artifact` (from [`WasmModule::artifact`]) is loaded
    /// as it is when this engine made it, so nothing is compiled; otherwise `wasm` is compiled
    /// again (see [`WasmModule::artifact`] for the artifact to store then).
    #[cfg(feature = "wasm")]
    pub fn load_wasm(
        &self,
        wasm: impl Into<Arc<[u8]>>,
        artifact: &[u8],
    ) -> Result<WasmModule, CompileError> {
        self.wasm().load(wasm.into(), artifact)
    }

    /// How many WebAssembly binaries this engine compiled, and how many it loaded precompiled.
    #[cfg(feature = "wasm")]
    pub fn wasm_stats(&self) -> WasmStats {
        self.wasm.get().map(WasmEngine::stats).unwrap_or_default()
    }

    /// The number of worker threads.
    #[cfg(feature = "js")]
    pub fn workers(&self) -> usize {
        self.pool.workers()
    }

    /// V8 isolates alive in this process, of every engine in it: running invocations, prepared
    /// ahead, kept warm, or waiting to be torn down.
    #[cfg(feature = "js")]
    pub fn live_isolates(&self) -> usize {
        crate::isolate::LIVE_ISOLATES.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Boots a Python function ([`Function::python`]) and makes the memory snapshot its
    /// invocations can restore instead of booting: once its module is imported (and its entry
    /// found: a module that raises, or has no entry, fails here, with its traceback), or, for
    /// code with no module, once the interpreter has started and imported the modules most
    /// functions use (a baseline for functions' own snapshots). Takes seconds from scratch,
    /// much less from a baseline given as the code's snapshot.
    #[cfg(feature = "js")]
    pub async fn snapshot_python(
        &self,
        function: &Function,
    ) -> Result<crate::python::MemorySnapshot, InvokeError> {
        let made = self.snapshot(function).await;
        if made.is_ok() {
            self.python_snapshots
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        made
    }

    /// Boots a C# function ([`Function::dotnet`]) and makes the memory snapshot its invocations
    /// can restore instead of booting: once its assembly is loaded and its entry bound (an
    /// assembly with no such entry fails here). Takes about a second.
    #[cfg(feature = "js")]
    pub async fn snapshot_dotnet(
        &self,
        function: &Function,
    ) -> Result<crate::python::MemorySnapshot, InvokeError> {
        let made = self.snapshot(function).await;
        if made.is_ok() {
            self.dotnet_snapshots
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        made
    }

    /// Makes `function`'s memory snapshot, on a worker.
    #[cfg(feature = "js")]
    async fn snapshot(
        &self,
        function: &Function,
    ) -> Result<crate::python::MemorySnapshot, InvokeError> {
        let (reply, result) = oneshot::channel();
        self.pool.snapshot(function.clone(), reply);
        result.await.unwrap_or(Err(InvokeError::WorkerFailed))
    }

    /// Says that `function`, a Python function restored from a snapshot, will be invoked:
    /// every worker starts an interpreter for it ahead of time (see
    /// [`EngineConfig::prepare_python`]), so that even its first invocation only restores its
    /// snapshot. The host calls it for each Python function it deploys or loads.
    #[cfg(feature = "js")]
    pub fn expect_python(&self, function: &Function) {
        self.pool.expect_python(function);
    }

    /// Python interpreters started ahead of time and waiting for a function (at most one per
    /// worker; see [`Engine::expect_python`]).
    #[cfg(feature = "js")]
    pub fn python_interpreters_ready(&self) -> usize {
        self.pool.python_interpreters()
    }

    /// Isolates of `function` (this very value) prepared for its next invocations and not yet
    /// claimed by one, per worker.
    #[cfg(feature = "js")]
    pub fn prepared_isolates(&self, function: &Function) -> Vec<usize> {
        self.pool.prepared(function)
    }

    /// How many Python memory snapshots this engine has made ([`Engine::snapshot_python`]).
    #[cfg(feature = "js")]
    pub fn python_snapshots_made(&self) -> u64 {
        self.python_snapshots
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many C# memory snapshots this engine has made ([`Engine::snapshot_dotnet`]),
    /// baselines included.
    #[cfg(feature = "js")]
    pub fn dotnet_snapshots_made(&self) -> u64 {
        self.dotnet_snapshots
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Compiles and links the function's module without running it: what a deploy checks. A
    /// Python function (its snapshot made by [`Engine::snapshot_python`]) is started from its
    /// snapshot as an invocation would be, under its limits (it is not called).
    pub async fn check(&self, function: &Function) -> Result<(), CompileError> {
        #[cfg(feature = "wasm")]
        if function.wasm_module().is_some() {
            // Compiled and checked already, by `compile_wasm` or `load_wasm`.
            return Ok(());
        }
        #[cfg(feature = "js")]
        {
            let (reply, result) = oneshot::channel();
            self.pool.check(function.clone(), reply);
            result
                .await
                .unwrap_or_else(|_| Err(stopped_compile_error(function)))
        }
        #[cfg(not(feature = "js"))]
        Err(no_javascript(function))
    }

    /// Runs one invocation of `function` with `request`: JavaScript on a worker thread (in an
    /// isolate that holds the thread only while its JavaScript runs), WebAssembly as part of
    /// this future (which needs a tokio runtime with its timer enabled, for the wall-clock
    /// limit). Dropping the future cancels the invocation.
    pub async fn invoke(&self, function: &Function, request: Request) -> Outcome {
        self.invoke_with(function, request, Controls::default())
            .await
    }

    /// [`Engine::invoke`] with [`Controls`]: a way to cancel it, and a gate before its start.
    pub async fn invoke_with(
        &self,
        function: &Function,
        request: Request,
        controls: Controls,
    ) -> Outcome {
        #[cfg(feature = "wasm")]
        if let Some(module) = function.wasm_module() {
            // Reached by another function's fetch through a binding: logged as JavaScript's
            // invocations log it.
            #[cfg(feature = "js")]
            let fetched_by = controls.chain.as_ref().and_then(|chain| chain.fetched_by());
            #[cfg(not(feature = "js"))]
            let fetched_by: Option<String> = None;
            // Its place in the trace: its caller's hop, or its request's.
            #[cfg(feature = "js")]
            let trace =
                Trace::of(&controls.chain.clone().unwrap_or_else(|| {
                    crate::CallChain::root(function.name(), traceparent(&request))
                }));
            let run = async {
                if let Some(gate) = controls.start {
                    gate.open().await;
                }
                self.wasm().invoke(function, module, request).await
            };
            let mut outcome = match controls.cancel {
                None => run.await,
                Some(cancel) => tokio::select! {
                    outcome = run => outcome,
                    reason = cancel.cancelled() => Outcome::new(
                        Err(InvokeError::Cancelled { reason }),
                        ConsoleOutput::default(),
                    ),
                },
            };
            if let Some(line) = fetched_by {
                let mut output = ConsoleOutput::default();
                output.push_host(functions_types::LogLevel::Info, &line);
                outcome.logs.splice(0..0, output.lines);
            }
            #[cfg(feature = "js")]
            if outcome.timing.is_some() {
                outcome.trace = Some(trace);
            }
            return outcome;
        }
        #[cfg(feature = "js")]
        {
            let (reply, outcome) = oneshot::channel();
            self.pool
                .invoke(function.clone(), request, controls, None, reply);
            outcome
                .await
                // The engine is alive (this borrows it): a reply dropped unsent means the worker
                // running the invocation failed.
                .unwrap_or_else(|_| {
                    Outcome::new(Err(InvokeError::WorkerFailed), ConsoleOutput::default())
                })
        }
        #[cfg(not(feature = "js"))]
        {
            let _ = (request, controls);
            Outcome::new(
                Err(InvokeError::Compile(no_javascript(function))),
                ConsoleOutput::default(),
            )
        }
    }
}

#[cfg(feature = "js")]
impl Engine {
    /// Sets what starts the functions that bindings reach, the embedder's [`crate::Services`]
    /// (once; without it, calls through bindings fail). Hold the engine weakly there.
    pub fn set_services(&self, services: Arc<dyn crate::Services>) {
        self.pool.set_services(services);
    }

    /// Serves `session` (a call through a binding) with an invocation of `function`, which
    /// ends when the caller is done with the session: its outcome is a `204` then, or why the
    /// invocation failed (which the caller's pending calls fail with too). The function's
    /// limits apply, within the caller's deadline.
    pub async fn serve(&self, function: &Function, session: crate::RpcSession) -> Outcome {
        if let Some(message) = crate::services::no_methods(function) {
            session.refuse(message.clone());
            return Outcome::new(
                Err(InvokeError::Threw {
                    message,
                    stack: String::new(),
                }),
                ConsoleOutput::default(),
            );
        }
        let (reply, outcome) = oneshot::channel();
        self.pool.invoke(
            function.clone(),
            Request::default(),
            Controls::default(),
            Some(session),
            reply,
        );
        outcome.await.unwrap_or_else(|_| {
            Outcome::new(Err(InvokeError::WorkerFailed), ConsoleOutput::default())
        })
    }
}

/// The error for a JavaScript function given to an engine built without the `js` feature.
#[cfg(not(feature = "js"))]
fn no_javascript(function: &Function) -> CompileError {
    CompileError {
        message: "this engine runs WebAssembly only (functions-runtime without its js feature)"
            .into(),
        file: function.name().to_owned(),
        line: 0,
        column: 0,
    }
}

#[cfg(feature = "js")]
fn stopped_compile_error(function: &Function) -> CompileError {
    CompileError {
        message: InvokeError::EngineStopped.to_string(),
        file: function.inner().specifier.to_string(),
        line: 0,
        column: 0,
    }
}

#[cfg(feature = "js")]
/// Seeds V8's random number generators (`Math.random`, hash seeds, address-space layout) from
/// a thread-local CSPRNG that the operating system reseeds, instead of V8's default of opening and
/// reading `/dev/urandom` three times for every isolate created.
fn use_fast_entropy() {
    fn fill(buffer: &mut [u8]) -> bool {
        rand::fill(buffer);
        true
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| deno_core::v8::V8::set_entropy_source(fill));
}
