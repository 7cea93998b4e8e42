//! One function module loaded in one V8 isolate: the per-invocation path.

use std::rc::Rc;
use std::sync::Arc;

use deno_core::JsRuntime;
use deno_core::ModuleId;
use deno_core::ModuleLoader;
use deno_core::PollEventLoopOptions;
use deno_core::RuntimeOptions;
use deno_core::SharedArrayBufferStore;
use deno_core::v8;
use functions_ext::console::ConsoleOutput;
use functions_ext::runtime::INTERNALS_GLOBAL;

use crate::Request;
use crate::Response;
use crate::allocator::BufferBudget;
use crate::error::CompileError;
use crate::error::InvokeError;
use crate::function::Function;
use crate::function::Limits;
use crate::loader::FunctionLoader;
use crate::watchdog::Stop;
use crate::watchdog::Verdict;
use crate::watchdog::Watch;
use crate::watchdog::Watchdog;

/// Globals that the snapshot needs while it is built and at isolate creation, but that a
/// function must not see.
const HIDDEN_GLOBALS: [&str; 3] = [INTERNALS_GLOBAL, "Deno", "__bootstrap"];

/// The host's entry points into an isolate, which `bootstrap.js` leaves on the global object.
pub(crate) struct Internals {
    /// Runs one invocation (see `bootstrap.js`'s `dispatch`).
    pub dispatch: v8::Global<v8::Function>,
    /// Gives the function a base URL and a `location` (see `bootstrap.js`'s `setLocation`).
    pub set_location: v8::Global<v8::Function>,
}

