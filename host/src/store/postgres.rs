//! The shared store: PostgreSQL, for several hosts (nodes) serving the same functions.
//!
//! Every node keeps the same tables in the `functions_host` schema of one database. A change is
//! committed together with a `NOTIFY functions_host` carrying its [`StoreEvent`], and each node
//! `LISTEN`s on a connection of its own: so every node learns of a deploy, delete, appended log
//! line or ended call of any other within milliseconds. When that connection is lost, the node
//! reconnects and announces [`StoreEvent::Missed`], after which its followers read again.
//!
//! Large code (WebAssembly binaries and artifacts, Python packages and snapshots) is stored once
//! by its SHA-256, in `blobs`, and each node keeps the blobs it has read in a cache directory of
//! its own, so a restart or another version with the same code reads nothing again.
//!
//! Schema changes run at start under an advisory lock, so nodes starting together apply each
//! once.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use anyhow::anyhow;
use deadpool_postgres::GenericClient;
use futures_util::StreamExt;
use sha2::Digest;
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;
use tokio_postgres::NoTls;

use super::CALL_TOKEN_BYTES;
use super::CallInput;
use super::CallOutcome;
use super::Claim;
use super::Claimed;
use super::Deployment;
use super::DeploymentSummary;
use super::EVENT_BUFFER;
use super::Fetched;
use super::LOG_LINE_OVERHEAD;
use super::LogLines;
use super::LogSource;
use super::NewDeployment;
use super::OwnedByAnother;
use super::QueueLimits;
use super::Queued;
use super::QueuedCall;
use super::Store;
use super::StoreEvent;
use super::StoreResult;
use super::StoredLog;
use super::columns::CodeColumns;
use super::columns::RuntimeCodeColumns;
use super::columns::SummaryColumns;
use super::columns::module_kind_name;
use super::columns::module_of;
use super::columns::stored_source;
use super::postgres_calls;
use super::random_hex;
use super::unix_millis;

/// The schema the tables live in (the database may hold others').
const SCHEMA: &str = "functions_host";

/// The channel changes are announced on.
const CHANNEL: &str = "functions_host";

/// Advisory lock held while the schema is brought up to date.
const MIGRATION_LOCK: i64 = 0x6668_0001;

/// Advisory lock on `blobs`: shared by a deploy that refers to blobs, exclusive while those no
/// version refers to any more are removed.
const BLOB_LOCK: i64 = 0x6668_0002;

/// Connections each node keeps to the database at most.
const POOL_SIZE: usize = 16;

/// How long a request waits for a connection before failing (the database may be down).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the listening connection waits before connecting again.
const RECONNECT_DELAY: Duration = Duration::from_millis(250);

