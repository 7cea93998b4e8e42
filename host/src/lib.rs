//! functions-host as a library: a [`Host`] deploys functions, invokes them, queues asynchronous
//! calls and keeps their results and logs, on a [`Store`] of your choice — the same host that
//! `functions-host serve` puts behind HTTP, without HTTP.
//!
//! ```
//! use functions_host::{DeploySource, Host, Manifest, Request};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), functions_host::Error> {
//! let host = Host::builder().open().await?; // an in-memory store; `.sqlite(dir)` persists
//! let manifest = Manifest {
//!     files: [("index.ts".into(), "export default (e: { name: string }) => ({ hi: e.name })".into())]
//!         .into(),
//!     ..Manifest::default()
//! };
//! host.deploy("hello", DeploySource::Manifest(manifest)).await?;
//! let response = host.invoke("hello", Request::json(r#"{"name":"Ada"}"#)).await?;
//! assert_eq!(response.body.bytes().await.unwrap(), br#"{"hi":"Ada"}"#);
//! # Ok(()) }
//! ```
//!
//! The host owns the engine ([`functions_runtime::Engine`]), the registry of deployed functions
//! (a redeploy swaps versions atomically; invocations in flight finish on theirs), each
//! function's FIFO lane (its `concurrency`, shared by invocations and calls), the call
//! scheduler, batched log writing, and tenants (API keys with quotas). Its errors are
//! [`Error`]s of an [`ErrorKind`]; what they mean in HTTP is the HTTP layer's business.

#![warn(missing_docs)]

mod calls;
mod capnweb;
mod deploy;
mod dotnet;
mod error;
mod follow;
mod invoke;
mod lanes;
mod logs;
mod metrics;
mod python;
mod registry;
mod rpc;
mod runtime_setup;
pub mod store;
mod tenant_view;
mod tenants;
mod traces;

use std::path::Path;
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;

pub use capnweb::CapnwebSession;
pub use capnweb::CapnwebTransport;
pub use deploy::DeployError;
pub use deploy::DeployHints;
pub use deploy::FunctionLimits;
pub use deploy::Language;
pub use deploy::Manifest;
pub use deploy::validate_name;
pub use error::Error;
pub use error::ErrorKind;
pub use functions_runtime::EngineConfig;
pub use functions_runtime::Request;
pub use functions_runtime::Response;
pub use invoke::Caller;
pub use metrics::CallsNow;
pub use metrics::Counts;
pub use metrics::FunctionMetrics;
pub use metrics::FunctionNow;
pub use metrics::MetricsSummary;
pub use metrics::Percentiles;
pub use metrics::Sample;
pub use runtime_setup::DownloadProgress;
pub use runtime_setup::LanguageRuntime;
pub use runtime_setup::RuntimeSetup;
pub use runtime_setup::user_cache_dir;
pub use store::CallOutcome;
pub use store::CallResult;
pub use store::CallState;
pub use store::Deployment;
pub use store::DeploymentSummary;
pub use store::LogSource;
pub use store::MemoryStore;
pub use store::PostgresStore;
pub use store::SqliteStore;
pub use store::Store;
pub use store::StoredLog;
pub use tenant_view::LogFollower;
pub use tenant_view::TenantView;
pub use tenants::ApiKeys;
pub use tenants::DEFAULT_TENANT_CONCURRENCY;
pub use tenants::Tenant;
pub use traces::AttributeValue;
pub use traces::Span;
pub use traces::SpanSink;

use store::CallInput;
use store::Fetched;
use store::StoreEvent;

/// The largest invocation payload (request body) accepted.
pub const MAX_PAYLOAD_BYTES: usize = 5 * 1024 * 1024;

/// The largest deploy accepted: a function's code, which for a WebAssembly guest (a Go binary is
/// several megabytes, a third more in a manifest's base64) outgrows a payload.
pub const MAX_DEPLOY_BYTES: usize = 50 * 1024 * 1024;

/// Calls of one function that may wait for their turn, unless configured otherwise.
pub const DEFAULT_MAX_QUEUED: usize = 10_000;

/// The longest wait for a call's result that [`Host::result`] honours.
pub const MAX_RESULT_WAIT: Duration = Duration::from_secs(300);

/// A functions host. Cheap to clone: clones share everything.
#[derive(Clone)]
pub struct Host(Arc<Inner>);

