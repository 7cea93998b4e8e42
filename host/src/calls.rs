//! Asynchronous calls: [`crate::Host::call`] stores one and answers its id at once;
//! [`crate::Host::result`] answers its outcome once it is done (and forgets it).
//!
//! A call is stored before its id is answered, then takes a place in line: first in its tenant's
//! lane (the API key's concurrency quota) when the host has keys, then in its function's lane
//! (the function's concurrency, shared with synchronous invocations). Places are taken in arrival
//! order, so calls start in the order they came. Each step is logged in the function's logs:
//! `CALL`, `PENDING` (when it has to wait), `RUNNING`, then `FINISHED` or `FAILED`.
//!
//! At startup, calls that were running when the host stopped are failed ("host restarted": they
//! may have had effects, so they are not run again) and pending calls are queued again in their
//! original order.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use crate::Error;
use crate::ErrorKind;
use crate::Inner;
use crate::lanes::Permit;
use crate::store::CallInput;
use crate::store::CallOutcome;
use crate::store::CallState;
use crate::store::LogEntry;
use crate::store::QueuedCall;

/// How much of a call's input or output its log lines quote.
const LOG_PREFIX_CHARS: usize = 80;

/// The calls waiting in line.
#[derive(Default)]
pub(crate) struct CallQueue {
    /// Calls waiting to start, by function.
    waiting: Mutex<HashMap<String, usize>>,
    /// Per function, without API keys: (the number the next queued call gets, the number of the
    /// next call to start). Calls get their places in number order, and start (are marked
    /// running and logged) in it too, though their tasks may wake in another.
    turns: Mutex<HashMap<String, (u64, u64)>>,
    /// Notified whenever a numbered call has started.
    started: tokio::sync::Notify,
}

impl CallQueue {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn turns(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, u64)>> {
        self.turns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a call of `name` as waiting, unless `max` wait already.
    pub fn admit(&self, name: &str, max: usize) -> Result<(), Error> {
        let mut waiting = self.waiting();
        let count = waiting.entry(name.to_owned()).or_default();
        if *count >= max {
            return Err(Error::queue_full(name, max));
        }
        *count += 1;
        Ok(())
    }

