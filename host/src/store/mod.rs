//! Where a host keeps what must outlive it: deployments and their versions, code and compiled
//! artifacts, capped logs, and asynchronous calls from the moment they are accepted until their
//! result is fetched.
//!
//! [`Store`] is the interface; [`SqliteStore`] (one node, the default) and [`MemoryStore`] (for
//! `functions-host run`, tests and embedders that keep nothing) implement it. Every method is
//! async and never blocks the caller's thread. A store announces what changed through
//! [`Store::events`], so that every host on it (one, or many on a shared database) learns of
//! deploys, deletes, appended logs and finished calls.

mod columns;
mod memory;
mod postgres;
mod postgres_calls;
mod sqlite;
mod sqlite_calls;
mod timed;

pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub(crate) use timed::Timed;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use functions_runtime::Executor;
use functions_runtime::Isolation;
use functions_runtime::Module;
use serde::Deserialize;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::FunctionLimits;
use crate::Language;

/// What a store's methods fail with: the database's own error, with context.
pub type StoreResult<T> = anyhow::Result<T>;

/// Default cap on one function's stored logs.
pub const DEFAULT_LOG_CAP_BYTES: u64 = 50 * 1024 * 1024;

/// Default cap on one function's unfetched results.
pub const DEFAULT_RESULT_CAP_BYTES: u64 = 50 * 1024 * 1024;

/// Bytes a stored log line counts for besides its message (id, timestamp, level).
pub(crate) const LOG_LINE_OVERHEAD: u64 = 32;

/// Ids of rotated-out results remembered (the oldest are forgotten past it, then unknown).
pub(crate) const MAX_ROTATED_IDS: usize = 100_000;

/// Bytes of randomness in a call token.
pub(crate) const CALL_TOKEN_BYTES: usize = 24;

/// A WebAssembly function's code as stored: the binary as deployed, and the engine's compiled
/// artifact of it (loaded at startup instead of compiling again).
#[derive(Clone, Debug)]
pub struct StoredWasm {
    /// The `.wasm` binary as deployed.
    pub binary: Arc<[u8]>,
    /// The engine's compiled form of it (empty until compiled).
    pub artifact: Arc<[u8]>,
}

/// The code of a function that runs on a language runtime compiled to WebAssembly (Python on
/// Pyodide, C# on .NET) as stored: its files, and the memory snapshot its invocations restore
/// (made at deploy, once its code was loaded).
#[derive(Clone, Debug)]
pub struct StoredRuntimeCode {
    /// Its text files by path (Python: `.py` modules, and any text files they read).
    pub files: BTreeMap<String, String>,
    /// Python: its requirements, as deployed (PEP 508 lines).
    pub requirements: Vec<String>,
    /// Binary files by path. Python: the files its requirements resolved to, by their path in
    /// `site-packages`. C#: its assemblies (`.dll`), the dispatcher's among them.
    pub packages: Arc<BTreeMap<String, Vec<u8>>>,
    /// The snapshot ([`functions_runtime::MemorySnapshot::to_bytes`]; empty until made).
    pub snapshot: Arc<[u8]>,
}

/// What a deploy stores; the store assigns the version.
#[derive(Clone, Debug)]
pub struct NewDeployment {
    /// The function's name.
    pub name: String,
    /// The language it was deployed in.
    pub language: Language,
    /// The entry file's path.
    pub entry: String,
    /// Compiled modules by path, each with its source as deployed.
    pub modules: BTreeMap<String, Module>,
    /// Environment variables (`env` of a handler, a guest's environment).
    pub env: BTreeMap<String, String>,
    /// Whether each invocation gets a fresh isolate.
    pub isolation: Isolation,
    /// Hosts its `fetch` may reach.
    pub allow_net: Vec<String>,
    /// The functions it may call: binding name (a key of its `env`) to the function's name.
    pub bindings: BTreeMap<String, String>,
    /// A WebAssembly function's code (it has no `modules` then).
    pub wasm: Option<StoredWasm>,
    /// A Python or C# function's code (it has no `modules` then).
    pub runtime_code: Option<StoredRuntimeCode>,
    /// How a WebAssembly guest's stdout becomes the response.
    pub executor: Executor,
    /// Limits set at deploy (unset ones are the defaults).
    pub limits: FunctionLimits,
    /// Whether `/fn/{name}` answers without an API key when the host has keys.
    pub public: bool,
    /// The tenant deploying it: a new function becomes theirs, and a function of another owner
    /// (or of none) is refused with [`OwnedByAnother`]. `None` claims nothing and checks
    /// nothing (the embedder, an admin key, a host without keys).
    pub owner: Option<String>,
}

/// The refusal to deploy over a function that belongs to another tenant.
#[derive(Debug, thiserror::Error)]
#[error("function {0} belongs to another tenant")]
pub struct OwnedByAnother(pub String);

impl NewDeployment {
    /// This deployment as stored: version `version` of the function, with its call token, its
    /// owner and times (Unix milliseconds).
    pub fn stored(
        self,
        version: u64,
        call_token: String,
        owner: Option<String>,
        (deployed_at, created_at): (i64, i64),
    ) -> Deployment {
        Deployment {
            summary: DeploymentSummary {
                name: self.name,
                version,
                language: self.language,
                entry: self.entry,
                isolation: self.isolation,
                limits: self.limits,
                public: self.public,
                call_token,
                owner,
                deployed_at,
                created_at,
            },
            modules: self.modules,
            env: self.env,
            allow_net: self.allow_net,
            bindings: self.bindings,
            wasm: self.wasm,
            runtime_code: self.runtime_code,
            executor: self.executor,
        }
    }
}

