//! Synchronous invocations: a place in the function's lane, the engine's run, the function's
//! console lines in its logs, and a response or a domain error.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::task::Poll;

use functions_runtime::BodyError;
use functions_runtime::Cancel;
use functions_runtime::Controls;
use functions_runtime::InvokeError;

use crate::Error;
use crate::ErrorKind;
use crate::Inner;
use crate::MAX_PAYLOAD_BYTES;
use crate::lanes::Ticket;
use crate::metrics::Via;
use crate::registry::Deployed;
use crate::store::CallResult;
use crate::store::LogEntry;
use crate::store::LogSource;
use crate::tenants::constant_time_eq;

/// Who is invoking a function, which decides whether it may.
#[derive(Clone, Copy, Debug)]
pub enum Caller<'a> {
    /// The program that embeds the host: always allowed.
    Embedder,
    /// A client at the function's public address (`/fn/{name}`), presenting this API key if
    /// any: a function deployed with `"public": false` needs a valid one when the host has keys.
    Public {
        /// The key presented.
        key: Option<&'a [u8]>,
    },
    /// A client at the function's key-less address (`/call/{name}/{token}`), with this token.
    CallToken(&'a str),
}

impl Inner {
    /// The function `name` as `caller` may invoke it.
    pub(crate) fn admitted(&self, name: &str, caller: Caller) -> Result<Deployed, Error> {
        let deployed = self.registry.get(name);
        match caller {
            Caller::Embedder => deployed.ok_or_else(|| Error::function_not_found(name)),
            Caller::Public { key } => {
                let deployed = deployed.ok_or_else(|| Error::function_not_found(name))?;
                if !deployed.public
                    && let Some(tenant) = self.api_keys.admit(key)?
                    && !tenant.may_use(deployed.owner.as_deref())
                {
                    // Another tenant's private function is none of this key's business.
                    return Err(Error::function_not_found(name));
                }
                Ok(deployed)
            }
            // An unknown name and a wrong token look the same.
            Caller::CallToken(token) => deployed
                .filter(|d| constant_time_eq(d.call_token.as_bytes(), token.as_bytes()))
                .ok_or_else(|| {
                    Error::new(ErrorKind::NotFound, "no function has this call address")
                }),
        }
    }

    /// Removes the host's own credentials from a request a function is about to see: an
    /// `Authorization: Bearer` header presenting one of the host's API keys (which let the
    /// caller in; the function has no business with it). Any other `Authorization` is the
    /// function's (its own clients' tokens) and stays.
    pub(crate) fn remove_platform_credentials(&self, request: &mut functions_runtime::Request) {
        request.headers.retain(|(name, value)| {
            let platform_key = name.eq_ignore_ascii_case("authorization")
                && value
                    .strip_prefix("Bearer ")
                    .is_some_and(|key| self.api_keys.is_key(key.as_bytes()));
            !platform_key
        });
    }

    /// A place in the function's FIFO lane (its concurrency limit, or this host's share of it
    /// when several share the store); queue full when as many wait as the host allows, its
    /// unclaimed asynchronous calls counted.
    pub(crate) fn queue_ticket(&self, deployed: &Deployed) -> Result<Ticket, Error> {
        let name = deployed.function.name();
        if self.lanes.waiting(name) + self.dispatcher.pending(name) >= self.max_queued {
            return Err(Error::queue_full(name, self.max_queued));
        }
        let metrics = self.metrics.clone();
        let owned = name.to_owned();
        Ok(self
            .lanes
            .enqueue(name, self.dispatcher.share(deployed.concurrency))
            .on_turn(move |waited| metrics.waited(&owned, Via::Invocation, waited)))
    }

    /// Counts an invocation of `deployed` refused before it ran (with `err`), and returns `err`.
    pub(crate) fn refused(&self, deployed: &Deployed, err: Error) -> Error {
        let name = deployed.function.name();
        (self.metrics).invoked(
            name,
            deployed.language,
            Via::Invocation,
            err.kind().code(),
            None,
        );
        err
    }

