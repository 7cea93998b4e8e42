//! Capability RPC between functions: the Rust half (sessions, capabilities, call chains).
//!
//! A function reaches another only through a *binding* granted at deploy: the runtime puts one
//! [`Cap`] per binding in the invocation's capability table, and `rpc.js` gives the function a
//! stub for each (`env.MATH`). User code never sees a capability, only stubs whose meaning lives
//! in module-private state of `rpc.js`; the ops here take indexes into the invocation's own
//! table, so a function can use what it was given and nothing else.
//!
//! A call on a binding opens a *session*: two channels of [`Frame`]s between the caller's isolate
//! and an invocation of the target function, which the runtime starts ([`Connector::connect`]).
//! Both ends run the same protocol in `rpc.js` (capnweb's messages — push, pull, resolve,
//! reject, release, abort — with values in V8's serialization format); no isolate ever enters
//! another. Capabilities travel in frames beside the bytes, so a binding passed to another
//! function (delegation) is the same capability there.
//!
//! A session can also be served to a program outside, a *capnweb* client (the npm `capnweb`
//! package, at the HTTP API's `/rpc/{name}`): [`RpcSession::capnweb`] makes one whose frames are
//! capnweb's JSON messages ([`Frame::Text`]), translated in the callee's isolate by `capnweb.js`;
//! the embedder carries them over HTTP or a WebSocket through the [`CapnwebClient`] end.
//!
//! Each invocation's [`CallChain`] says how it was reached: the functions before it, a deadline
//! and a W3C trace context. A call that would go deeper than [`MAX_DEPTH`], come back to a
//! function already on the chain, or start past the deadline is refused.

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use deno_core::JsBuffer;
use deno_core::OpState;
use deno_core::ToJsBuffer;
use deno_core::op2;
use deno_error::JsErrorBox;
use functions_types::ConsoleOutput;
use functions_types::LogLevel;
use functions_types::Request;
use functions_types::Response;
use serde::Serialize;
use tokio::sync::mpsc;

/// The longest chain of calls: a function reached through 16 bindings may call no further.
pub const MAX_DEPTH: usize = 16;

/// Capabilities one invocation may hold at once (bindings, and those received in calls).
const MAX_CAPS: usize = 10_000;

/// Sessions one invocation may have open at once (its calls through bindings under way).
const MAX_SESSIONS: usize = 256;

/// How an invocation was reached: the functions called on the way (the first is the root, the
/// last the invocation's own), the deadline inherited from them, and the W3C trace context
/// its hops are logged with.
#[derive(Clone, Debug)]
pub struct CallChain {
    functions: Arc<[Arc<str>]>,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    /// The span this invocation's continues: its caller's, or the incoming `traceparent`'s.
    parent_span_id: Option<[u8; 8]>,
    deadline: Option<Instant>,
}

impl CallChain {
    /// The chain of an invocation from outside (an HTTP request, a queued call): `function`
    /// alone, in the trace of `traceparent` when it is a valid W3C header, a new trace otherwise.
    pub fn root(function: &str, traceparent: Option<&str>) -> Self {
        let incoming = traceparent.and_then(parse_traceparent);
        Self {
            functions: Arc::from([Arc::from(function)]),
            trace_id: incoming.map_or_else(rand::random, |(trace, _)| trace),
            span_id: rand::random(),
            parent_span_id: incoming.map(|(_, span)| span),
            deadline: None,
        }
    }

    /// The chain of a call from this invocation to `target`: refused past [`MAX_DEPTH`], when
    /// `target` is on the chain already (a cycle), or when the deadline has passed.
    pub fn child(&self, target: &str) -> Result<Self, String> {
        let path = |last: &str| {
            let mut names: Vec<&str> = self.functions.iter().map(|name| &**name).collect();
            names.push(last);
            names.join(" → ")
        };
        if self.functions.iter().any(|name| &**name == target) {
            return Err(format!("RPC cycle: {}", path(target)));
        }
        if self.depth() >= MAX_DEPTH {
            return Err(format!(
                "RPC call depth limit ({MAX_DEPTH}) exceeded: {}",
                path(target)
            ));
        }
        if self
            .deadline
            .is_some_and(|deadline| deadline <= Instant::now())
        {
            return Err(format!(
                "the deadline of the call to {} has passed",
                self.functions.last().map_or("", |name| &**name)
            ));
        }
        let mut functions = self.functions.to_vec();
        functions.push(target.into());
        Ok(Self {
            functions: functions.into(),
            trace_id: self.trace_id,
            span_id: rand::random(),
            parent_span_id: Some(self.span_id),
            deadline: self.deadline,
        })
    }