/// The facts about a function's current version that need none of its code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentSummary {
    /// The function's name.
    pub name: String,
    /// Its current version (1, 2, ...).
    pub version: u64,
    /// The language it was deployed in.
    pub language: Language,
    /// The entry file's path.
    pub entry: String,
    /// Whether each invocation gets a fresh isolate.
    pub isolation: Isolation,
    /// Limits set at deploy.
    pub limits: FunctionLimits,
    /// Whether `/fn/{name}` answers without an API key.
    pub public: bool,
    /// The secret of the function's key-less address `/call/{name}/{token}` (kept across
    /// versions, replaced by [`Store::rotate_call_token`]).
    pub call_token: String,
    /// The tenant (API key fingerprint) that first deployed it, if one did.
    pub owner: Option<String>,
    /// When this version was deployed (Unix milliseconds).
    pub deployed_at: i64,
    /// When the function was first deployed (Unix milliseconds).
    pub created_at: i64,
}

/// One stored version of a function, code included.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// What needs no code.
    pub summary: DeploymentSummary,
    /// Compiled modules by path, each with its source as deployed.
    pub modules: BTreeMap<String, Module>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Hosts its `fetch` may reach.
    pub allow_net: Vec<String>,
    /// The functions it may call: binding name to the function's name.
    pub bindings: BTreeMap<String, String>,
    /// A WebAssembly function's code (it has no `modules` then).
    pub wasm: Option<StoredWasm>,
    /// A Python or C# function's code (it has no `modules` then).
    pub runtime_code: Option<StoredRuntimeCode>,
    /// How a WebAssembly guest's stdout becomes the response.
    pub executor: Executor,
}

impl Deployment {
    /// The function's name.
    pub fn name(&self) -> &str {
        &self.summary.name
    }

    /// This version's number.
    pub fn version(&self) -> u64 {
        self.summary.version
    }
}

/// One stored log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLog {
    /// Increasing per store: lines after a given id are the newer ones.
    pub id: i64,
    /// Unix milliseconds.
    pub timestamp: i64,
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// Who wrote it: the function, or the host about the function.
    pub source: LogSource,
    /// The line.
    pub message: String,
}

/// Who wrote a log line. A function's own output can never be taken for the host's lines
/// (lifecycle, failures, dropped output): the API and the CLI show which is which.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// The function's console, standard output or standard error.
    Function,
    /// The host, about an invocation or call of the function.
    Host,
}

impl LogSource {
    /// `function` or `host`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Function => "function",
            Self::Host => "host",
        }
    }

    /// The source named `text` (as stored); anything else is the function's.
    pub fn parse(text: &str) -> Self {
        if text == "host" {
            Self::Host
        } else {
            Self::Function
        }
    }
}

/// New log lines of function `name`, from its deployment that `owner` owns (`None`: no key's).
/// They are stored only while the function is still that owner's: a function deleted and
/// deployed again by another key never gets the lines of the one before it.
#[derive(Clone, Debug)]
pub struct LogLines {
    /// The function.
    pub name: String,
    /// Whose deployment of it wrote them.
    pub owner: Option<String>,
    /// The lines, oldest first.
    pub entries: Vec<LogEntry>,
}

/// A log line to append.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// When it was written.
    pub timestamp: SystemTime,
    /// `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// Who wrote it.
    pub source: LogSource,
    /// The line.
    pub message: String,
}

impl LogEntry {
    /// A line written now by the host about the function (a lifecycle line, an uncaught
    /// exception).
    pub fn from_host(level: &'static str, message: String) -> Self {
        Self {
            timestamp: SystemTime::now(),
            level,
            source: LogSource::Host,
            message,
        }
    }
}

/// Where an asynchronous call is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Accepted, waiting for its turn.
    Pending,
    /// Its function started running it.
    Running,
    /// It ended with a response.
    Finished,
    /// It ended with an error.
    Failed,
}

impl CallState {
    /// The name stored and shown (`pending`, `running`, `finished`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
        }
    }

    /// The state named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Pending, Self::Running, Self::Finished, Self::Failed]
            .into_iter()
            .find(|state| state.as_str() == name)
    }
}

/// A call waiting to run, as the scheduler needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedCall {
    /// The call's id (32 hex digits).
    pub id: String,
    /// The function it calls.
    pub name: String,
    /// The tenant (API key) that made it, if the host has keys.
    pub tenant: Option<String>,
}

/// How long a host's claims last without its heartbeat: a host not heard from for this long is
/// taken for dead, and its calls are taken over.
pub const NODE_LEASE: std::time::Duration = std::time::Duration::from_secs(5);

/// What limits a function's queue, for a call added to it.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    /// Its calls that may run at once.
    pub concurrency: usize,
    /// Its calls that may wait; more are refused.
    pub max_pending: usize,
}

/// What adding a call found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queued {
    /// Stored; nothing is ahead of it, and its function has room to run it.
    Next,
    /// Stored; it waits for calls ahead of it, or for room to run.
    Waits,
    /// Not stored: as many calls wait as may.
    Full,
}

/// A tenant's quota of calls running at once, by tenant id.
pub type TenantQuota = Arc<dyn Fn(&str) -> usize + Send + Sync>;

/// A host's claim on a function's pending calls ([`Store::claim_calls`]).
#[derive(Clone)]
pub struct Claim {
    /// The claiming host.
    pub node: String,
    /// The function.
    pub name: String,
    /// Its calls that may be claimed or running at once, on all hosts.
    pub concurrency: usize,
    /// The most calls this host takes now.
    pub max: usize,
    /// Each tenant's quota of its calls claimed or running at once, on all hosts.
    pub tenant_quota: TenantQuota,
}

/// What a claim got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claimed {
    /// The calls claimed, in arrival order.
    pub calls: Vec<QueuedCall>,
    /// The function's calls still unclaimed after it.
    pub pending: usize,
    /// Another host was claiming the function's calls at the same moment: nothing was looked
    /// at, and it is worth trying again.
    pub contended: bool,
}

