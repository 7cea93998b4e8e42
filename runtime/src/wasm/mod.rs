//! WebAssembly functions on wasmtime: WASI preview 1 command modules and WASI 0.2
//! `wasi:cli/command` components, compiled once (at deploy) and instantiated fresh for every
//! invocation.
//!
//! One [`wasmtime::Engine`] per [`crate::Engine`], created on first use, with the pooling instance
//! allocator (instance slots reused, linear memories mapped copy-on-write from the module's
//! image) and epoch interruption (a ticker thread advances the epoch every [`EPOCH_TICK`]). Each
//! [`WasmModule`] keeps its `InstancePre` (imports resolved against WASI once); an invocation is a
//! new `Store`, an instantiation, `_start` (or `wasi:cli/run`), and the store's drop.
//!
//! Guests run asynchronously, as a future on the caller's task (no hand-off to another thread):
//! at every epoch tick a guest yields to the executor, so a long one holds a thread for at most a
//! tick at a time. Its CPU time is the time spent running (in its future's `poll`); one past its
//! limit is stopped at the next tick, and one past its wall-clock limit (waiting included) is
//! dropped.
//!
//! The contract (see `cgi.rs`): the request body is stdin, stdout is the response body, stderr
//! goes to the logs, headers and the function's env are environment variables, exit status 0 is
//! success.

mod cgi;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;

use functions_types::ConsoleOutput;
use functions_types::LogLevel;

use crate::function::Executor;
use wasmtime::InstanceAllocationStrategy;
use wasmtime::InstancePre;
use wasmtime::Linker;
use wasmtime::PoolingAllocationConfig;
use wasmtime::ResourceLimiter;
use wasmtime::Store;
use wasmtime::Trap;
use wasmtime::UpdateDeadline;
use wasmtime::component::Component;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::WasiCtxView;
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::Request;
use crate::Response;
use crate::ResponseBody;
use crate::engine::Outcome;
use crate::engine::Timing;
use crate::error::CompileError;
use crate::error::InvokeError;
use crate::function::Function;
use crate::function::MAX_RESPONSE_BYTES;
use crate::share::FairShare;
use crate::share::Holder;
use tokio::sync::oneshot;

/// How often the epoch advances: the granularity of a guest's time limit.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);
/// The most of a guest's stderr kept (for its logs) per invocation.
const MAX_STDERR_BYTES: usize = 1024 * 1024;
/// How much of stderr's end a failed invocation's error carries.
const STDERR_TAIL_BYTES: usize = 2048;
/// Pool slots: at most this many guest instances (and linear memories) exist at once.
const POOL_SLOTS: u32 = 256;
/// At most this many invocations run at once (more wait their turn, first come first served):
/// a component takes a few core instances and memories (its own and the WASI adapter's), so
/// this many always fit the pool.
const MAX_CONCURRENT_INVOCATIONS: usize = POOL_SLOTS as usize / 4;
/// The largest linear memory any guest may have; a function's own limit is usually lower.
const MAX_MEMORY_BYTES: usize = 1 << 30;

/// Whether a binary is a core module or a component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasmKind {
    /// A core module importing WASI preview 1 (`wasi_snapshot_preview1`), exporting `_start`.
    Module,
    /// A WASI 0.2 component exporting `wasi:cli/run` (a `wasi:cli/command`).
    Component,
}

impl WasmKind {
    /// The kind a binary's header declares; `None` when it is not WebAssembly.
    pub fn of(bytes: &[u8]) -> Option<Self> {
        match bytes.get(..8)? {
            [0, b'a', b's', b'm', 1, 0, 0, 0] => Some(Self::Module),
            [0, b'a', b's', b'm', _, _, 1, 0] => Some(Self::Component),
            _ => None,
        }
    }
}

/// A compiled WebAssembly function: the binary as deployed and the engine's compiled artifact of
/// it, which is what gets stored so that loading it again needs no compilation. Cheap to clone.
#[derive(Clone)]
pub struct WasmModule(Arc<WasmModuleInner>);

struct WasmModuleInner {
    kind: WasmKind,
    wasm: Arc<[u8]>,
    artifact: Arc<[u8]>,
    code: Code,
    /// Imports resolved against WASI, built on first use.
    prepared: OnceLock<Result<Prepared, String>>,
}