/// What a host holds.
pub(crate) struct Inner {
    engine: functions_runtime::Engine,
    /// Pyodide, for Python functions, ready once one needs it.
    python: python::Python,
    /// The .NET runtime, for C# functions, ready once one needs it.
    dotnet: dotnet::Dotnet,
    store: Arc<dyn Store>,
    registry: registry::Registry,
    api_keys: ApiKeys,
    /// Each function's FIFO lane: its concurrency limit, for invocations and calls alike.
    lanes: Arc<lanes::Lanes>,
    /// Takes asynchronous calls from the store for this host.
    dispatcher: calls::Dispatcher,
    logs: logs::LogWriter,
    /// The most calls (and synchronous invocations) of one function that may wait.
    max_queued: usize,
    /// The cap on one function's unfetched results, in bytes.
    result_cap_bytes: u64,
    /// Where the host is reached from outside (no trailing `/`): the origin of the URL a
    /// called function sees.
    public_url: RwLock<String>,
    /// Set by [`Host::shutdown`]: no new invocation or call starts.
    draining: std::sync::atomic::AtomicBool,
    /// Functions this host is changing in the store and then in its registry.
    local_changes: follow::LocalChanges,
    /// What the host counts and measures.
    metrics: Arc<metrics::Metrics>,
    /// Where the spans of what it runs go, if anywhere.
    spans: Option<Arc<dyn SpanSink>>,
}

/// How to open a [`Host`]: [`Host::builder`], then settings, then [`HostBuilder::open`].
pub struct HostBuilder {
    store: Option<Arc<dyn Store>>,
    sqlite: Option<(std::path::PathBuf, u64)>,
    postgres: Option<PostgresChoice>,
    engine: EngineConfig,
    api_keys: ApiKeys,
    max_queued: usize,
    result_cap_bytes: u64,
    public_url: String,
    python: Option<RuntimeSetup>,
    dotnet: Option<RuntimeSetup>,
    spans: Option<Arc<dyn SpanSink>>,
}

impl HostBuilder {
    /// Keeps everything in `store`.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Keeps everything in SQLite in directory `dir` (created if needed), each function's logs
    /// capped at [`store::DEFAULT_LOG_CAP_BYTES`].
    pub fn sqlite(self, dir: impl AsRef<Path>) -> Self {
        self.sqlite_with_log_cap(dir, store::DEFAULT_LOG_CAP_BYTES)
    }

    /// Like [`HostBuilder::sqlite`], with each function's logs capped at `log_cap_bytes`.
    pub fn sqlite_with_log_cap(mut self, dir: impl AsRef<Path>, log_cap_bytes: u64) -> Self {
        self.sqlite = Some((dir.as_ref().to_owned(), log_cap_bytes));
        self
    }

    /// Keeps everything in the PostgreSQL database at `url` (`postgres://user@host/db`),
    /// shared with every other host on it: each serves every function, and queued calls survive
    /// any one of them. `local` is this host's own directory, for what it keeps of the
    /// database's (code read from it, Pyodide). Each function's logs are capped at
    /// `log_cap_bytes`.
    pub fn postgres(
        mut self,
        url: impl Into<String>,
        local: impl AsRef<Path>,
        log_cap_bytes: u64,
    ) -> Self {
        self.postgres = Some(PostgresChoice {
            url: url.into(),
            local: local.as_ref().to_owned(),
            log_cap_bytes,
        });
        self
    }

    /// How the engine runs functions (worker threads, isolate caps, prepared isolates).
    pub fn engine(mut self, config: EngineConfig) -> Self {
        self.engine = config;
        self
    }

    /// The API keys management and private functions require (default: none, all open).
    pub fn api_keys(mut self, keys: ApiKeys) -> Self {
        self.api_keys = keys;
        self
    }

    /// Calls of one function that may wait for their turn (default [`DEFAULT_MAX_QUEUED`]).
    pub fn max_queued(mut self, max: usize) -> Self {
        self.max_queued = max;
        self
    }

    /// Cap on one function's unfetched results, in bytes (default
    /// [`store::DEFAULT_RESULT_CAP_BYTES`]); the oldest are rotated out past it.
    pub fn result_cap_bytes(mut self, cap: u64) -> Self {
        self.result_cap_bytes = cap;
        self
    }

