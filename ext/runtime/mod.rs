//! The global scope of a function and the dispatcher that runs one invocation in it.
//!
//! `bootstrap.js` runs once, while the base snapshot is built: it loads the web platform scripts,
//! installs the globals and leaves the dispatcher (and the setter of a function's `location`) at
//! `globalThis.__functionsHost`, which the runtime takes (and deletes) in every isolate it creates. Requests and responses cross between
//! Rust and JavaScript through the `OpState` types below and the ops of this extension.

mod memory;

pub use memory::OffHeapBudget;
pub use memory::OffHeapMemory;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use deno_core::JsBuffer;
use deno_core::JsRuntime;
use deno_core::OpState;
use deno_core::op2;
use deno_core::v8;
use serde::Serialize;

/// Name of the global under which `bootstrap.js` leaves the host's entry points: an object with
/// `dispatch(namespace)` and `setLocation(href)`.
pub const INTERNALS_GLOBAL: &str = "__functionsHost";

pub use functions_types::BodyError;
pub use functions_types::BodyStream;
pub use functions_types::Request as InvocationRequest;
pub use functions_types::Response as InvocationResponse;
pub use functions_types::ResponseBody;

/// How many chunks a streamed body may have in flight between the function and its reader: the
/// function waits when the reader is this far behind, so a large stream takes little memory.
const STREAM_CHUNKS_IN_FLIGHT: usize = 8;

/// The sending side of the current invocation's streamed body.
struct BodySender(tokio::sync::mpsc::Sender<Result<Vec<u8>, String>>);

#[derive(Serialize)]
struct RequestHead {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    env: BTreeMap<String, String>,
    has_body: bool,
}

#[op2]
#[serde]
fn op_invocation_request(state: &mut OpState) -> RequestHead {
    let request = state.borrow_mut::<InvocationRequest>();
    RequestHead {
        method: std::mem::take(&mut request.method),
        url: std::mem::take(&mut request.url),
        headers: std::mem::take(&mut request.headers),
        env: std::mem::take(&mut request.env),
        has_body: !request.body.is_empty(),
    }
}

#[op2]
#[buffer]
fn op_invocation_request_body(state: &mut OpState) -> Vec<u8> {
    std::mem::take(&mut state.borrow_mut::<InvocationRequest>().body)
}

/// The handler's response: its whole body, or (`body` absent, `streaming`) a body whose chunks
/// follow through `op_invocation_body_write`.
#[op2]
fn op_invocation_respond(
    state: &mut OpState,
    #[smi] status: u32,
    #[serde] mut headers: Vec<(String, String)>,
    #[buffer] body: Option<JsBuffer>,
    streaming: bool,
) {
    // The response's own header list keeps names as written; `Headers` shows them lowercase.
    for (name, _) in &mut headers {
        name.make_ascii_lowercase();
    }
    let body = if streaming {
        let (sender, receiver) = tokio::sync::mpsc::channel(STREAM_CHUNKS_IN_FLIGHT);
        state.put(BodySender(sender));
        ResponseBody::Stream(BodyStream::new(receiver))
    } else {
        ResponseBody::Full(body.map(|body| body.to_vec()).unwrap_or_default())
    };
    state.put(InvocationResponse {
        status: status as u16,
        headers,
        body,
    });
}

/// Sends one chunk of a streamed body, waiting while the reader is behind. False when the reader
/// has gone away (the function should stop producing).
#[op2]
async fn op_invocation_body_write(state: Rc<RefCell<OpState>>, #[buffer] chunk: JsBuffer) -> bool {
    let sender = state
        .borrow()
        .try_borrow::<BodySender>()
        .map(|s| s.0.clone());
    match sender {
        Some(sender) => sender.send(Ok(chunk.to_vec())).await.is_ok(),
        None => false,
    }
}

/// Collects the isolate's garbage now. A streamed body's chunks are usually fresh buffers the
/// function drops once sent; V8 would let tens of MiB of them pile up before collecting, so the
/// dispatcher calls this every few MiB of body to keep a long stream's memory flat.
#[op2(nofast)]
fn op_invocation_collect_garbage(isolate: &mut v8::Isolate) {
    isolate.low_memory_notification();
}

/// Ends a streamed body: normally, or with `error` (the reader sees the body fail).
#[op2]
async fn op_invocation_body_end(state: Rc<RefCell<OpState>>, #[string] error: Option<String>) {
    let sender = state.borrow_mut().try_take::<BodySender>();
    if let (Some(sender), Some(error)) = (sender, error) {
        let _ = sender.0.send(Err(error)).await;
    }
}

/// Time an isolate's work took on other threads (Web Crypto's, on the blocking pool), which the
/// runtime charges to the invocation's CPU budget after each slice. The global scope measures
/// each such operation from its start to its end (`op_off_thread_started`/`_done`); one runs at
/// a time per isolate, so the time is that of the operation itself.
#[derive(Clone, Debug)]
pub struct OffThreadTime(Rc<OffThread>);

#[derive(Debug)]
struct OffThread {
    origin: std::time::Instant,
    spent: std::cell::Cell<std::time::Duration>,
}

impl Default for OffThreadTime {
    fn default() -> Self {
        Self(Rc::new(OffThread {
            origin: std::time::Instant::now(),
            spent: Default::default(),
        }))
    }
}