    /// Runs one invocation with `controls`, holding `permit` (a place in line, kept until a
    /// streamed body or `ctx.waitUntil` is done too), stores its console output, and returns
    /// its response or why there is none.
    pub(crate) async fn execute(
        self: &Arc<Self>,
        deployed: &Deployed,
        request: functions_runtime::Request,
        controls: Controls,
        permit: impl Send + 'static,
        via: Via,
    ) -> Result<functions_runtime::Response, Error> {
        let outcome = self
            .engine
            .invoke_with(&deployed.function, request, controls)
            .await;
        self.record(deployed, outcome, permit, via).await
    }

    /// Stores an invocation's console output (and, when it runs on after its response, its
    /// later lines once it is done, holding `permit` until then), and returns its response or
    /// why there is none.
    pub(crate) async fn record(
        &self,
        deployed: &Deployed,
        outcome: functions_runtime::Outcome,
        permit: impl Send + 'static,
        via: Via,
    ) -> Result<functions_runtime::Response, Error> {
        let (logs, result) = self.outcome_logs(
            deployed,
            outcome,
            permit,
            &tokio::runtime::Handle::current(),
            via,
        );
        self.logs
            .write(deployed.function.name(), deployed.owner.as_deref(), logs)
            .await;
        result
    }

    /// Like [`Inner::record`] for a session (a call through a binding), without waiting (on
    /// any thread): the lines are queued for the store; what runs on after the response is
    /// awaited on `runtime`.
    pub(crate) fn record_soon(
        &self,
        deployed: &Deployed,
        outcome: functions_runtime::Outcome,
        permit: impl Send + 'static,
        runtime: &tokio::runtime::Handle,
    ) {
        let (logs, _) = self.outcome_logs(deployed, outcome, permit, runtime, Via::Session);
        self.logs
            .submit(deployed.function.name(), deployed.owner.as_deref(), logs);
    }

    /// An invocation's outcome as log entries and a result; when it runs on after its response,
    /// a task on `runtime` stores its later lines when it is done, holding `permit` until then.
    fn outcome_logs(
        &self,
        deployed: &Deployed,
        outcome: functions_runtime::Outcome,
        permit: impl Send + 'static,
        runtime: &tokio::runtime::Handle,
        via: Via,
    ) -> (Vec<LogEntry>, Result<functions_runtime::Response, Error>) {
        let (name, owner) = (deployed.function.name(), deployed.owner.clone());
        let code = match &outcome.result {
            Ok(_) => "ok",
            Err(err) => crate::error::kind_of(err).code(),
        };
        (self.metrics).invoked(name, deployed.language, via, code, outcome.timing);
        self.trace(deployed, via, &outcome);
        let mut logs = log_entries(outcome.logs, outcome.dropped_log_lines);
        if let Some(after_response) = outcome.after_response {
            // The function runs on (streaming its body, or `ctx.waitUntil`): its later lines are
            // stored when it is done, without holding up the response.
            let writer = self.logs.clone();
            let name = name.to_owned();
            runtime.spawn(async move {
                let finished = after_response.await;
                drop(permit);
                let mut logs = log_entries(finished.logs, finished.dropped_log_lines);
                if let Some(err) = finished.error {
                    logs.push(LogEntry::from_host("error", error_log_line(&err)));
                }
                writer.write(&name, owner.as_deref(), logs).await;
            });
        }
        let result = outcome.result.map_err(|err| {
            logs.push(LogEntry::from_host("error", error_log_line(&err)));
            Error::from(err)
        });
        (logs, result)
    }
}

