//! Calls through bindings: the host's side of the engine's RPC ([`Services`]). A call reaches
//! the current version of the bound function, if the owner of the function the binding was
//! granted to may still use it; it waits in the function's lane like any invocation. (Both
//! functions' logs get a line for the hop with its W3C `traceparent`: the engine writes them.)

use std::sync::Arc;
use std::sync::Weak;

use functions_runtime::BoxedResponse;
use functions_runtime::Cancel;
use functions_runtime::Controls;
use functions_runtime::Hop;
use functions_runtime::Request;
use functions_runtime::Response;
use functions_runtime::ResponseBody;
use functions_runtime::RpcSession;
use functions_runtime::Serve;
use functions_runtime::Services;

use crate::Inner;
use crate::MAX_PAYLOAD_BYTES;
use crate::metrics::Via;
use crate::registry::Deployed;

/// The host as the engine's [`Services`]: held weakly (the engine is the host's).
pub(crate) struct HostServices {
    pub inner: Weak<Inner>,
    /// The host's runtime, where calls run (the engine calls from its worker threads).
    pub runtime: tokio::runtime::Handle,
}

impl Services for HostServices {
    fn connect(&self, session: RpcSession) -> Option<Serve> {
        let Some(inner) = self.inner.upgrade() else {
            session.refuse("the host is shutting down");
            return None;
        };
        let hop = session.hop().clone();
        let deployed = match inner.reachable(&hop) {
            Ok(deployed) => deployed,
            Err(message) => {
                session.refuse(message);
                return None;
            }
        };
        let ticket = match inner.queue_ticket(&deployed) {
            Ok(ticket) => ticket,
            Err(err) => {
                session.refuse(err.message().to_owned());
                return None;
            }
        };
        match ticket.now() {
            // A free place: the engine serves it now, on the caller's thread if it can.
            Ok(permit) => {
                let runtime = self.runtime.clone();
                let function = deployed.function.clone();
                // Failures reached the caller; the callee's logs have them too.
                let done = move |outcome| inner.record_soon(&deployed, outcome, permit, &runtime);
                Some(Serve {
                    session,
                    function,
                    done: Box::new(done),
                })
            }
            // Its turn comes later: served then.
            // (Unless the caller has gone, or its deadline passed, meanwhile: its place in
            // line is given up then.)
            Err(ticket) => {
                self.runtime.spawn(async move {
                    let permit = tokio::select! {
                        permit = ticket => permit,
                        () = session.abandoned() => return,
                    };
                    let outcome = inner.engine.serve(&deployed.function, session).await;
                    let _ = inner.record(&deployed, outcome, permit, Via::Session).await;
                });
                None
            }
        }
    }

    fn fetch(&self, hop: Hop, request: Request) -> BoxedResponse {
        let inner = self.inner.clone();
        let cancel = Cancel::new();
        let task = {
            let cancel = cancel.clone();
            self.runtime.spawn(async move {
                let inner = inner
                    .upgrade()
                    .ok_or_else(|| "the host is shutting down".to_owned())?;
                inner.fetch_through(hop, request, cancel).await
            })
        };
        // Dropped before the response (the calling function ended): the call is cancelled.
        let guard = CancelOnDrop(Some(cancel));
        Box::pin(async move {
            let response = task.await;
            let mut guard = guard;
            guard.0 = None;
            response.unwrap_or_else(|_| Err("the host failed while calling".to_owned()))
        })
    }
}

struct CancelOnDrop(Option<Cancel>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = self.0.take() {
            cancel.cancel("the calling function went away");
        }
    }
}

impl Inner {
    /// The function a call through a binding reaches, or why it reaches none.
    fn reachable(&self, hop: &Hop) -> Result<Deployed, String> {
        let missing = || {
            format!(
                "the function bound to env.{} ({:?}) is not deployed",
                hop.binding, hop.target
            )
        };
        if self.is_draining() {
            return Err("the host is shutting down: try again shortly".to_owned());
        }
        let deployed = self.registry.get(&hop.target).ok_or_else(missing)?;
        // Granted at deploy, when the target was the granting key's to use; still so?
        let allowed = self.api_keys.count() == 0
            || match hop.owner.as_deref() {
                None => true,
                Some(owner) => self
                    .api_keys
                    .tenant(owner)
                    .is_some_and(|tenant| tenant.may_use(deployed.owner.as_deref())),
            };
        if !allowed {
            return Err(missing());
        }
        Ok(deployed)
    }

    /// A fetch through a binding: the target's handler gets `request` as it would at its
    /// address, in-process, on the caller's chain.
    async fn fetch_through(
        self: Arc<Self>,
        hop: Hop,
        request: Request,
        cancel: Cancel,
    ) -> Result<Response, String> {
        let deployed = self.reachable(&hop)?;
        if request.body.len() > MAX_PAYLOAD_BYTES {
            return Err(format!(
                "the request body is larger than the {MAX_PAYLOAD_BYTES} bytes a function accepts"
            ));
        }
        let ticket = self
            .queue_ticket(&deployed)
            .map_err(|err| err.message().to_owned())?;
        // A caller that went away while this waited for a place gives it up.
        let permit = tokio::select! {
            permit = ticket => permit,
            reason = cancel.cancelled() => return Err(reason),
        };
        let controls = Controls {
            cancel: Some(cancel),
            chain: Some(hop.chain.clone()),
            ..Controls::default()
        };
        let failed = |err: crate::Error| format!("{}: {}", hop.target, err.message());
        let response = self
            .execute(&deployed, request, controls, permit, Via::Invocation)
            .await
            .map_err(failed)?;
        // The whole body, read as an asynchronous call's result is.
        let response = crate::invoke::collect(response).await.map_err(failed)?;
        Ok(Response {
            status: response.status,
            headers: response.headers,
            body: ResponseBody::Full(response.body),
        })
    }
}