    /// The function that called this invocation, unless it is the root.
    pub fn caller(&self) -> Option<&str> {
        let n = self.functions.len();
        (n > 1).then(|| &*self.functions[n - 2])
    }

    /// The log line of an invocation that another function reached with a fetch through a
    /// binding (whose chain this is), naming the caller; `None` for a root invocation.
    pub fn fetched_by(&self) -> Option<String> {
        let caller = self.caller()?;
        Some(format!(
            "RPC fetch ← {caller} (traceparent {})",
            self.traceparent()
        ))
    }

    /// Calls between the root and this invocation (0 for the root).
    pub fn depth(&self) -> usize {
        self.functions.len() - 1
    }

    /// The functions from the root to this invocation.
    pub fn functions(&self) -> impl Iterator<Item = &str> {
        self.functions.iter().map(|name| &**name)
    }

    /// The chain's trace id, this invocation's span id, and the span it continues (its
    /// caller's, or the incoming `traceparent`'s), if any.
    pub fn trace(&self) -> ([u8; 16], [u8; 8], Option<[u8; 8]>) {
        (self.trace_id, self.span_id, self.parent_span_id)
    }

    /// This invocation's W3C `traceparent`: the chain's trace id and the invocation's span.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", hex(&self.trace_id), hex(&self.span_id))
    }

    /// The latest the invocation (and every call it makes) may run until, if the chain has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The chain with its deadline no later than `deadline`.
    pub fn within(mut self, deadline: Instant) -> Self {
        self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
        self
    }
}

/// The trace id and parent span id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2
/// hex>`), unless it is malformed or an id is all zeros.
fn parse_traceparent(header: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut parts = header.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace: [u8; 16] = unhex(trace)?;
    let span: [u8; 8] = unhex(span)?;
    (trace != [0; 16] && span != [0; 8]).then_some((trace, span))
}

/// `N` bytes from `2N` hex digits.
fn unhex<const N: usize>(digits: &str) -> Option<[u8; N]> {
    if digits.len() != 2 * N || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut bytes = [0u8; N];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(bytes)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 15)] as char);
    }
    out
}

/// A capability a function holds: what a stub in its isolate stands for.
#[derive(Clone, Debug)]
pub enum Cap {
    /// A binding to a function.
    Binding(Arc<Binding>),
}

/// A binding: the right to call `target`, granted (as `name`) to a function at deploy.
#[derive(Debug)]
pub struct Binding {
    /// Its name in the granting function's `env`.
    pub name: Arc<str>,
    /// The function it reaches.
    pub target: Arc<str>,
    /// Who owns the function it was granted to (the embedder's notion: an API key's tenant),
    /// which the target must still belong to.
    pub owner: Option<Arc<str>>,
}

/// What crosses a session, one way.
#[derive(Debug)]
pub enum Frame {
    /// A batch of messages: V8-serialized, with the descriptions of the stubs in them
    /// (JSON, read by `rpc.js`) and the capabilities they carry.
    Batch {
        /// The messages, as `rpc.js` serialized them.
        bytes: Vec<u8>,
        /// What each host object in `bytes` stands for, when there are any.
        descriptors: Option<String>,
        /// The capabilities the descriptors name by index.
        caps: Vec<Cap>,
    },
    /// The sender ends the session with this error.
    Abort(String),
    /// One capnweb message, as JSON text (a session with a capnweb client, either way).
    Text(String),
}

/// How the caller of a session speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Another function: batches of messages in V8's serialization format (`rpc.js` both ends).
    Functions,
    /// A capnweb client over HTTP batch: its messages all arrive first, the session answers
    /// what was pulled and ends; it can never answer calls back.
    CapnwebBatch,
    /// A capnweb client over a WebSocket: messages both ways until either side ends it.
    CapnwebWebSocket,
}

/// One call through a binding, as the embedder sees it: who calls whom, through which binding,
/// on which chain.
#[derive(Clone, Debug)]
pub struct Hop {
    /// The calling function.
    pub caller: Arc<str>,
    /// The binding's name in the caller's `env` (as it was granted, even if delegated since).
    pub binding: Arc<str>,
    /// The function called.
    pub target: Arc<str>,
    /// The owner of the function the binding was granted to (see [`Binding::owner`]).
    pub owner: Option<Arc<str>>,
    /// The callee's chain: the caller's, extended by the target.
    pub chain: CallChain,
}

