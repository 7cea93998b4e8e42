//! Asynchronous calls: `POST /api/functions/{name}/calls` queues one and answers its id at once;
//! `GET /api/calls/{id}?wait=SECONDS` answers its result once it is done (and forgets it).
//!
//! A call is stored (see `store/calls.rs`) before its id is answered, then takes a place in line:
//! first in its API key's lane (the key's concurrency quota) when the server has keys, then in
//! its function's lane (the function's concurrency, shared with synchronous invocations). Places
//! are taken in arrival order, so calls start in the order they came. Each step is logged in the
//! function's logs: `CALL`, `PENDING` (when it has to wait), `RUNNING`, then `FINISHED` or
//! `FAILED`.
//!
//! At startup, calls that were running when the host stopped are failed ("host restarted": they
//! may have had effects, so they are not run again) and pending calls are queued again in their
//! original order.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use http::HeaderValue;
use http::Request;
use http::StatusCode;
use hyper::body::Incoming;
use serde_json::json;
use tokio::sync::watch;

use super::ApiError;
use super::AppState;
use super::HttpResponse;
use super::auth::Tenant;
use super::body::Body;
use super::error::json;
use super::invoke;
use super::read_body;
use crate::store::CallInput;
use crate::store::CallResult;
use crate::store::Fetched;
use crate::store::LogEntry;
use crate::store::QueuedCall;
use crate::store::random_hex;

/// The longest `?wait=` honoured.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// How much of a call's input or output its log lines quote.
const LOG_PREFIX_CHARS: usize = 80;

/// The calls waiting in line, and word of every call that ends.
pub struct CallQueue {
    /// Calls waiting to start, by function.
    waiting: Mutex<HashMap<String, usize>>,
    /// Bumped whenever a call ends: fetches waiting for a result watch it.
    ended: watch::Sender<u64>,
    /// Per function, without API keys: (the number the next queued call gets, the number of the
    /// next call to start). Calls get their places in number order, and start (are marked
    /// running and logged) in it too, though their tasks may wake in another.
    turns: Mutex<HashMap<String, (u64, u64)>>,
    /// Notified whenever a numbered call has started.
    started: tokio::sync::Notify,
    /// The most calls (and synchronous invocations) of one function that may wait.
    pub max_queued: usize,
    /// The cap on one function's unfetched results, in bytes.
    result_cap: u64,
}

