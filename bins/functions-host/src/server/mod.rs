//! `functions-host serve`: the HTTP server (hyper 1) in front of the engine and the store.
//!
//! Routes (DESIGN.md): `ANY /fn/{name}/{path...}` and `ANY /call/{name}/{token}/{path...}`
//! invoke; `/api/...` manages (and queues asynchronous calls); `GET /healthz` answers once the
//! server is ready.

mod api;
mod auth;
mod body;
mod calls;
mod error;
mod invoke;
mod lanes;
mod registry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use bytes::BytesMut;
use http::Method;
use http::Request;
use http::Response;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::net::TcpSocket;

use crate::store::Store;
pub use auth::ApiKeys;
use calls::CallQueue;
pub use error::ApiError;
use lanes::Lanes;
use registry::Registry;

/// The largest invocation payload accepted.
pub const MAX_PAYLOAD_BYTES: usize = 5 * 1024 * 1024;

/// The largest deploy accepted: a function's code, which for a WebAssembly guest (a Go binary is
/// several megabytes, a third more in a manifest's base64) outgrows a payload.
pub const MAX_DEPLOY_BYTES: usize = 50 * 1024 * 1024;

/// Calls of one function that may wait for their turn, unless configured otherwise.
pub const DEFAULT_MAX_QUEUED: usize = 10_000;

/// How the server is set up.
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// How the engine runs functions (workers, isolate caps).
    pub engine: functions_runtime::EngineConfig,
    pub log_cap_bytes: u64,
    /// Keys the management API requires (none: it is open).
    pub api_keys: ApiKeys,
    /// Calls of one function that may wait for their turn (more get 429).
    pub max_queued: usize,
    /// Cap on one function's unfetched asynchronous results, in bytes.
    pub result_cap_bytes: u64,
}

/// Everything a request handler needs.
pub(crate) struct AppState {
    pub engine: functions_runtime::Engine,
    pub store: Store,
    pub registry: Registry,
    pub listen: SocketAddr,
    pub api_keys: ApiKeys,
    /// Each function's FIFO lane: its concurrency limit, for invocations and calls alike.
    pub lanes: Arc<Lanes>,
    /// Each API key's FIFO lane: its quota of concurrent asynchronous calls.
    pub tenant_lanes: Arc<Lanes>,
    pub calls: CallQueue,
}

type HttpResponse = Response<body::Body>;

/// Opens the store, loads every deployed function, binds and serves until ctrl-c.
pub async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let store = Store::open(&config.data_dir, config.log_cap_bytes)?;
    let registry = Registry::default();
    let engine = functions_runtime::Engine::new(config.engine);
    for deployment in store.current_deployments()? {
        match registry::function_of(&deployment, &engine) {
            Ok(deployed) => registry.install(deployed),
            Err(err) => eprintln!(
                "functions-host: {} version {} cannot be loaded: {err}",
                deployment.name, deployment.version
            ),
        }
    }
    let listener = listen_on(config.listen)?;
    let listen = listener.local_addr()?;
    let state = Arc::new(AppState {
        engine,
        store,
        registry,
        listen,
        api_keys: config.api_keys,
        lanes: Arc::default(),
        tenant_lanes: Arc::default(),
        calls: CallQueue::new(config.max_queued, config.result_cap_bytes),
    });
    calls::recover(&state)?;
    if state.api_keys.count() > 0 {
        eprintln!(
            "functions-host: /api requires one of {} API keys",
            state.api_keys.count()
        );
    }
    // Tests and scripts wait for this line: the server accepts connections from here on.
    println!(
        "functions-host listening on http://{listen} (data in {})",
        config.data_dir.display()
    );
    loop {
        let (stream, _) = tokio::select! {
          accepted = listener.accept() => accepted?,
          _ = tokio::signal::ctrl_c() => break,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&state, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    Ok(())
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

/// Reads a whole request body, up to `limit` bytes. A larger body is read on (and discarded) up
/// to four times the limit, so the client gets its 413 instead of a reset.
pub(crate) async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
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
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
        ));
    }
    Ok(buf.freeze())
}

async fn route(state: &Arc<AppState>, request: Request<Incoming>) -> HttpResponse {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = request.method().clone();
    let tenant = if segments[0] == "api" {
        match state.api_keys.admit(request.headers()) {
            Ok(tenant) => tenant,
            Err(refusal) => return ApiError::refused(refusal).into_response(),
        }
    } else {
        None
    };
    let result = match segments.as_slice() {
        ["fn", name, ..] => invoke::invoke(state, name, request).await,
        ["call", name, token, ..] => invoke::invoke_by_token(state, name, token, request).await,
        ["healthz"] => {
            let wasm = state.engine.wasm_stats();
            Ok(error::json(
                StatusCode::OK,
                &serde_json::json!({
                    "status": "ok",
                    "wasm": { "compiled": wasm.compiled, "loaded": wasm.loaded },
                }),
            ))
        }
        ["api", "functions"] => match method {
            Method::GET => api::list(state),
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        ["api", "functions", name] => match method {
            Method::PUT => api::deploy(state, name, request).await,
            Method::GET => api::get(state, name),
            Method::DELETE => api::delete(state, name).await,
            _ => Err(ApiError::method_not_allowed("GET, PUT, DELETE")),
        },
        ["api", "functions", name, "calls"] => match method {
            Method::POST => calls::create(state, name, tenant, request).await,
            _ => Err(ApiError::method_not_allowed("POST")),
        },
        ["api", "functions", name, "token"] => match method {
            Method::POST => api::rotate_token(state, name),
            _ => Err(ApiError::method_not_allowed("POST")),
        },
        ["api", "calls", id] => match method {
            Method::GET => {
                calls::fetch(state, id, api::query_param(request.uri().query(), "wait")).await
            }
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        ["api", "functions", name, "logs"] => match method {
            Method::GET => api::logs(state, name, request.uri().query()).await,
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {method} {path}"),
        )),
    };
    result.unwrap_or_else(ApiError::into_response)
}