/// Runs `deployed` with `request` in its turn. If the returned future is dropped before the
/// invocation ends (an HTTP client went away), the invocation is cancelled and finished in a
/// task of its own, which stores its logs and keeps the function's place until the isolate is
/// gone: a client that leaves never frees a place a running invocation still holds.
pub(crate) async fn invoke(
    inner: &Arc<Inner>,
    deployed: &Deployed,
    request: functions_runtime::Request,
) -> Result<functions_runtime::Response, Error> {
    if request.body.len() > MAX_PAYLOAD_BYTES {
        return Err(inner.refused(deployed, Error::payload_too_large(MAX_PAYLOAD_BYTES)));
    }
    let ticket = inner
        .queue_ticket(deployed)
        .map_err(|err| inner.refused(deployed, err))?;
    let permit = ticket.await;
    let cancel = Cancel::new();
    let controls = Controls {
        cancel: Some(cancel.clone()),
        ..Controls::default()
    };
    let invocation = {
        let inner = inner.clone();
        let deployed = deployed.clone();
        async move { (inner.execute(&deployed, request, controls, permit, Via::Invocation)).await }
    };
    RunToEnd::new(invocation, cancel).await
}

/// An invocation run in place that, if dropped first, is cancelled and run to its end in a task
/// of its own.
struct RunToEnd<T: 'static> {
    invocation: Option<Pin<Box<dyn Future<Output = T> + Send>>>,
    cancel: Cancel,
}

impl<T: 'static> RunToEnd<T> {
    fn new(invocation: impl Future<Output = T> + Send + 'static, cancel: Cancel) -> Self {
        Self {
            invocation: Some(Box::pin(invocation)),
            cancel,
        }
    }
}

impl<T: 'static> Future for RunToEnd<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let invocation = self.invocation.as_mut().expect("polled after completion");
        let output = std::task::ready!(invocation.as_mut().poll(cx));
        self.invocation = None;
        Poll::Ready(output)
    }
}

impl<T: 'static> Drop for RunToEnd<T> {
    fn drop(&mut self) {
        if let Some(invocation) = self.invocation.take() {
            self.cancel.cancel("the client disconnected");
            tokio::spawn(async move {
                invocation.await;
            });
        }
    }
}

/// Log entries for an invocation's console lines, with a warning if some were dropped.
fn log_entries(lines: Vec<functions_runtime::LogLine>, dropped: usize) -> Vec<LogEntry> {
    let mut logs: Vec<LogEntry> = lines
        .into_iter()
        .map(|line| LogEntry {
            timestamp: line.timestamp,
            level: line.level.as_str(),
            source: if line.host {
                LogSource::Host
            } else {
                LogSource::Function
            },
            message: line.message,
        })
        .collect();
    if dropped > 0 {
        logs.push(LogEntry::from_host(
            "warn",
            format!("{dropped} console lines dropped: one invocation may log at most 1 MiB"),
        ));
    }
    logs
}

/// How a failed invocation appears in the function's logs: the stack when there is one.
fn error_log_line(err: &InvokeError) -> String {
    match err {
        InvokeError::Threw { stack, .. } if !stack.is_empty() => stack.clone(),
        other => other.to_string(),
    }
}

/// A function's response as a call's result: the whole body, a stream read to its end but never
/// past the response size limit (reading stops there, so a function streaming without end
/// costs no memory).
pub(crate) async fn collect(response: functions_runtime::Response) -> Result<CallResult, Error> {
    let limit = functions_runtime::MAX_RESPONSE_BYTES;
    let body = response
        .body
        .bytes_within(limit)
        .await
        .map_err(|err| match err {
            BodyError::TooLarge => Error::new(
                ErrorKind::OutputTooLarge,
                InvokeError::OutputTooLarge { limit }.to_string(),
            ),
            BodyError::Failed(message) => Error::new(
                ErrorKind::FunctionError,
                format!("the function's response stream failed: {message}"),
            ),
        })?;
    Ok(CallResult {
        status: response.status,
        headers: response.headers,
        body,
    })
}