/// The tables, in the order their changes were made; `schema_version` counts those applied.
/// The first makes them; the second adds the hosts (`nodes`) and their leases on calls.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE functions (
  name TEXT PRIMARY KEY,
  current_version BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  call_token TEXT NOT NULL,
  owner TEXT,
  log_bytes BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE versions (
  name TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
  version BIGINT NOT NULL,
  language TEXT NOT NULL,
  entry TEXT NOT NULL,
  env TEXT NOT NULL,
  isolation TEXT NOT NULL,
  allow_net TEXT NOT NULL,
  executor TEXT NOT NULL,
  limits TEXT NOT NULL,
  public BOOLEAN NOT NULL,
  bindings TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  wasm_binary TEXT,
  wasm_artifact TEXT,
  python_files TEXT,
  python_requirements TEXT,
  python_packages TEXT,
  python_snapshot TEXT,
  PRIMARY KEY (name, version)
);
CREATE TABLE modules (
  name TEXT NOT NULL,
  version BIGINT NOT NULL,
  path TEXT NOT NULL,
  kind TEXT NOT NULL,
  code TEXT NOT NULL,
  source_map TEXT,
  source TEXT,
  PRIMARY KEY (name, version, path),
  FOREIGN KEY (name, version) REFERENCES versions (name, version) ON DELETE CASCADE
);
CREATE TABLE blobs (
  hash TEXT PRIMARY KEY,
  bytes BYTEA NOT NULL
);
CREATE TABLE logs (
  id BIGSERIAL PRIMARY KEY,
  name TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
  timestamp BIGINT NOT NULL,
  level TEXT NOT NULL,
  source TEXT NOT NULL,
  message TEXT NOT NULL
);
CREATE INDEX logs_by_function ON logs (name, id);
CREATE TABLE calls (
  seq BIGSERIAL PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  tenant TEXT,
  state TEXT NOT NULL,
  content_type TEXT,
  query TEXT,
  payload BYTEA NOT NULL,
  created_at BIGINT NOT NULL,
  status INTEGER,
  headers TEXT,
  body BYTEA,
  error TEXT,
  result_bytes BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX calls_by_state ON calls (state, seq);
CREATE INDEX calls_by_function ON calls (name, state, seq);
CREATE TABLE rotated_calls (
  seq BIGSERIAL PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  rotated_at BIGINT NOT NULL
);
",
    "
CREATE TABLE nodes (
  id TEXT PRIMARY KEY,
  heartbeat_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE call_lanes (
  name TEXT PRIMARY KEY
);
ALTER TABLE calls ADD COLUMN node TEXT;
CREATE INDEX calls_by_tenant ON calls (tenant, state);
",
    // The trace each call continues (the W3C traceparent of the request that made it).
    "ALTER TABLE calls ADD COLUMN traceparent TEXT;",
];

/// No connection to the database could be had (it is down, restarting, or refuses more).
#[derive(Debug, thiserror::Error)]
#[error("no connection to PostgreSQL: {0}")]
pub struct NoConnection(String);

/// Deployments, logs and calls in a PostgreSQL database shared by any number of hosts.
pub struct PostgresStore {
    pool: deadpool_postgres::Pool,
    events: broadcast::Sender<StoreEvent>,
    listener: tokio::task::JoinHandle<()>,
    blobs: BlobCache,
    log_cap_bytes: u64,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The connection settings of `url` (`postgres://user@host/db`), with the tables' schema first
/// on the search path.
fn config_of(url: &str) -> StoreResult<tokio_postgres::Config> {
    let mut config = tokio_postgres::Config::from_str(url)
        .with_context(|| "the PostgreSQL address is not a valid connection string".to_owned())?;
    let options = match config.get_options() {
        Some(options) => format!("{options} -c search_path={SCHEMA}"),
        None => format!("-c search_path={SCHEMA}"),
    };
    config.options(&options);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("functions-host");
    }
    Ok(config)
}

/// Where `url` points, for messages (without its password).
fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    format!(
        "PostgreSQL at {} (database {})",
        hosts.join(","),
        config.get_dbname().unwrap_or("of the user's name")
    )
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host/db`, or key=value settings),
    /// brings its tables up to date and starts listening for other hosts' changes. Each
    /// function's logs are capped at `log_cap_bytes`; blobs read are cached in `cache_dir`.
    pub async fn open(
        url: &str,
        log_cap_bytes: u64,
        cache_dir: Option<PathBuf>,
    ) -> StoreResult<Self> {
        let config = config_of(url)?;
        let place = describe(&config);
        let (mut client, connection) = config
            .connect(NoTls)
            .await
            .with_context(|| format!("connecting to {place}"))?;
        let driver = tokio::spawn(connection);
        migrate(&mut client)
            .await
            .with_context(|| format!("preparing the tables in {place}"))?;
        drop(client);
        let _ = driver.await;
        let manager = deadpool_postgres::Manager::from_config(
            config.clone(),
            NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .context("creating the connection pool")?;
        let events = broadcast::channel(EVENT_BUFFER).0;
        let (listening, ready) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listen(config, events.clone(), listening));
        ready
            .await
            .map_err(|_| anyhow!("the listening connection stopped"))?
            .with_context(|| format!("listening for changes on {place}"))?;
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the blob cache {}", dir.display()))?;
        }
        Ok(Self {
            pool,
            events,
            listener,
            blobs: BlobCache { dir: cache_dir },
            log_cap_bytes,
        })
    }

    /// A connection from the pool.
    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        Ok(self
            .pool
            .get()
            .await
            .map_err(|err| NoConnection(err.to_string()))?)
    }
}

/// Brings the tables up to date, one node at a time.
async fn migrate(client: &mut tokio_postgres::Client) -> StoreResult<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {SCHEMA};
         CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);"
    ))
    .await?;
    let applied: Option<i32> = tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await?
        .map(|row| row.get(0));
    if applied.is_none() {
        tx.execute("INSERT INTO schema_version VALUES (0)", &[])
            .await?;
    }
    let applied = applied.unwrap_or(0) as usize;
    if applied > MIGRATIONS.len() {
        anyhow::bail!(
            "the tables are of a newer functions-host (schema {applied}, this one knows {})",
            MIGRATIONS.len()
        );
    }
    for migration in &MIGRATIONS[applied..] {
        tx.batch_execute(migration).await?;
    }
    tx.execute(
        "UPDATE schema_version SET version = $1",
        &[&(MIGRATIONS.len() as i32)],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Listens for changes on a connection of its own and announces them on `events`; connects
/// again whenever the connection is lost, then announces [`StoreEvent::Missed`]. `ready` is
/// answered once the first connection listens (or could not).
async fn listen(
    config: tokio_postgres::Config,
    events: broadcast::Sender<StoreEvent>,
    ready: tokio::sync::oneshot::Sender<StoreResult<()>>,
) {
    let mut ready = Some(ready);
    loop {
        let listening = async {
            let (client, mut connection) = config.connect(NoTls).await?;
            let (notifications, received) = tokio::sync::mpsc::unbounded_channel();
            let driver = tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(Ok(message)) = messages.next().await {
                    if let AsyncMessage::Notification(notification) = message {
                        let _ = notifications.send(notification.payload().to_owned());
                    }
                }
            });
            client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
            StoreResult::Ok((client, driver, received))
        };
        match listening.await {
            Ok((_client, driver, mut received)) => {
                match ready.take() {
                    Some(ready) => {
                        let _ = ready.send(Ok(()));
                    }
                    // Changes made while this node was not listening went unheard.
                    None => {
                        let _ = events.send(StoreEvent::Missed);
                    }
                }
                while let Some(payload) = received.recv().await {
                    match serde_json::from_str(&payload) {
                        Ok(event) => {
                            let _ = events.send(event);
                        }
                        Err(err) => eprintln!(
                            "functions-host: an announcement from the store is not one this \
                             host knows ({err}): {payload}"
                        ),
                    }
                }
                driver.abort();
            }
            Err(err) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(err));
                    return;
                }
            }
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// Announces `event` to every node once `client`'s transaction commits.
pub(super) async fn notify(client: &impl GenericClient, event: &StoreEvent) -> StoreResult<()> {
    let payload = serde_json::to_string(event)?;
    client
        .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
        .await?;
    Ok(())
}

/// Blobs this node has read, in a directory of files named by their hash.
struct BlobCache {
    dir: Option<PathBuf>,
}

/// The name a blob is stored under: its SHA-256, in hex.
fn blob_hash(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl BlobCache {
    fn path(&self, hash: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|dir| dir.join(hash))
    }

    /// Keeps `bytes` as `hash` (written whole, then renamed into place; a failure only means
    /// it is read from the database next time).
    fn keep(&self, hash: &str, bytes: &[u8]) {
        if let Some(path) = self.path(hash)
            && !path.exists()
        {
            let partial = path.with_extension(format!("partial-{}", random_hex(4)));
            if std::fs::write(&partial, bytes).is_ok() {
                let _ = std::fs::rename(&partial, &path);
            }
            let _ = std::fs::remove_file(&partial);
        }
    }

    /// Stores `bytes` in `blobs` unless they are there; their hash.
    async fn put(&self, client: &impl GenericClient, bytes: &[u8]) -> StoreResult<String> {
        let hash = blob_hash(bytes);
        let known = client
            .query_opt("SELECT 1 FROM blobs WHERE hash = $1", &[&hash])
            .await?
            .is_some();
        if !known {
            client
                .execute(
                    "INSERT INTO blobs (hash, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&hash, &bytes],
                )
                .await?;
        }
        self.keep(&hash, bytes);
        Ok(hash)
    }

    /// The blobs named `hashes`, from the cache where it has them, else from the database.
    async fn get(
        &self,
        client: &impl GenericClient,
        hashes: Vec<String>,
    ) -> StoreResult<HashMap<String, Vec<u8>>> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for hash in hashes {
            let cached = self.path(&hash).and_then(|path| std::fs::read(path).ok());
            match cached.filter(|bytes| blob_hash(bytes) == hash) {
                Some(bytes) => {
                    found.insert(hash, bytes);
                }
                None => missing.push(hash),
            }
        }
        if !missing.is_empty() {
            let rows = client
                .query(
                    "SELECT hash, bytes FROM blobs WHERE hash = ANY($1)",
                    &[&missing],
                )
                .await?;
            for row in rows {
                let (hash, bytes): (String, Vec<u8>) = (row.try_get(0)?, row.try_get(1)?);
                self.keep(&hash, &bytes);
                found.insert(hash, bytes);
            }
        }
        Ok(found)
    }
}

/// The columns of a summary, in the order [`summary_of`] reads them.
const SUMMARY_COLUMNS: &str = "v.name, v.version, v.language, v.entry, v.isolation, v.limits, \
     v.public, f.call_token, v.created_at, f.created_at, f.owner";

/// A summary from a row whose first columns are [`SUMMARY_COLUMNS`].
fn summary_of(row: &tokio_postgres::Row) -> StoreResult<DeploymentSummary> {
    SummaryColumns {
        name: row.try_get(0)?,
        version: row.try_get::<_, i64>(1)? as u64,
        language: row.try_get(2)?,
        entry: row.try_get(3)?,
        isolation: row.try_get(4)?,
        limits: row.try_get(5)?,
        public: row.try_get(6)?,
        call_token: row.try_get(7)?,
        deployed_at: row.try_get(8)?,
        created_at: row.try_get(9)?,
        owner: row.try_get(10)?,
    }
    .parse()
}

impl PostgresStore {
    /// The current versions, code included, of `name` or of every function; read in one
    /// snapshot of the database.
    async fn current(&self, name: Option<&str>) -> StoreResult<Vec<Deployment>> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let rows = tx
            .query(
                &format!(
                    "SELECT {SUMMARY_COLUMNS}, v.env, v.allow_net, v.executor, v.bindings,
                            v.wasm_binary, v.wasm_artifact, v.python_files,
                            v.python_requirements, v.python_packages, v.python_snapshot
                     FROM functions f
                     JOIN versions v ON v.name = f.name AND v.version = f.current_version
                     WHERE $1::TEXT IS NULL OR f.name = $1 ORDER BY f.name"
                ),
                &[&name],
            )
            .await?;
        let mut modules: HashMap<String, BTreeMap<String, functions_runtime::Module>> =
            HashMap::new();
        for row in tx
            .query(
                "SELECT m.name, m.path, m.kind, m.code, m.source_map, m.source
                 FROM functions f
                 JOIN modules m ON m.name = f.name AND m.version = f.current_version
                 WHERE $1::TEXT IS NULL OR f.name = $1",
                &[&name],
            )
            .await?
        {
            let kind: String = row.try_get(2)?;
            let module = module_of(&kind, row.try_get(3)?, row.try_get(4)?, row.try_get(5)?)?;
            modules
                .entry(row.try_get(0)?)
                .or_default()
                .insert(row.try_get(1)?, module);
        }
        let hashes: Vec<String> = rows
            .iter()
            .flat_map(|row| [15, 16, 19, 20].map(|i| row.get::<_, Option<String>>(i)))
            .flatten()
            .collect();
        let blobs = self.blobs.get(&tx, hashes).await?;
        let blob = |row: &tokio_postgres::Row, i: usize| -> StoreResult<Option<Vec<u8>>> {
            match row.try_get::<_, Option<String>>(i)? {
                Some(hash) => match blobs.get(&hash) {
                    Some(bytes) => Ok(Some(bytes.clone())),
                    None => Err(anyhow!("blob {hash} is missing from the store")),
                },
                None => Ok(None),
            }
        };
        let mut deployments = Vec::new();
        for row in &rows {
            let summary = summary_of(row)?;
            let wasm = blob(row, 15)?.zip(blob(row, 16)?);
            let runtime_code = match (row.try_get(17)?, row.try_get(18)?) {
                (Some(files), Some(requirements)) => Some(RuntimeCodeColumns {
                    files,
                    requirements,
                    packages: blob(row, 19)?.unwrap_or_default(),
                    snapshot: blob(row, 20)?.unwrap_or_default(),
                }),
                _ => None,
            };
            let code = CodeColumns {
                env: row.try_get(11)?,
                allow_net: row.try_get(12)?,
                executor: row.try_get(13)?,
                bindings: row.try_get(14)?,
                wasm,
                runtime_code,
            };
            let modules = modules.remove(&summary.name).unwrap_or_default();
            deployments.push(code.parse(summary, modules)?);
        }
        tx.commit().await?;
        Ok(deployments)
    }
}

/// Removes the blobs no version refers to any more (with the exclusive blob lock held).
async fn collect_blobs(client: &impl GenericClient) -> StoreResult<()> {
    client
        .execute(
            "DELETE FROM blobs b WHERE NOT EXISTS (
               SELECT 1 FROM versions v
               WHERE b.hash IN (v.wasm_binary, v.wasm_artifact, v.python_packages,
                                v.python_snapshot))",
            &[],
        )
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn deploy(&self, new: NewDeployment) -> StoreResult<Deployment> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&BLOB_LOCK])
            .await?;
        // The database's clock, not this node's: which deployment of a name is the later one
        // must not depend on which node made it.
        let now: i64 = tx
            .query_one(
                "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
                &[],
            )
            .await?
            .try_get(0)?;
        // A new function's row first: deploys of one name, from any node, then take turns.
        let created = tx
            .execute(
                "INSERT INTO functions (name, current_version, created_at, updated_at, call_token,
                                        owner)
                 VALUES ($1, 0, $2, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                &[&new.name, &now, &random_hex(CALL_TOKEN_BYTES), &new.owner],
            )
            .await?
            == 1;
        let owner: Option<String> = tx
            .query_one(
                "SELECT owner FROM functions WHERE name = $1 FOR UPDATE",
                &[&new.name],
            )
            .await?
            .try_get(0)?;
        if !created
            && let Some(claim) = &new.owner
            && owner.as_ref() != Some(claim)
        {
            return Err(OwnedByAnother(new.name).into());
        }
        let version: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE name = $1",
                &[&new.name],
            )
            .await?
            .try_get(0)?;
        let (wasm_binary, wasm_artifact) = match &new.wasm {
            Some(wasm) => (
                Some(self.blobs.put(&tx, &wasm.binary).await?),
                Some(self.blobs.put(&tx, &wasm.artifact).await?),
            ),
            None => (None, None),
        };
        // The `python_*` columns hold C# functions' code too: their names predate C#, and
        // renaming them would break nodes of an older version still serving the database.
        let (python_files, python_requirements, python_packages, python_snapshot) =
            match &new.runtime_code {
                Some(code) => (
                    Some(serde_json::to_string(&code.files)?),
                    Some(serde_json::to_string(&code.requirements)?),
                    Some(
                        self.blobs
                            .put(
                                &tx,
                                &functions_pyodide::wheels::encode_files(&code.packages),
                            )
                            .await?,
                    ),
                    Some(self.blobs.put(&tx, &code.snapshot).await?),
                ),
                None => (None, None, None, None),
            };
        tx.execute(
            "INSERT INTO versions (name, version, language, entry, env, isolation, allow_net,
                                   executor, limits, public, bindings, created_at, wasm_binary,
                                   wasm_artifact, python_files, python_requirements,
                                   python_packages, python_snapshot)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                     $18)",
            &[
                &new.name,
                &version,
                &new.language.as_str(),
                &new.entry,
                &serde_json::to_string(&new.env)?,
                &new.isolation.as_str(),
                &serde_json::to_string(&new.allow_net)?,
                &new.executor.as_str(),
                &serde_json::to_string(&new.limits)?,
                &new.public,
                &serde_json::to_string(&new.bindings)?,
                &now,
                &wasm_binary,
                &wasm_artifact,
                &python_files,
                &python_requirements,
                &python_packages,
                &python_snapshot,
            ],
        )
        .await?;
        let insert = tx
            .prepare(
                "INSERT INTO modules (name, version, path, kind, code, source_map, source)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .await?;
        for (path, module) in &new.modules {
            tx.execute(
                &insert,
                &[
                    &new.name,
                    &version,
                    path,
                    &module_kind_name(module.kind),
                    &&*module.code,
                    &module.source_map.as_deref(),
                    &stored_source(module),
                ],
            )
            .await?;
        }
        let row = tx
            .query_one(
                "UPDATE functions SET current_version = $2, updated_at = $3 WHERE name = $1
                 RETURNING created_at, call_token, owner",
                &[&new.name, &version, &now],
            )
            .await?;
        let (created_at, call_token, owner) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let event = StoreEvent::Deployed {
            name: new.name.clone(),
            version: version as u64,
        };
        notify(&tx, &event).await?;
        tx.commit().await?;
        Ok(new.stored(version as u64, call_token, owner, (now, created_at)))
    }

    async fn current_deployments(&self) -> StoreResult<Vec<Deployment>> {
        self.current(None).await
    }

    async fn list(&self) -> StoreResult<Vec<DeploymentSummary>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {SUMMARY_COLUMNS} FROM functions f
                     JOIN versions v ON v.name = f.name AND v.version = f.current_version
                     ORDER BY f.name"
                ),
                &[],
            )
            .await?;
        rows.iter().map(summary_of).collect()
    }

    async fn get(&self, name: &str) -> StoreResult<Option<Deployment>> {
        Ok(self.current(Some(name)).await?.pop())
    }

    async fn delete(&self, name: &str, owner: Option<&str>) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Locks in a deploy's order (blobs, then the function's row), so the two never wait
        // for each other in a circle.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&BLOB_LOCK])
            .await?;
        // Its versions, modules and logs go with it.
        let deleted = tx
            .execute(
                "DELETE FROM functions WHERE name = $1 AND ($2::TEXT IS NULL OR owner = $2)",
                &[&name, &owner],
            )
            .await?
            > 0;
        if deleted {
            collect_blobs(&tx).await?;
            let event = StoreEvent::Deleted {
                name: name.to_owned(),
            };
            notify(&tx, &event).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn replace_snapshot(
        &self,
        name: &str,
        version: u64,
        snapshot: Arc<[u8]>,
    ) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&BLOB_LOCK])
            .await?;
        let hash = self.blobs.put(&tx, &snapshot).await?;
        let changed = tx
            .execute(
                "UPDATE versions SET python_snapshot = $3
                 WHERE name = $1 AND version = $2 AND python_snapshot IS NOT NULL",
                &[&name, &(version as i64), &hash],
            )
            .await?;
        tx.commit().await?;
        Ok(changed > 0)
    }

    async fn rotate_call_token(
        &self,
        name: &str,
        owner: Option<&str>,
    ) -> StoreResult<Option<String>> {
        let token = random_hex(CALL_TOKEN_BYTES);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE functions SET call_token = $2
                 WHERE name = $1 AND ($3::TEXT IS NULL OR owner = $3)",
                &[&name, &token, &owner],
            )
            .await?;
        if changed == 0 {
            return Ok(None);
        }
        let event = StoreEvent::TokenRotated {
            name: name.to_owned(),
        };
        notify(&tx, &event).await?;
        tx.commit().await?;
        Ok(Some(token))
    }

    async fn append_logs(&self, batch: Vec<LogLines>) -> StoreResult<()> {
        let mut batch: Vec<_> = batch
            .into_iter()
            .filter(|lines| !lines.entries.is_empty())
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        // Functions are locked in name order, so that two nodes' batches never wait for each
        // other in a circle.
        batch.sort_by(|a, b| a.name.cmp(&b.name));
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        for LogLines {
            name,
            owner,
            entries,
        } in &batch
        {
            // The function's row is held until commit: its lines get their ids, and are
            // committed, one batch after another, so ids grow in the order lines become
            // visible (a follower reading past an id misses none).
            let current = tx
                .query_opt(
                    "SELECT owner FROM functions WHERE name = $1 FOR UPDATE",
                    &[name],
                )
                .await?;
            match current {
                Some(row) if row.try_get::<_, Option<String>>(0)? == *owner => {}
                _ => continue,
            }
            let timestamps: Vec<i64> = entries.iter().map(|e| unix_millis(e.timestamp)).collect();
            let levels: Vec<&str> = entries.iter().map(|e| e.level).collect();
            let sources: Vec<&str> = entries.iter().map(|e| e.source.as_str()).collect();
            // PostgreSQL's text holds no NUL: shown as U+FFFD, as invalid UTF-8 is.
            let messages: Vec<String> = entries
                .iter()
                .map(|e| e.message.replace('\0', "\u{FFFD}"))
                .collect();
            tx.execute(
                "INSERT INTO logs (name, timestamp, level, source, message)
                 SELECT $1, * FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[])",
                &[name, &timestamps, &levels, &sources, &messages],
            )
            .await?;
            let added: i64 = entries
                .iter()
                .map(|e| (e.message.len() as u64 + LOG_LINE_OVERHEAD) as i64)
                .sum();
            let total: i64 = tx
                .query_one(
                    "UPDATE functions SET log_bytes = log_bytes + $2 WHERE name = $1
                     RETURNING log_bytes",
                    &[name, &added],
                )
                .await?
                .try_get(0)?;
            let cap = self.log_cap_bytes as i64;
            if total > cap {
                trim_logs(&tx, name, total - cap).await?;
            }
            let event = StoreEvent::Logged { name: name.clone() };
            notify(&tx, &event).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn logs(
        &self,
        name: &str,
        after: i64,
        limit: u32,
        owner: Option<&str>,
    ) -> StoreResult<Vec<StoredLog>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, timestamp, level, source, message FROM logs
                 WHERE name = $1 AND id > $2
                   AND ($4::TEXT IS NULL OR EXISTS
                        (SELECT 1 FROM functions f WHERE f.name = $1 AND f.owner = $4))
                 ORDER BY id LIMIT $3",
                &[&name, &after, &i64::from(limit), &owner],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredLog {
                    id: row.try_get(0)?,
                    timestamp: row.try_get(1)?,
                    level: row.try_get(2)?,
                    source: LogSource::parse(row.try_get(3)?),
                    message: row.try_get(4)?,
                })
            })
            .collect()
    }

    async fn add_call(
        &self,
        call: &QueuedCall,
        input: CallInput,
        limits: QueueLimits,
    ) -> StoreResult<Queued> {
        postgres_calls::add(&mut *self.client().await?, call, input, limits).await
    }

    async fn claim_calls(&self, claim: Claim) -> StoreResult<Claimed> {
        postgres_calls::claim(&mut *self.client().await?, &claim).await
    }

    async fn release_call(&self, id: &str, node: &str) -> StoreResult<()> {
        postgres_calls::release(&mut *self.client().await?, id, node).await
    }

    async fn call_input(&self, id: &str) -> StoreResult<Option<CallInput>> {
        postgres_calls::input(&self.client().await?, id).await
    }

    async fn start_call(&self, id: &str, node: &str) -> StoreResult<bool> {
        postgres_calls::start(&self.client().await?, id, node).await
    }

    async fn finish_call(
        &self,
        id: &str,
        node: &str,
        outcome: &CallOutcome,
        cap: u64,
    ) -> StoreResult<Vec<String>> {
        postgres_calls::finish(&mut *self.client().await?, id, node, outcome, cap).await
    }

    async fn fetch_call(&self, id: &str, tenant: Option<&str>) -> StoreResult<Fetched> {
        postgres_calls::fetch(&self.client().await?, id, tenant).await
    }

    async fn pending_calls(&self) -> StoreResult<Vec<(String, usize)>> {
        postgres_calls::pending(&self.client().await?).await
    }

    async fn heartbeat(&self, node: &str) -> StoreResult<usize> {
        postgres_calls::heartbeat(&self.client().await?, node).await
    }

    async fn reap_calls(&self, node: &str, holding: &[String]) -> StoreResult<Vec<QueuedCall>> {
        postgres_calls::reap(&mut *self.client().await?, node, holding).await
    }

    fn events(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    fn shared(&self) -> bool {
        true
    }
}

/// Drops function `name`'s oldest log lines until at least `excess` bytes are freed.
async fn trim_logs(client: &impl GenericClient, name: &str, excess: i64) -> StoreResult<()> {
    let (mut freed, mut cutoff) = (0i64, 0i64);
    while freed < excess {
        let rows = client
            .query(
                "SELECT id, octet_length(message) FROM logs WHERE name = $1 AND id > $2
                 ORDER BY id LIMIT 1000",
                &[&name, &cutoff],
            )
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            cutoff = row.try_get(0)?;
            freed += i64::from(row.try_get::<_, i32>(1)?) + LOG_LINE_OVERHEAD as i64;
            if freed >= excess {
                break;
            }
        }
    }
    client
        .execute(
            "DELETE FROM logs WHERE name = $1 AND id <= $2",
            &[&name, &cutoff],
        )
        .await?;
    client
        .execute(
            "UPDATE functions SET log_bytes = log_bytes - $2 WHERE name = $1",
            &[&name, &freed],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::new;
    use super::*;
    use crate::store::DEFAULT_LOG_CAP_BYTES;
    use crate::store::StoredWasm;

    async fn database() -> String {
        tokio::task::spawn_blocking(functions_test_postgres::database)
            .await
            .unwrap()
    }

    async fn open(url: &str) -> PostgresStore {
        PostgresStore::open(url, DEFAULT_LOG_CAP_BYTES, None)
            .await
            .unwrap()
    }

    /// The next event, within a few seconds.
    async fn next(events: &mut broadcast::Receiver<StoreEvent>) -> StoreEvent {
        tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an event")
            .expect("an open channel")
    }

    #[tokio::test]
    async fn nodes_starting_together_share_one_schema_and_hear_each_others_changes() {
        let url = database().await;
        let opened = futures_util::future::join_all((0..4).map(|_| open(&url))).await;
        let (a, b) = (&opened[0], &opened[3]);
        let mut heard_by_b = b.events();
        a.deploy(new("f", "v1")).await.unwrap();
        assert_eq!(
            next(&mut heard_by_b).await,
            StoreEvent::Deployed {
                name: "f".into(),
                version: 1
            }
        );
        assert_eq!(b.get("f").await.unwrap().unwrap().version(), 1);
        let mut heard_by_a = a.events();
        b.append_logs(vec![LogLines {
            name: "f".into(),
            owner: None,
            entries: vec![crate::store::LogEntry::from_host("info", "hi".into())],
        }])
        .await
        .unwrap();
        assert!(b.delete("f", None).await.unwrap());
        assert_eq!(
            next(&mut heard_by_a).await,
            StoreEvent::Logged { name: "f".into() }
        );
        assert_eq!(
            next(&mut heard_by_a).await,
            StoreEvent::Deleted { name: "f".into() }
        );
        assert!(a.get("f").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn code_is_stored_once_by_hash_cached_per_node_and_removed_with_its_last_version() {
        let url = database().await;
        let cache = tempfile::tempdir().unwrap();
        let store = PostgresStore::open(&url, DEFAULT_LOG_CAP_BYTES, Some(cache.path().into()))
            .await
            .unwrap();
        let wasm = StoredWasm {
            binary: Arc::from(&b"\0asm binary"[..]),
            artifact: Arc::from(&b"compiled"[..]),
        };
        for name in ["a", "a", "b"] {
            let deployment = NewDeployment {
                wasm: Some(wasm.clone()),
                modules: BTreeMap::new(),
                ..new(name, "")
            };
            store.deploy(deployment).await.unwrap();
        }
        let count = || async {
            let client = store.client().await.unwrap();
            client
                .query_one("SELECT count(*) FROM blobs", &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        };
        assert_eq!(count().await, 2, "a binary and an artifact, each once");
        let cached = std::fs::read_dir(cache.path()).unwrap().count();
        assert_eq!(cached, 2);
        // Read from the cache, and from the database once the cache is gone.
        let read = store.get("a").await.unwrap().unwrap().wasm.unwrap();
        assert_eq!(
            (read.binary, read.artifact),
            (wasm.binary.clone(), wasm.artifact.clone())
        );
        std::fs::remove_dir_all(cache.path()).unwrap();
        std::fs::create_dir(cache.path()).unwrap();
        let read = store.get("b").await.unwrap().unwrap().wasm.unwrap();
        assert_eq!(read.binary, wasm.binary);
        assert!(store.delete("a", None).await.unwrap());
        assert_eq!(count().await, 2, "b still has them");
        assert!(store.delete("b", None).await.unwrap());
        assert_eq!(count().await, 0);
    }

    #[tokio::test]
    async fn a_lost_connection_is_announced_and_the_store_works_again_after() {
        // Started on this test's thread, which the server lives no longer than.
        let cluster = functions_test_postgres::Cluster::start();
        let url = cluster.create_database();
        let store = open(&url).await;
        let mut events = store.events();
        store.deploy(new("f", "v1")).await.unwrap();
        assert!(matches!(
            next(&mut events).await,
            StoreEvent::Deployed { .. }
        ));
        cluster.stop();
        assert!(store.list().await.is_err());
        cluster.start_server();
        assert_eq!(next(&mut events).await, StoreEvent::Missed);
        assert_eq!(store.list().await.unwrap()[0].version, 1);
        store.deploy(new("f", "v2")).await.unwrap();
        assert_eq!(
            next(&mut events).await,
            StoreEvent::Deployed {
                name: "f".into(),
                version: 2
            }
        );
    }

    #[tokio::test]
    async fn a_host_whose_lease_ran_out_has_its_calls_taken_over_once() {
        use crate::store::Claim;
        use crate::store::QueueLimits;
        let url = database().await;
        let (a, b) = (open(&url).await, open(&url).await);
        let limits = QueueLimits {
            concurrency: 5,
            max_pending: 5,
        };
        for id in ["x", "y", "z"] {
            let call = QueuedCall {
                id: id.into(),
                name: "f".into(),
                tenant: None,
            };
            a.add_call(&call, CallInput::default(), limits)
                .await
                .unwrap();
        }
        assert_eq!(a.heartbeat("a").await.unwrap(), 1);
        assert_eq!(b.heartbeat("b").await.unwrap(), 2);
        let claim = Claim {
            node: "a".into(),
            name: "f".into(),
            concurrency: 5,
            max: 2,
            tenant_quota: Arc::new(|_| 10),
        };
        assert_eq!(a.claim_calls(claim).await.unwrap().calls.len(), 2);
        assert!(a.start_call("x", "a").await.unwrap());
        // A live host is left alone.
        assert!(b.reap_calls("b", &[]).await.unwrap().is_empty());
        let client = b.client().await.unwrap();
        client
            .execute(
                "UPDATE nodes SET heartbeat_at = now() - interval '1 minute' WHERE id = 'a'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(b.heartbeat("b").await.unwrap(), 1, "a is not live");
        let adopted = b.reap_calls("b", &[]).await.unwrap();
        assert_eq!(adopted.iter().map(|c| &*c.id).collect::<Vec<_>>(), ["x"]);
        assert!(
            a.reap_calls("a", &[]).await.unwrap().is_empty(),
            "taken over once"
        );
        assert!(!a.start_call("y", "a").await.unwrap(), "y is no longer a's");
        assert_eq!(b.pending_calls().await.unwrap(), [("f".to_owned(), 2)]);
    }
}