impl std::fmt::Debug for WasmModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmModule")
            .field("kind", &self.0.kind)
            .field("wasm_bytes", &self.0.wasm.len())
            .field("artifact_bytes", &self.0.artifact.len())
            .finish()
    }
}

impl WasmModule {
    /// Core module or component.
    pub fn kind(&self) -> WasmKind {
        self.0.kind
    }

    /// The binary as deployed.
    pub fn wasm(&self) -> &Arc<[u8]> {
        &self.0.wasm
    }

    /// The compiled artifact (machine code for this wasmtime and configuration), to store and
    /// hand back to [`crate::Engine::load_wasm`].
    pub fn artifact(&self) -> &Arc<[u8]> {
        &self.0.artifact
    }
}

#[derive(Clone)]
enum Code {
    Module(wasmtime::Module),
    Component(Component),
}

enum Prepared {
    Module(InstancePre<ModuleState>),
    Component(CommandPre<ComponentState>),
}

/// How many modules an engine compiled and how many it loaded from their stored artifacts, and
/// how many guests run now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WasmStats {
    /// Binaries compiled (at deploy, or because a stored artifact no longer fit the engine).
    pub compiled: u64,
    /// Stored artifacts loaded without compiling.
    pub loaded: u64,
    /// Guests holding one of the places to run (64 at most).
    pub running: usize,
}

/// The wasmtime side of an [`crate::Engine`].
pub(crate) struct WasmEngine {
    engine: wasmtime::Engine,
    modules: Linker<ModuleState>,
    components: wasmtime::component::Linker<ComponentState>,
    compiled: AtomicU64,
    loaded: AtomicU64,
    /// Places to run, [`MAX_CONCURRENT_INVOCATIONS`] of them, shared fairly (`share.rs`);
    /// each waiter is woken through its sender.
    running: Mutex<FairShare<(u64, oneshot::Sender<()>)>>,
    /// Numbers the waiters.
    next_waiter: AtomicU64,
}

/// A guest's place among those running at once (or in the queue for one), given back (or left)
/// when dropped.
struct Place<'a> {
    running: &'a Mutex<FairShare<(u64, oneshot::Sender<()>)>>,
    holder: Holder,
    id: u64,
    woken: oneshot::Receiver<()>,
    /// Whether it holds a place (rather than waiting for one).
    held: bool,
}

impl Place<'_> {
    /// Waits until it holds a place.
    async fn taken(mut self) -> Result<Self, InvokeError> {
        if !self.held {
            (&mut self.woken)
                .await
                .map_err(|_| InvokeError::EngineStopped)?;
            self.held = true;
        }
        Ok(self)
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        // A waiter given a place while it was being dropped holds it all the same.
        if !self.held && self.woken.try_recv().is_err() {
            running.forget(|(id, _)| *id == self.id);
            return;
        }
        let mut next = running.leave(&self.holder);
        // The next waiter whose guest still wants the place takes it.
        while let Some((holder, (_, wake))) = next {
            if wake.send(()).is_ok() {
                break;
            }
            next = running.leave(&holder);
        }
    }
}