impl CallQueue {
    pub fn new(max_queued: usize, result_cap: u64) -> Self {
        Self {
            waiting: Mutex::default(),
            ended: watch::Sender::new(0),
            turns: Mutex::default(),
            started: tokio::sync::Notify::new(),
            max_queued,
            result_cap,
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn turns(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, u64)>> {
        self.turns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers a call of `name` that takes its place in line now.
    fn number(&self, name: &str) -> u64 {
        let mut turns = self.turns();
        let (next, _) = turns.entry(name.to_owned()).or_default();
        *next += 1;
        *next - 1
    }

    /// Waits until call `number` of `name` is the next to start.
    async fn await_turn(&self, name: &str, number: u64) {
        loop {
            let started = self.started.notified();
            tokio::pin!(started);
            started.as_mut().enable();
            if self
                .turns()
                .get(name)
                .is_some_and(|(_, turn)| *turn == number)
            {
                return;
            }
            started.await;
        }
    }

    /// Lets the call after the one that just started start.
    fn pass_turn(&self, name: &str) {
        if let Some((_, turn)) = self.turns().get_mut(name) {
            *turn += 1;
        }
        self.started.notify_waiters();
    }
}

/// `POST /api/functions/{name}/calls`: the body is the payload (stdin of a WebAssembly guest, the
/// event or request of a JavaScript function). 202 `{"call_id"}`.
pub async fn create(
    state: &Arc<AppState>,
    name: &str,
    tenant: Option<Tenant>,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    if state.registry.get(name).is_none() {
        return Err(ApiError::not_found(name));
    }
    let (parts, body) = request.into_parts();
    let payload = read_body(body, super::MAX_PAYLOAD_BYTES).await?;
    {
        let mut waiting = state.calls.waiting();
        let count = waiting.entry(name.to_owned()).or_default();
        if *count >= state.calls.max_queued {
            return Err(ApiError::queue_full(name, state.calls.max_queued));
        }
        *count += 1;
    }
    let call = QueuedCall {
        id: random_hex(16),
        name: name.to_owned(),
        tenant: tenant.as_ref().map(|t| t.id.clone()),
    };
    let input = CallInput {
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        payload: payload.to_vec(),
    };
    let stored = tokio::task::block_in_place(|| {
        state.store.add_call(&call, &input)?;
        let line = format!("CALL {} {}", call.id, quote(&input.payload));
        state
            .store
            .append_logs(name, &[LogEntry::now("info", line)])
    });
    if let Err(err) = stored {
        *state.calls.waiting().entry(name.to_owned()).or_default() -= 1;
        return Err(ApiError::internal(err));
    }
    let id = call.id.clone();
    schedule(state, call, tenant.map_or(0, |t| t.concurrency));
    Ok(json(StatusCode::ACCEPTED, &json!({ "call_id": id })))
}

/// Puts a stored pending call in line and runs it at its turn. `tenant_concurrency` is its key's
/// quota (unused without a tenant). Called in arrival order: places are taken synchronously.
fn schedule(state: &Arc<AppState>, call: QueuedCall, tenant_concurrency: usize) {
    let tenant_ticket = call
        .tenant
        .as_ref()
        .map(|tenant| state.tenant_lanes.enqueue(tenant, tenant_concurrency));
    let concurrency = state
        .registry
        .get(&call.name)
        .map_or(1, |deployed| deployed.concurrency);
    // Without a tenant lane, the function's place is taken now, to keep arrival order, and the
    // call is numbered to start in it.
    let mut function_ticket =
        (tenant_ticket.is_none()).then(|| state.lanes.enqueue(&call.name, concurrency));
    let number = function_ticket
        .is_some()
        .then(|| state.calls.number(&call.name));
    let state = state.clone();
    tokio::spawn(async move {
        let waits = tenant_ticket.as_ref().is_some_and(|t| !t.is_ready())
            || function_ticket.as_ref().is_some_and(|t| !t.is_ready());
        if waits {
            log(&state, &call.name, "info", format!("PENDING {}", call.id));
        }
        let tenant_permit = match tenant_ticket {
            Some(ticket) => Some(ticket.await),
            None => None,
        };
        let ticket = match function_ticket.take() {
            Some(ticket) => ticket,
            None => {
                let ticket = state.lanes.enqueue(&call.name, concurrency);
                if !ticket.is_ready() && !waits {
                    log(&state, &call.name, "info", format!("PENDING {}", call.id));
                }
                ticket
            }
        };
        let permit = ticket.await;
        if let Some(count) = state.calls.waiting().get_mut(&call.name) {
            *count = count.saturating_sub(1);
        }
        if let Some(number) = number {
            state.calls.await_turn(&call.name, number).await;
        }
        run(&state, &call, permit, number.is_some()).await;
        drop(tenant_permit);
    });
}

/// Runs a call whose turn it is, stores its result and tells waiting fetches; `numbered` when
/// the next numbered call waits for this one to start. The call is marked running (and logged
/// so) only when its function is about to run it: until then it is pending, and a host that
/// stops runs it after its restart.
async fn run(
    state: &Arc<AppState>,
    call: &QueuedCall,
    permit: super::lanes::Permit,
    numbered: bool,
) {
    let pass_turn = || {
        if numbered {
            state.calls.pass_turn(&call.name);
        }
    };
    let input = match tokio::task::block_in_place(|| state.store.call_input(&call.id)) {
        Ok(Some(input)) => input,
        // Not pending any more: it ran already.
        Ok(None) => return pass_turn(),
        Err(err) => {
            eprintln!("reading call {}: {err:#}", call.id);
            return pass_turn();
        }
    };
    let Some(deployed) = state.registry.get(&call.name) else {
        pass_turn();
        let result = error_result(&ApiError::not_found(&call.name));
        return finish(state, call, &result, true);
    };
    let mut headers = vec![("x-call-id".to_owned(), call.id.clone())];
    if let Some(content_type) = input.content_type {
        headers.push(("content-type".to_owned(), content_type));
    }
    let request = functions_runtime::Request {
        method: "POST".to_owned(),
        url: format!("http://{}/", state.listen),
        headers,
        body: input.payload,
        env: Default::default(),
    };
    let (gate, starting) = functions_runtime::start_gate();
    let controls = functions_runtime::Controls {
        cancel: None,
        start: Some(gate),
    };
    let start = async {
        let Some(go) = starting.ready().await else {
            // It ended before it could start (its module failed to load).
            return pass_turn();
        };
        let started = tokio::task::block_in_place(|| state.store.start_call(&call.id));
        match started {
            Ok(true) => log(state, &call.name, "info", format!("RUNNING {}", call.id)),
            Ok(false) => {}
            Err(err) => eprintln!("starting call {}: {err:#}", call.id),
        }
        pass_turn();
        go.go();
    };
    // The call holds its place until its result is stored.
    let execute = async {
        match invoke::execute(state, &deployed.function, request, controls, ()).await {
            Ok(response) => collect(response).await,
            Err(err) => Err(err),
        }
    };
    let ((), outcome) = tokio::join!(start, execute);
    let (result, failed) = match outcome {
        Ok(result) => (result, false),
        Err(err) => (error_result(&err), true),
    };
    finish(state, call, &result, failed);
    drop(permit);
}

/// A function's response as stored: the whole body (a stream read to its end).
async fn collect(response: functions_runtime::Response) -> Result<CallResult, ApiError> {
    let body = response.body.bytes().await.map_err(|message| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "function_error",
            format!("the function's response stream failed: {message}"),
        )
    })?;
    if body.len() > functions_runtime::MAX_RESPONSE_BYTES {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "output_too_large",
            functions_runtime::InvokeError::OutputTooLarge {
                limit: functions_runtime::MAX_RESPONSE_BYTES,
            }
            .to_string(),
        ));
    }
    Ok(CallResult {
        status: response.status,
        headers: response.headers,
        body,
    })
}

