//! The functions-host HTTP API (hyper 1) over a [`functions_host::Host`]: routing, API keys
//! from `Authorization` headers, bodies, and each domain error's HTTP status.
//!
//! Routes (DESIGN.md): `ANY /fn/{name}/{path...}` and `ANY /call/{name}/{token}/{path...}`
//! invoke; `POST|GET /rpc/{name}` speaks capnweb (HTTP batch, or a WebSocket); `/api/...`
//! manages (and queues asynchronous calls); `GET /healthz` answers once the server is ready.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let host = functions_host::Host::builder().sqlite(".functions").open().await?;
//! let server = functions_host_http::Server::bind(host, "127.0.0.1:8787".parse()?)?;
//! println!("listening on {}", server.public_url());
//! let shutdown = async { tokio::signal::ctrl_c().await.ok(); };
//! server.run(shutdown, std::time::Duration::from_secs(30)).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod api;
mod body;
mod calls;
mod connection;
mod cors;
mod dashboard;
mod error;
mod invoke;
mod local_only;
mod metrics;
mod otlp;
mod routes;
mod rpc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use bytes::BytesMut;
use functions_host::Host;
use http::Request;
use http::Response;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio::net::TcpSocket;

pub use connection::ConnectionLimits;
pub use error::ApiError;
pub use error::HOST_ERROR;
pub use otlp::OtlpExporter;

use connection::StallGuard;
use routes::Endpoint;

type HttpResponse = Response<body::Body>;

/// What a request handler needs.
struct State {
    host: Host,
    /// Where clients reach the server (no trailing `/`): the origin of the URLs it answers.
    public_url: String,
    /// Whether the server answers only this machine (no API keys and not started as public).
    local_only: bool,
    /// Whether `/api` answers CORS: only with API keys, which pages must then present.
    cors: bool,
    limits: ConnectionLimits,
    /// Becomes true when the server stops: WebSocket sessions close.
    stopping: tokio::sync::watch::Receiver<bool>,
}

/// A bound HTTP server over a host.
pub struct Server {
    listener: TcpListener,
    host: Host,
    public_url: String,
    public: bool,
    limits: ConnectionLimits,
}

