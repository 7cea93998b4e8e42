//! One function module loaded in one V8 isolate: the per-invocation path.
//!
//! A worker thread keeps many isolates alive at once (see `worker.rs`) and runs their event loops
//! as tasks of one local executor. V8 wants the isolate whose JavaScript runs to be the thread's
//! *entered* one, and rusty_v8 wants isolates entered and exited in LIFO order; so every isolate
//! here stays exited while it waits, and is entered only for as long as one of its futures is
//! polled or its runtime is used ([`Entered`], [`Slices`]). Each such poll of an invocation is a
//! *slice*, charged to the invocation's CPU budget (see `watchdog.rs`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Context;
use std::task::Poll;

use deno_core::JsRuntime;
use deno_core::ModuleId;
use deno_core::ModuleLoader;
use deno_core::PollEventLoopOptions;
use deno_core::RuntimeOptions;
use deno_core::SharedArrayBufferStore;
use deno_core::error::CoreErrorKind;
use deno_core::v8;
use functions_ext::console::ConsoleOutput;
use functions_ext::runtime::INTERNALS_GLOBAL;
use functions_ext::runtime::OffHeapBudget;
use functions_ext::runtime::OffThreadTime;

use crate::Request;
use crate::Response;
use crate::allocator::BufferBudget;
use crate::error::CompileError;
use crate::error::InvokeError;
use crate::function::Function;
use crate::function::Limits;
use crate::loader::FunctionLoader;
use crate::watchdog::Budget;
use crate::watchdog::Stop;
use crate::watchdog::ThreadWatch;
use crate::watchdog::Verdict;

/// Globals that the snapshot needs while it is built and at isolate creation, but that a
/// function must not see.
const HIDDEN_GLOBALS: [&str; 3] = [INTERNALS_GLOBAL, "Deno", "__bootstrap"];

/// The host's entry points into an isolate, which `bootstrap.js` leaves on the global object.
pub(crate) struct Internals {
    /// Runs one invocation (see `bootstrap.js`'s `dispatch`).
    pub dispatch: v8::Global<v8::Function>,
    /// Gives the function a base URL and a `location` (see `bootstrap.js`'s `setLocation`).
    pub set_location: v8::Global<v8::Function>,
    /// Starts a Python interpreter (see `ext/python/boot.js`).
    pub prepare_python: v8::Global<v8::Function>,
    /// Makes a started interpreter a Python function's (see `ext/python/boot.js`).
    pub start_python: v8::Global<v8::Function>,
    /// Starts the .NET runtime with a C# function (see `ext/dotnet/boot.js`).
    pub start_dotnet: v8::Global<v8::Function>,
}

/// Makes an isolate the thread's entered one until dropped.
struct Entered(v8::UnsafeRawIsolatePtr);

impl Entered {
    /// # Safety
    /// `isolate` must be alive until the guard is dropped, on this thread, and any isolate
    /// entered meanwhile must be exited before the guard is dropped.
    unsafe fn new(isolate: v8::UnsafeRawIsolatePtr) -> Self {
        // SAFETY: per this function's contract.
        unsafe { v8::Isolate::from_raw_isolate_ptr(isolate).enter() };
        Self(isolate)
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        // SAFETY: entered in `new`; LIFO per `new`'s contract.
        unsafe { v8::Isolate::from_raw_isolate_ptr(self.0).exit() };
    }
}

/// V8 isolates alive in this process (every [`Runtime`]: prepared, running, kept warm, or
/// waiting to be torn down).
pub(crate) static LIVE_ISOLATES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// A `JsRuntime` that stays exited except while it is used, and is entered again to be dropped.
pub(crate) struct Runtime {
    js: ManuallyDrop<JsRuntime>,
    raw: v8::UnsafeRawIsolatePtr,
}

impl Runtime {
    /// Creates a runtime ready to load a function module: from `snapshot` (the base snapshot),
    /// or, with `None`, by running every extension's JavaScript from scratch (only for
    /// comparison). The isolate is created with `create_params` (its memory limits), if given.
    pub fn new(
        snapshot: Option<&'static [u8]>,
        loader: Option<Rc<dyn ModuleLoader>>,
        create_params: Option<v8::CreateParams>,
    ) -> (Self, Internals) {
        let mut js = JsRuntime::new(RuntimeOptions {
            module_loader: loader,
            create_params,
            startup_snapshot: snapshot,
            // The snapshot already holds the op bindings.
            skip_op_registration: snapshot.is_some(),
            residual_lazy_js_sources: if snapshot.is_some() {
                functions_snapshots::RESIDUAL_LAZY_JS
            } else {
                &[]
            },
            extensions: functions_ext::extensions(),
            // Where `structuredClone` and `postMessage` keep transferred ArrayBuffers (which
            // also detaches them) and SharedArrayBuffers between serializing and deserializing;
            // one per isolate, so nothing outlives it.
            shared_array_buffer_store: Some(SharedArrayBufferStore::default()),
            ..Default::default()
        });
        let internals = take_internals(&mut js);
        LIVE_ISOLATES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the isolate is alive; the pointer is only used while `js` is.
        let raw = unsafe { js.v8_isolate().as_raw_isolate_ptr() };
        // Created entered: exited until used (see the module docs).
        // SAFETY: just created, so it is the thread's current isolate.
        unsafe { js.v8_isolate().exit() };
        (
            Self {
                js: ManuallyDrop::new(js),
                raw,
            },
            internals,
        )
    }