/// Where a tenant's calls stand, for a claim of one function's calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TenantCalls {
    /// Its calls claimed or running, of any function, on any host.
    pub running: usize,
    /// The arrival number of its oldest unclaimed call of another function: its calls of this
    /// function that came later wait for that one (a tenant's calls start in arrival order).
    pub first_elsewhere: Option<i64>,
}

/// Which of `candidates` (the function's unclaimed calls, oldest first: arrival number and
/// tenant) a claim takes: in order, up to `room`, skipping each tenant's calls from the first
/// that has to wait (its tenant at its quota, or with an older call of another function).
/// Indices into `candidates`.
pub(crate) fn choose_claims(
    candidates: &[(i64, Option<String>)],
    room: usize,
    tenants: &mut std::collections::HashMap<String, TenantCalls>,
    quota: &TenantQuota,
) -> Vec<usize> {
    let mut chosen = Vec::new();
    let mut waiting = std::collections::HashSet::new();
    for (index, (seq, tenant)) in candidates.iter().enumerate() {
        if chosen.len() >= room {
            break;
        }
        if let Some(tenant) = tenant {
            let calls = tenants.entry(tenant.clone()).or_default();
            let behind = calls.first_elsewhere.is_some_and(|first| first < *seq);
            if waiting.contains(tenant) || behind || calls.running >= quota(tenant) {
                waiting.insert(tenant.clone());
                continue;
            }
            calls.running += 1;
        }
        chosen.push(index);
    }
    chosen
}

/// How many unclaimed calls a claim looks at past those its tenants' quotas hold back.
pub(crate) const CLAIM_WINDOW: usize = 1000;

/// A call's input: what a synchronous invocation's request would have carried.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallInput {
    /// The payload's `Content-Type`.
    pub content_type: Option<String>,
    /// The query string it was made with (without `?`), which the function sees in its URL.
    pub query: Option<String>,
    /// The payload: the request body.
    pub payload: Vec<u8>,
    /// The W3C `traceparent` of the request that made the call.
    pub traceparent: Option<String>,
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// The function's response.
    Finished(CallResult),
    /// Why it produced none.
    Failed(crate::Error),
}

/// A finished call's response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallResult {
    /// The HTTP status the function answered.
    pub status: u16,
    /// Its headers.
    pub headers: Vec<(String, String)>,
    /// Its whole body.
    pub body: Vec<u8>,
}

/// What fetching a call found.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Done: how it ended, now removed from the store.
    Done(CallOutcome),
    /// Still pending or running.
    NotYet(CallState),
    /// Its result was rotated out of the function's result cache before it was fetched.
    RotatedOut,
    /// No such call (or its result was fetched already).
    Unknown,
}

/// A change a store made, announced to every host on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StoreEvent {
    /// A new version of `name` is current.
    Deployed {
        /// The function.
        name: String,
        /// Its new current version.
        version: u64,
    },
    /// `name` and everything of it is gone.
    Deleted {
        /// The function.
        name: String,
    },
    /// `name` has a new call token.
    TokenRotated {
        /// The function.
        name: String,
    },
    /// Lines were appended to `name`'s logs.
    Logged {
        /// The function.
        name: String,
    },
    /// Call `id` ended: its result can be fetched.
    CallEnded {
        /// The call.
        id: String,
    },
    /// Function `name` has calls to claim, and room to run some.
    CallsWaiting {
        /// The function.
        name: String,
    },
    /// Changes may have gone unannounced (a shared store lost its connection for a while):
    /// whatever follows the store's events must read what it depends on again.
    Missed,
}