/// The callee's end of a session: what an invocation of [`Hop::target`] serves. Dropping it
/// ends the session (the caller's pending calls fail).
#[derive(Debug)]
pub struct RpcSession {
    incoming: mpsc::UnboundedReceiver<Frame>,
    outgoing: mpsc::UnboundedSender<Frame>,
    hop: Hop,
    protocol: Protocol,
}

/// The name a capnweb client goes by as a session's caller ([`Hop::caller`]).
pub const CAPNWEB_CALLER: &str = "capnweb client";

impl RpcSession {
    /// A session of a capnweb client with function `target` (its default export is the main
    /// object), on `chain` (a root: the client is outside), over HTTP batch when `batch`, over a
    /// WebSocket otherwise; and the client's end of it.
    pub fn capnweb(target: &str, chain: CallChain, batch: bool) -> (RpcSession, CapnwebClient) {
        let (to_function, incoming) = mpsc::unbounded_channel();
        let (outgoing, from_function) = mpsc::unbounded_channel();
        let session = RpcSession {
            incoming,
            outgoing,
            hop: Hop {
                caller: CAPNWEB_CALLER.into(),
                binding: "".into(),
                target: target.into(),
                owner: None,
                chain,
            },
            protocol: if batch {
                Protocol::CapnwebBatch
            } else {
                Protocol::CapnwebWebSocket
            },
        };
        let client = CapnwebClient {
            to_function: Some(to_function),
            from_function,
            ended: false,
        };
        (session, client)
    }

    /// Who calls whom.
    pub fn hop(&self) -> &Hop {
        &self.hop
    }

    /// How the caller speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Whether the caller is another function (its invocation holds a place already), rather
    /// than a client outside, whose session is admitted like any invocation from outside.
    pub fn is_nested(&self) -> bool {
        self.protocol == Protocol::Functions
    }

    /// Ends the session before it is served: the caller's calls fail with `message`.
    pub fn refuse(self, message: impl Into<String>) {
        let _ = self.outgoing.send(Frame::Abort(message.into()));
    }

    /// Resolves when the caller has gone (its end of the session closed, or its invocation
    /// ended), or when the chain's deadline passes: the session need not be served then.
    pub async fn abandoned(&self) {
        let deadline = self.hop.chain.deadline();
        let late = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.outgoing.closed() => {}
            () = late => {}
        }
    }

    /// A way to end the session with an error after it was handed to an invocation (when the
    /// invocation fails).
    pub fn aborter(&self) -> SessionAborter {
        SessionAborter(self.outgoing.clone())
    }
}

/// The client's end of a capnweb session ([`RpcSession::capnweb`]): the messages it sends to
/// the function and those the function sends back, as capnweb's JSON text.
#[derive(Debug)]
pub struct CapnwebClient {
    to_function: Option<mpsc::UnboundedSender<Frame>>,
    from_function: mpsc::UnboundedReceiver<Frame>,
    ended: bool,
}

impl CapnwebClient {
    /// Passes one message of the client's to the function; false once the session has ended.
    pub fn send(&self, message: String) -> bool {
        self.to_function
            .as_ref()
            .is_some_and(|to| to.send(Frame::Text(message)).is_ok())
    }

    /// The client sends nothing more (an HTTP batch is all in; a WebSocket closed). Over
    /// WebSocket that ends the session; over HTTP batch the function answers what was pulled,
    /// then ends it.
    pub fn finish(&mut self) {
        self.to_function = None;
    }

    /// The function's next message for the client; its failure (or refusal) comes as a capnweb
    /// `abort` message, the last. `None` once the session has ended.
    pub async fn recv(&mut self) -> Option<String> {
        if self.ended {
            return None;
        }
        let frame = self.from_function.recv().await;
        self.text_of(frame)
    }

    /// A message of the function's already waiting, if there is one (see [`Self::recv`]).
    pub fn try_recv(&mut self) -> Option<String> {
        if self.ended {
            return None;
        }
        let frame = self.from_function.try_recv().ok();
        self.text_of(frame)
    }

    fn text_of(&mut self, frame: Option<Frame>) -> Option<String> {
        match frame {
            Some(Frame::Text(text)) => Some(text),
            Some(Frame::Abort(message)) => {
                self.ended = true;
                Some(capnweb_abort(&message))
            }
            // Only `capnweb.js` writes to a capnweb session, in text.
            Some(Frame::Batch { .. }) | None => {
                self.ended = true;
                None
            }
        }
    }
}

