//! The global scope of a function and the dispatcher that runs one invocation in it.
//!
//! `bootstrap.js` runs once, while the base snapshot is built: it loads the web platform scripts,
//! installs the globals and leaves the dispatcher at `globalThis.__functionsHostDispatch`, which the
//! runtime takes (and deletes) in every isolate it creates. Requests and responses cross between
//! Rust and JavaScript through the `OpState` types below and the ops of this extension.

use std::collections::BTreeMap;

use deno_core::JsBuffer;
use deno_core::OpState;
use deno_core::op2;
use serde::Serialize;

/// Name of the global under which `bootstrap.js` leaves the dispatcher.
pub const DISPATCH_GLOBAL: &str = "__functionsHostDispatch";

/// The request an invocation runs with; put into `OpState` before the dispatcher is called.
#[derive(Clone, Debug, Default)]
pub struct InvocationRequest {
    /// HTTP method.
    pub method: String,
    /// Absolute URL as the function sees it.
    pub url: String,
    /// Header names and values, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
    /// The function's environment variables, given to the handler as `env`.
    pub env: BTreeMap<String, String>,
}

impl InvocationRequest {
    /// A `POST` of a JSON body to `http://localhost/`: the event of a plain-function handler.
    pub fn json(body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: "POST".into(),
            url: "http://localhost/".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            env: BTreeMap::new(),
        }
    }

    /// A `GET` of `url` without a body.
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: "GET".into(),
            url: url.into(),
            ..Self::default()
        }
    }
}

/// The response an invocation produced; taken from `OpState` after the dispatcher settles.
#[derive(Clone, Debug, Default)]
pub struct InvocationResponse {
    /// HTTP status.
    pub status: u16,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The whole response body.
    pub body: Vec<u8>,
}

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

#[op2]
fn op_invocation_respond(
    state: &mut OpState,
    #[smi] status: u32,
    #[serde] headers: Vec<(String, String)>,
    #[buffer] body: JsBuffer,
) {
    state.put(InvocationResponse {
        status: status as u16,
        headers,
        body: body.to_vec(),
    });
}

deno_core::extension!(
  host,
  deps = [deno_webidl, deno_web, fetch, console, crypto],
  ops = [op_invocation_request, op_invocation_request_body, op_invocation_respond],
  esm_entry_point = "ext:host/bootstrap.js",
  esm = [dir "runtime", "bootstrap.js"],
  state = |state| state.put(InvocationRequest::default()),
);