    /// Where the host is reached from outside, e.g. `https://fn.example.com`: the origin of the
    /// URL an asynchronously called function sees (default `http://localhost`).
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = url.into();
        self
    }

    /// Where the spans of what the host runs go (see [`Span`]): none are made without.
    pub fn spans(mut self, sink: Arc<dyn SpanSink>) -> Self {
        self.spans = Some(sink);
        self
    }

    /// Where Python functions get Pyodide (default: [`RuntimeSetup::from_env`], downloading
    /// into `pyodide/` of the SQLite directory, or of the user's cache directory).
    pub fn python(mut self, setup: RuntimeSetup) -> Self {
        self.python = Some(setup);
        self
    }

    /// Where C# functions get the .NET runtime (default: [`RuntimeSetup::from_env`],
    /// downloading into `dotnet/` of the SQLite directory, or of the user's cache directory).
    pub fn dotnet(mut self, setup: RuntimeSetup) -> Self {
        self.dotnet = Some(setup);
        self
    }

    /// Opens the store, starts the engine, loads every deployed function, and queues again the
    /// calls a previous host on this store left pending (failing those it left running). Needs
    /// a tokio runtime (any flavour).
    pub async fn open(self) -> Result<Host, Error> {
        let local_dir = (self.postgres.as_ref().map(|pg| &pg.local))
            .or(self.sqlite.as_ref().map(|(dir, _)| dir));
        let setup = |runtime: LanguageRuntime| match local_dir {
            Some(dir) => RuntimeSetup::from_env(runtime, dir.join(runtime.dir_name())),
            None => RuntimeSetup::for_user(runtime),
        };
        let python = python::Python::new(
            (self.python.clone()).unwrap_or_else(|| setup(LanguageRuntime::Pyodide)),
        );
        let dotnet = dotnet::Dotnet::new(
            (self.dotnet.clone()).unwrap_or_else(|| setup(LanguageRuntime::Dotnet)),
        );
        let store: Arc<dyn Store> = match (self.store, self.sqlite, self.postgres) {
            (Some(store), _, _) => store,
            (None, _, Some(pg)) => Arc::new(
                PostgresStore::open(&pg.url, pg.log_cap_bytes, Some(pg.local.join("blobs")))
                    .await
                    .map_err(|err| Error::new(ErrorKind::Unavailable, format!("{err:#}")))?,
            ),
            (None, Some((dir, log_cap)), None) => {
                Arc::new(SqliteStore::open(&dir, log_cap).map_err(Error::internal)?)
            }
            (None, None, None) => Arc::new(MemoryStore::new(store::DEFAULT_LOG_CAP_BYTES)),
        };
        let metrics = Arc::new(metrics::Metrics::new());
        let store: Arc<dyn Store> = Arc::new(store::Timed::new(store, metrics.clone()));
        let engine = functions_runtime::Engine::new(self.engine);
        let registry = registry::Registry::default();
        let deployments = store.current_deployments().await.map_err(Error::store)?;
        for deployment in deployments {
            match registry::function_of(&deployment, &engine, (&python, &dotnet), store.as_ref())
                .await
            {
                Ok(deployed) => registry.install(deployed, &engine),
                Err(err) => eprintln!(
                    "functions-host: {} version {} cannot be loaded: {err}",
                    deployment.name(),
                    deployment.version()
                ),
            }
        }
        let call_quotas = self.api_keys.call_quotas();
        let inner = Arc::new(Inner {
            engine,
            python,
            dotnet,
            logs: logs::LogWriter::spawn(store.clone()),
            store,
            registry,
            api_keys: self.api_keys,
            lanes: Arc::default(),
            dispatcher: calls::Dispatcher::new(call_quotas),
            max_queued: self.max_queued,
            result_cap_bytes: self.result_cap_bytes,
            public_url: RwLock::new(self.public_url.trim_end_matches('/').to_owned()),
            draining: Default::default(),
            local_changes: Default::default(),
            metrics,
            spans: self.spans,
        });
        inner.engine.set_services(Arc::new(rpc::HostServices {
            inner: Arc::downgrade(&inner),
            runtime: tokio::runtime::Handle::current(),
        }));
        follow::spawn(&inner);
        metrics::spawn_sampler(&inner);
        calls::start(&inner).await?;
        Ok(Host(inner))
    }
}

/// The PostgreSQL store a [`HostBuilder`] opens.
struct PostgresChoice {
    url: String,
    local: std::path::PathBuf,
    log_cap_bytes: u64,
}