    /// Runs `f` with the runtime, its isolate entered.
    pub fn with<T>(&mut self, f: impl FnOnce(&mut JsRuntime) -> T) -> T {
        // SAFETY: the isolate lives as long as `self`; the guard ends before `with` returns.
        let _entered = unsafe { Entered::new(self.raw) };
        f(&mut self.js)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Dropping an isolate exits it, so it must be the current one.
        // SAFETY: alive until the drop below, which exits it.
        unsafe { v8::Isolate::from_raw_isolate_ptr(self.raw).enter() };
        // SAFETY: not used again.
        unsafe { ManuallyDrop::drop(&mut self.js) };
        LIVE_ISOLATES.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Takes the host's entry points `bootstrap.js` left on the global object and hides the
/// internals.
fn take_internals(runtime: &mut JsRuntime) -> Internals {
    deno_core::scope!(scope, runtime);
    let global = scope.get_current_context().global(scope);
    let internals = {
        let key = v8::String::new(scope, INTERNALS_GLOBAL).unwrap();
        global.get(scope, key.into()).unwrap()
    };
    for name in HIDDEN_GLOBALS {
        let key = v8::String::new(scope, name).unwrap();
        global.delete(scope, key.into());
    }
    let internals = v8::Local::<v8::Object>::try_from(internals)
        .expect("the base snapshot has no host internals: ext/runtime/bootstrap.js did not run");
    let function = |name: &str| {
        let key = v8::String::new(scope, name).unwrap();
        let value = internals.get(scope, key.into()).unwrap();
        let function = v8::Local::<v8::Function>::try_from(value)
            .unwrap_or_else(|_| panic!("bootstrap.js left no {name} function"));
        v8::Global::new(scope, function)
    };
    // What each isolate needs before any of the function's code runs (see `prepare`).
    let prepare = function("prepare");
    let undefined = v8::undefined(scope);
    v8::Local::new(scope, prepare)
        .call(scope, undefined.into(), &[])
        .expect("prepare does not throw");
    Internals {
        dispatch: function("dispatch"),
        set_location: function("setLocation"),
        prepare_python: function("preparePython"),
        start_python: function("startPython"),
        start_dotnet: function("startDotnet"),
    }
}

/// Calls `set_location` with `href` in `runtime`, before any of the function's code runs.
fn set_location(runtime: &mut JsRuntime, set_location: &v8::Global<v8::Function>, href: &str) {
    deno_core::scope!(scope, runtime);
    let function = v8::Local::new(scope, set_location);
    let href = v8::String::new(scope, href).unwrap();
    let undefined = v8::undefined(scope);
    function
        .call(scope, undefined.into(), &[href.into()])
        .expect("setLocation does not throw for a URL the function was built with");
}

/// The promise of an invocation's work after its response (see `bootstrap.js`'s dispatcher).
pub(crate) struct Tail(v8::Global<v8::Value>);

/// What a function isolate needs to run slices: its isolate, the reason it was stopped, and the
/// worker thread's watch.
struct Control {
    raw: v8::UnsafeRawIsolatePtr,
    handle: v8::IsolateHandle,
    verdict: Arc<Verdict>,
    thread: Rc<ThreadWatch>,
    /// Work of the isolate's on other threads, charged to its budget after each slice.
    off_thread: OffThreadTime,
    /// Its memory outside the heap, checked after each slice (and while one runs).
    buffers: Option<Arc<BufferBudget>>,
    /// Set when the invocation starts another call of a session it serves: its budget starts
    /// again after the slice (see `functions_ext::rpc::CallBudget`).
    renewal: functions_ext::rpc::CallBudget,
    /// The function's limits, for a renewed budget.
    limits: Limits,
    /// The caller's deadline, which a renewed budget keeps (when another function called).
    not_after: std::cell::Cell<Option<std::time::Instant>>,
}

/// Polls a future of an isolate's work as slices: each poll enters the isolate and, with a
/// budget, runs under the watchdog's watch and is charged to it.
struct Slices<'a, T> {
    control: &'a Control,
    budget: Option<&'a RefCell<Budget>>,
    work: ManuallyDrop<Pin<Box<dyn Future<Output = T> + 'a>>>,
}

impl<'a, T> Slices<'a, T> {
    fn new(
        control: &'a Control,
        budget: Option<&'a RefCell<Budget>>,
        work: impl Future<Output = T> + 'a,
    ) -> Self {
        Self {
            control,
            budget,
            work: ManuallyDrop::new(Box::pin(work)),
        }
    }
}

impl<T> Future for Slices<'_, T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = &mut *self;
        // SAFETY: the isolate outlives `control`; exited again when the guard drops, below.
        let _entered = unsafe { Entered::new(this.control.raw) };
        let work = this.work.as_mut();
        match this.budget {
            None => work.poll(cx),
            Some(budget) => {
                let control = this.control;
                let polled = control.thread.slice(
                    &control.handle,
                    &control.verdict,
                    control.buffers.as_ref(),
                    &mut budget.borrow_mut(),
                    || work.poll(cx),
                );
                if let Some(buffers) = &control.buffers {
                    let mut raw = control.raw;
                    // SAFETY: the isolate is entered (above) and alive as long as `control`.
                    buffers.check_external(
                        unsafe { v8::Isolate::ref_from_raw_isolate_ptr_mut(&mut raw) },
                        true,
                    );
                }
                if control.renewal.take() {
                    budget
                        .borrow_mut()
                        .renew(&control.limits, control.not_after.get());
                }
                let elsewhere = control.off_thread.take();
                if !elsewhere.is_zero() && budget.borrow_mut().charge(elsewhere, &control.verdict) {
                    // Whatever JavaScript runs next is stopped.
                    control.handle.terminate_execution();
                }
                polled
            }
        }
    }
}