impl WasmEngine {
    pub fn new() -> Self {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(POOL_SLOTS)
            .total_component_instances(POOL_SLOTS)
            .total_memories(POOL_SLOTS)
            .total_tables(POOL_SLOTS)
            .total_stacks(POOL_SLOTS)
            .max_memory_size(MAX_MEMORY_BYTES);
        let mut config = wasmtime::Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(true)
            .epoch_interruption(true);
        let engine = wasmtime::Engine::new(&config).expect("a valid wasmtime configuration");
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("functions-wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .expect("spawning the epoch thread");
        let mut modules = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut modules, |state: &mut ModuleState| {
            &mut state.wasi
        })
        .expect("WASI preview 1 links");
        let mut components = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut components).expect("WASI 0.2 links");
        Self {
            engine,
            modules,
            components,
            compiled: AtomicU64::new(0),
            loaded: AtomicU64::new(0),
            running: Mutex::new(FairShare::new(MAX_CONCURRENT_INVOCATIONS)),
            next_waiter: AtomicU64::new(0),
        }
    }

    /// A place for one of `function`'s guests to run: at once, or in its turn.
    fn place(&self, function: &Function) -> Place<'_> {
        let (wake, woken) = oneshot::channel();
        let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        let holder = function.holder();
        let held = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .enter(holder.clone(), (id, wake))
            .is_some();
        Place {
            running: &self.running,
            holder,
            id,
            woken,
            held,
        }
    }

    pub fn stats(&self) -> WasmStats {
        WasmStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            loaded: self.loaded.load(Ordering::Relaxed),
            running: self
                .running
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .running(),
        }
    }

    /// Compiles `wasm` and checks that it is a WASI command this host can run.
    pub fn compile(&self, wasm: Arc<[u8]>) -> Result<WasmModule, CompileError> {
        let kind = WasmKind::of(&wasm).ok_or_else(|| {
            compile_error("not a WebAssembly binary (it does not start with \\0asm)".into())
        })?;
        let code = match kind {
            WasmKind::Module => wasmtime::Module::new(&self.engine, &wasm).map(Code::Module),
            WasmKind::Component => Component::new(&self.engine, &wasm).map(Code::Component),
        }
        .map_err(|err| compile_error(format!("invalid WebAssembly: {err:#}")))?;
        let artifact = match &code {
            Code::Module(module) => module.serialize(),
            Code::Component(component) => component.serialize(),
        }
        .map_err(|err| compile_error(format!("{err:#}")))?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        let module = WasmModule(Arc::new(WasmModuleInner {
            kind,
            wasm,
            artifact: artifact.into(),
            code,
            prepared: OnceLock::new(),
        }));
        self.prepared(&module)
            .map_err(|err| compile_error(err.clone()))?;
        Ok(module)
    }

    /// A stored module: loads `artifact` when this engine made it (no compilation), otherwise
    /// compiles `wasm` again.
    pub fn load(&self, wasm: Arc<[u8]>, artifact: &[u8]) -> Result<WasmModule, CompileError> {
        let kind = WasmKind::of(&wasm);
        let loaded = match (kind, wasmtime::Engine::detect_precompiled(artifact)) {
            // SAFETY: the artifact is one this host serialized (it comes from the host's own
            // store), and wasmtime checks that it was made by this version and configuration.
            (Some(WasmKind::Module), Some(wasmtime::Precompiled::Module)) => {
                unsafe { wasmtime::Module::deserialize(&self.engine, artifact).map(Code::Module) }
                    .ok()
            }
            // SAFETY: as above.
            (Some(WasmKind::Component), Some(wasmtime::Precompiled::Component)) => {
                unsafe { Component::deserialize(&self.engine, artifact).map(Code::Component) }.ok()
            }
            _ => None,
        };
        match (kind, loaded) {
            (Some(kind), Some(code)) => {
                self.loaded.fetch_add(1, Ordering::Relaxed);
                Ok(WasmModule(Arc::new(WasmModuleInner {
                    kind,
                    wasm,
                    artifact: artifact.into(),
                    code,
                    prepared: OnceLock::new(),
                })))
            }
            _ => self.compile(wasm),
        }
    }

    /// The module's imports resolved against WASI, once.
    fn prepared<'m>(&self, module: &'m WasmModule) -> Result<&'m Prepared, &'m String> {
        module
            .0
            .prepared
            .get_or_init(|| match &module.0.code {
                Code::Module(code) => {
                    let is_command = code
                        .get_export("_start")
                        .is_some_and(|e| e.func().is_some());
                    if !is_command {
                        return Err(
                            "not a WASI command: the module exports no _start function".to_owned()
                        );
                    }
                    self.modules
                        .instantiate_pre(code)
                        .map(Prepared::Module)
                        .map_err(|err| format!("not a WASI preview 1 command: {err:#}"))
                }
                Code::Component(code) => self
                    .components
                    .instantiate_pre(code)
                    .and_then(CommandPre::new)
                    .map(Prepared::Component)
                    .map_err(|err| format!("not a wasi:cli/command component: {err:#}")),
            })
            .as_ref()
    }

    /// Runs one invocation of `function` (whose code is `module`) on the calling task.
    pub async fn invoke(
        &self,
        function: &Function,
        module: &WasmModule,
        request: Request,
    ) -> Outcome {
        let received = Instant::now();
        let started = OnceLock::new();
        let mut logs = ConsoleOutput::default();
        let result = self
            .run(function, module, request, &mut logs, &started)
            .await;
        let mut outcome = Outcome::new(result, logs);
        outcome.timing = started
            .get()
            .map(|&started| Timing::since(received, started, false));
        outcome
    }

    /// Runs the guest; `started` is set when its instance is ready.
    async fn run(
        &self,
        function: &Function,
        module: &WasmModule,
        mut request: Request,
        logs: &mut ConsoleOutput,
        started: &OnceLock<Instant>,
    ) -> Result<Response, InvokeError> {
        let code_engine = match &module.0.code {
            Code::Module(code) => code.engine(),
            Code::Component(code) => code.engine(),
        };
        if !wasmtime::Engine::same(code_engine, &self.engine) {
            return Err(failed("the module was compiled by another engine"));
        }
        let prepared = self.prepared(module).map_err(|err| failed(err))?;
        let _running = self.place(function).taken().await?;
        let settings = function.settings();
        let limits = &settings.limits;
        let stdout = MemoryOutputPipe::new(MAX_RESPONSE_BYTES + 1);
        let stderr = MemoryOutputPipe::new(MAX_STDERR_BYTES);
        let environment = cgi::environment(&request, &settings.env, settings.executor);
        let mut wasi = WasiCtxBuilder::new();
        // The body moves into stdin: a large one is not copied.
        wasi.stdin(MemoryInputPipe::new(std::mem::take(&mut request.body)))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(&[function.name()])
            .envs(&environment);
        let limiter = Limiter::new(limits.memory_bytes);
        let outcome = match prepared {
            Prepared::Module(pre) => {
                let state = ModuleState {
                    wasi: wasi.build_p1(),
                    limiter,
                };
                let mut store = Store::new(&self.engine, state);
                store.limiter(|state| &mut state.limiter);
                let clock = meter(&mut store, limits.cpu_time);
                let result = within(limits.wall_clock, clock, async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let _ = started.set(Instant::now());
                    instance
                        .get_typed_func::<(), ()>(&mut store, "_start")?
                        .call_async(&mut store, ())
                        .await
                })
                .await;
                (result, store.into_data().limiter)
            }
            Prepared::Component(pre) => {
                let state = ComponentState {
                    ctx: wasi.build(),
                    table: ResourceTable::new(),
                    limiter,
                };
                let mut store = Store::new(&self.engine, state);
                store.limiter(|state| &mut state.limiter);
                let clock = meter(&mut store, limits.cpu_time);
                let result = within(limits.wall_clock, clock, async {
                    let command = pre.instantiate_async(&mut store).await?;
                    let _ = started.set(Instant::now());
                    command
                        .wasi_cli_run()
                        .call_run(&mut store)
                        .await?
                        .map_err(|()| I32Exit(1).into())
                })
                .await;
                (result, store.into_data().limiter)
            }
        };
        let stderr = stderr.contents();
        log_stderr(&stderr, logs);
        let (result, limiter) = outcome;
        let status = match result {
            Ok(()) => 0,
            Err(err) => match err.downcast_ref::<I32Exit>() {
                Some(I32Exit(code)) => *code,
                None if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) => {
                    return Err(InvokeError::TimeLimit {
                        limit: limits.cpu_time,
                    });
                }
                None if err.is::<WallClockExceeded>() => {
                    return Err(InvokeError::TimeLimit {
                        limit: limits.wall_clock,
                    });
                }
                None if limiter.denied => {
                    return Err(InvokeError::MemoryLimit {
                        limit: limits.memory_bytes,
                    });
                }
                None => return Err(failed(&format!("{err:#}"))),
            },
        };
        if status != 0 {
            return Err(InvokeError::Exited {
                code: status,
                stderr: tail(&stderr, STDERR_TAIL_BYTES),
            });
        }
        let stdout = stdout.contents();
        if stdout.len() > MAX_RESPONSE_BYTES {
            return Err(InvokeError::OutputTooLarge {
                limit: MAX_RESPONSE_BYTES,
            });
        }
        match settings.executor {
            Executor::Command => Ok(Response {
                status: 200,
                headers: vec![(
                    "content-type".to_owned(),
                    "text/plain; charset=utf-8".to_owned(),
                )],
                body: ResponseBody::Full(stdout.to_vec()),
            }),
            Executor::Wagi => cgi::parse_wagi(&stdout).map_err(|message| failed(&message)),
        }
    }
}