/// The capnweb message that ends a session with `message` as an `Error`.
pub fn capnweb_abort(message: &str) -> String {
    serde_json::json!(["abort", ["error", "Error", message]]).to_string()
}

/// Ends a session with an error (see [`RpcSession::aborter`]).
#[derive(Clone, Debug)]
pub struct SessionAborter(mpsc::UnboundedSender<Frame>);

impl SessionAborter {
    /// Tells the caller the session ended with `message` (nothing if it ended already).
    pub fn abort(&self, message: impl Into<String>) {
        let _ = self.0.send(Frame::Abort(message.into()));
    }
}

/// What starts the functions that calls through bindings reach, as the calling isolate's
/// thread sees it (the runtime's, over the embedder's services).
pub trait Connector {
    /// Serves `session` with an invocation of its target (its current version), or refuses it
    /// ([`RpcSession::refuse`]). Must not block: it is called from the caller's JavaScript.
    /// Returns whether the session may carry further calls of the caller's invocation
    /// through the same binding (see `op_rpc_reusable`).
    fn connect(&self, session: RpcSession) -> bool;

    /// Runs the target's fetch handler (any language: a WebAssembly guest gets the body on
    /// stdin) with `request`: its response, with the whole body, or why there is none.
    fn fetch(&self, hop: Hop, request: Request) -> BoxedResponse;
}

/// The future of [`Connector::fetch`].
pub type BoxedResponse = Pin<Box<dyn Future<Output = Result<Response, String>> + Send>>;

/// What the runtime tells an isolate about the invocation that starts: see [`begin`].
pub struct RpcInvocation {
    /// The invoked function's name.
    pub function: Arc<str>,
    /// How it was reached.
    pub chain: CallChain,
    /// Its bindings: names and target functions.
    pub bindings: Vec<(Arc<str>, Arc<str>)>,
    /// Who owns it (see [`Binding::owner`]).
    pub owner: Option<Arc<str>>,
    /// Its wall-clock limit, and the caller's deadline: when a call of a session it serves
    /// starts or ends, the calls it makes get a deadline this far from then, no later than the
    /// caller's (see `op_rpc_call_started`).
    pub wall_clock: std::time::Duration,
    /// The caller's deadline, if another function called it.
    pub not_after: Option<Instant>,
    /// The session it serves, when it was called through a binding.
    pub session: Option<RpcSession>,
    /// What starts the functions its bindings reach; without it, calls through bindings fail.
    pub connector: Option<Rc<dyn Connector>>,
}

/// One end of a session in an isolate.
struct Ends {
    outgoing: mpsc::UnboundedSender<Frame>,
    incoming: Rc<RefCell<Option<mpsc::UnboundedReceiver<Frame>>>>,
    /// The function at the other end, for messages.
    peer: Arc<str>,
    /// How the other end speaks.
    protocol: Protocol,
    /// It may carry further calls (see `op_rpc_reusable`).
    reusable: bool,
}

/// An isolate's capabilities and sessions for the invocation under way. Ids are never reused
/// in an isolate, so a stub kept from an earlier invocation (in a warm isolate) names nothing.
#[derive(Default)]
pub struct RpcState {
    next_id: u32,
    caps: HashMap<u32, Cap>,
    sessions: HashMap<u32, Ends>,
    current: Option<Current>,
}

struct Current {
    function: Arc<str>,
    chain: CallChain,
    connector: Option<Rc<dyn Connector>>,
    bindings: Vec<(Arc<str>, u32)>,
    wall_clock: std::time::Duration,
    not_after: Option<Instant>,
    serving: Option<u32>,
}

impl RpcState {
    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn add_cap(&mut self, cap: Cap) -> Result<u32, JsErrorBox> {
        if self.caps.len() >= MAX_CAPS {
            return Err(JsErrorBox::range_error(format!(
                "an invocation may hold at most {MAX_CAPS} RPC capabilities"
            )));
        }
        let id = self.id();
        self.caps.insert(id, cap);
        Ok(id)
    }

    fn add_session(&mut self, ends: Ends) -> u32 {
        let id = self.id();
        self.sessions.insert(id, ends);
        id
    }
}