impl<T> Drop for Slices<'_, T> {
    fn drop(&mut self) {
        // The work may hold V8 handles: drop it with its isolate entered.
        // SAFETY: as in `poll`.
        let _entered = unsafe { Entered::new(self.control.raw) };
        // SAFETY: not used again.
        unsafe { ManuallyDrop::drop(&mut self.work) };
    }
}

/// A function's module, evaluated in its own isolate, ready for invocations.
///
/// Its work runs in slices charged to a [`Budget`]: the module's evaluation (a fresh isolate's
/// top-level code) to one, each invocation to another, given to [`FunctionIsolate::invoke`].
pub(crate) struct FunctionIsolate {
    // Before `runtime`, which drops the isolate these handles are of.
    dispatch: v8::Global<v8::Function>,
    namespace: v8::Global<v8::Value>,
    runtime: Runtime,
    control: Control,
    budget: RefCell<Budget>,
    limits: Limits,
    /// The W3C `traceparent` of the invocation it runs (or ran last): its `fetch` requests
    /// carry it.
    traceparent: std::rc::Rc<str>,
}

/// An isolate made for a function, with its limits, before the function's code is in it.
struct Shell {
    runtime: Runtime,
    internals: Internals,
    failures: ImportFailures,
    control: Control,
}

impl Shell {
    /// Creates an isolate from the snapshot for `function`, with `limits`' memory limit.
    fn new(
        function: &Function,
        snapshot: Option<&'static [u8]>,
        thread: Rc<ThreadWatch>,
        limits: &Limits,
    ) -> Result<Self, InvokeError> {
        let memory_limit = usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX);
        let verdict = Arc::new(Verdict::default());
        let buffers = BufferBudget::new(memory_limit, verdict.clone());
        let create_params = v8::CreateParams::default()
            .heap_limits(0, memory_limit)
            .array_buffer_allocator(buffers.allocator().make_shared());
        let (mut runtime, internals, failures) =
            new_function_runtime(function, snapshot, Some(create_params))?;
        let handle = runtime.with(|js| {
            let handle = js.v8_isolate().thread_safe_handle();
            js.add_near_heap_limit_callback(verdict.on_near_heap_limit(handle.clone()));
            handle
        });
        buffers.watch(handle.clone());
        let off_thread = OffThreadTime::default();
        let renewal = functions_ext::rpc::CallBudget::default();
        runtime.with(|js| {
            let state = js.op_state();
            let mut state = state.borrow_mut();
            state.put(off_thread.clone());
            state.put(renewal.clone());
            state.put(OffHeapBudget(buffers.clone()));
            drop(state);
            buffers.check_after_collections(js.v8_isolate());
        });
        let control = Control {
            raw: runtime.raw,
            handle,
            verdict,
            thread,
            off_thread,
            buffers: Some(buffers),
            renewal,
            limits: limits.clone(),
            not_after: Default::default(),
        };
        Ok(Self {
            runtime,
            internals,
            failures,
            control,
        })
    }

    /// Loads `function` into the isolate, in slices charged to `budget`: its module graph,
    /// evaluated; or, for a Python function, its interpreter (continuing from `prepared`, when
    /// an interpreter was prepared in this isolate already).
    async fn load(
        self,
        function: &Function,
        budget: Budget,
        limits: Limits,
        make_snapshot: bool,
        prepared: Option<v8::Global<v8::Value>>,
    ) -> Result<FunctionIsolate, InvokeError> {
        let Self {
            mut runtime,
            internals,
            failures,
            control,
        } = self;
        let budget = RefCell::new(budget);
        let namespace = match function.python_code() {
            None if let Some(dotnet) = function.dotnet_code() => {
                if let Some(snapshot) = &dotnet.snapshot
                    && snapshot.tag() != dotnet.build.snapshot_tag()
                {
                    return Err(InvokeError::Threw {
                        message: "the function's C# snapshot was made by another build of the \
                                  .NET runtime or of the host: deploy it again"
                            .into(),
                        stack: String::new(),
                    });
                }
                let boot = dotnet.boot(&function.settings().env, make_snapshot);
                runtime.with(|js| js.op_state().borrow_mut().put(boot));
                // Booting the runtime does not depend on the function: it is not charged to
                // the function's CPU time (as a Python interpreter's start is not).
                let setup = crate::python::snapshot_limits(&limits, false);
                let setup_budget = RefCell::new(Budget::new(&setup));
                let js = &mut *runtime.js;
                let start = &internals.start_dotnet;
                let starting = async move {
                    let modules = dotnet_modules(js).await?;
                    let started = call_with(js, start, &modules)?;
                    until_settled(js, started).await
                };
                watched(&control, &setup_budget, &limits, starting).await?
            }
            Some(python) => {
                if let Some(snapshot) = &python.snapshot
                    && !snapshot.fits(&python.build)
                {
                    return Err(InvokeError::Threw {
                        message: "the function's Python snapshot was made by another build of \
                                  Pyodide or of the host: deploy it again"
                            .into(),
                        stack: String::new(),
                    });
                }
                let boot = python.boot(&function.settings().env, make_snapshot);
                runtime.with(|js| js.op_state().borrow_mut().put(boot));
                let prepared = match prepared {
                    Some(prepared) => prepared,
                    None => {
                        // Starting Pyodide does not depend on the function: it is not charged
                        // to the function's CPU time (as it is not when done ahead of time).
                        let setup = crate::python::snapshot_limits(&limits, false);
                        let setup_budget = RefCell::new(Budget::new(&setup));
                        let js = &mut *runtime.js;
                        let preparing = prepare_python(js, &internals.prepare_python);
                        watched(&control, &setup_budget, &limits, preparing).await?
                    }
                };
                let js = &mut *runtime.js;
                let start = &internals.start_python;
                let starting = async move {
                    let started = call(js, start, &prepared)?;
                    until_settled(js, started).await
                };
                watched(&control, &budget, &limits, starting).await?
            }
            None => {
                let loading = load_module(&mut runtime.js, function, failures);
                let id = Slices::new(&control, None, loading).await?;
                let evaluated = {
                    let js = &mut *runtime.js;
                    let evaluation = async move {
                        let evaluation = js.mod_evaluate(id);
                        js.with_event_loop_future(evaluation, PollEventLoopOptions::default())
                            .await?;
                        js.get_module_namespace(id)
                    };
                    watched(&control, &budget, &limits, evaluation).await
                };
                runtime.with(|js| {
                    let namespace = evaluated?;
                    deno_core::scope!(scope, js);
                    let local = v8::Local::new(scope, namespace);
                    Ok::<_, InvokeError>(v8::Global::new(
                        scope,
                        v8::Local::<v8::Value>::from(local),
                    ))
                })?
            }
        };
        let Internals {
            dispatch,
            set_location,
            prepare_python,
            start_python,
            start_dotnet,
        } = internals;
        drop((set_location, prepare_python, start_python, start_dotnet));
        Ok(FunctionIsolate {
            dispatch,
            namespace,
            runtime,
            control,
            budget,
            limits,
            traceparent: std::rc::Rc::from(""),
        })
    }
}

