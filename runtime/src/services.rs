//! What the embedder does for calls through bindings ([`Services`]), and how a worker starts the
//! callee of one: on its own thread when it can, so that a call between two functions crosses
//! no thread.

use std::rc::Rc;
use std::rc::Weak;
use std::sync::Arc;

use functions_ext::console::ConsoleOutput;
use functions_ext::rpc::BoxedResponse;
use functions_ext::rpc::Connector;
use functions_ext::rpc::Hop;
use functions_ext::rpc::RpcSession;
use tokio::sync::oneshot;

use crate::Request;
use crate::engine::Outcome;
use crate::error::InvokeError;
use crate::function::Function;
use crate::worker::Worker;

/// What the embedder does for calls through bindings: finds the functions they reach, and
/// runs their fetch handlers. Hold the engine weakly in it (the engine holds it).
pub trait Services: Send + Sync + 'static {
    /// Decides, without waiting, where a session opened through a binding is served: returns
    /// what to serve it with now (the engine runs it, on the caller's worker thread when it
    /// can), or `None` when the embedder took the session itself (it refused it with
    /// [`RpcSession::refuse`], or serves it with [`crate::Engine::serve`] once the target has a
    /// free place). Called on a worker thread, from the caller's JavaScript: it must not block.
    fn connect(&self, session: RpcSession) -> Option<Serve>;

    /// Runs the target's fetch handler (any language: a WebAssembly guest gets the body on
    /// stdin) with `request`: its response, with the whole body, or why there is none.
    fn fetch(&self, hop: Hop, request: Request) -> BoxedResponse;
}

/// A session to serve now (see [`Services::connect`]).
pub struct Serve {
    /// The session.
    pub session: RpcSession,
    /// The function that serves it (the target's current version).
    pub function: Function,
    /// Gets the serving invocation's outcome when it ends (its logs to store, its place to give
    /// back): called on the worker thread, so it must not block either.
    pub done: Box<dyn FnOnce(Outcome) + Send>,
}

/// Why `function` cannot serve a session, if it cannot: a WebAssembly guest has no methods.
pub(crate) fn no_methods(function: &Function) -> Option<String> {
    #[cfg(feature = "wasm")]
    if function.wasm_module().is_some() {
        return Some(format!(
            "{} is a WebAssembly function: it has no methods to call; send it a request with \
             fetch()",
            function.name()
        ));
    }
    let _ = function;
    None
}

/// A worker's [`Connector`]: the embedder's services, and the worker that runs what they admit.
pub(crate) struct WorkerConnector {
    pub worker: Weak<Worker>,
    pub services: Arc<dyn Services>,
}

impl Connector for WorkerConnector {
    fn connect(&self, session: RpcSession) -> bool {
        let Some(Serve {
            session,
            function,
            done,
        }) = self.services.connect(session)
        else {
            return false;
        };
        let worker = self.worker.upgrade();
        let refusal = no_methods(&function).or_else(|| {
            worker
                .is_none()
                .then(|| "the engine is stopping".to_owned())
        });
        if let Some(message) = refusal {
            session.refuse(message.clone());
            done(Outcome::new(
                Err(InvokeError::Threw {
                    message,
                    stack: String::new(),
                }),
                ConsoleOutput::default(),
            ));
            return false;
        }
        let worker = worker.expect("checked above");
        // A warm isolate serves the caller's further calls through the binding in this session.
        let reusable = function.isolation() == crate::Isolation::Function;
        let (reply, outcome) = oneshot::channel();
        worker.serve_here(function, session, reply);
        tokio::task::spawn_local(async move {
            let outcome = outcome.await.unwrap_or_else(|_| {
                Outcome::new(Err(InvokeError::WorkerFailed), ConsoleOutput::default())
            });
            done(outcome);
        });
        reusable
    }

    fn fetch(&self, hop: Hop, request: Request) -> BoxedResponse {
        self.services.fetch(hop, request)
    }
}

/// The connector of `worker`, over `services`.
pub(crate) fn connector(worker: &Rc<Worker>, services: Arc<dyn Services>) -> Rc<dyn Connector> {
    Rc::new(WorkerConnector {
        worker: Rc::downgrade(worker),
        services,
    })
}
