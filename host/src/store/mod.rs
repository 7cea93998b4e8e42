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
mod sqlite;
mod sqlite_calls;

pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

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

/// A Python function's code as stored: its files, and the memory snapshot its invocations
/// restore (made at deploy, after its module was imported).
#[derive(Clone, Debug)]
pub struct StoredPython {
    /// Its files by path (`.py` modules, and any text files they read).
    pub files: BTreeMap<String, String>,
    /// Its requirements, as deployed (PEP 508 lines).
    pub requirements: Vec<String>,
    /// The files its requirements resolved to, by their path in `site-packages`.
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
    /// A Python function's code (it has no `modules` then).
    pub python: Option<StoredPython>,
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
            python: self.python,
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
    /// A Python function's code (it has no `modules` then).
    pub python: Option<StoredPython>,
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

/// A call's input: what a synchronous invocation's request would have carried.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallInput {
    /// The payload's `Content-Type`.
    pub content_type: Option<String>,
    /// The query string it was made with (without `?`), which the function sees in its URL.
    pub query: Option<String>,
    /// The payload: the request body.
    pub payload: Vec<u8>,
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

    /// Replaces the memory snapshot of version `version` of Python function `name` (made again
    /// because the one stored no longer fits the host's Pyodide); false when there is no such
    /// version.
    async fn replace_python_snapshot(
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

    /// Records a new pending call.
    async fn add_call(&self, call: &QueuedCall, input: CallInput) -> StoreResult<()>;

    /// The input of a pending call; `None` if it is not pending (it ran already).
    async fn call_input(&self, id: &str) -> StoreResult<Option<CallInput>>;

    /// Claims a pending call for running (marks it running); false if it is not pending, so a
    /// call never runs twice.
    async fn start_call(&self, id: &str) -> StoreResult<bool>;

    /// Stores how a pending or running call ended, then rotates the oldest unfetched results
    /// of its function out past `cap` bytes. Returns the ids rotated out.
    async fn finish_call(
        &self,
        id: &str,
        outcome: &CallOutcome,
        cap: u64,
    ) -> StoreResult<Vec<String>>;

    /// Takes a finished call's outcome (removing it), or says why there is none. With
    /// `tenant`, only a call that tenant made is found (any other is [`Fetched::Unknown`]).
    async fn fetch_call(&self, id: &str, tenant: Option<&str>) -> StoreResult<Fetched>;

    /// Calls in `state`, in arrival order (for recovery: `Pending` ones run again, `Running`
    /// ones were cut short).
    async fn calls_in_state(&self, state: CallState) -> StoreResult<Vec<QueuedCall>>;

    /// What the store changes from now on (with a shared store, what any host on it changes).
    fn events(&self) -> broadcast::Receiver<StoreEvent>;

    /// Whether other hosts may change the store too (then each host follows [`Store::events`]
    /// to serve what they deploy).
    fn shared(&self) -> bool {
        false
    }
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
            python: None,
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
        let python = StoredPython {
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
            python: Some(python.clone()),
            ..new("py", "")
        };
        let same = |stored: Option<StoredPython>| {
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
            same(stored.python);
        }
        let store = SqliteStore::open(dir.path(), DEFAULT_LOG_CAP_BYTES).unwrap();
        same(store.get("py").await.unwrap().unwrap().python);
        // A snapshot made again replaces the stored one, of that version only.
        let remade: Arc<[u8]> = Arc::from(&b"made again"[..]);
        assert!(
            store
                .replace_python_snapshot("py", 1, remade.clone())
                .await
                .unwrap()
        );
        assert!(
            !store
                .replace_python_snapshot("py", 2, remade.clone())
                .await
                .unwrap()
        );
        let stored = store.get("py").await.unwrap().unwrap().python.unwrap();
        assert_eq!(stored.snapshot, remade);
        assert_eq!(stored.packages, python.packages);
        // Deleted with its function: a new function of the name starts at version 1, bare.
        assert!(store.delete("py", None).await.unwrap());
        let again = store
            .deploy(new("py", "export default () => 1"))
            .await
            .unwrap();
        assert_eq!(again.version(), 1);
        assert!(store.get("py").await.unwrap().unwrap().python.is_none());
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

    #[tokio::test]
    async fn a_call_runs_once_and_its_outcome_is_fetched_once() {
        let dir = tempfile::tempdir().unwrap();
        for (backend, store) in backends(dir.path()).await {
            store.add_call(&call("a"), input("1")).await.unwrap();
            store.add_call(&call("b"), input("2")).await.unwrap();
            assert_eq!(
                store.calls_in_state(CallState::Pending).await.unwrap(),
                vec![call("a"), call("b")],
                "{backend}"
            );
            assert_eq!(
                store.fetch_call("a", None).await.unwrap(),
                Fetched::NotYet(CallState::Pending)
            );
            assert_eq!(store.call_input("a").await.unwrap(), Some(input("1")));
            assert!(store.start_call("a").await.unwrap());
            assert!(
                !store.start_call("a").await.unwrap(),
                "{backend}: started twice"
            );
            assert!(store.call_input("a").await.unwrap().is_none());
            assert_eq!(
                store.calls_in_state(CallState::Running).await.unwrap(),
                vec![call("a")]
            );
            let mut events = store.events();
            store
                .finish_call("a", &finished("one"), DEFAULT_RESULT_CAP_BYTES)
                .await
                .unwrap();
            assert_eq!(
                events.recv().await.unwrap(),
                StoreEvent::CallEnded { id: "a".into() }
            );
            assert_eq!(
                store.fetch_call("a", None).await.unwrap(),
                Fetched::Done(finished("one")),
                "{backend}"
            );
            assert_eq!(store.fetch_call("a", None).await.unwrap(), Fetched::Unknown);
            // A failure comes back as the error it was.
            let failure =
                crate::Error::new(crate::ErrorKind::TimeLimit, "too slow").with("line", 3);
            store
                .finish_call(
                    "b",
                    &CallOutcome::Failed(failure.clone()),
                    DEFAULT_RESULT_CAP_BYTES,
                )
                .await
                .unwrap();
            assert_eq!(
                store.fetch_call("b", None).await.unwrap(),
                Fetched::Done(CallOutcome::Failed(failure)),
                "{backend}"
            );
        }
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
            store.add_call(&mine, input("1")).await.unwrap();
            assert_eq!(
                store.fetch_call("mine", Some("key-b")).await.unwrap(),
                Fetched::Unknown,
                "{backend}"
            );
            store
                .finish_call("mine", &finished("one"), DEFAULT_RESULT_CAP_BYTES)
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
                store.add_call(&call(&id), input("")).await.unwrap();
                assert!(store.start_call(&id).await.unwrap());
                let rotated = store
                    .finish_call(&id, &finished(&body), 3500)
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