/// An interpreter started ahead of time for Python functions of one Pyodide build and memory
/// limit: an isolate in which Pyodide is instantiated and linked, waiting for a function's
/// snapshot (`preparePython` done, `startPython` to come). This is what a cold start of a
/// Python function does before it touches the function: most of it.
pub(crate) struct PreparedPython {
    // Before `shell`, whose isolate this handle is of.
    prepared: v8::Global<v8::Value>,
    shell: Shell,
    build: Arc<functions_ext::python::PyodideBuild>,
    memory_bytes: u64,
}

impl PreparedPython {
    /// Starts an interpreter of `build` for functions whose memory limit is `memory_bytes`.
    pub async fn prepare(
        build: Arc<functions_ext::python::PyodideBuild>,
        memory_bytes: u64,
        snapshot: Option<&'static [u8]>,
        thread: Rc<ThreadWatch>,
    ) -> Result<Self, InvokeError> {
        let limits = Limits {
            memory_bytes,
            ..Limits::default()
        };
        let interpreter = Function::python(
            "python-interpreter",
            0,
            crate::python::PythonCode::interpreter(build.clone()),
            crate::function::Settings {
                limits: limits.clone(),
                ..Default::default()
            },
        );
        let mut shell = Shell::new(&interpreter, snapshot, thread, &limits)?;
        let mut boot = interpreter
            .python_code()
            .expect("a Python function")
            .boot(&BTreeMap::new(), false);
        boot.prepare_only = true;
        shell
            .runtime
            .with(|js| js.op_state().borrow_mut().put(boot));
        let budget = RefCell::new(Budget::new(&crate::python::snapshot_limits(&limits, false)));
        let prepared = {
            let js = &mut *shell.runtime.js;
            let preparing = prepare_python(js, &shell.internals.prepare_python);
            watched(&shell.control, &budget, &limits, preparing).await?
        };
        Ok(Self {
            prepared,
            shell,
            build,
            memory_bytes,
        })
    }