    /// A call of `name` counted as waiting no longer is.
    pub fn leave(&self, name: &str) {
        if let Some(count) = self.waiting().get_mut(name) {
            *count = count.saturating_sub(1);
        }
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

/// Stores a new call of `name` (which must be deployed) and puts it in line; its id.
pub(crate) async fn create(
    inner: &Arc<Inner>,
    name: &str,
    input: CallInput,
    tenant: Option<crate::Tenant>,
) -> Result<String, Error> {
    let Some(deployed) = inner.registry.get(name) else {
        return Err(Error::function_not_found(name));
    };
    if input.payload.len() > crate::MAX_PAYLOAD_BYTES {
        return Err(Error::payload_too_large(crate::MAX_PAYLOAD_BYTES));
    }
    inner.calls.admit(name, inner.max_queued)?;
    let call = QueuedCall {
        id: crate::store::random_hex(16),
        name: name.to_owned(),
        tenant: tenant.as_ref().map(|t| t.id.clone()),
    };
    let line = format!("CALL {} {}", call.id, quote(&input.payload));
    if let Err(err) = inner.store.add_call(&call, input).await {
        inner.calls.leave(name);
        return Err(Error::internal(err));
    }
    log(inner, name, deployed.owner.as_deref(), "info", line).await;
    let id = call.id.clone();
    schedule(inner, call, tenant.map_or(0, |t| t.concurrency));
    Ok(id)
}

/// Whether the key that made `call` may use its function, now owned by `owner`: the function
/// may have been deleted and deployed again by another key since the call was queued, and a
/// call never reaches another key's function.
fn may_still_use(inner: &Inner, call: &QueuedCall, owner: Option<&str>) -> bool {
    call.tenant.as_deref().is_none_or(|id| {
        inner
            .api_keys
            .tenant(id)
            .map_or(owner == Some(id), |tenant| tenant.may_use(owner))
    })
}

/// Whose function a line about `call` goes to: its function's owner while the call's key may
/// use that function, else the key's own (so that the line reaches no other key's function).
fn log_owner(inner: &Inner, call: &QueuedCall) -> Option<Arc<str>> {
    let deployed = inner.registry.get(&call.name);
    match deployed.filter(|d| may_still_use(inner, call, d.owner.as_deref())) {
        Some(deployed) => deployed.owner,
        None => call.tenant.as_deref().map(Into::into),
    }
}

/// Puts a stored pending call in line and runs it at its turn. `tenant_concurrency` is its key's
/// quota (unused without a tenant). Called in arrival order: places are taken synchronously.
fn schedule(inner: &Arc<Inner>, call: QueuedCall, tenant_concurrency: usize) {
    let tenant_ticket = call
        .tenant
        .as_ref()
        .map(|tenant| inner.tenant_lanes.enqueue(tenant, tenant_concurrency));
    let concurrency = inner
        .registry
        .get(&call.name)
        .map_or(1, |deployed| deployed.concurrency);
    // Without a tenant lane, the function's place is taken now, to keep arrival order, and the
    // call is numbered to start in it.
    let mut function_ticket =
        (tenant_ticket.is_none()).then(|| inner.lanes.enqueue(&call.name, concurrency));
    let number = function_ticket
        .is_some()
        .then(|| inner.calls.number(&call.name));
    let inner = inner.clone();
    tokio::spawn(async move {
        let owner = log_owner(&inner, &call);
        let pending = || format!("PENDING {}", call.id);
        let waits = tenant_ticket.as_ref().is_some_and(|t| !t.is_ready())
            || function_ticket.as_ref().is_some_and(|t| !t.is_ready());
        if waits {
            log(&inner, &call.name, owner.as_deref(), "info", pending()).await;
        }
        let tenant_permit = match tenant_ticket {
            Some(ticket) => Some(ticket.await),
            None => None,
        };
        let ticket = match function_ticket.take() {
            Some(ticket) => ticket,
            None => {
                let ticket = inner.lanes.enqueue(&call.name, concurrency);
                if !ticket.is_ready() && !waits {
                    log(&inner, &call.name, owner.as_deref(), "info", pending()).await;
                }
                ticket
            }
        };
        let permit = ticket.await;
        inner.calls.leave(&call.name);
        if let Some(number) = number {
            inner.calls.await_turn(&call.name, number).await;
        }
        run(&inner, &call, permit, number.is_some()).await;
        drop(tenant_permit);
    });
}

/// Runs a call whose turn it is, stores its outcome; `numbered` when the next numbered call
/// waits for this one to start. The call is marked running (and logged so) only when its
/// function is about to run it: until then it is pending, and a host that stops runs it after
/// its restart.
async fn run(inner: &Arc<Inner>, call: &QueuedCall, permit: Permit, numbered: bool) {
    let pass_turn = || {
        if numbered {
            inner.calls.pass_turn(&call.name);
        }
    };
    if inner.is_draining() {
        // The host is shutting down: the call stays pending, for the next host to run.
        return pass_turn();
    }
    let input = match inner.store.call_input(&call.id).await {
        Ok(Some(input)) => input,
        // Not pending any more: it ran already.
        Ok(None) => return pass_turn(),
        Err(err) => {
            eprintln!("functions-host: reading call {}: {err:#}", call.id);
            return pass_turn();
        }
    };
    let deployed = inner.registry.get(&call.name);
    let Some(deployed) = deployed.filter(|d| may_still_use(inner, call, d.owner.as_deref())) else {
        pass_turn();
        let outcome = CallOutcome::Failed(Error::function_not_found(&call.name));
        // Logged (if anywhere) only to a function of the key that made the call.
        return finish(inner, call, call.tenant.as_deref(), outcome).await;
    };
    let request = inner.call_request(&call.name, &call.id, input);
    let (gate, starting) = functions_runtime::start_gate();
    let controls = functions_runtime::Controls {
        start: Some(gate),
        ..functions_runtime::Controls::default()
    };
    let start = async {
        let Some(go) = starting.ready().await else {
            // It ended before it could start (its module failed to load).
            return pass_turn();
        };
        match inner.store.start_call(&call.id).await {
            Ok(true) => {
                let line = format!("RUNNING {}", call.id);
                log(inner, &call.name, deployed.owner.as_deref(), "info", line).await;
            }
            Ok(false) => {}
            Err(err) => eprintln!("functions-host: starting call {}: {err:#}", call.id),
        }
        pass_turn();
        go.go();
    };
    // The call holds its place until its outcome is stored.
    let execute = async {
        match inner.execute(&deployed, request, controls, ()).await {
            Ok(response) => crate::invoke::collect(response).await,
            Err(err) => Err(err),
        }
    };
    let ((), outcome) = tokio::join!(start, execute);
    let outcome = match outcome {
        Ok(result) => CallOutcome::Finished(result),
        Err(err) => CallOutcome::Failed(err),
    };
    finish(inner, call, deployed.owner.as_deref(), outcome).await;
    drop(permit);
}

/// Logs how a call ended (to its function while it is still `owner`'s), stores its outcome, and
/// so wakes whoever waits for it.
async fn finish(inner: &Inner, call: &QueuedCall, owner: Option<&str>, outcome: CallOutcome) {
    let (level, line) = match &outcome {
        CallOutcome::Failed(err) => ("error", format!("FAILED {} {}", call.id, err.message())),
        CallOutcome::Finished(result) => (
            "info",
            format!(
                "FINISHED {} {} {}",
                call.id,
                result.status,
                quote(&result.body)
            ),
        ),
    };
    log(inner, &call.name, owner, level, line).await;
    if let Err(err) = inner
        .store
        .finish_call(&call.id, &outcome, inner.result_cap_bytes)
        .await
    {
        eprintln!(
            "functions-host: storing the result of call {}: {err:#}",
            call.id
        );
    }
}

/// Appends one lifecycle line to `name`'s logs, while it is `owner`'s.
async fn log(inner: &Inner, name: &str, owner: Option<&str>, level: &'static str, line: String) {
    inner
        .logs
        .write(name, owner, vec![LogEntry::from_host(level, line)])
        .await;
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
pub(crate) async fn recover(inner: &Arc<Inner>) -> Result<(), Error> {
    let running = inner
        .store
        .calls_in_state(CallState::Running)
        .await
        .map_err(Error::internal)?;
    for call in running {
        let err = Error::new(
            ErrorKind::HostRestarted,
            "host restarted: the call was running when the server stopped, and may have had \
             effects, so it was not run again",
        );
        let owner = log_owner(inner, &call);
        finish(inner, &call, owner.as_deref(), CallOutcome::Failed(err)).await;
    }
    let pending = inner
        .store
        .calls_in_state(CallState::Pending)
        .await
        .map_err(Error::internal)?;
    for call in pending {
        *inner.calls.waiting().entry(call.name.clone()).or_default() += 1;
        let concurrency = call
            .tenant
            .as_ref()
            .and_then(|id| inner.api_keys.tenant(id))
            .map_or(crate::tenants::DEFAULT_TENANT_CONCURRENCY, |t| {
                t.concurrency
            });
        schedule(inner, call, concurrency);
    }
    Ok(())
}