/// The time a guest has spent running: inside its future's `poll`, not waiting to be polled or
/// for I/O. Shared by the future ([`Metered`]) and the store's epoch callback.
#[derive(Default)]
struct CpuClock {
    spent: Duration,
    /// When the current `poll` began, while one runs.
    since: Option<Instant>,
}

impl CpuClock {
    fn total(&self) -> Duration {
        self.spent + self.since.map_or(Duration::ZERO, |since| since.elapsed())
    }
}

/// Makes the guest in `store` yield to the executor at every epoch tick, and stops it (a
/// [`Trap::Interrupt`]) at the first tick after it has run for `cpu_time`.
fn meter<T>(store: &mut Store<T>, cpu_time: Duration) -> Arc<Mutex<CpuClock>> {
    let clock = Arc::new(Mutex::new(CpuClock::default()));
    let spent = clock.clone();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if spent.lock().map_or(true, |clock| clock.total() >= cpu_time) {
            Err(Trap::Interrupt.into())
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    clock
}

/// A guest's run, timed by `clock` and given up (a [`WallClockExceeded`]) after `wall_clock`.
async fn within(
    wall_clock: Duration,
    clock: Arc<Mutex<CpuClock>>,
    run: impl Future<Output = wasmtime::Result<()>>,
) -> wasmtime::Result<()> {
    let metered = Metered {
        run: Box::pin(run),
        clock,
    };
    tokio::time::timeout(wall_clock, metered)
        .await
        .unwrap_or_else(|_| Err(WallClockExceeded.into()))
}

/// A future that adds the time spent in its `poll` to a [`CpuClock`].
struct Metered<F> {
    run: Pin<Box<F>>,
    clock: Arc<Mutex<CpuClock>>,
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let started = Instant::now();
        if let Ok(mut clock) = self.clock.lock() {
            clock.since = Some(started);
        }
        let polled = self.run.as_mut().poll(cx);
        if let Ok(mut clock) = self.clock.lock() {
            clock.spent += started.elapsed();
            clock.since = None;
        }
        polled
    }
}