impl OffThreadTime {
    /// The time spent since the last call, which is then charged.
    pub fn take(&self) -> std::time::Duration {
        self.0.spent.take()
    }

    /// Milliseconds since the isolate was made (a point to measure from).
    fn now(&self) -> f64 {
        self.0.origin.elapsed().as_secs_f64() * 1000.0
    }
}

/// When an off-thread operation starts: a point to pass to `op_off_thread_done`.
#[op2(fast)]
fn op_off_thread_started(state: &OpState) -> f64 {
    state
        .try_borrow::<OffThreadTime>()
        .map_or(0.0, OffThreadTime::now)
}

/// Records an off-thread operation that started at `started` as spent now.
#[op2(fast)]
fn op_off_thread_done(state: &OpState, started: f64) {
    if let Some(time) = state.try_borrow::<OffThreadTime>() {
        let spent = std::time::Duration::from_secs_f64((time.now() - started).max(0.0) / 1000.0);
        time.0.spent.set(time.0.spent.get() + spent);
    }
}

/// Runs `warmup.js` on the runtime that builds the base snapshot: one sample invocation of each
/// handler shape, one of them awaiting a timer, so that V8 compiles the dispatch path and the web
/// APIs it touches there and keeps their bytecode in the snapshot, instead of compiling them lazily
/// in every new isolate.
///
/// # Panics
/// When a sample invocation does not answer 200: the dispatcher is broken.
pub fn warm_up(runtime: &mut JsRuntime) {
    let rounds = [
        InvocationRequest::json(r#"{"ok":true}"#),
        InvocationRequest {
            method: "POST".into(),
            url: "http://localhost/warm?up=1".into(),
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"warm".to_vec(),
            env: BTreeMap::new(),
        },
        InvocationRequest::get("http://localhost/timer"),
    ];
    let event_loop = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime for the warm-up's timer");
    // Timers are scheduled (on tokio's clock) by the call itself, before the loop runs.
    let _entered = event_loop.enter();
    let warm = runtime
        .execute_script("ext:host/warmup.js", include_str!("warmup.js"))
        .expect("warmup.js evaluates to a function");
    for (round, request) in (0..).zip(rounds) {
        runtime.op_state().borrow_mut().put(request);
        let promise = {
            deno_core::scope!(scope, runtime);
            let warm = v8::Local::<v8::Function>::try_from(v8::Local::new(scope, &warm))
                .expect("warmup.js evaluates to a function");
            let undefined = v8::undefined(scope).into();
            let argument = v8::Integer::new(scope, round).into();
            let promise = warm.call(scope, undefined, &[argument]).unwrap();
            v8::Global::new(scope, promise)
        };
        let settled = runtime.resolve(promise);
        event_loop
            .block_on(runtime.with_event_loop_promise(Box::pin(settled), Default::default()))
            .unwrap_or_else(|error| panic!("warm-up round {round} failed: {error}"));
        let response = runtime.op_state().borrow_mut().take::<InvocationResponse>();
        assert_eq!(
            response.status, 200,
            "warm-up round {round} answered {response:?}"
        );
    }
    // Calls between functions, through two sessions of this isolate connected to each other.
    let (client, server) = crate::rpc::loopback(&mut runtime.op_state().borrow_mut());
    let promise = {
        deno_core::scope!(scope, runtime);
        let global = scope.get_current_context().global(scope);
        let key = v8::String::new(scope, crate::runtime::INTERNALS_GLOBAL).unwrap();
        let internals = global.get(scope, key.into()).unwrap();
        let internals = v8::Local::<v8::Object>::try_from(internals).unwrap();
        let key = v8::String::new(scope, "rpcWarmUp").unwrap();
        let warm = internals.get(scope, key.into()).unwrap();
        let warm =
            v8::Local::<v8::Function>::try_from(warm).expect("bootstrap.js leaves rpcWarmUp");
        let undefined = v8::undefined(scope).into();
        let ids = [
            v8::Integer::new_from_unsigned(scope, client).into(),
            v8::Integer::new_from_unsigned(scope, server).into(),
        ];
        let promise = warm.call(scope, undefined, &ids).unwrap();
        v8::Global::new(scope, promise)
    };
    let settled = runtime.resolve(promise);
    event_loop
        .block_on(runtime.with_event_loop_promise(Box::pin(settled), Default::default()))
        .unwrap_or_else(|error| panic!("the RPC warm-up failed: {error}"));
    crate::rpc::end(&mut runtime.op_state().borrow_mut());
}

/// `navigator.userAgent` (read once, while the snapshot is built).
#[op2]
#[string]
fn op_host_user_agent() -> &'static str {
    crate::fetch::USER_AGENT
}

deno_core::extension!(
  host,
  deps = [deno_webidl, deno_web, deno_crypto, deno_fetch, fetch_access, console, rpc],
  ops = [
    op_host_user_agent,
    op_invocation_request,
    op_invocation_request_body,
    op_invocation_respond,
    op_invocation_body_write,
    op_invocation_body_end,
    op_invocation_collect_garbage,
    op_off_thread_started,
    op_off_thread_done,
    memory::op_memory_reserve_shared,
  ],
  esm_entry_point = "ext:host/bootstrap.js",
  esm = [dir "runtime", "bootstrap.js"],
  middleware = memory::counted,
  state = |state| state.put(InvocationRequest::default()),
);
