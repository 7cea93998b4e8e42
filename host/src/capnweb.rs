//! Sessions of capnweb clients (the npm `capnweb` package) with a function's default export as
//! their main object: admitted like an invocation at the function's public address, in the
//! function's lane, served by one invocation of its current version for the whole session.
//! The HTTP layer carries the messages ([`CapnwebSession`]); what they mean is the engine's
//! (`ext/rpc/capnweb.js`).

use std::time::Duration;

use functions_runtime::CallChain;
use functions_runtime::CapnwebClient;
use functions_runtime::RpcSession;
use tokio::sync::oneshot;

use crate::Caller;
use crate::Error;
use crate::Host;
use crate::metrics::Via;
use crate::store::LogEntry;

/// How a capnweb client talks to the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapnwebTransport {
    /// One session per HTTP POST: the client's messages are the body's lines; the answer's
    /// lines are the function's, once it has answered every result the client pulled.
    HttpBatch,
    /// One session per WebSocket: a text frame per message, both ways, until either side ends.
    WebSocket,
}

/// A capnweb client's session with a function: its messages in, the function's out.
pub struct CapnwebSession {
    client: CapnwebClient,
    /// Says the invocation serving the session has ended (its outcome recorded).
    served: oneshot::Receiver<()>,
    over: bool,
    idle_timeout: Duration,
}

impl CapnwebSession {
    /// Passes one message of the client's (capnweb JSON text) to the function; false once the
    /// session has ended.
    pub fn send(&self, message: String) -> bool {
        self.client.send(message)
    }

    /// The client sends nothing more: over WebSocket the session ends; over HTTP batch the
    /// function answers what was pulled, then ends it.
    pub fn finish(&mut self) {
        self.client.finish();
    }

    /// The function's next message for the client (its failure comes as a capnweb `abort`
    /// message), or `None` once the session has ended and every message was taken.
    pub async fn recv(&mut self) -> Option<String> {
        if !self.over {
            tokio::select! {
                biased;
                message = self.client.recv() => return message,
                _ = &mut self.served => self.over = true,
            }
        }
        // The invocation has ended: what it sent is all waiting.
        self.client.try_recv()
    }

    /// An HTTP batch: passes the client's `messages`, waits until the function has answered
    /// what they pulled (and the session has ended), and returns its messages.
    pub async fn batch(mut self, messages: impl IntoIterator<Item = String>) -> Vec<String> {
        for message in messages {
            self.client.send(message);
        }
        self.client.finish();
        let mut out = Vec::new();
        while let Some(message) = self.recv().await {
            out.push(message);
        }
        out
    }

    /// How long a WebSocket session may go without a message from its client: the function's
    /// wall-clock limit (the invocation serving it stops there anyway).
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
}

impl Host {
    /// Starts a capnweb session of `caller` (as at `/fn/{name}`: a function deployed with
    /// `"public": false` needs an API key) with function `name`, over `transport`, in the trace
    /// of `traceparent` if it is a valid W3C header. The function's default export is the main
    /// object. The session waits in the function's lane like an invocation (an error here when
    /// the lane is full), then one invocation serves it until it ends; the invocation's limits
    /// apply to the whole session.
    pub fn capnweb(
        &self,
        name: &str,
        caller: Caller<'_>,
        transport: CapnwebTransport,
        traceparent: Option<&str>,
    ) -> Result<CapnwebSession, Error> {
        self.0.refuse_if_draining()?;
        let deployed = self.0.admitted(name, caller)?;
        let ticket = self.0.queue_ticket(&deployed)?;
        let chain = CallChain::root(name, traceparent);
        let line = format!(
            "RPC capnweb session ({}) from a client outside (traceparent {})",
            match transport {
                CapnwebTransport::HttpBatch => "HTTP batch",
                CapnwebTransport::WebSocket => "WebSocket",
            },
            chain.traceparent()
        );
        let (session, client) =
            RpcSession::capnweb(name, chain, transport == CapnwebTransport::HttpBatch);
        let idle_timeout = deployed.function.settings().limits.wall_clock;
        let (done, served) = oneshot::channel();
        let inner = self.0.clone();
        // A task of its own: a client that leaves never frees the place the invocation holds.
        tokio::spawn(async move {
            inner
                .logs
                .write(
                    deployed.function.name(),
                    deployed.owner.as_deref(),
                    vec![LogEntry::from_host("info", line)],
                )
                .await;
            let permit = ticket.await;
            let outcome = inner.engine.serve(&deployed.function, session).await;
            // Failures reached the client (an abort message); the function's logs have them too.
            let _ = inner.record(&deployed, outcome, permit, Via::Session).await;
            let _ = done.send(());
        });
        Ok(CapnwebSession {
            client,
            served,
            over: false,
            idle_timeout,
        })
    }
}