    /// Whether `function` (a Python function) can continue in this interpreter: it restores a
    /// snapshot of the same build, under the same memory limit.
    pub fn fits(&self, function: &Function) -> bool {
        function
            .python_code()
            .is_some_and(|python| python.snapshot.is_some())
            && crate::python::PythonCode::runs_on(function, &self.build, self.memory_bytes)
    }
}

impl FunctionIsolate {
    /// Creates an isolate from the snapshot, with the function's memory limit, then loads and
    /// evaluates the function's module (awaiting top-level `await`) in slices charged to
    /// `budget` (a fresh budget for the top-level code; the invocation gets its own).
    pub async fn load(
        function: &Function,
        snapshot: Option<&'static [u8]>,
        thread: Rc<ThreadWatch>,
        budget: Budget,
    ) -> Result<Self, InvokeError> {
        let limits = function.settings().limits.clone();
        Self::load_with(function, snapshot, thread, budget, limits, false).await
    }

    /// [`FunctionIsolate::load`] under `limits`; a Python or C# function's isolate asked to
    /// `make_snapshot` leaves its snapshot in its `OpState` (see [`make_snapshot`]). A
    /// Python function restored from a snapshot continues in `spare`, an interpreter prepared
    /// ahead of time for its build and memory limit, when given one.
    async fn load_with(
        function: &Function,
        snapshot: Option<&'static [u8]>,
        thread: Rc<ThreadWatch>,
        budget: Budget,
        limits: Limits,
        make_snapshot: bool,
    ) -> Result<Self, InvokeError> {
        let shell = Shell::new(function, snapshot, thread, &limits)?;
        shell
            .load(function, budget, limits, make_snapshot, None)
            .await
    }

    /// Runs `function` (a Python function with a snapshot) in `spare`, an interpreter
    /// [`PreparedPython::prepare`] made for its build and memory limit, restoring its snapshot
    /// there: the part of a cold start that depends on the function.
    pub async fn load_into(
        spare: PreparedPython,
        function: &Function,
        budget: Budget,
    ) -> Result<Self, InvokeError> {
        let PreparedPython {
            shell, prepared, ..
        } = spare;
        net_access(function)?.install(&mut shell.runtime.js.op_state().borrow_mut());
        let limits = function.settings().limits.clone();
        shell
            .load(function, budget, limits, false, Some(prepared))
            .await
    }
    /// Runs one invocation until the handler has responded, in slices charged to `budget`: the
    /// handler gets `request`; the result is its response and, when work remains after the
    /// response (a streamed body, `ctx.waitUntil`), the [`Tail`] to [`FunctionIsolate::finish`]
    /// (which draws on the same budget).
    pub async fn invoke(
        &mut self,
        request: Request,
        rpc: functions_ext::rpc::RpcInvocation,
        budget: Budget,
    ) -> Result<(Response, Option<Tail>), InvokeError> {
        *self.budget.get_mut() = budget;
        // A renewal asked for in an earlier invocation is not this one's.
        self.control.renewal.take();
        let op_state = self.runtime.js.op_state();
        op_state.borrow_mut().put(request);
        self.traceparent = rpc.chain.traceparent().into();
        functions_ext::rpc::begin(&mut op_state.borrow_mut(), rpc);
        let js = &mut *self.runtime.js;
        let dispatch = &self.dispatch;
        let namespace = &self.namespace;
        let run = async move {
            let promise = call(js, dispatch, namespace)?;
            let value = until_settled(js, promise).await?;
            let tail = {
                deno_core::scope!(scope, js);
                let value = v8::Local::new(scope, value);
                v8::Local::<v8::Object>::try_from(value).ok().map(|object| {
                    let key = v8::String::new(scope, "tail").unwrap();
                    let promise = object.get(scope, key.into()).unwrap();
                    Tail(v8::Global::new(scope, promise))
                })
            };
            Ok(tail)
        };
        let run = functions_ext::fetch::traced(self.traceparent.clone(), run);
        let tail = watched(&self.control, &self.budget, &self.limits, run).await?;
        let response = op_state.borrow_mut().try_take::<Response>();
        let response = response.expect("the dispatcher resolved without responding");
        Ok((response, tail))
    }