/// A guest ran past its wall-clock limit.
#[derive(Debug)]
struct WallClockExceeded;

impl std::fmt::Display for WallClockExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the wall-clock limit passed")
    }
}

impl std::error::Error for WallClockExceeded {}

/// An invocation that failed without a more specific reason.
fn failed(message: &str) -> InvokeError {
    InvokeError::Threw {
        message: message.to_owned(),
        stack: String::new(),
    }
}

fn compile_error(message: String) -> CompileError {
    CompileError {
        message,
        file: String::new(),
        line: 0,
        column: 0,
    }
}

/// stderr, a log line per line (as `error`s).
fn log_stderr(stderr: &[u8], logs: &mut ConsoleOutput) {
    let now = SystemTime::now();
    for line in String::from_utf8_lossy(stderr).lines() {
        logs.push_at(now, LogLevel::Error, line);
    }
}

/// The last `max` bytes of `bytes` (from a line start when there is one), as text.
fn tail(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let tail = &text[start..];
    tail.find('\n').map_or(tail, |i| &tail[i + 1..]).to_owned()
}

/// A store's memory limit, remembering whether it refused to grow (the guest then usually
/// aborts, and the error should say why).
struct Limiter {
    memory_bytes: usize,
    denied: bool,
}

impl Limiter {
    fn new(memory_bytes: u64) -> Self {
        Self {
            memory_bytes: usize::try_from(memory_bytes).unwrap_or(usize::MAX),
            denied: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_bytes && maximum.is_none_or(|max| desired <= max);
        self.denied |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000 && maximum.is_none_or(|max| desired <= max))
    }
}

/// What a core module's store holds.
struct ModuleState {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

/// What a component's store holds.
struct ComponentState {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_header_tells_modules_from_components() {
        assert_eq!(WasmKind::of(b"\0asm\x01\0\0\0rest"), Some(WasmKind::Module));
        assert_eq!(
            WasmKind::of(b"\0asm\x0d\0\x01\0rest"),
            Some(WasmKind::Component)
        );
        assert_eq!(WasmKind::of(b"(module)"), None);
        assert_eq!(WasmKind::of(b"\0asm"), None);
    }

    #[test]
    fn the_tail_of_stderr_starts_at_a_line() {
        assert_eq!(tail(b"short\n", 100), "short");
        assert_eq!(tail(b"first line\nsecond line\nthird\n", 14), "third");
    }
}