/// Starts an invocation's RPC: its bindings become capabilities, and the session it serves (if
/// any) one of its sessions. Called by the runtime before the dispatcher runs.
pub fn begin(state: &mut OpState, invocation: RpcInvocation) {
    let rpc = state.borrow_mut::<RpcState>();
    end_of(rpc);
    let bindings = invocation
        .bindings
        .into_iter()
        .filter_map(|(name, target)| {
            let cap = Cap::Binding(Arc::new(Binding {
                name: name.clone(),
                target,
                owner: invocation.owner.clone(),
            }));
            rpc.add_cap(cap).ok().map(|id| (name, id))
        })
        .collect();
    let arrival = match &invocation.session {
        // A capnweb client's session is logged by the embedder as it starts (it has no binding).
        Some(session) if session.protocol != Protocol::Functions => None,
        Some(session) => Some(format!(
            "RPC call ← {} through its env.{} (traceparent {})",
            session.hop.caller,
            session.hop.binding,
            invocation.chain.traceparent()
        )),
        None => invocation.chain.fetched_by(),
    };
    let serving = invocation.session.map(|session| {
        rpc.add_session(Ends {
            outgoing: session.outgoing,
            incoming: Rc::new(RefCell::new(Some(session.incoming))),
            peer: session.hop.caller,
            protocol: session.protocol,
            reusable: false,
        })
    });
    rpc.current = Some(Current {
        function: invocation.function,
        chain: invocation.chain,
        connector: invocation.connector,
        wall_clock: invocation.wall_clock,
        not_after: invocation.not_after,
        bindings,
        serving,
    });
    if let Some(line) = arrival {
        state
            .borrow_mut::<ConsoleOutput>()
            .push_host(LogLevel::Info, &line);
    }
}

/// Logs a call through a binding in the calling invocation's output (the callee logs its
/// side as it starts: see [`begin`]); both lines carry the callee's `traceparent`.
fn log_departure(state: &mut OpState, hop: &Hop, how: &str) {
    let line = format!(
        "RPC {how} → {} through env.{} (traceparent {})",
        hop.target,
        hop.binding,
        hop.chain.traceparent()
    );
    state
        .borrow_mut::<ConsoleOutput>()
        .push_host(LogLevel::Info, &line);
}

/// Two sessions of the isolate connected to each other (the first's frames are the second's,
/// and back): their ids. Only for the base snapshot's warm-up, which runs a session through
/// them so that V8 keeps the RPC path compiled in the snapshot.
pub fn loopback(state: &mut OpState) -> (u32, u32) {
    let rpc = state.borrow_mut::<RpcState>();
    let (to_server, from_client) = mpsc::unbounded_channel();
    let (to_client, from_server) = mpsc::unbounded_channel();
    let mut ends = |outgoing, incoming| {
        rpc.add_session(Ends {
            outgoing,
            incoming: Rc::new(RefCell::new(Some(incoming))),
            peer: "warm-up".into(),
            protocol: Protocol::Functions,
            reusable: false,
        })
    };
    (ends(to_server, from_server), ends(to_client, from_client))
}

/// Ends an invocation's RPC: its sessions close (the functions it called end their
/// invocations) and its capabilities are dropped.
pub fn end(state: &mut OpState) {
    if let Some(rpc) = state.try_borrow_mut::<RpcState>() {
        end_of(rpc);
    }
}

fn end_of(rpc: &mut RpcState) {
    rpc.caps.clear();
    rpc.sessions.clear();
    rpc.current = None;
}

const STALE: &str = "RPC stub is no longer valid: the invocation that received it has ended";

/// What the dispatcher learns about the invocation's RPC.
#[derive(Serialize)]
struct InvocationRpc {
    /// The session to serve, if the invocation was called through a binding.
    serving: Option<Serving>,
    /// The bindings: name and capability.
    bindings: Vec<(Arc<str>, u32)>,
}

/// A session an invocation serves, and the function that called.
#[derive(Serialize)]
struct Serving {
    id: u32,
    caller: Arc<str>,
    /// `"batch"` or `"websocket"` for a capnweb client, null for a function.
    capnweb: Option<&'static str>,
}

#[op2]
#[serde]
fn op_rpc_invocation(state: &mut OpState) -> InvocationRpc {
    let rpc = state.borrow_mut::<RpcState>();
    let serving = rpc
        .current
        .as_ref()
        .and_then(|current| current.serving)
        .and_then(|id| {
            let ends = rpc.sessions.get(&id)?;
            let capnweb = match ends.protocol {
                Protocol::Functions => None,
                Protocol::CapnwebBatch => Some("batch"),
                Protocol::CapnwebWebSocket => Some("websocket"),
            };
            Some(Serving {
                id,
                caller: ends.peer.clone(),
                capnweb,
            })
        });
    match &rpc.current {
        Some(current) => InvocationRpc {
            serving,
            bindings: current.bindings.clone(),
        },
        None => InvocationRpc {
            serving: None,
            bindings: Vec::new(),
        },
    }
}

