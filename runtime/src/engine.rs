//! The embedding API: an [`Engine`] runs [`Function`]s on its worker threads.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::task::Context;
use std::task::Poll;

use functions_ext::console::ConsoleOutput;
use functions_ext::console::LogLine;
use tokio::sync::oneshot;

use crate::Request;
use crate::Response;
use crate::error::CompileError;
use crate::error::InvokeError;
use crate::function::Function;
use crate::pool::Pool;
use crate::pool::Task;
use crate::wasm::WasmEngine;
use crate::wasm::WasmModule;
use crate::wasm::WasmStats;

/// How an [`Engine`] is set up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Worker threads, each running one invocation at a time (default: the number of cores).
    pub workers: usize,
    /// Create isolates from the base startup snapshot (the default). `false` runs all of the
    /// host's JavaScript bootstrap in every isolate instead: only useful to measure the difference.
    pub use_snapshot: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            use_snapshot: true,
        }
    }
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
}

impl Outcome {
    pub(crate) fn new(result: Result<Response, InvokeError>, output: ConsoleOutput) -> Self {
        Self {
            result,
            logs: output.lines,
            dropped_log_lines: output.dropped,
            after_response: None,
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

/// Runs functions: JavaScript on a pool of worker threads (dropping the engine stops them after
/// the invocations already queued), WebAssembly on the caller's task.
pub struct Engine {
    pool: Pool,
    /// The wasmtime engine, created when the first WebAssembly function is compiled or loaded.
    wasm: Arc<OnceLock<WasmEngine>>,
}

impl Engine {
    /// Starts the worker threads.
    pub fn new(config: EngineConfig) -> Self {
        let snapshot = config
            .use_snapshot
            .then_some(functions_snapshots::BASE_SNAPSHOT);
        Self {
            pool: Pool::new(config.workers, snapshot),
            wasm: Arc::new(OnceLock::new()),
        }
    }

    fn wasm(&self) -> &WasmEngine {
        self.wasm.get_or_init(WasmEngine::new)
    }

    /// Compiles a WebAssembly binary (a WASI preview 1 command module or a WASI 0.2
    /// `wasi:cli/command` component) for [`Function::wasm`], checking that its imports are WASI's.
    /// Compiling takes a while for large binaries; it runs on a thread of its own.
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
    pub fn load_wasm(
        &self,
        wasm: impl Into<Arc<[u8]>>,
        artifact: &[u8],
    ) -> Result<WasmModule, CompileError> {
        self.wasm().load(wasm.into(), artifact)
    }

    /// How many WebAssembly binaries this engine compiled, and how many it loaded precompiled.
    pub fn wasm_stats(&self) -> WasmStats {
        self.wasm.get().map(WasmEngine::stats).unwrap_or_default()
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.pool.workers()
    }

    /// Compiles and links the function's module without running it: what a deploy checks.
    pub async fn check(&self, function: &Function) -> Result<(), CompileError> {
        if function.wasm_module().is_some() {
            // Compiled and checked already, by `compile_wasm` or `load_wasm`.
            return Ok(());
        }
        let (reply, result) = oneshot::channel();
        let task = Task::Check {
            function: function.clone(),
            reply,
        };
        if self.pool.submit(task).is_err() {
            return Err(stopped_compile_error(function));
        }
        result
            .await
            .unwrap_or_else(|_| Err(stopped_compile_error(function)))
    }

    /// Runs one invocation of `function` with `request`: JavaScript on a worker thread,
    /// WebAssembly as part of this future (which needs a tokio runtime with its timer enabled,
    /// for the wall-clock limit).
    pub async fn invoke(&self, function: &Function, request: Request) -> Outcome {
        if let Some(module) = function.wasm_module() {
            return self.wasm().invoke(function, module, request).await;
        }
        let (reply, outcome) = oneshot::channel();
        let task = Task::Invoke {
            function: function.clone(),
            request,
            reply,
        };
        let stopped = || Outcome::new(Err(InvokeError::EngineStopped), ConsoleOutput::default());
        if self.pool.submit(task).is_err() {
            return stopped();
        }
        outcome.await.unwrap_or_else(|_| stopped())
    }
}

fn stopped_compile_error(function: &Function) -> CompileError {
    CompileError {
        message: InvokeError::EngineStopped.to_string(),
        file: function.inner().specifier.to_string(),
        line: 0,
        column: 0,
    }
}