    /// Runs the event loop until `tail` (what an invocation does after its response) settles.
    pub async fn finish(&mut self, tail: Tail) -> Result<(), InvokeError> {
        let js = &mut *self.runtime.js;
        let run = async move {
            let failure = until_settled(js, tail.0).await?;
            deno_core::scope!(scope, js);
            let failure = v8::Local::new(scope, failure);
            if failure.is_null_or_undefined() {
                return Ok(None);
            }
            // The dispatcher resolves `tail` to the failure's stack (see bootstrap.js).
            Ok(Some(failure.to_rust_string_lossy(scope)))
        };
        let run = functions_ext::fetch::traced(self.traceparent.clone(), run);
        match watched(&self.control, &self.budget, &self.limits, run).await? {
            None => Ok(()),
            Some(stack) => Err(InvokeError::Threw {
                message: format!("Uncaught {}", stack.lines().next().unwrap_or_default()),
                stack,
            }),
        }
    }

    /// Sets the caller's deadline, which the invocation's budget keeps when it is renewed for a
    /// new call (see `Control::renewal`); `None` for a root invocation.
    pub fn set_not_after(&self, not_after: Option<std::time::Instant>) {
        self.control.not_after.set(not_after);
    }

    /// Ends the invocation's RPC: the sessions it opened or served close, its capabilities go.
    pub fn end_rpc(&mut self) {
        functions_ext::rpc::end(&mut self.runtime.js.op_state().borrow_mut());
    }

    /// Why the isolate was stopped at a limit, if it was (then it must not run again).
    pub fn stopped(&self) -> Option<Stop> {
        self.control.verdict.get()
    }

    /// Takes the console output written since the last call.
    pub fn take_console_output(&mut self) -> ConsoleOutput {
        std::mem::take(
            self.runtime
                .js
                .op_state()
                .borrow_mut()
                .borrow_mut::<ConsoleOutput>(),
        )
    }
}

/// Calls `function` with `argument`: what it returned, or what it threw.
fn call(
    js: &mut JsRuntime,
    function: &v8::Global<v8::Function>,
    argument: &v8::Global<v8::Value>,
) -> Result<v8::Global<v8::Value>, deno_core::error::CoreError> {
    call_with(js, function, std::slice::from_ref(argument))
}

/// [`call`] with any number of arguments.
fn call_with(
    js: &mut JsRuntime,
    function: &v8::Global<v8::Function>,
    arguments: &[v8::Global<v8::Value>],
) -> Result<v8::Global<v8::Value>, deno_core::error::CoreError> {
    deno_core::scope!(scope, js);
    v8::tc_scope!(let scope, scope);
    let function = v8::Local::new(scope, function);
    let arguments: Vec<v8::Local<v8::Value>> = (arguments.iter())
        .map(|argument| v8::Local::new(scope, argument))
        .collect();
    let undefined = v8::undefined(scope);
    match function.call(scope, undefined.into(), &arguments) {
        Some(value) => Ok(v8::Global::new(scope, value)),
        None => {
            let exception = match scope.exception() {
                Some(exception) if !scope.is_execution_terminating() => exception,
                _ => v8::undefined(scope).into(),
            };
            Err(deno_core::error::exception_to_err(scope, exception, false, true).into())
        }
    }
}

/// Runs the event loop until `value` (a promise, or any other value, which is settled already)
/// settles: its value, or the error it was rejected with. Unlike deno_core's
/// `with_event_loop_promise`, this attaches no reactions to the promise (deno_core creates two
/// functions from templates per promise it watches, a noticeable share of a small invocation);
/// it marks the promise handled and looks at its state whenever the event loop has run.
async fn until_settled(
    js: &mut JsRuntime,
    value: v8::Global<v8::Value>,
) -> Result<v8::Global<v8::Value>, deno_core::error::CoreError> {
    let promise = {
        deno_core::scope!(scope, js);
        let value = v8::Local::new(scope, &value);
        match v8::Local::<v8::Promise>::try_from(value) {
            Ok(promise) => {
                promise.mark_as_handled();
                v8::Global::new(scope, promise)
            }
            Err(_) => return Ok(v8::Global::new(scope, value)),
        }
    };
    let settled = |js: &mut JsRuntime| {
        deno_core::scope!(scope, js);
        let promise = v8::Local::new(scope, &promise);
        match promise.state() {
            v8::PromiseState::Pending => None,
            v8::PromiseState::Fulfilled => Some(Ok(v8::Global::new(scope, promise.result(scope)))),
            v8::PromiseState::Rejected => {
                let exception = promise.result(scope);
                Some(Err(deno_core::error::exception_to_err(
                    scope, exception, true, true,
                )
                .into()))
            }
        }
    };
    std::future::poll_fn(|cx| {
        if let Some(settled) = settled(js) {
            return Poll::Ready(settled);
        }
        let polled = js.poll_event_loop(cx, PollEventLoopOptions::default());
        if let Poll::Ready(Err(err)) = polled {
            return Poll::Ready(Err(err));
        }
        match settled(js) {
            Some(settled) => Poll::Ready(settled),
            None if polled.is_ready() => {
                Poll::Ready(Err(CoreErrorKind::PendingPromiseResolution.into_box()))
            }
            None => Poll::Pending,
        }
    })
    .await
}