/// What to deploy.
#[derive(Clone, Debug)]
pub enum DeploySource<'a> {
    /// A manifest: files (TypeScript or JavaScript modules, or one base64 `.wasm`), env,
    /// limits, isolation, network permissions.
    Manifest(Manifest),
    /// A WebAssembly binary (a WASI command module or component).
    Wasm(Vec<u8>),
    /// The body of an HTTP deploy: a source file, a `.wasm` binary or a JSON manifest, told
    /// apart by `hints` (content type, `?lang=`, ...).
    Body {
        /// The body.
        body: &'a [u8],
        /// What the request said besides.
        hints: DeployHints,
    },
}

/// An asynchronous call's input.
#[derive(Clone, Debug, Default)]
pub struct CallRequest {
    /// The payload's `Content-Type`.
    pub content_type: Option<String>,
    /// A query string (without `?`) the function sees in its URL.
    pub query: Option<String>,
    /// The payload: the request body the function gets.
    pub payload: Vec<u8>,
    /// The W3C `traceparent` of the request that made the call: the call's invocation
    /// continues its trace.
    pub traceparent: Option<String>,
}

/// Where an asynchronous call is.
#[derive(Debug, PartialEq, Eq)]
pub enum CallStatus {
    /// Not done yet: pending or running.
    Waiting(CallState),
    /// Done; the host has forgotten it (a second fetch finds nothing).
    Done(CallOutcome),
}

impl Host {
    /// A builder: an in-memory store and the default engine unless told otherwise.
    pub fn builder() -> HostBuilder {
        HostBuilder {
            store: None,
            sqlite: None,
            postgres: None,
            engine: EngineConfig::default(),
            api_keys: ApiKeys::default(),
            max_queued: DEFAULT_MAX_QUEUED,
            result_cap_bytes: store::DEFAULT_RESULT_CAP_BYTES,
            public_url: "http://localhost".to_owned(),
            python: None,
            dotnet: None,
            spans: None,
        }
    }

    /// The engine that runs the functions.
    pub fn engine(&self) -> &functions_runtime::Engine {
        &self.0.engine
    }

    /// This host's name among the hosts on its store (new at each start): the lines of the
    /// calls it runs name it, when the store is shared.
    pub fn node_id(&self) -> &str {
        self.0.dispatcher.node()
    }

    /// How many hosts hold a live lease on the store, this one included (as of its last
    /// heartbeat).
    pub fn live_nodes(&self) -> usize {
        self.0.dispatcher.live_nodes()
    }

    /// The API keys the host requires.
    pub fn api_keys(&self) -> &ApiKeys {
        &self.0.api_keys
    }