/// The binding behind capability `cap`, and the hop a call through it makes.
fn hop_through(rpc: &RpcState, cap: u32) -> Result<(Hop, Rc<dyn Connector>), JsErrorBox> {
    let Some(Cap::Binding(binding)) = rpc.caps.get(&cap) else {
        return Err(JsErrorBox::generic(STALE));
    };
    let current = rpc
        .current
        .as_ref()
        .ok_or_else(|| JsErrorBox::generic(STALE))?;
    let connector = current.connector.clone().ok_or_else(|| {
        JsErrorBox::generic("this engine has no services for calls through bindings")
    })?;
    let chain = current.chain.child(&binding.target).map_err(|message| {
        if message.starts_with("RPC call depth") {
            JsErrorBox::range_error(message)
        } else {
            JsErrorBox::generic(message)
        }
    })?;
    let hop = Hop {
        caller: current.function.clone(),
        binding: binding.name.clone(),
        target: binding.target.clone(),
        owner: binding.owner.clone(),
        chain,
    };
    Ok((hop, connector))
}

/// Opens a session with the function behind binding capability `cap`: returns its id.
#[op2(fast)]
fn op_rpc_open(state: &mut OpState, cap: u32) -> Result<u32, JsErrorBox> {
    let rpc = state.borrow_mut::<RpcState>();
    let (hop, connector) = hop_through(rpc, cap)?;
    if rpc.sessions.len() >= MAX_SESSIONS {
        return Err(JsErrorBox::range_error(format!(
            "an invocation may have at most {MAX_SESSIONS} calls through bindings under way"
        )));
    }
    let (to_callee, from_caller) = mpsc::unbounded_channel();
    let (to_caller, from_callee) = mpsc::unbounded_channel();
    let peer = hop.target.clone();
    log_departure(state, &hop, "call");
    let reusable = connector.connect(RpcSession {
        incoming: from_caller,
        outgoing: to_caller,
        hop,
        protocol: Protocol::Functions,
    });
    let id = state.borrow_mut::<RpcState>().add_session(Ends {
        outgoing: to_callee,
        incoming: Rc::new(RefCell::new(Some(from_callee))),
        peer,
        protocol: Protocol::Functions,
        reusable,
    });
    Ok(id)
}

/// Whether session `session` may carry the caller's further calls through its binding (its
/// callee is a warm isolate, which serves them one after another as new calls).
#[op2(fast)]
fn op_rpc_reusable(state: &mut OpState, #[smi] session: u32) -> bool {
    state
        .borrow::<RpcState>()
        .sessions
        .get(&session)
        .is_some_and(|ends| ends.reusable)
}

/// Asks the runtime for a new budget for the invocation (see [`CallBudget`]).
#[op2(fast)]
fn op_rpc_call_started(state: &mut OpState) {
    if let Some(budget) = state.try_borrow::<CallBudget>() {
        budget.0.set(true);
    }
    // The calls it makes from now on inherit the renewed deadline.
    if let Some(current) = &mut state.borrow_mut::<RpcState>().current {
        let renewed = Instant::now() + current.wall_clock;
        let deadline = current.not_after.map_or(renewed, |d| d.min(renewed));
        current.chain.deadline = Some(deadline);
    }
}

/// Set when a session the invocation serves starts another top-level call: the runtime then
/// gives the invocation its limits afresh (CPU time and wall clock), as each call gets them.
#[derive(Clone, Debug, Default)]
pub struct CallBudget(pub Rc<std::cell::Cell<bool>>);

impl CallBudget {
    /// Whether a new budget was asked for since the last look.
    pub fn take(&self) -> bool {
        self.0.replace(false)
    }
}

/// Sends a batch of messages on session `session`, with the capabilities `caps` (ids in the
/// invocation's table) they carry.
#[op2]
fn op_rpc_send(
    state: &mut OpState,
    #[smi] session: u32,
    #[buffer] bytes: JsBuffer,
    #[string] descriptors: Option<String>,
    #[serde] caps: Vec<u32>,
) -> Result<(), JsErrorBox> {
    let rpc = state.borrow_mut::<RpcState>();
    let caps = caps
        .iter()
        .map(|id| rpc.caps.get(id).cloned())
        .collect::<Option<Vec<Cap>>>()
        .ok_or_else(|| JsErrorBox::generic(STALE))?;
    let ends = rpc
        .sessions
        .get(&session)
        .ok_or_else(|| JsErrorBox::generic(STALE))?;
    // A session whose other end is gone says so on its receiving side.
    let _ = ends.outgoing.send(Frame::Batch {
        bytes: bytes.to_vec(),
        descriptors,
        caps,
    });
    Ok(())
}