/// What `function`'s `fetch` may reach; an `allow_net` that is not a list of hosts fails its
/// invocations.
fn net_access(function: &Function) -> Result<&functions_ext::fetch::NetAccess, InvokeError> {
    function.net_access().map_err(|message| InvokeError::Threw {
        message: message.clone(),
        stack: String::new(),
    })
}

/// Creates a runtime for `function` (from `snapshot`, with `create_params`), with its location
/// and network access installed; its module graph is not loaded yet.
fn new_function_runtime(
    function: &Function,
    snapshot: Option<&'static [u8]>,
    create_params: Option<v8::CreateParams>,
) -> Result<(Runtime, Internals, ImportFailures), InvokeError> {
    let net = net_access(function)?;
    let loader = FunctionLoader::new(function.clone());
    let failures = loader.failures();
    let (mut runtime, internals) = Runtime::new(snapshot, Some(Rc::new(loader)), create_params);
    runtime.with(|js| {
        if let Some(location) = &function.settings().location {
            set_location(js, &internals.set_location, location.as_str());
        }
        net.install(&mut js.op_state().borrow_mut());
    });
    Ok((runtime, internals, failures))
}

/// Where the loader leaves why an import failed.
type ImportFailures = Rc<RefCell<Option<crate::loader::ImportFailure>>>;

/// Loads `function`'s module graph into `js` (resolved, compiled, linked, not yet evaluated).
async fn load_module(
    js: &mut JsRuntime,
    function: &Function,
    failures: ImportFailures,
) -> Result<ModuleId, InvokeError> {
    let specifier = &function.inner().specifier;
    let loaded = js.load_main_es_module(specifier).await;
    loaded.map_err(|err| match failures.take() {
        Some(failure) => InvokeError::Compile(failure.into_compile_error(function)),
        None => match CompileError::from_core(&err, specifier.as_str()) {
            Some(compile) => InvokeError::Compile(compile),
            None => InvokeError::from_core(err),
        },
    })
}

/// Starts an interpreter in `js` (its `PythonBoot` already in the op state): loads Pyodide's
/// module factory (which the function's loader serves) and runs `boot.js`'s `preparePython`
/// with it until it settles, to what `startPython` takes.
async fn prepare_python(
    js: &mut JsRuntime,
    prepare: &v8::Global<v8::Function>,
) -> Result<v8::Global<v8::Value>, deno_core::error::CoreError> {
    let specifier = deno_core::ModuleSpecifier::parse(crate::python::GLUE_SPECIFIER)
        .expect("the glue's URL is valid");
    let id = js.load_side_es_module(&specifier).await?;
    let evaluation = js.mod_evaluate(id);
    js.with_event_loop_future(evaluation, PollEventLoopOptions::default())
        .await?;
    let factory = {
        let namespace = js.get_module_namespace(id)?;
        deno_core::scope!(scope, js);
        let namespace = v8::Local::new(scope, namespace);
        let key = v8::String::new(scope, "default").unwrap();
        let factory = namespace.get(scope, key.into()).unwrap();
        v8::Global::new(scope, factory)
    };
    let prepared = call(js, prepare, &factory)?;
    until_settled(js, prepared).await
}

/// Loads and evaluates the .NET runtime's three modules in `js` (which the function's loader
/// serves), and returns their namespaces, the loader's first.
async fn dotnet_modules(
    js: &mut JsRuntime,
) -> Result<Vec<v8::Global<v8::Value>>, deno_core::error::CoreError> {
    use functions_ext::dotnet::LOADER_SPECIFIER;
    use functions_ext::dotnet::NATIVE_SPECIFIER;
    use functions_ext::dotnet::RUNTIME_SPECIFIER;
    let mut namespaces = Vec::new();
    for specifier in [LOADER_SPECIFIER, NATIVE_SPECIFIER, RUNTIME_SPECIFIER] {
        let specifier =
            deno_core::ModuleSpecifier::parse(specifier).expect("the runtime's URLs are valid");
        let id = js.load_side_es_module(&specifier).await?;
        let evaluation = js.mod_evaluate(id);
        js.with_event_loop_future(evaluation, PollEventLoopOptions::default())
            .await?;
        let namespace = js.get_module_namespace(id)?;
        deno_core::scope!(scope, js);
        let local = v8::Local::new(scope, namespace);
        namespaces.push(v8::Global::new(scope, v8::Local::<v8::Value>::from(local)));
    }
    Ok(namespaces)
}