/// Creates a runtime ready to load a function module: from `snapshot` (the base snapshot), or,
/// with `None`, by running every extension's JavaScript from scratch (only for comparison). The
/// isolate is created with `create_params` (its memory limits), if given.
pub(crate) fn new_runtime(
    snapshot: Option<&'static [u8]>,
    loader: Option<Rc<dyn ModuleLoader>>,
    create_params: Option<v8::CreateParams>,
) -> (JsRuntime, Internals) {
    let mut runtime = JsRuntime::new(RuntimeOptions {
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
        // Where `structuredClone` and `postMessage` keep transferred ArrayBuffers (which also
        // detaches them) and SharedArrayBuffers between serializing and deserializing; one per
        // isolate, so nothing outlives it.
        shared_array_buffer_store: Some(SharedArrayBufferStore::default()),
        ..Default::default()
    });
    let internals = take_internals(&mut runtime);
    (runtime, internals)
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
    Internals {
        dispatch: function("dispatch"),
        set_location: function("setLocation"),
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

/// A function's module, evaluated in its own isolate, ready for invocations.
///
/// While it runs an invocation the isolate is under the [`Watchdog`]'s watch: from the start of
/// its module's evaluation (a fresh isolate's top-level code) and again from the start of the
/// handler, each with the function's whole CPU budget, until [`FunctionIsolate::end_invocation`].
pub(crate) struct FunctionIsolate {
    runtime: JsRuntime,
    dispatch: v8::Global<v8::Function>,
    namespace: v8::Global<v8::Value>,
    watch: Watch,
    limits: Limits,
}

impl FunctionIsolate {
    /// Creates an isolate from the snapshot, with the function's memory limit, then loads and
    /// evaluates the function's module (awaiting top-level `await`) under `watchdog`'s watch.
    pub async fn load(
        function: &Function,
        snapshot: Option<&'static [u8]>,
        watchdog: &Watchdog,
    ) -> Result<Self, InvokeError> {
        let limits = function.settings().limits.clone();
        let memory_limit = usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX);
        let verdict = Arc::new(Verdict::default());
        let buffers = BufferBudget::new(memory_limit, verdict.clone());
        let create_params = v8::CreateParams::default()
            .heap_limits(0, memory_limit)
            .array_buffer_allocator(buffers.allocator().make_shared());
        let (mut runtime, dispatch, id) =
            load_graph(function, snapshot, Some(create_params)).await?;
        let handle = runtime.v8_isolate().thread_safe_handle();
        buffers.watch(handle.clone());
        runtime.add_near_heap_limit_callback(verdict.on_near_heap_limit(handle.clone()));
        let mut watch = watchdog.watch(handle, verdict);
        watch.start(&limits);
        let evaluation = runtime.mod_evaluate(id);
        let evaluated = watched(
            &watch,
            &limits,
            runtime.with_event_loop_future(evaluation, PollEventLoopOptions::default()),
        )
        .await;
        let namespace = evaluated.and_then(|()| {
            runtime
                .get_module_namespace(id)
                .map_err(InvokeError::from_core)
        });
        let namespace = match namespace {
            Ok(namespace) => namespace,
            Err(err) => return Err(stopped(&watch, &limits, err)),
        };
        let namespace = {
            deno_core::scope!(scope, runtime);
            let local = v8::Local::new(scope, namespace);
            v8::Global::new(scope, v8::Local::<v8::Value>::from(local))
        };
        Ok(Self {
            runtime,
            dispatch,
            namespace,
            watch,
            limits,
        })
    }

    /// Runs one invocation until the handler has responded: the handler gets `request`; the
    /// result is its response and, when work remains after the response (a streamed body,
    /// `ctx.waitUntil`), the [`Tail`] to [`FunctionIsolate::finish`]. Call
    /// [`FunctionIsolate::end_invocation`] once the invocation is done.
    pub async fn invoke(
        &mut self,
        request: Request,
    ) -> Result<(Response, Option<Tail>), InvokeError> {
        let op_state = self.runtime.op_state();
        op_state.borrow_mut().put(request);
        self.watch.start(&self.limits);
        let call = self
            .runtime
            .call_with_args(&self.dispatch, std::slice::from_ref(&self.namespace));
        let value = watched(
            &self.watch,
            &self.limits,
            self.runtime
                .with_event_loop_promise(call, PollEventLoopOptions::default()),
        )
        .await?;
        let response = op_state.borrow_mut().try_take::<Response>();
        let response = response.expect("the dispatcher resolved without responding");
        let tail = {
            deno_core::scope!(scope, self.runtime);
            let value = v8::Local::new(scope, value);
            v8::Local::<v8::Object>::try_from(value).ok().map(|object| {
                let key = v8::String::new(scope, "tail").unwrap();
                let promise = object.get(scope, key.into()).unwrap();
                Tail(v8::Global::new(scope, promise))
            })
        };
        Ok((response, tail))
    }

    /// Runs the event loop until `tail` (what an invocation does after its response) settles.
    pub async fn finish(&mut self, tail: Tail) -> Result<(), InvokeError> {
        let settled = self.runtime.resolve(tail.0);
        let failure = watched(
            &self.watch,
            &self.limits,
            self.runtime
                .with_event_loop_promise(settled, PollEventLoopOptions::default()),
        )
        .await?;
        deno_core::scope!(scope, self.runtime);
        let failure = v8::Local::new(scope, failure);
        if failure.is_null_or_undefined() {
            return Ok(());
        }
        // The dispatcher resolves `tail` to the failure's stack (see bootstrap.js).
        let stack = failure.to_rust_string_lossy(scope);
        Err(InvokeError::Threw {
            message: format!("Uncaught {}", stack.lines().next().unwrap_or_default()),
            stack,
        })
    }

    /// Takes the isolate off the watchdog's watch; returns why it was stopped during the
    /// invocation, if it was (then it must not run another one).
    pub fn end_invocation(&mut self) -> Option<Stop> {
        self.watch.stop()
    }

    /// Takes the console output written since the last call.
    pub fn take_console_output(&mut self) -> ConsoleOutput {
        std::mem::take(
            self.runtime
                .op_state()
                .borrow_mut()
                .borrow_mut::<ConsoleOutput>(),
        )
    }

    /// Makes this isolate the current one of the thread (see [`crate::pool`]'s warm isolates).
    ///
    /// # Safety
    /// Must be paired with [`FunctionIsolate::exit`] on the same thread, in LIFO order with any
    /// other isolate entered meanwhile.
    pub unsafe fn enter(&mut self) {
        unsafe { self.runtime.v8_isolate().enter() }
    }

    /// Undoes [`FunctionIsolate::enter`], or the implicit enter of creation.
    ///
    /// # Safety
    /// This isolate must be the thread's current isolate.
    pub unsafe fn exit(&mut self) {
        unsafe { self.runtime.v8_isolate().exit() }
    }
}

/// Creates a runtime and loads `function`'s module graph into it (resolved, compiled, linked, not
/// yet evaluated).
async fn load_graph(
    function: &Function,
    snapshot: Option<&'static [u8]>,
    create_params: Option<v8::CreateParams>,
) -> Result<(JsRuntime, v8::Global<v8::Function>, ModuleId), InvokeError> {
    let loader = FunctionLoader::new(function.clone());
    let failures = loader.failures();
    let (mut runtime, internals) = new_runtime(snapshot, Some(Rc::new(loader)), create_params);
    if let Some(location) = &function.settings().location {
        set_location(&mut runtime, &internals.set_location, location.as_str());
    }
    let dispatch = internals.dispatch;
    let net = function
        .net_access()
        .map_err(|message| InvokeError::Threw {
            message: message.clone(),
            stack: String::new(),
        })?;
    net.install(&mut runtime.op_state().borrow_mut());
    let specifier = &function.inner().specifier;
    match runtime.load_main_es_module(specifier).await {
        Ok(id) => Ok((runtime, dispatch, id)),
        Err(err) => Err(match failures.take() {
            Some(failure) => InvokeError::Compile(failure.into_compile_error(function)),
            None => match CompileError::from_core(&err, specifier.as_str()) {
                Some(compile) => InvokeError::Compile(compile),
                None => InvokeError::from_core(err),
            },
        }),
    }
}

/// Checks that `function`'s modules compile and link, without evaluating them.
pub(crate) async fn check(
    function: &Function,
    snapshot: Option<&'static [u8]>,
) -> Result<(), CompileError> {
    match load_graph(function, snapshot, None).await {
        Ok(_) => Ok(()),
        Err(InvokeError::Compile(err)) => Err(err),
        Err(err) => Err(CompileError {
            message: err.to_string(),
            file: function.inner().specifier.to_string(),
            line: 0,
            column: 0,
        }),
    }
}

/// Runs the event loop future `work` under the isolate's limits: until it completes, or until
/// the wall-clock deadline passes while it waits (running JavaScript past a limit is the
/// watchdog's to stop). A failure is reported as the limit the isolate was stopped at, if any.
async fn watched<T>(
    watch: &Watch,
    limits: &Limits,
    work: impl Future<Output = Result<T, deno_core::error::CoreError>>,
) -> Result<T, InvokeError> {
    let result = match watch.deadline() {
        None => work.await.map_err(InvokeError::from_core),
        Some(deadline) => match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(result) => result.map_err(InvokeError::from_core),
            Err(_) => Err(InvokeError::TimeLimit {
                limit: limits.wall_clock,
            }),
        },
    };
    result.map_err(|err| stopped(watch, limits, err))
}

/// `err`, or the limit the watchdog stopped the isolate for if it did.
fn stopped(watch: &Watch, limits: &Limits, err: InvokeError) -> InvokeError {
    match watch.verdict() {
        Some(Stop::CpuTime) => InvokeError::TimeLimit {
            limit: limits.cpu_time,
        },
        Some(Stop::WallClock) => InvokeError::TimeLimit {
            limit: limits.wall_clock,
        },
        Some(Stop::Memory) => InvokeError::MemoryLimit {
            limit: limits.memory_bytes,
        },
        None => err,
    }
}