/// Persistent state of a host. Implementations must be safe to share between tasks; each
/// method's change is atomic (all of it is stored, or none).
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new version of a function and makes it current. A deployment whose `owner`
    /// differs from the function's fails with [`OwnedByAnother`] and stores nothing.
    async fn deploy(&self, new: NewDeployment) -> StoreResult<Deployment>;

    /// The current version of every function, code included, by name.
    async fn current_deployments(&self) -> StoreResult<Vec<Deployment>>;

    /// The current version of every function without its code, by name (one query, no blobs).
    async fn list(&self) -> StoreResult<Vec<DeploymentSummary>>;

    /// The current version of `name`, code included.
    async fn get(&self, name: &str) -> StoreResult<Option<Deployment>>;

    /// Deletes a function with all its versions and logs; false when there was none (with
    /// `owner`, none that `owner` owns: the check and the change are one step).
    async fn delete(&self, name: &str, owner: Option<&str>) -> StoreResult<bool>;

    /// Replaces the memory snapshot of version `version` of Python or C# function
    /// `name` (made again because the one stored no longer fits the host's runtime); false when there is no such
    /// version.
    async fn replace_snapshot(
        &self,
        name: &str,
        version: u64,
        snapshot: Arc<[u8]>,
    ) -> StoreResult<bool>;

    /// Gives `name` a new call token (the old address stops working); `None` when there is no
    /// such function (with `owner`, none that `owner` owns).
    async fn rotate_call_token(
        &self,
        name: &str,
        owner: Option<&str>,
    ) -> StoreResult<Option<String>>;

    /// Appends lines to the logs of each named function (one batch, one commit), then drops
    /// each one's oldest lines past the store's cap. Lines of a function that is gone, or no
    /// longer their owner's ([`LogLines`]), are dropped.
    async fn append_logs(&self, batch: Vec<LogLines>) -> StoreResult<()>;

    /// Up to `limit` log lines of `name` with ids above `after`, oldest first (with `owner`,
    /// none unless `owner` owns `name`).
    async fn logs(
        &self,
        name: &str,
        after: i64,
        limit: u32,
        owner: Option<&str>,
    ) -> StoreResult<Vec<StoredLog>>;

    /// Records a new pending call of `call.name`, unless `limits.max_pending` of its calls
    /// wait already (in this store: on any host).
    async fn add_call(
        &self,
        call: &QueuedCall,
        input: CallInput,
        limits: QueueLimits,
    ) -> StoreResult<Queued>;

    /// Claims for host `claim.node` the oldest pending calls of function `claim.name`, in
    /// arrival order: at most `claim.max`, and only while fewer than `claim.concurrency` of the
    /// function's calls are claimed or running (on any host) and each call's tenant has fewer
    /// than its quota claimed or running. A claimed call stays pending until the host starts
    /// it ([`Store::start_call`]) or gives it back ([`Store::release_call`]); if the host dies
    /// first, [`Store::reap_calls`] gives it back.
    async fn claim_calls(&self, claim: Claim) -> StoreResult<Claimed>;

    /// Gives back a call `node` claimed and has not started: pending, for any host to claim.
    async fn release_call(&self, id: &str, node: &str) -> StoreResult<()>;

    /// The input of a pending call; `None` if it is not pending (it ran already).
    async fn call_input(&self, id: &str) -> StoreResult<Option<CallInput>>;

    /// Marks a call `node` claimed running; true when it is running on `node` (now, or since
    /// an earlier try whose answer was lost), false when it is not `node`'s (so a call never
    /// runs twice).
    async fn start_call(&self, id: &str, node: &str) -> StoreResult<bool>;

    /// Stores how a call `node` claimed or runs ended (nothing, if it is no longer `node`'s),
    /// then rotates the oldest unfetched results of its function out past `cap` bytes. Returns
    /// the ids rotated out.
    async fn finish_call(
        &self,
        id: &str,
        node: &str,
        outcome: &CallOutcome,
        cap: u64,
    ) -> StoreResult<Vec<String>>;

    /// Takes a finished call's outcome (removing it), or says why there is none. With
    /// `tenant`, only a call that tenant made is found (any other is [`Fetched::Unknown`]).
    async fn fetch_call(&self, id: &str, tenant: Option<&str>) -> StoreResult<Fetched>;

    /// The functions that have calls nobody has claimed, with how many.
    async fn pending_calls(&self) -> StoreResult<Vec<(String, usize)>>;

    /// Renews host `node`'s lease on the calls it claimed; how many hosts hold a live lease
    /// (this one included).
    async fn heartbeat(&self, node: &str) -> StoreResult<usize>;

    /// Takes over from the hosts whose lease ran out ([`NODE_LEASE`]; with a store only one
    /// host uses, every host but `node`): their claimed calls are pending again, and their
    /// running calls become `node`'s, returned for `node` to fail (they may have had effects,
    /// so they never run again). Calls `node` claimed and has not started but does not hold
    /// (not in `holding`: a claim whose answer was lost) are pending again too.
    async fn reap_calls(&self, node: &str, holding: &[String]) -> StoreResult<Vec<QueuedCall>>;

    /// What the store changes from now on (with a shared store, what any host on it changes).
    fn events(&self) -> broadcast::Receiver<StoreEvent>;

    /// Whether other hosts may change the store too (then each host follows [`Store::events`]
    /// to serve what they deploy).
    fn shared(&self) -> bool {
        false
    }
}

/// Whether `err` says the store cannot be reached now (its database is down, restarting or
/// out of connections), rather than that it refused or failed at what it was asked.
pub fn is_unreachable(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        let lost = |err: &tokio_postgres::Error| match err.code() {
            // Connection exceptions (08) and the server stopping it (57: shutting down,
            // crashed, starting up).
            Some(state) => ["08", "57"]
                .iter()
                .any(|class| state.code().starts_with(class)),
            // No SQL state: the connection failed or closed.
            None => true,
        };
        cause
            .downcast_ref::<tokio_postgres::Error>()
            .is_some_and(lost)
            || cause.is::<postgres::NoConnection>()
            || cause.is::<std::io::Error>()
    })
}

/// Whether the same request may well succeed if tried again: the store is unreachable
/// ([`is_unreachable`]), or the database gave up on a transaction that waited for another
/// (a deadlock, a serialization failure).
pub fn is_transient(err: &anyhow::Error) -> bool {
    is_unreachable(err)
        || err.chain().any(|cause| {
            cause
                .downcast_ref::<tokio_postgres::Error>()
                .and_then(tokio_postgres::Error::code)
                .is_some_and(|state| ["40P01", "40001"].contains(&state.code()))
        })
}

/// Unix milliseconds of `time`.
pub fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `bytes` random bytes from the operating system, in hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// How many events a slow listener may fall behind before it misses some (it then learns it
/// lagged, and re-reads what it needs).
pub(crate) const EVENT_BUFFER: usize = 4096;

/// How a failed call's error is stored: its kind, message and details, as JSON.
pub(crate) fn stored_failure(error: &crate::Error) -> String {
    serde_json::to_string(error).expect("an error serializes")
}

/// The error stored by [`stored_failure`].
pub(crate) fn failure_of(json: &str) -> StoreResult<crate::Error> {
    serde_json::from_str(json)
        .map_err(|err| anyhow::anyhow!("a stored call error is corrupt: {err}"))
}