/// The stored form of a failed call: the error a synchronous invocation would have answered.
fn error_result(err: &ApiError) -> CallResult {
    CallResult {
        status: err.status().as_u16(),
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: err.body().to_string().into_bytes(),
    }
}

/// Stores a call's result, logs how it ended, and wakes fetches waiting for it.
fn finish(state: &AppState, call: &QueuedCall, result: &CallResult, failed: bool) {
    let line = if failed {
        let reason = serde_json::from_slice::<serde_json::Value>(&result.body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        format!("FAILED {} {}", call.id, reason)
    } else {
        format!(
            "FINISHED {} {} {}",
            call.id,
            result.status,
            quote(&result.body)
        )
    };
    let stored = tokio::task::block_in_place(|| {
        state
            .store
            .finish_call(&call.id, result, failed, state.calls.result_cap)
    });
    if let Err(err) = stored {
        eprintln!("storing the result of call {}: {err:#}", call.id);
    }
    log(
        state,
        &call.name,
        if failed { "error" } else { "info" },
        line,
    );
    state.calls.ended.send_modify(|n| *n += 1);
}

/// Appends one lifecycle line to `name`'s logs.
fn log(state: &AppState, name: &str, level: &'static str, line: String) {
    let stored = tokio::task::block_in_place(|| {
        state.store.append_logs(name, &[LogEntry::now(level, line)])
    });
    if let Err(err) = stored {
        eprintln!("storing the logs of {name}: {err:#}");
    }
}

/// The start of `bytes` as text, for a log line.
fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let mut quoted: String = text
        .chars()
        .take(LOG_PREFIX_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(LOG_PREFIX_CHARS).is_some() {
        quoted.push('…');
    }
    quoted
}

/// At startup: fails the calls that were running when the host stopped, and queues the pending
/// ones again in arrival order.
pub fn recover(state: &Arc<AppState>) -> anyhow::Result<()> {
    for call in state.store.running_calls()? {
        let err = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "host_restarted",
            "host restarted: the call was running when the server stopped, and may have had effects, so it was not run again",
        );
        finish(state, &call, &error_result(&err), true);
    }
    for call in state.store.pending_calls()? {
        *state.calls.waiting().entry(call.name.clone()).or_default() += 1;
        let concurrency = call
            .tenant
            .as_ref()
            .and_then(|id| state.api_keys.tenant(id))
            .map_or(super::auth::DEFAULT_TENANT_CONCURRENCY, |t| t.concurrency);
        schedule(state, call, concurrency);
    }
    Ok(())
}

/// `GET /api/calls/{id}?wait=SECONDS`: the result once the call is done (then it is forgotten: a
/// second fetch is a 404), 202 while it is pending or running, 410 when it was rotated out.
pub async fn fetch(
    state: &AppState,
    id: &str,
    wait: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let wait = match wait {
        None => Duration::ZERO,
        Some(seconds) => seconds
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s).min(MAX_WAIT))
            .ok_or_else(|| ApiError::bad_request("wait must be a number of seconds"))?,
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut ended = state.calls.ended.subscribe();
    loop {
        ended.mark_unchanged();
        let fetched = tokio::task::block_in_place(|| state.store.fetch_call(id))
            .map_err(ApiError::internal)?;
        match fetched {
            Fetched::Done { result, failed } => return Ok(result_response(id, result, failed)),
            Fetched::RotatedOut => {
                return Err(ApiError::new(
                    StatusCode::GONE,
                    "gone",
                    format!(
                        "the result of call {id} was rotated out of its function's result cache before it was fetched"
                    ),
                ));
            }
            Fetched::Unknown => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no call {id:?} (a result is kept until it is fetched once)"),
                ));
            }
            Fetched::NotYet(call_state) => {
                let timed_out = tokio::time::timeout_at(deadline, ended.changed())
                    .await
                    .is_err();
                if timed_out {
                    let mut response = json(
                        StatusCode::ACCEPTED,
                        &json!({ "call_id": id, "state": call_state }),
                    );
                    set_state(&mut response, &call_state);
                    return Ok(response);
                }
            }
        }
    }
}

/// A finished call's result as the response: its status, headers and body, with the call's
/// state in `X-Call-State`.
fn result_response(id: &str, result: CallResult, failed: bool) -> HttpResponse {
    let mut response = invoke::response_of(result.status, result.headers, Body::full(result.body));
    if let Ok(id) = HeaderValue::try_from(id) {
        response.headers_mut().insert("x-call-id", id);
    }
    set_state(&mut response, if failed { "failed" } else { "finished" });
    response
}

fn set_state(response: &mut HttpResponse, call_state: &str) {
    if let Ok(value) = HeaderValue::try_from(call_state) {
        response.headers_mut().insert("x-call-state", value);
    }
}