/// Sends capnweb messages (JSON text, one each) on session `session`, a capnweb client's.
#[op2]
fn op_rpc_send_text(
    state: &mut OpState,
    #[smi] session: u32,
    #[serde] messages: Vec<String>,
) -> Result<(), JsErrorBox> {
    let rpc = state.borrow_mut::<RpcState>();
    let ends = rpc
        .sessions
        .get(&session)
        .ok_or_else(|| JsErrorBox::generic(STALE))?;
    for message in messages {
        // A client gone is seen on the receiving side.
        let _ = ends.outgoing.send(Frame::Text(message));
    }
    Ok(())
}

/// A batch received on a session: its bytes, descriptors, and the capabilities it carried
/// (now in the invocation's table: id and binding name); or one capnweb message.
#[derive(Serialize)]
struct Received {
    bytes: Option<ToJsBuffer>,
    /// A capnweb message (sessions with capnweb clients).
    text: Option<String>,
    descriptors: Option<String>,
    caps: Vec<(u32, Arc<str>)>,
    /// Why the session ended, when it did.
    ended: Option<String>,
}

/// Waits for the next batch on `session`.
#[op2]
#[serde]
async fn op_rpc_receive(
    state: Rc<RefCell<OpState>>,
    #[smi] session: u32,
) -> Result<Received, JsErrorBox> {
    let (incoming, peer) = {
        let state = state.borrow();
        let rpc = state.borrow::<RpcState>();
        match rpc.sessions.get(&session) {
            Some(ends) => (ends.incoming.clone(), ends.peer.clone()),
            None => return Ok(ended(STALE.to_owned())),
        }
    };
    let Some(mut receiver) = incoming.borrow_mut().take() else {
        return Err(JsErrorBox::generic("the session is received elsewhere"));
    };
    let frame = receiver.recv().await;
    *incoming.borrow_mut() = Some(receiver);
    match frame {
        None => Ok(ended(format!("the RPC session with {peer} has ended"))),
        Some(Frame::Abort(message)) => Ok(ended(message)),
        Some(Frame::Text(text)) => Ok(Received {
            bytes: None,
            text: Some(text),
            descriptors: None,
            caps: Vec::new(),
            ended: None,
        }),
        Some(Frame::Batch {
            bytes,
            descriptors,
            caps,
        }) => {
            let mut state = state.borrow_mut();
            let rpc = state.borrow_mut::<RpcState>();
            if !rpc.sessions.contains_key(&session) {
                return Ok(ended(STALE.to_owned()));
            }
            let caps = caps
                .into_iter()
                .map(|cap| {
                    let Cap::Binding(binding) = &cap;
                    let name = binding.name.clone();
                    rpc.add_cap(cap).map(|id| (id, name))
                })
                .collect::<Result<_, _>>()?;
            Ok(Received {
                bytes: Some(bytes.into()),
                text: None,
                descriptors,
                caps,
                ended: None,
            })
        }
    }
}

fn ended(message: String) -> Received {
    Received {
        bytes: None,
        text: None,
        descriptors: None,
        caps: Vec::new(),
        ended: Some(message),
    }
}

/// Closes session `session` (the other end sees it end).
#[op2(fast)]
fn op_rpc_close(state: &mut OpState, #[smi] session: u32) {
    state.borrow_mut::<RpcState>().sessions.remove(&session);
}

/// Drops capability `cap` from the invocation's table.
#[op2(fast)]
fn op_rpc_drop(state: &mut OpState, #[smi] cap: u32) {
    state.borrow_mut::<RpcState>().caps.remove(&cap);
}

/// A response from a fetch through a binding.
#[derive(Serialize)]
struct Fetched {
    status: u16,
    headers: Vec<(String, String)>,
    body: ToJsBuffer,
}