/// Connections the kernel may hold for the server before it accepts them (capped by
/// `net.core.somaxconn`). With tokio's default of 128, a burst of a few hundred clients
/// overflowed the queue and the dropped handshakes were retried a second later.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `address`, with a backlog for bursts of new connections.
fn listen_on(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted server can listen at once.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

impl Server {
    /// Binds `listen` (port 0 picks a free port) for `host`, with the default
    /// [`ConnectionLimits`]. Unless the host has API keys or the server is made
    /// [`public`](Self::public), it answers this machine only: loopback `Host` names, and no
    /// cross-site browser requests on `/api`.
    pub fn bind(host: Host, listen: SocketAddr) -> std::io::Result<Self> {
        let listener = listen_on(listen)?;
        let public_url = format!("http://{}", listener.local_addr()?);
        host.set_public_url(&public_url);
        Ok(Self {
            listener,
            host,
            public_url,
            public: false,
            limits: ConnectionLimits::default(),
        })
    }

    /// URLs the server answers start with `url` (default: `http://` and the bound address),
    /// as when it is behind a proxy; the host's asynchronously called functions see it as
    /// their origin too, and its host name is accepted as a `Host`.
    pub fn with_public_url(mut self, url: &str) -> Self {
        self.public_url = url.trim_end_matches('/').to_owned();
        self.host.set_public_url(&self.public_url);
        self
    }

    /// Whether a server with no API keys answers requests from anywhere (`--public`).
    pub fn public(mut self, public: bool) -> Self {
        self.public = public;
        self
    }

    /// Timeouts and caps on client connections.
    pub fn with_limits(mut self, limits: ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where clients reach the server.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Whether the server answers this machine only (no API keys, not public).
    pub fn local_only(&self) -> bool {
        !self.public && self.host.api_keys().count() == 0
    }

    /// Serves until `shutdown` completes, then drains: stops accepting connections, lets the
    /// requests in flight and the host's running invocations and calls finish (for up to
    /// `drain`; calls still queued stay queued for the next start), and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
        drain: std::time::Duration,
    ) -> std::io::Result<functions_host::Drained> {
        let local_only = self.local_only();
        let cors = self.host.api_keys().count() > 0;
        let Self {
            listener,
            host,
            public_url,
            limits,
            ..
        } = self;
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let state = Arc::new(State {
            host,
            public_url,
            local_only,
            cors,
            limits,
            stopping,
        });
        // Each connection's task holds a sender: all are done when `recv` sees none left.
        let (alive, mut connections) = tokio::sync::mpsc::channel::<()>(1);
        let open = Arc::new(tokio::sync::Semaphore::new(state.limits.max_connections));
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Never the end of the server: a connection that failed before it was
                    // accepted is the client's loss, and a lack of descriptors or memory passes.
                    if running_out(&err) {
                        eprintln!("functions-host: accepting a connection: {err}; retrying");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            };
            if state.local_only
                && !stream
                    .local_addr()
                    .is_ok_and(|local| local_only::from_this_machine(peer, local))
            {
                // Best effort, as below.
                let _ = stream.try_write(&local_only::refusal_of_another_machine());
                continue;
            }
            let Ok(slot) = open.clone().try_acquire_owned() else {
                // Best effort: the socket is new, so its send buffer has room.
                let _ = stream.try_write(connection::TOO_MANY_CONNECTIONS);
                continue;
            };
            let served = Arc::new(AtomicUsize::new(0));
            let io = StallGuard::new(stream, state.limits.idle_timeout);
            let header_timeout = state.limits.header_timeout;
            let stopping = state.stopping.clone();
            let state = state.clone();
            let service = service_fn(move |request| {
                let state = state.clone();
                let number = served.fetch_add(1, Ordering::Relaxed) + 1;
                async move {
                    let mut response = route(&state, request).await;
                    // (Not on a switch to a WebSocket: the connection is the socket's now.)
                    if number >= state.limits.max_requests_per_connection
                        && response.status() != StatusCode::SWITCHING_PROTOCOLS
                    {
                        response.headers_mut().insert(
                            http::header::CONNECTION,
                            http::HeaderValue::from_static("close"),
                        );
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            // With upgrades: `/rpc/{name}` becomes a WebSocket.
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            let alive = alive.clone();
            tokio::spawn(async move {
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => {}
                    () = stopped(stopping) => {
                        // The request in flight is answered, then the connection closes.
                        connection.as_mut().graceful_shutdown();
                        let _ = connection.await;
                    }
                }
                drop(slot);
                drop(alive);
            });
        }
        drop(listener);
        let _ = stop.send(true);
        drop(alive);
        let (drained, _) = tokio::join!(state.host.shutdown(drain), async {
            let _ = tokio::time::timeout(drain, connections.recv()).await;
        });
        Ok(drained)
    }
}

/// Resolves once the server stops (see [`State::stopping`]).
async fn stopped(mut stopping: tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// How long the server waits before accepting again when the process is out of descriptors or
/// memory (the moment passes as connections close).
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// Whether `err` from `accept` means the process ran out of something (descriptors, buffers,
/// memory), as opposed to one connection failing.
fn running_out(err: &std::io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS and ENOMEM on Linux.
    matches!(err.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// The key an `Authorization: Bearer KEY` header presents.
fn presented_key(headers: &http::HeaderMap) -> Option<&[u8]> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
}

impl State {
    /// Reads a whole request body, up to `limit` bytes. A larger body is read on (and
    /// discarded) up to four times the limit, so the client gets its 413 instead of a reset; a
    /// client that stops sending for the idle timeout gets a 408.
    async fn read_body(&self, mut body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
        let mut buf = BytesMut::new();
        let mut total = 0usize;
        let idle = self.limits.idle_timeout;
        while let Some(frame) = tokio::time::timeout(idle, body.frame())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!(
                        "the request body stopped arriving for {}",
                        humantime::format_duration(idle)
                    ),
                )
            })?
        {
            let frame = frame.map_err(|err| {
                ApiError::bad_request(format!("could not read the request body: {err}"))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            total += data.len();
            if total <= limit {
                buf.extend_from_slice(&data);
            } else if total > 4 * limit {
                break;
            }
        }
        if total > limit {
            return Err(functions_host::Error::payload_too_large(limit).into());
        }
        Ok(buf.freeze())
    }
}

/// The value of `key` in a query string, percent-decoded (`+` is a space).
fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find_map(|(k, v)| (k == key).then(|| v.into_owned()))
}

/// The OpenAPI 3.1 description of every route, served at `GET /api/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn route(state: &Arc<State>, request: Request<Incoming>) -> HttpResponse {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let api = path.starts_with("/api/") || path == "/api";
    if state.local_only {
        let public_host = state.public_url.split_once("://").map_or("", |(_, rest)| {
            rest.split(['/', ':']).next().unwrap_or_default()
        });
        if let Some(refusal) = local_only::refusal(request.headers(), api, public_host) {
            return refusal.into_response();
        }
    }
    // A server with keys lets pages on any origin call /api with one.
    let cross_origin = api && state.cors && request.headers().contains_key(http::header::ORIGIN);
    if cross_origin && let Some(preflight) = cors::preflight(&method, request.headers()) {
        return preflight;
    }
    let mut response = dispatch(state, request, &method, &path).await;
    if cross_origin {
        cors::allow(&mut response);
    }
    response
}

/// Answers `request` at its route.
async fn dispatch(
    state: &Arc<State>,
    request: Request<Incoming>,
    method: &http::Method,
    path: &str,
) -> HttpResponse {
    let found = match routes::find(method, path) {
        Ok(found) => found,
        Err(err) => return err.into_response(),
    };
    let tenant = if found.keyed {
        match state.host.admit(presented_key(request.headers())) {
            Ok(tenant) => tenant,
            Err(refusal) => return ApiError::from(refusal).into_response(),
        }
    } else {
        None
    };
    let view = state.host.as_tenant(tenant.as_ref());
    let name = found.params.first().copied().unwrap_or_default();
    let query = request.uri().query();
    let result = match found.endpoint {
        Endpoint::Invoke => invoke::invoke(state, name, request).await,
        Endpoint::InvokeByToken => {
            invoke::invoke_by_token(state, name, found.params[1], request).await
        }
        Endpoint::Rpc => rpc::serve(state, name, request).await,
        Endpoint::Health => Ok(health(state)),
        Endpoint::OpenApi => Ok(openapi()),
        Endpoint::List => api::list(state, view).await,
        Endpoint::Deploy => api::deploy(state, view, name, request).await,
        Endpoint::Get => api::get(state, view, name).await,
        Endpoint::Delete => api::delete(view, name).await,
        Endpoint::Call => calls::create(state, view, name, request).await,
        Endpoint::RotateToken => api::rotate_token(state, view, name).await,
        Endpoint::Logs => api::logs(view, name, query, state.stopping.clone()).await,
        Endpoint::Result => calls::fetch(view, name, query_param(query, "wait").as_deref()).await,
        Endpoint::Metrics => Ok(metrics::text(state, tenant.as_ref())),
        Endpoint::MetricsSummary => Ok(metrics::summary(state, tenant.as_ref())),
        Endpoint::Dashboard => Ok(dashboard::page()),
        Endpoint::DashboardAsset => dashboard::asset(name),
    };
    result.unwrap_or_else(ApiError::into_response)
}

/// `GET /healthz`: the server is up, with what its engine has made ready.
fn health(state: &State) -> HttpResponse {
    let engine = state.host.engine();
    let wasm = engine.wasm_stats();
    error::json(
        StatusCode::OK,
        &serde_json::json!({
            "status": "ok",
            "wasm": { "compiled": wasm.compiled, "loaded": wasm.loaded },
            "python": {
                "snapshots_made": engine.python_snapshots_made(),
                "interpreters_ready": engine.python_interpreters_ready(),
            },
            "csharp": { "snapshots_made": engine.dotnet_snapshots_made() },
            "node": { "id": state.host.node_id(), "nodes": state.host.live_nodes() },
        }),
    )
}

/// `GET /api/openapi.json`
fn openapi() -> HttpResponse {
    let mut response = Response::new(body::Body::full(OPENAPI));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_header_presents_a_key() {
        let headers = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_str(value).unwrap(),
            );
            headers
        };
        assert_eq!(presented_key(&headers("Bearer beta")), Some(&b"beta"[..]));
        assert_eq!(presented_key(&headers("Bearer ")), Some(&b""[..]));
        assert_eq!(presented_key(&headers("Basic beta")), None);
        assert_eq!(presented_key(&headers("beta")), None);
        assert_eq!(presented_key(&http::HeaderMap::new()), None);
    }
}