/// Boots `function` (a Python or C# function) in an isolate of its own and makes a memory
/// snapshot of it once its module is imported (or, with no module, once the interpreter is
/// ready; for C#, once its entry is bound).
pub(crate) async fn make_snapshot(
    function: &Function,
    snapshot: Option<&'static [u8]>,
    thread: Rc<ThreadWatch>,
) -> Result<functions_ext::python::MemorySnapshot, InvokeError> {
    let baseline = function
        .python_code()
        .is_some_and(|python| python.module_file.is_none())
        || function
            .dotnet_code()
            .is_some_and(|dotnet| dotnet.assembly.is_empty());
    let limits = crate::python::snapshot_limits(&function.settings().limits, baseline);
    let budget = Budget::new(&limits);
    let isolate =
        FunctionIsolate::load_with(function, snapshot, thread, budget, limits, true).await?;
    let made = isolate
        .runtime
        .js
        .op_state()
        .borrow_mut()
        .try_take::<functions_ext::snapshot::MadeSnapshot>();
    match made {
        Some(functions_ext::snapshot::MadeSnapshot(Ok(snapshot))) => Ok(snapshot),
        Some(functions_ext::snapshot::MadeSnapshot(Err(message))) => Err(InvokeError::Threw {
            message: format!("the snapshot could not be made: {message}"),
            stack: String::new(),
        }),
        None => Err(InvokeError::Threw {
            message: "the function is neither Python nor C#: there is no snapshot to make".into(),
            stack: String::new(),
        }),
    }
}

/// Checks that `function`'s modules compile and link, without evaluating them; a Python
/// function's, that it starts from its snapshot within its limits.
pub(crate) async fn check(
    function: &Function,
    snapshot: Option<&'static [u8]>,
    thread: Rc<ThreadWatch>,
) -> Result<(), CompileError> {
    let to_compile_error = |err: InvokeError| match err {
        InvokeError::Compile(err) => err,
        err => CompileError {
            message: err.to_string(),
            file: function.inner().specifier.to_string(),
            line: 0,
            column: 0,
        },
    };
    if function.python_code().is_some() || function.dotnet_code().is_some() {
        // Started as an invocation would start it, under its limits.
        let budget = Budget::new(&function.settings().limits);
        return FunctionIsolate::load(function, snapshot, thread, budget)
            .await
            .map(drop)
            .map_err(|err| CompileError {
                message: format!("the function cannot start from its snapshot: {err}"),
                file: function.inner().specifier.to_string(),
                line: 0,
                column: 0,
            });
    }
    let (mut runtime, _internals, failures) =
        new_function_runtime(function, snapshot, None).map_err(to_compile_error)?;
    let control = Control {
        raw: runtime.raw,
        handle: runtime.with(|js| js.v8_isolate().thread_safe_handle()),
        verdict: Arc::default(),
        thread,
        off_thread: OffThreadTime::default(),
        buffers: None,
        renewal: Default::default(),
        limits: function.settings().limits.clone(),
        not_after: Default::default(),
    };
    let loading = load_module(&mut runtime.js, function, failures);
    let loaded = Slices::new(&control, None, loading).await;
    loaded.map(drop).map_err(to_compile_error)
}

/// Runs `work` (an isolate's event loop until something settles) in slices charged to
/// `budget`, until it completes, or until the wall-clock deadline passes while it waits (running
/// JavaScript past a limit is the watchdog's to stop). A failure is reported as the limit the
/// isolate was stopped at, if any, and a handler that can never settle as
/// [`InvokeError::Hung`].
async fn watched<T>(
    control: &Control,
    budget: &RefCell<Budget>,
    limits: &Limits,
    work: impl Future<Output = Result<T, deno_core::error::CoreError>>,
) -> Result<T, InvokeError> {
    let mut work = Slices::new(control, Some(budget), work);
    // The deadline may move later while the work runs (a budget renewed for a new call).
    let timed = loop {
        let deadline = budget.borrow().deadline;
        match tokio::time::timeout_at(deadline.into(), &mut work).await {
            Err(_) if budget.borrow().deadline > deadline => continue,
            timed => break timed,
        }
    };
    let result = match timed {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(match &*err.0 {
            CoreErrorKind::PendingPromiseResolution => InvokeError::Hung,
            _ => InvokeError::from_core(err),
        }),
        Err(_) => {
            control.verdict.set(Stop::WallClock);
            Err(InvokeError::TimeLimit {
                limit: limits.wall_clock,
            })
        }
    };
    // A slice that overran its CPU budget fails the invocation even if it completed it.
    match (control.verdict.get(), result) {
        (None, result) => result,
        (Some(stop), _) => Err(match stop {
            Stop::CpuTime => InvokeError::TimeLimit {
                limit: budget.borrow().cpu_time,
            },
            Stop::WallClock => InvokeError::TimeLimit {
                limit: limits.wall_clock,
            },
            Stop::Memory => InvokeError::MemoryLimit {
                limit: limits.memory_bytes,
            },
        }),
    }
}