/// Sends a request to the fetch handler of the function behind binding capability `cap`.
#[op2]
#[serde]
async fn op_rpc_fetch(
    state: Rc<RefCell<OpState>>,
    #[smi] cap: u32,
    #[string] method: String,
    #[string] url: String,
    #[serde] mut headers: Vec<(String, String)>,
    #[buffer] body: Option<JsBuffer>,
) -> Result<Fetched, JsErrorBox> {
    let (hop, connector) = hop_through(state.borrow().borrow::<RpcState>(), cap)?;
    log_departure(&mut state.borrow_mut(), &hop, "fetch");
    headers.retain(|(name, _)| !name.eq_ignore_ascii_case("traceparent"));
    headers.push(("traceparent".into(), hop.chain.traceparent()));
    let request = Request {
        method,
        url,
        headers,
        body: body.map(|body| body.to_vec()).unwrap_or_default(),
        env: Default::default(),
    };
    let response = connector
        .fetch(hop, request)
        .await
        .map_err(JsErrorBox::generic)?;
    let body = match response.body {
        functions_types::ResponseBody::Full(bytes) => bytes,
        functions_types::ResponseBody::Stream(_) => {
            return Err(JsErrorBox::generic(
                "a fetch through a binding got a streamed body the host did not read",
            ));
        }
    };
    Ok(Fetched {
        status: response.status,
        headers: response.headers,
        body: body.into(),
    })
}

deno_core::extension!(
    rpc,
    deps = [deno_web],
    ops = [
        op_rpc_invocation,
        op_rpc_open,
        op_rpc_reusable,
        op_rpc_call_started,
        op_rpc_send,
        op_rpc_send_text,
        op_rpc_receive,
        op_rpc_close,
        op_rpc_drop,
        op_rpc_fetch,
    ],
    esm = [dir "rpc", "rpc.js", "capnweb.js"],
    state = |state| state.put(RpcState::default()),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_refuses_cycles_depth_and_late_calls() {
        let root = CallChain::root("a", None);
        assert_eq!(root.depth(), 0);
        let b = root.child("b").unwrap();
        assert_eq!(b.depth(), 1);
        assert_eq!(b.child("a").unwrap_err(), "RPC cycle: a → b → a");
        let mut chain = root.clone();
        for i in 0..MAX_DEPTH {
            chain = chain.child(&format!("f{i}")).unwrap();
        }
        let err = chain.child("last").unwrap_err();
        assert!(
            err.starts_with("RPC call depth limit (16) exceeded: a → f0 → f1"),
            "{err}"
        );
        let late = root.within(Instant::now());
        assert!(late.child("b").unwrap_err().contains("deadline"));
    }

    #[test]
    fn a_capnweb_client_sees_text_and_an_abort_last() {
        let (session, mut client) = RpcSession::capnweb("api", CallChain::root("api", None), true);
        assert_eq!(session.protocol(), Protocol::CapnwebBatch);
        assert!(!session.is_nested());
        assert_eq!(&*session.hop().caller, CAPNWEB_CALLER);
        assert!(client.send(r#"["pull",1]"#.into()));
        let RpcSession {
            mut incoming,
            outgoing,
            ..
        } = session;
        assert!(matches!(incoming.try_recv(), Ok(Frame::Text(text)) if text == r#"["pull",1]"#));
        client.finish();
        assert!(!client.send("[]".into()));
        outgoing
            .send(Frame::Text(r#"["resolve",1,2]"#.into()))
            .unwrap();
        outgoing.send(Frame::Abort("it \"failed\"".into())).unwrap();
        outgoing.send(Frame::Text("after".into())).unwrap();
        assert_eq!(client.try_recv().as_deref(), Some(r#"["resolve",1,2]"#));
        assert_eq!(
            client.try_recv().as_deref(),
            Some(r#"["abort",["error","Error","it \"failed\""]]"#)
        );
        assert_eq!(client.try_recv(), None);
    }

    #[test]
    fn a_chain_keeps_its_trace_and_gives_each_hop_a_span() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let root = CallChain::root("a", Some(header));
        let child = root.child("b").unwrap();
        let (r, c) = (root.traceparent(), child.traceparent());
        assert!(r.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_eq!(r[..36], c[..36]);
        assert_ne!(r, c);
        // Each continues the span before it.
        let (trace, span, parent) = root.trace();
        assert_eq!(
            parent,
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        assert_eq!(child.trace(), (trace, child.trace().1, Some(span)));
        assert_eq!(CallChain::root("a", None).trace().2, None);
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-xyz-1-01",
        ] {
            assert!(
                !CallChain::root("a", Some(bad))
                    .traceparent()
                    .contains("4bf92f35")
            );
        }
    }
}