    /// Where the host is reached from outside (no trailing `/`).
    pub fn public_url(&self) -> String {
        self.0
            .public_url
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets where the host is reached from outside, e.g. once a server knows the port it got.
    pub fn set_public_url(&self, url: &str) {
        *self.0.public_url.write().unwrap_or_else(|p| p.into_inner()) =
            url.trim_end_matches('/').to_owned();
    }

    /// Who presents API key `key`, counting the request against its quota (`None` when the
    /// host has no keys).
    pub fn admit(&self, key: Option<&[u8]>) -> Result<Option<Tenant>, Error> {
        self.0.api_keys.admit(key)
    }

    /// Deploys a new version of function `name`: its code is checked and compiled first (bad
    /// code never replaces good code), then stored, then made current.
    pub async fn deploy(
        &self,
        name: &str,
        source: DeploySource<'_>,
    ) -> Result<DeploymentSummary, Error> {
        self.as_tenant(None).deploy(name, source).await
    }

    /// Invokes function `name` with `request`, as the program embedding the host (no key
    /// needed), in its turn; its response, whose body may still be streaming.
    pub async fn invoke(
        &self,
        name: &str,
        request: Request,
    ) -> Result<functions_runtime::Response, Error> {
        self.invoke_as(name, Caller::Embedder, request).await
    }

    /// Invokes function `name` as `caller` (which decides whether it may). Dropping the future
    /// cancels the invocation, but its place in the function's lane is held until it ends.
    pub async fn invoke_as(
        &self,
        name: &str,
        caller: Caller<'_>,
        request: Request,
    ) -> Result<functions_runtime::Response, Error> {
        self.0.refuse_if_draining()?;
        let deployed = self.0.admitted(name, caller)?;
        let mut request = request;
        self.0.remove_platform_credentials(&mut request);
        invoke::invoke(&self.0, &deployed, request).await
    }

    /// Queues an asynchronous call of `name`; its id. The call is stored before this returns:
    /// it runs even if the host restarts first.
    pub async fn call(&self, name: &str, request: CallRequest) -> Result<String, Error> {
        self.as_tenant(None).call(name, request).await
    }

    /// The outcome of call `id`, waiting up to `wait` (at most [`MAX_RESULT_WAIT`]) for it to
    /// end. Once returned as done, it is forgotten. [`ErrorKind::NotFound`] for an unknown (or
    /// already fetched) call, [`ErrorKind::Gone`] for one rotated out of its function's result
    /// cache.
    pub async fn result(&self, id: &str, wait: Duration) -> Result<CallStatus, Error> {
        self.as_tenant(None).result(id, wait).await
    }

    /// Up to `limit` of function `name`'s log lines with ids above `after`, oldest first.
    pub async fn logs(&self, name: &str, after: i64, limit: u32) -> Result<Vec<StoredLog>, Error> {
        self.as_tenant(None).logs(name, after, limit).await
    }

    /// Function `name`'s log lines with ids above `after`, then each new line as it is stored.
    pub fn follow_logs(&self, name: &str, after: i64) -> LogFollower {
        self.as_tenant(None).follow_logs(name, after)
    }

    /// Every deployed function's current version (no code).
    pub async fn list(&self) -> Result<Vec<DeploymentSummary>, Error> {
        self.as_tenant(None).list().await
    }

    /// Function `name`'s current version, code included.
    pub async fn get(&self, name: &str) -> Result<Deployment, Error> {
        self.as_tenant(None).get(name).await
    }

    /// Deletes function `name`, its versions and its logs.
    pub async fn delete(&self, name: &str) -> Result<(), Error> {
        self.as_tenant(None).delete(name).await
    }

    /// Gives function `name` a new call token (its key-less address); the old one stops
    /// working. The new token.
    pub async fn rotate_token(&self, name: &str) -> Result<String, Error> {
        self.as_tenant(None).rotate_token(name).await
    }

    /// The host as an API key's `tenant` may use it: its own functions and calls only (all of
    /// them for an admin key; `None`, as the embedding program or a host without keys, too).
    pub fn as_tenant<'a>(&'a self, tenant: Option<&'a Tenant>) -> TenantView<'a> {
        TenantView { host: self, tenant }
    }
}

/// How a [`Host::shutdown`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drained {
    /// Every invocation and call that had started ended, and their logs are stored.
    Fully,
    /// Some were still running when the time was up (calls among them fail with
    /// [`ErrorKind::HostRestarted`] when a host opens the store again).
    TimedOut,
}

impl Host {
    /// Stops the host taking work and lets what runs finish: new invocations and calls are
    /// refused ([`ErrorKind::Unavailable`]), queued calls stay queued in the store (a host that
    /// opens it later runs them), and invocations and calls that had started run on, for up to
    /// `within`. Then every log line written is stored.
    pub async fn shutdown(&self, within: Duration) -> Drained {
        self.0
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let idle = self.0.lanes.idle();
        let drained = match tokio::time::timeout(within, idle).await {
            Ok(()) => Drained::Fully,
            Err(_) => Drained::TimedOut,
        };
        self.0.logs.flush().await;
        drained
    }
}

impl Inner {
    /// [`ErrorKind::Unavailable`] once the host is shutting down.
    fn refuse_if_draining(&self) -> Result<(), Error> {
        if self.is_draining() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "the host is shutting down: try again shortly",
            ));
        }
        Ok(())
    }

    /// Whether [`Host::shutdown`] was called.
    fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The request an asynchronous call of `name` makes: as a synchronous invocation at the
    /// function's address with the call's payload, query string and content type, plus its id
    /// in `X-Call-Id`.
    fn call_request(&self, name: &str, id: &str, input: CallInput) -> Request {
        let base = self
            .public_url
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let query = input.query.map(|q| format!("?{q}")).unwrap_or_default();
        let mut headers = vec![
            ("x-call-id".to_owned(), id.to_owned()),
            ("x-forwarded-prefix".to_owned(), format!("/fn/{name}")),
        ];
        if let Some(content_type) = input.content_type {
            headers.push(("content-type".to_owned(), content_type));
        }
        if let Some(traceparent) = input.traceparent {
            headers.push(("traceparent".to_owned(), traceparent));
        }
        Request {
            method: "POST".to_owned(),
            url: format!("{base}/{query}"),
            headers,
            body: input.payload,
            env: Default::default(),
        }
    }
}