/// The rules every store keeps, checked against each backend.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A JavaScript deployment of `name` whose `index.js` is `source`.
    pub(crate) fn new(name: &str, source: &str) -> NewDeployment {
        NewDeployment {
            name: name.into(),
            language: Language::JavaScript,
            entry: "index.js".into(),
            modules: BTreeMap::from([("index.js".into(), Module::javascript(source))]),
            env: BTreeMap::from([("K".into(), "V".into())]),
            isolation: Isolation::Invocation,
            wasm: None,
            runtime_code: None,
            executor: Executor::Command,
            allow_net: vec!["example.com".into()],
            bindings: BTreeMap::from([("MATH".into(), "math".into())]),
            limits: FunctionLimits::default(),
            public: true,
            owner: None,
        }
    }

    fn lines(name: &str, owner: Option<&str>, entries: Vec<LogEntry>) -> LogLines {
        LogLines {
            name: name.into(),
            owner: owner.map(Into::into),
            entries,
        }
    }

    fn line(message: &str) -> LogEntry {
        LogEntry::from_host("info", message.into())
    }

    fn call(id: &str) -> QueuedCall {
        QueuedCall {
            id: id.into(),
            name: "f".into(),
            tenant: None,
        }
    }

    fn input(payload: &str) -> CallInput {
        CallInput {
            content_type: Some("application/json".into()),
            query: Some("x=1".into()),
            payload: payload.as_bytes().to_vec(),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        }
    }

    fn finished(body: &str) -> CallOutcome {
        CallOutcome::Finished(CallResult {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
        })
    }

    /// Each backend, fresh, its functions' logs capped at `cap`: SQLite in `dir`, memory,
    /// and PostgreSQL (a new database on the tests' throw-away server).
    pub(crate) async fn backends_with_cap(
        dir: &std::path::Path,
        cap: u64,
    ) -> Vec<(&'static str, Box<dyn Store>)> {
        let url = tokio::task::spawn_blocking(functions_test_postgres::database)
            .await
            .unwrap();
        vec![
            ("sqlite", Box::new(SqliteStore::open(dir, cap).unwrap())),
            ("memory", Box::new(MemoryStore::new(cap))),
            (
                "postgres",
                Box::new(PostgresStore::open(&url, cap, None).await.unwrap()),
            ),
        ]
    }

    /// Each backend, fresh, with the default log cap.
    async fn backends(dir: &std::path::Path) -> Vec<(&'static str, Box<dyn Store>)> {
        backends_with_cap(dir, DEFAULT_LOG_CAP_BYTES).await
    }

    #[tokio::test]
    async fn redeploys_replace_the_current_version_and_deletes_forget_everything() {
        let dir = tempfile::tempdir().unwrap();
        for (backend, store) in backends(dir.path()).await {
            let mut events = store.events();
            assert_eq!(store.deploy(new("a", "v1")).await.unwrap().version(), 1);
            let second = store.deploy(new("a", "v2")).await.unwrap();
            assert_eq!(second.version(), 2, "{backend}");
            store.deploy(new("b", "b1")).await.unwrap();
            assert_eq!(
                events.recv().await.unwrap(),
                StoreEvent::Deployed {
                    name: "a".into(),
                    version: 1
                }
            );
            let current = store.current_deployments().await.unwrap();
            let summary: Vec<_> = current
                .iter()
                .map(|d| (d.name(), d.version(), &*d.modules["index.js"].source))
                .collect();
            assert_eq!(summary, vec![("a", 2, "v2"), ("b", 1, "b1")], "{backend}");
            assert_eq!(current[0].env.get("K").map(String::as_str), Some("V"));
            assert_eq!(current[0].allow_net, ["example.com"]);
            assert_eq!(
                current[0].bindings,
                BTreeMap::from([("MATH".to_owned(), "math".to_owned())]),
                "{backend}"
            );
            let listed: Vec<_> = store.list().await.unwrap();
            assert_eq!(listed[0], second.summary, "{backend}");
            assert_eq!(listed.len(), 2);
            let token = store.rotate_call_token("a", None).await.unwrap().unwrap();
            assert_ne!(token, second.summary.call_token);
            assert_eq!(
                store.get("a").await.unwrap().unwrap().summary.call_token,
                token
            );
            assert_eq!(store.rotate_call_token("zz", None).await.unwrap(), None);
            assert!(store.delete("a", None).await.unwrap());
            assert!(!store.delete("a", None).await.unwrap(), "{backend}");
            assert!(store.get("a").await.unwrap().is_none());
            assert_eq!(store.deploy(new("a", "again")).await.unwrap().version(), 1);
        }
    }

    #[tokio::test]
    async fn compiled_modules_come_back_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let files = BTreeMap::from([
            ("main.ts".to_owned(), "import d from './d.json' with { type: 'json' };\nexport default (): number => d.n;".to_owned()),
            ("d.json".to_owned(), r#"{"n": 1}"#.to_owned()),
        ]);
        let modules = functions_runtime::compile_files("ts", "main.ts", &files).unwrap();
        for (backend, store) in backends(dir.path()).await {
            let deployment = NewDeployment {
                entry: "main.ts".into(),
                language: Language::TypeScript,
                modules: modules.clone(),
                ..new("ts", "")
            };
            store.deploy(deployment).await.unwrap();
            let stored = store.get("ts").await.unwrap().unwrap();
            assert_eq!(stored.modules, modules, "{backend}");
            assert_eq!(stored.summary.language, Language::TypeScript);
        }
        // And from the files, after the process that stored them is gone.
        let store = SqliteStore::open(dir.path(), DEFAULT_LOG_CAP_BYTES).unwrap();
        assert_eq!(store.get("ts").await.unwrap().unwrap().modules, modules);
    }

    #[tokio::test]
    async fn python_code_comes_back_as_stored_and_goes_with_its_function() {
        let dir = tempfile::tempdir().unwrap();
        let python = StoredRuntimeCode {
            files: BTreeMap::from([(
                "main.py".to_owned(),
                "def handler(e):\n    pass\n".to_owned(),
            )]),
            requirements: vec!["six==1.16.0".to_owned()],
            packages: Arc::new(BTreeMap::from([("six.py".to_owned(), vec![0, 1, 2, 255])])),
            snapshot: Arc::from(&b"a snapshot"[..]),
        };
        let deployment = || NewDeployment {
            entry: "main.py:handler".into(),
            language: Language::Python,
            modules: BTreeMap::new(),
            runtime_code: Some(python.clone()),
            ..new("py", "")
        };
        let same = |stored: Option<StoredRuntimeCode>| {
            let stored = stored.expect("Python code");
            assert_eq!(stored.files, python.files);
            assert_eq!(stored.requirements, python.requirements);
            assert_eq!(stored.packages, python.packages);
            assert_eq!(stored.snapshot, python.snapshot);
        };
        for (backend, store) in backends(dir.path()).await {
            store.deploy(deployment()).await.unwrap();
            let stored = store.get("py").await.unwrap().unwrap();
            assert!(stored.modules.is_empty(), "{backend}");
            assert_eq!(stored.summary.entry, "main.py:handler");
            same(stored.runtime_code);
        }
        let store = SqliteStore::open(dir.path(), DEFAULT_LOG_CAP_BYTES).unwrap();
        same(store.get("py").await.unwrap().unwrap().runtime_code);
        // A snapshot made again replaces the stored one, of that version only.
        let remade: Arc<[u8]> = Arc::from(&b"made again"[..]);
        assert!(
            store
                .replace_snapshot("py", 1, remade.clone())
                .await
                .unwrap()
        );
        assert!(
            !store
                .replace_snapshot("py", 2, remade.clone())
                .await
                .unwrap()
        );
        let stored = store
            .get("py")
            .await
            .unwrap()
            .unwrap()
            .runtime_code
            .unwrap();
        assert_eq!(stored.snapshot, remade);
        assert_eq!(stored.packages, python.packages);
        // Deleted with its function: a new function of the name starts at version 1, bare.
        assert!(store.delete("py", None).await.unwrap());
        let again = store
            .deploy(new("py", "export default () => 1"))
            .await
            .unwrap();
        assert_eq!(again.version(), 1);
        assert!(
            store
                .get("py")
                .await
                .unwrap()
                .unwrap()
                .runtime_code
                .is_none()
        );
    }

    #[tokio::test]
    async fn logs_are_capped_oldest_first() {
        let cap = 10 * (100 + LOG_LINE_OVERHEAD);
        let dir = tempfile::tempdir().unwrap();
        for (backend, store) in backends_with_cap(dir.path(), cap).await {
            store.deploy(new("a", "x")).await.unwrap();
            for i in 0..25 {
                let message = format!("{i:03}{}", "x".repeat(97));
                store
                    .append_logs(vec![lines("a", None, vec![line(&message)])])
                    .await
                    .unwrap();
            }
            let logs = store.logs("a", 0, 1000, None).await.unwrap();
            assert_eq!(logs.len(), 10, "{backend}");
            assert!(logs[0].message.starts_with("015"), "{}", logs[0].message);
            assert!(logs[9].message.starts_with("024"));
            let after = store.logs("a", logs[4].id, 1000, None).await.unwrap();
            assert_eq!(after.len(), 5, "{backend}");
        }
    }

    fn limits(concurrency: usize, max_pending: usize) -> QueueLimits {
        QueueLimits {
            concurrency,
            max_pending,
        }
    }

    /// A claim of function `f`'s calls by `node`, each tenant allowed one at a time.
    fn claim(node: &str, concurrency: usize, max: usize) -> Claim {
        Claim {
            node: node.into(),
            name: "f".into(),
            concurrency,
            max,
            tenant_quota: Arc::new(|_| 1),
        }
    }

    /// The ids of the calls `node` claims (with a fresh lease: only a live host claims).
    async fn claimed(store: &dyn Store, node: &str, concurrency: usize, max: usize) -> Vec<String> {
        store.heartbeat(node).await.unwrap();
        let claimed = store
            .claim_calls(claim(node, concurrency, max))
            .await
            .unwrap();
        claimed.calls.into_iter().map(|call| call.id).collect()
    }

    #[tokio::test]
    async fn calls_are_claimed_in_order_within_the_concurrency_and_run_once() {
        let dir = tempfile::tempdir().unwrap();
        for (backend, store) in backends(dir.path()).await {
            let store = store.as_ref();
            assert_eq!(
                store
                    .add_call(&call("a"), input("1"), limits(2, 3))
                    .await
                    .unwrap(),
                Queued::Next,
                "{backend}"
            );
            for id in ["b", "c"] {
                let queued = store.add_call(&call(id), input("2"), limits(2, 3)).await;
                assert_eq!(queued.unwrap(), Queued::Waits, "{backend}");
            }
            assert_eq!(
                store
                    .add_call(&call("d"), input("3"), limits(2, 3))
                    .await
                    .unwrap(),
                Queued::Full,
                "{backend}: three wait already"
            );
            assert_eq!(
                store.pending_calls().await.unwrap(),
                [("f".to_owned(), 3)],
                "{backend}"
            );
            // One for the first host, whose share is one; the second takes what is left of
            // the concurrency of two, however much it asks for.
            assert_eq!(claimed(store, "n1", 2, 1).await, ["a"], "{backend}");
            store.heartbeat("n2").await.unwrap();
            let second = store.claim_calls(claim("n2", 2, 5)).await.unwrap();
            assert_eq!(second.calls, [call("b")], "{backend}");
            assert_eq!(second.pending, 1);
            assert!(claimed(store, "n1", 2, 5).await.is_empty(), "{backend}");
            assert_eq!(
                store.fetch_call("a", None).await.unwrap(),
                Fetched::NotYet(CallState::Pending),
                "claimed is still pending"
            );
            assert_eq!(store.call_input("a").await.unwrap(), Some(input("1")));
            // Only the host that claimed a call starts it; trying again is no harm.
            assert!(!store.start_call("a", "n2").await.unwrap(), "{backend}");
            assert!(store.start_call("a", "n1").await.unwrap(), "{backend}");
            assert!(store.start_call("a", "n1").await.unwrap(), "{backend}");
            assert!(store.call_input("a").await.unwrap().is_none());
            assert_eq!(
                store.fetch_call("a", None).await.unwrap(),
                Fetched::NotYet(CallState::Running)
            );
            // A call given back is claimed again, first in line.
            store.release_call("b", "n2").await.unwrap();
            assert_eq!(claimed(store, "n1", 2, 5).await, ["b"], "{backend}");
            let mut events = store.events();
            // Only its host stores how it ended.
            store
                .finish_call("a", "n2", &finished("not mine"), DEFAULT_RESULT_CAP_BYTES)
                .await
                .unwrap();
            store
                .finish_call("a", "n1", &finished("one"), DEFAULT_RESULT_CAP_BYTES)
                .await
                .unwrap();
            loop {
                match events.recv().await.unwrap() {
                    StoreEvent::CallEnded { id } => break assert_eq!(id, "a"),
                    StoreEvent::CallsWaiting { .. } => {}
                    other => panic!("{backend}: {other:?}"),
                }
            }
            assert_eq!(
                store.fetch_call("a", None).await.unwrap(),
                Fetched::Done(finished("one")),
                "{backend}"
            );
            assert_eq!(store.fetch_call("a", None).await.unwrap(), Fetched::Unknown);
            // Room again: the last one is claimed.
            assert_eq!(claimed(store, "n2", 2, 5).await, ["c"], "{backend}");
            assert!(store.pending_calls().await.unwrap().is_empty());
            // A failure comes back as the error it was.
            let failure =
                crate::Error::new(crate::ErrorKind::TimeLimit, "too slow").with("line", 3);
            let failed = CallOutcome::Failed(failure.clone());
            store
                .finish_call("b", "n1", &failed, DEFAULT_RESULT_CAP_BYTES)
                .await
                .unwrap();
            assert_eq!(
                store.fetch_call("b", None).await.unwrap(),
                Fetched::Done(failed),
                "{backend}"
            );
        }
    }

    #[tokio::test]
    async fn a_hosts_calls_are_taken_over_after_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        // SQLite and memory: one host at a time, so any other host is gone (PostgreSQL waits
        // for the lease: postgres.rs tests it).
        for (backend, store) in backends(dir.path()).await.into_iter().take(2) {
            let store = store.as_ref();
            for id in ["a", "b", "c"] {
                store
                    .add_call(&call(id), input(id), limits(5, 5))
                    .await
                    .unwrap();
            }
            assert_eq!(claimed(store, "old", 5, 2).await, ["a", "b"]);
            assert!(store.start_call("a", "old").await.unwrap());
            let adopted = store.reap_calls("new", &[]).await.unwrap();
            assert_eq!(adopted, [call("a")], "{backend}: the running one");
            // The claimed one is pending again, ahead of the rest.
            assert_eq!(claimed(store, "new", 5, 5).await, ["b", "c"], "{backend}");
            assert!(!store.start_call("b", "old").await.unwrap(), "{backend}");
            let holding = ["b".to_owned(), "c".to_owned()];
            assert!(store.reap_calls("new", &holding).await.unwrap().is_empty());
            assert!(claimed(store, "other", 5, 5).await.is_empty(), "{backend}");
            // A claim "new" does not hold (its answer was lost on the way) is given back.
            assert!(
                store
                    .reap_calls("new", &holding[..1])
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(claimed(store, "other", 5, 5).await, ["c"], "{backend}");
            // The old host can no longer store an outcome; the new one can.
            let outcome = finished("late");
            store
                .finish_call("a", "old", &outcome, 1 << 20)
                .await
                .unwrap();
            assert_eq!(
                store.fetch_call("a", None).await.unwrap(),
                Fetched::NotYet(CallState::Running)
            );
            store
                .finish_call("a", "new", &outcome, 1 << 20)
                .await
                .unwrap();
            assert_eq!(
                store.fetch_call("a", None).await.unwrap(),
                Fetched::Done(outcome)
            );
        }
    }

    #[tokio::test]
    async fn a_tenants_quota_holds_back_its_calls_but_not_others() {
        let dir = tempfile::tempdir().unwrap();
        for (backend, store) in backends(dir.path()).await {
            let store = store.as_ref();
            let of = |id: &str, tenant: &str| QueuedCall {
                tenant: Some(tenant.into()),
                ..call(id)
            };
            for (id, tenant) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("a3", "a")] {
                store
                    .add_call(&of(id, tenant), input(""), limits(10, 10))
                    .await
                    .unwrap();
            }
            // One at a time per tenant: a2 and a3 wait for a1, b1 does not.
            assert_eq!(claimed(store, "n", 10, 10).await, ["a1", "b1"], "{backend}");
            assert!(store.start_call("a1", "n").await.unwrap());
            store
                .finish_call("a1", "n", &finished(""), 1 << 20)
                .await
                .unwrap();
            assert_eq!(claimed(store, "n", 10, 10).await, ["a2"], "{backend}");
        }
    }

    #[test]
    fn claims_take_each_tenants_calls_in_its_order_within_its_quota() {
        let quota: TenantQuota = Arc::new(|tenant| if tenant == "a" { 2 } else { 1 });
        let of = |seq: i64, tenant: Option<&str>| (seq, tenant.map(str::to_owned));
        let candidates = [
            of(1, Some("a")),
            of(2, None),
            of(3, Some("b")),
            of(4, Some("a")),
            of(5, Some("b")),
            of(6, None),
            of(9, Some("c")),
            of(10, Some("d")),
        ];
        let mut tenants = std::collections::HashMap::from([
            (
                "a".to_owned(),
                TenantCalls {
                    running: 1,
                    first_elsewhere: None,
                },
            ),
            // c's call 7 of another function comes first; d's 11 comes after.
            (
                "c".to_owned(),
                TenantCalls {
                    running: 0,
                    first_elsewhere: Some(7),
                },
            ),
            (
                "d".to_owned(),
                TenantCalls {
                    running: 0,
                    first_elsewhere: Some(11),
                },
            ),
        ]);
        let chosen = choose_claims(&candidates, 10, &mut tenants, &quota);
        assert_eq!(chosen, [0, 1, 2, 5, 7]);
        assert_eq!(tenants["a"].running, 2);
        let mut tenants = std::collections::HashMap::new();
        assert_eq!(choose_claims(&candidates, 2, &mut tenants, &quota), [0, 1]);
    }

    #[tokio::test]
    async fn a_function_belongs_to_the_tenant_that_first_deployed_it() {
        let dir = tempfile::tempdir().unwrap();
        let by = |owner: Option<&str>, source: &str| NewDeployment {
            owner: owner.map(str::to_owned),
            ..new("f", source)
        };
        for (backend, store) in backends(dir.path()).await {
            let first = store.deploy(by(Some("key-a"), "v1")).await.unwrap();
            assert_eq!(first.summary.owner.as_deref(), Some("key-a"), "{backend}");
            let second = store.deploy(by(Some("key-a"), "v2")).await.unwrap();
            assert_eq!(second.version(), 2);
            let refused = store.deploy(by(Some("key-b"), "v3")).await.unwrap_err();
            assert!(
                refused.downcast_ref::<OwnedByAnother>().is_some(),
                "{backend}"
            );
            // No claim (an admin, the embedder) deploys over it and keeps its owner.
            let admin = store.deploy(by(None, "v3")).await.unwrap();
            assert_eq!(admin.summary.owner.as_deref(), Some("key-a"), "{backend}");
            let current = store.get("f").await.unwrap().unwrap();
            assert_eq!(
                (current.version(), current.summary.owner.as_deref()),
                (3, Some("key-a"))
            );
            assert_eq!(
                store.list().await.unwrap()[0].owner.as_deref(),
                Some("key-a")
            );
            // A function nobody owns is no tenant's either.
            store
                .deploy(NewDeployment {
                    owner: None,
                    ..new("g", "v1")
                })
                .await
                .unwrap();
            assert!(
                store
                    .deploy(NewDeployment {
                        owner: Some("key-a".into()),
                        ..new("g", "v2")
                    })
                    .await
                    .is_err()
            );
        }
    }

    #[tokio::test]
    async fn another_tenant_cannot_delete_rotate_or_read_the_logs_of_a_function() {
        let dir = tempfile::tempdir().unwrap();
        for (backend, store) in backends(dir.path()).await {
            store
                .deploy(NewDeployment {
                    owner: Some("key-a".into()),
                    ..new("f", "v1")
                })
                .await
                .unwrap();
            store
                .append_logs(vec![lines("f", Some("key-a"), vec![line("hello")])])
                .await
                .unwrap();
            // Lines of another owner's deployment of a function of that name, or of one that
            // is gone, go nowhere (not even to a function deployed under that name later).
            store
                .append_logs(vec![
                    lines("f", Some("key-b"), vec![line("not theirs")]),
                    lines("ghost", None, vec![line("too late")]),
                ])
                .await
                .unwrap();
            store.deploy(new("ghost", "v1")).await.unwrap();
            assert!(store.logs("ghost", 0, 10, None).await.unwrap().is_empty());
            let other = Some("key-b");
            assert!(
                store.logs("f", 0, 10, other).await.unwrap().is_empty(),
                "{backend}"
            );
            assert_eq!(store.rotate_call_token("f", other).await.unwrap(), None);
            assert!(!store.delete("f", other).await.unwrap(), "{backend}");
            // Nothing of it was touched.
            let owner = Some("key-a");
            assert_eq!(store.logs("f", 0, 10, owner).await.unwrap().len(), 1);
            assert!(store.rotate_call_token("f", owner).await.unwrap().is_some());
            assert!(store.delete("f", owner).await.unwrap(), "{backend}");
            assert!(store.get("f").await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn a_call_result_is_found_only_by_the_tenant_that_made_the_call() {
        let dir = tempfile::tempdir().unwrap();
        for (backend, store) in backends(dir.path()).await {
            let mine = QueuedCall {
                tenant: Some("key-a".into()),
                ..call("mine")
            };
            store
                .add_call(&mine, input("1"), limits(1, 1))
                .await
                .unwrap();
            assert_eq!(
                store.fetch_call("mine", Some("key-b")).await.unwrap(),
                Fetched::Unknown,
                "{backend}"
            );
            assert_eq!(claimed(store.as_ref(), "n", 1, 1).await, ["mine"]);
            store
                .finish_call("mine", "n", &finished("one"), DEFAULT_RESULT_CAP_BYTES)
                .await
                .unwrap();
            assert_eq!(
                store.fetch_call("mine", Some("key-b")).await.unwrap(),
                Fetched::Unknown,
                "{backend}"
            );
            assert_eq!(
                store.fetch_call("mine", Some("key-a")).await.unwrap(),
                Fetched::Done(finished("one")),
                "{backend}"
            );
        }
    }

    #[tokio::test]
    async fn the_oldest_unfetched_results_are_rotated_out_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let body = "x".repeat(1000);
        for (backend, store) in backends(dir.path()).await {
            for i in 0..5 {
                let id = format!("c{i}");
                store
                    .add_call(&call(&id), input(""), limits(1, 1))
                    .await
                    .unwrap();
                assert_eq!(claimed(store.as_ref(), "n", 1, 1).await, vec![id.clone()]);
                assert!(store.start_call(&id, "n").await.unwrap());
                let rotated = store
                    .finish_call(&id, "n", &finished(&body), 3500)
                    .await
                    .unwrap();
                if i == 3 {
                    assert_eq!(rotated, ["c0"], "{backend}");
                }
            }
            assert_eq!(
                store.fetch_call("c0", None).await.unwrap(),
                Fetched::RotatedOut
            );
            assert_eq!(
                store.fetch_call("c1", None).await.unwrap(),
                Fetched::RotatedOut
            );
            assert!(matches!(
                store.fetch_call("c4", None).await.unwrap(),
                Fetched::Done(_)
            ));
        }
    }
}
