//! The default store: embedded SQLite (WAL) in a data directory. Versions survive restarts, a
//! redeploy swaps the current version in one transaction, each function's logs are capped
//! (oldest out first), and queued calls and unfetched results outlive the process (see
//! `sqlite_calls.rs`).
//!
//! The database is used from threads of its own, never from the caller's: one connection
//! writes, another reads (WAL lets it read while a write is under way), each on its thread,
//! taking jobs in order. So no async task blocks on SQLite, and reads do not queue behind a large
//! blob being written.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use anyhow::Context;
use anyhow::anyhow;
use functions_runtime::Module;
use rusqlite::Connection;
use rusqlite::OptionalExtension;
use rusqlite::params;
use tokio::sync::broadcast;
use tokio::sync::oneshot;

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
use super::random_hex;
use super::unix_millis;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS functions (
  name TEXT PRIMARY KEY,
  current_version INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  log_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS versions (
  name TEXT NOT NULL,
  version INTEGER NOT NULL,
  language TEXT NOT NULL,
  entry TEXT NOT NULL,
  source TEXT NOT NULL,
  env TEXT NOT NULL,
  isolation TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  timestamp INTEGER NOT NULL,
  level TEXT NOT NULL,
  message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_function ON logs (name, id);
CREATE TABLE IF NOT EXISTS modules (
  name TEXT NOT NULL,
  version INTEGER NOT NULL,
  path TEXT NOT NULL,
  kind TEXT NOT NULL,
  code TEXT NOT NULL,
  source_map TEXT,
  source TEXT,
  PRIMARY KEY (name, version, path)
);
";

/// Changes to the tables since their first shape, applied in order; `PRAGMA user_version` counts
/// those applied.
/// Version 1 stored one JavaScript file per version in `versions.source`; since version 2 the
/// compiled modules are in `modules` (a version without rows there is still that one file).
/// Version 3 adds WebAssembly functions: the binary and its compiled artifact per version.
/// Version 4 adds per-version limits and visibility, each function's call token, and the
/// asynchronous calls with the ids of results rotated out of the result cache.
/// Version 5 keeps a call's query string, and a failed call's error as the host's JSON form of
/// it (`error`) instead of an HTTP response. Later ones say what they add.
const MIGRATIONS: &[&str] = &[
    "ALTER TABLE versions ADD COLUMN allow_net TEXT NOT NULL DEFAULT '[]'",
    "ALTER TABLE versions ADD COLUMN executor TEXT NOT NULL DEFAULT 'command';
     CREATE TABLE wasm (
       name TEXT NOT NULL,
       version INTEGER NOT NULL,
       binary BLOB NOT NULL,
       artifact BLOB NOT NULL,
       PRIMARY KEY (name, version)
     );",
    "ALTER TABLE versions ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
     ALTER TABLE versions ADD COLUMN public INTEGER NOT NULL DEFAULT 1;
     ALTER TABLE functions ADD COLUMN call_token TEXT;
     CREATE TABLE calls (
       seq INTEGER PRIMARY KEY AUTOINCREMENT,
       id TEXT NOT NULL UNIQUE,
       name TEXT NOT NULL,
       tenant TEXT,
       state TEXT NOT NULL,
       content_type TEXT,
       payload BLOB NOT NULL,
       created_at INTEGER NOT NULL,
       status INTEGER,
       headers TEXT,
       body BLOB,
       result_bytes INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX calls_by_state ON calls (state, seq);
     CREATE INDEX calls_by_function ON calls (name, state, seq);
     CREATE TABLE rotated_calls (
       id TEXT PRIMARY KEY,
       name TEXT NOT NULL,
       rotated_at INTEGER NOT NULL
     );",
    "ALTER TABLE calls ADD COLUMN query TEXT;
     ALTER TABLE calls ADD COLUMN error TEXT;",
    // Who wrote each log line (lines from before are taken as the function's).
    "ALTER TABLE logs ADD COLUMN source TEXT NOT NULL DEFAULT 'function';",
    // The tenant that first deployed each function (none for those from before).
    "ALTER TABLE functions ADD COLUMN owner TEXT;",
    // Python functions: their files (JSON, path to text), requirements (JSON) and the files
    // those resolved to (functions_pyodide::wheels::encode_files), and memory snapshot per
    // version.
    "CREATE TABLE python (
       name TEXT NOT NULL,
       version INTEGER NOT NULL,
       files TEXT NOT NULL,
       requirements TEXT NOT NULL,
       packages BLOB NOT NULL,
       snapshot BLOB NOT NULL,
       PRIMARY KEY (name, version)
     );",
    // The functions each version may call (JSON, binding name to function name).
    "ALTER TABLE versions ADD COLUMN bindings TEXT NOT NULL DEFAULT '{}';",
    // The host that claimed each pending call or runs it (a pending call with one is claimed).
    "ALTER TABLE calls ADD COLUMN node TEXT;
     CREATE INDEX calls_by_tenant ON calls (tenant, state);",
    // The trace each call continues (the W3C traceparent of the request that made it).
    "ALTER TABLE calls ADD COLUMN traceparent TEXT;",
    // The table of Python functions' code holds C# functions' too.
    "ALTER TABLE python RENAME TO runtime_code;",
];

/// A job for a database thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A connection on a thread of its own, running jobs in the order they are sent. The thread
/// ends when the handle is dropped.
struct DbThread {
    jobs: mpsc::Sender<Job>,
}

impl DbThread {
    fn spawn(name: &str, mut conn: Connection) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                for job in queue {
                    job(&mut conn);
                }
            })?;
        Ok(Self { jobs })
    }

    /// Runs `job` on the thread and returns what it returns.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = reply.send(job(conn));
            }))
            .map_err(|_| anyhow!("the database thread is gone"))?;
        answer
            .await
            .map_err(|_| anyhow!("the database thread stopped during a query"))?
    }
}

/// Deployments, logs and calls in `functions.db` of a data directory.
pub struct SqliteStore {
    writer: DbThread,
    reader: DbThread,
    events: broadcast::Sender<StoreEvent>,
    log_cap_bytes: u64,
}

/// Opens a connection to `path` as every connection of the store is set up.
fn connect(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) `dir/functions.db`. Each function's logs are
    /// capped at `log_cap_bytes`. Runs on the calling thread (once, at startup).
    pub fn open(dir: &Path, log_cap_bytes: u64) -> StoreResult<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
        let path = dir.join("functions.db");
        let writer = connect(&path)?;
        writer.execute_batch(SCHEMA)?;
        migrate(&writer)?;
        // Functions deployed before call tokens existed get theirs.
        let untokened: Vec<String> = writer
            .prepare("SELECT name FROM functions WHERE call_token IS NULL")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        for name in untokened {
            writer.execute(
                "UPDATE functions SET call_token = ?2 WHERE name = ?1",
                params![name, random_hex(CALL_TOKEN_BYTES)],
            )?;
        }
        let reader = connect(&path)?;
        Ok(Self {
            writer: DbThread::spawn("functions-db-write", writer)?,
            reader: DbThread::spawn("functions-db-read", reader)?,
            events: broadcast::channel(EVENT_BUFFER).0,
            log_cap_bytes,
        })
    }

    /// Announces `event` (nobody listening is fine).
    pub(super) fn announce(&self, event: StoreEvent) {
        let _ = self.events.send(event);
    }

    /// Runs `job` on the writing connection.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.writer.run(job).await
    }

    /// Runs `job` on the reading connection.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.reader.run(job).await
    }
}

/// The columns of a summary, in the order [`summary_of`] reads them.
const SUMMARY_COLUMNS: &str = "v.name, v.version, v.language, v.entry, v.isolation, v.limits, \
     v.public, f.call_token, v.created_at, f.created_at, f.owner";

/// A summary from a row whose first columns are [`SUMMARY_COLUMNS`].
fn summary_of(row: &rusqlite::Row) -> StoreResult<DeploymentSummary> {
    SummaryColumns {
        name: row.get(0)?,
        version: row.get(1)?,
        language: row.get(2)?,
        entry: row.get(3)?,
        isolation: row.get(4)?,
        limits: row.get(5)?,
        public: row.get(6)?,
        call_token: row.get(7)?,
        deployed_at: row.get(8)?,
        created_at: row.get(9)?,
        owner: row.get(10)?,
    }
    .parse()
}

/// The current versions, code included, of `name` or of every function.
fn query_current(conn: &Connection, name: Option<&str>) -> StoreResult<Vec<Deployment>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SUMMARY_COLUMNS}, v.source, v.env, v.allow_net, v.executor, w.binary, w.artifact,
                p.files, p.requirements, p.packages, p.snapshot, v.bindings
         FROM functions f JOIN versions v ON v.name = f.name AND v.version = f.current_version
         LEFT JOIN wasm w ON w.name = v.name AND w.version = v.version
         LEFT JOIN runtime_code p ON p.name = v.name AND p.version = v.version
         WHERE ?1 IS NULL OR f.name = ?1 ORDER BY f.name"
    ))?;
    let mut rows = stmt.query([name])?;
    let mut deployments = Vec::new();
    while let Some(row) = rows.next()? {
        let summary = summary_of(row)?;
        let source: String = row.get(11)?;
        let binary: Option<Vec<u8>> = row.get(15)?;
        let artifact: Option<Vec<u8>> = row.get(16)?;
        let runtime_code = match (row.get(17)?, row.get(18)?, row.get(19)?, row.get(20)?) {
            (Some(files), Some(requirements), Some(packages), Some(snapshot)) => {
                Some(RuntimeCodeColumns {
                    files,
                    requirements,
                    packages,
                    snapshot,
                })
            }
            _ => None,
        };
        let code = CodeColumns {
            env: row.get(12)?,
            allow_net: row.get(13)?,
            executor: row.get(14)?,
            bindings: row.get(21)?,
            wasm: binary.zip(artifact),
            runtime_code,
        };
        let mut modules = query_modules(conn, &summary.name, summary.version)?;
        // A version stored before modules were is its entry alone.
        if modules.is_empty() && code.wasm.is_none() && code.runtime_code.is_none() {
            modules.insert(summary.entry.clone(), Module::javascript(source));
        }
        deployments.push(code.parse(summary, modules)?);
    }
    Ok(deployments)
}

/// The stored modules of one version, by path.
fn query_modules(
    conn: &Connection,
    name: &str,
    version: u64,
) -> StoreResult<BTreeMap<String, Module>> {
    let mut stmt = conn.prepare_cached(
        "SELECT path, kind, code, source_map, source FROM modules WHERE name = ?1 AND version = ?2",
    )?;
    let mut rows = stmt.query(params![name, version])?;
    let mut modules = BTreeMap::new();
    while let Some(row) = rows.next()? {
        let kind: String = row.get(1)?;
        let module = module_of(&kind, row.get(2)?, row.get(3)?, row.get(4)?)?;
        modules.insert(row.get::<_, String>(0)?, module);
    }
    Ok(modules)
}

/// Stores a new version of a function and makes it current, in one transaction.
/// The owner of function `name` (`Some(None)`: no key's), or `None` when there is no such
/// function.
fn current_owner(conn: &Connection, name: &str) -> StoreResult<Option<Option<String>>> {
    Ok(conn
        .query_row(
            "SELECT owner FROM functions WHERE name = ?1",
            [name],
            |row| row.get(0),
        )
        .optional()?)
}

fn insert_deployment(conn: &mut Connection, new: NewDeployment) -> StoreResult<Deployment> {
    let now = unix_millis(std::time::SystemTime::now());
    let env = serde_json::to_string(&new.env)?;
    let allow_net = serde_json::to_string(&new.allow_net)?;
    let bindings = serde_json::to_string(&new.bindings)?;
    let limits = serde_json::to_string(&new.limits)?;
    let entry_source = new
        .modules
        .get(&new.entry)
        .map_or("", |module| &*module.source);
    let tx = conn.transaction()?;
    let existing = current_owner(&tx, &new.name)?;
    if let (Some(claim), Some(owner)) = (&new.owner, &existing)
        && owner.as_ref() != Some(claim)
    {
        return Err(OwnedByAnother(new.name).into());
    }
    let version: u64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE name = ?1",
        [&new.name],
        |row| row.get(0),
    )?;
    tx.execute(
        "INSERT INTO versions (name, version, language, entry, source, env, isolation, allow_net,
                               executor, created_at, limits, public, bindings)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            new.name,
            version,
            new.language.as_str(),
            new.entry,
            entry_source,
            env,
            new.isolation.as_str(),
            allow_net,
            new.executor.as_str(),
            now,
            limits,
            new.public,
            bindings
        ],
    )?;
    if let Some(wasm) = &new.wasm {
        tx.execute(
            "INSERT INTO wasm (name, version, binary, artifact) VALUES (?1, ?2, ?3, ?4)",
            params![new.name, version, &*wasm.binary, &*wasm.artifact],
        )?;
    }
    if let Some(code) = &new.runtime_code {
        tx.execute(
            "INSERT INTO runtime_code (name, version, files, requirements, packages, snapshot)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                new.name,
                version,
                serde_json::to_string(&code.files)?,
                serde_json::to_string(&code.requirements)?,
                functions_pyodide::wheels::encode_files(&code.packages),
                &*code.snapshot
            ],
        )?;
    }
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO modules (name, version, path, kind, code, source_map, source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (path, module) in &new.modules {
            insert.execute(params![
                new.name,
                version,
                path,
                module_kind_name(module.kind),
                &*module.code,
                module.source_map.as_deref(),
                stored_source(module)
            ])?;
        }
    }
    // A function new under this name starts with no logs (a store written before lines were
    // kept to their owner's function may hold lines of an earlier one).
    if existing.is_none() {
        tx.execute("DELETE FROM logs WHERE name = ?1", [&new.name])?;
    }
    tx.execute(
        "INSERT INTO functions (name, current_version, created_at, updated_at, call_token, owner)
         VALUES (?1, ?2, ?3, ?3, ?4, ?5)
         ON CONFLICT (name) DO UPDATE SET current_version = excluded.current_version,
                                          updated_at = excluded.updated_at",
        params![
            new.name,
            version,
            now,
            random_hex(CALL_TOKEN_BYTES),
            new.owner
        ],
    )?;
    let (created_at, call_token, owner): (i64, String, Option<String>) = tx.query_row(
        "SELECT created_at, call_token, owner FROM functions WHERE name = ?1",
        [&new.name],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    tx.commit()?;
    Ok(new.stored(version, call_token, owner, (now, created_at)))
}

/// Appends each function's lines (those of its current owner), then drops its oldest lines past
/// `cap`; one transaction. The names of the functions that got lines.
fn insert_logs(conn: &mut Connection, batch: &[LogLines], cap: u64) -> StoreResult<Vec<String>> {
    let tx = conn.transaction()?;
    let mut logged = Vec::new();
    for LogLines {
        name,
        owner,
        entries,
    } in batch
    {
        if current_owner(&tx, name)?.as_ref() != Some(owner) {
            continue;
        }
        logged.push(name.clone());
        let mut added = 0u64;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO logs (name, timestamp, level, source, message)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for entry in entries {
                insert.execute(params![
                    name,
                    unix_millis(entry.timestamp),
                    entry.level,
                    entry.source.as_str(),
                    entry.message
                ])?;
                added += entry.message.len() as u64 + LOG_LINE_OVERHEAD;
            }
        }
        let total: Option<u64> = tx
            .query_row(
                "UPDATE functions SET log_bytes = log_bytes + ?2 WHERE name = ?1
                 RETURNING log_bytes",
                params![name, added],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(total) = total.filter(|total| *total > cap) {
            let excess = total - cap;
            let (cutoff, freed) = {
                let mut oldest = tx.prepare_cached(
                    "SELECT id, length(CAST(message AS BLOB)) FROM logs WHERE name = ?1 ORDER BY id",
                )?;
                let mut rows = oldest.query([name])?;
                let (mut cutoff, mut freed) = (0i64, 0u64);
                while freed < excess {
                    let Some(row) = rows.next()? else { break };
                    cutoff = row.get(0)?;
                    freed += row.get::<_, u64>(1)? + LOG_LINE_OVERHEAD;
                }
                (cutoff, freed)
            };
            tx.execute(
                "DELETE FROM logs WHERE name = ?1 AND id <= ?2",
                params![name, cutoff],
            )?;
            tx.execute(
                "UPDATE functions SET log_bytes = log_bytes - ?2 WHERE name = ?1",
                params![name, freed],
            )?;
        }
    }
    tx.commit()?;
    Ok(logged)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn deploy(&self, new: NewDeployment) -> StoreResult<Deployment> {
        let deployment = self.write(move |conn| insert_deployment(conn, new)).await?;
        self.announce(StoreEvent::Deployed {
            name: deployment.name().to_owned(),
            version: deployment.version(),
        });
        Ok(deployment)
    }

    async fn current_deployments(&self) -> StoreResult<Vec<Deployment>> {
        self.read(|conn| query_current(conn, None)).await
    }

    async fn list(&self) -> StoreResult<Vec<DeploymentSummary>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS}
                 FROM functions f JOIN versions v ON v.name = f.name AND v.version = f.current_version
                 ORDER BY f.name"
            ))?;
            let mut rows = stmt.query([])?;
            let mut summaries = Vec::new();
            while let Some(row) = rows.next()? {
                summaries.push(summary_of(row)?);
            }
            Ok(summaries)
        })
        .await
    }

    async fn get(&self, name: &str) -> StoreResult<Option<Deployment>> {
        let name = name.to_owned();
        self.read(move |conn| Ok(query_current(conn, Some(&name))?.pop()))
            .await
    }

    async fn delete(&self, name: &str, owner: Option<&str>) -> StoreResult<bool> {
        let (owned, owner) = (name.to_owned(), owner.map(str::to_owned));
        let deleted = self
            .write(move |conn| {
                let tx = conn.transaction()?;
                let deleted = tx.execute(
                    "DELETE FROM functions WHERE name = ?1 AND (?2 IS NULL OR owner = ?2)",
                    params![owned, owner],
                )? > 0;
                if deleted {
                    for table in ["versions", "modules", "wasm", "runtime_code", "logs"] {
                        tx.execute(&format!("DELETE FROM {table} WHERE name = ?1"), [&owned])?;
                    }
                }
                tx.commit()?;
                Ok(deleted)
            })
            .await?;
        if deleted {
            self.announce(StoreEvent::Deleted {
                name: name.to_owned(),
            });
        }
        Ok(deleted)
    }

    async fn replace_snapshot(
        &self,
        name: &str,
        version: u64,
        snapshot: Arc<[u8]>,
    ) -> StoreResult<bool> {
        let owned = name.to_owned();
        let changed = self
            .write(move |conn| {
                Ok(conn.execute(
                    "UPDATE runtime_code SET snapshot = ?3 WHERE name = ?1 AND version = ?2",
                    params![owned, version, &*snapshot],
                )?)
            })
            .await?;
        Ok(changed > 0)
    }

    async fn rotate_call_token(
        &self,
        name: &str,
        owner: Option<&str>,
    ) -> StoreResult<Option<String>> {
        let token = random_hex(CALL_TOKEN_BYTES);
        let (owned, new, owner) = (name.to_owned(), token.clone(), owner.map(str::to_owned));
        let changed = self
            .write(move |conn| {
                Ok(conn.execute(
                    "UPDATE functions SET call_token = ?2
                     WHERE name = ?1 AND (?3 IS NULL OR owner = ?3)",
                    params![owned, new, owner],
                )?)
            })
            .await?;
        if changed == 0 {
            return Ok(None);
        }
        self.announce(StoreEvent::TokenRotated {
            name: name.to_owned(),
        });
        Ok(Some(token))
    }

    async fn append_logs(&self, batch: Vec<LogLines>) -> StoreResult<()> {
        let batch: Vec<_> = batch
            .into_iter()
            .filter(|lines| !lines.entries.is_empty())
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        let cap = self.log_cap_bytes;
        let names = self
            .write(move |conn| insert_logs(conn, &batch, cap))
            .await?;
        for name in names {
            self.announce(StoreEvent::Logged { name });
        }
        Ok(())
    }

    async fn logs(
        &self,
        name: &str,
        after: i64,
        limit: u32,
        owner: Option<&str>,
    ) -> StoreResult<Vec<StoredLog>> {
        let (name, owner) = (name.to_owned(), owner.map(str::to_owned));
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, timestamp, level, source, message FROM logs
                 WHERE name = ?1 AND id > ?2
                   AND (?4 IS NULL OR EXISTS
                        (SELECT 1 FROM functions f WHERE f.name = ?1 AND f.owner = ?4))
                 ORDER BY id LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![name, after, limit, owner], |row| {
                Ok(StoredLog {
                    id: row.get(0)?,
                    timestamp: row.get(1)?,
                    level: row.get(2)?,
                    source: LogSource::parse(&row.get::<_, String>(3)?),
                    message: row.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn add_call(
        &self,
        call: &QueuedCall,
        input: CallInput,
        limits: QueueLimits,
    ) -> StoreResult<Queued> {
        let call = call.clone();
        self.write(move |conn| super::sqlite_calls::add(conn, &call, &input, limits))
            .await
    }

    async fn claim_calls(&self, claim: Claim) -> StoreResult<Claimed> {
        self.write(move |conn| super::sqlite_calls::claim(conn, &claim))
            .await
    }

    async fn release_call(&self, id: &str, node: &str) -> StoreResult<()> {
        let (id, node) = (id.to_owned(), node.to_owned());
        self.write(move |conn| {
            conn.execute(
                "UPDATE calls SET node = NULL WHERE id = ?1 AND state = 'pending' AND node = ?2",
                [id, node],
            )?;
            Ok(())
        })
        .await
    }

    async fn call_input(&self, id: &str) -> StoreResult<Option<CallInput>> {
        let id = id.to_owned();
        self.read(move |conn| super::sqlite_calls::input(conn, &id))
            .await
    }

    async fn start_call(&self, id: &str, node: &str) -> StoreResult<bool> {
        let (id, node) = (id.to_owned(), node.to_owned());
        self.write(move |conn| super::sqlite_calls::start(conn, &id, &node))
            .await
    }

    async fn finish_call(
        &self,
        id: &str,
        node: &str,
        outcome: &CallOutcome,
        cap: u64,
    ) -> StoreResult<Vec<String>> {
        let (owned, node, outcome) = (id.to_owned(), node.to_owned(), outcome.clone());
        let rotated = self
            .write(move |conn| super::sqlite_calls::finish(conn, &owned, &node, &outcome, cap))
            .await?;
        self.announce(StoreEvent::CallEnded { id: id.to_owned() });
        Ok(rotated)
    }

    async fn fetch_call(&self, id: &str, tenant: Option<&str>) -> StoreResult<Fetched> {
        let (id, tenant) = (id.to_owned(), tenant.map(str::to_owned));
        // A fetch removes the result: it writes.
        self.write(move |conn| super::sqlite_calls::fetch(conn, &id, tenant.as_deref()))
            .await
    }

    async fn pending_calls(&self) -> StoreResult<Vec<(String, usize)>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, COUNT(*) FROM calls WHERE state = 'pending' AND node IS NULL
                 GROUP BY name ORDER BY name",
            )?;
            let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn heartbeat(&self, _node: &str) -> StoreResult<usize> {
        // One host at a time uses a data directory.
        Ok(1)
    }

    async fn reap_calls(&self, node: &str, holding: &[String]) -> StoreResult<Vec<QueuedCall>> {
        let (node, holding) = (node.to_owned(), holding.to_vec());
        self.write(move |conn| super::sqlite_calls::reap(conn, &node, &holding))
            .await
    }

    fn events(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }
}

/// Brings tables created by an older functions-host up to date, all in one transaction; a
/// database a newer functions-host changed is left alone, and refused.
fn migrate(conn: &Connection) -> StoreResult<()> {
    let tx = conn.unchecked_transaction()?;
    let applied: usize = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if applied > MIGRATIONS.len() {
        anyhow::bail!(
            "the database was changed by a newer functions-host (its schema is at version \
             {applied}, this one knows {}): run that version",
            MIGRATIONS.len()
        );
    }
    // SCHEMA creates tables in their first shape, so a new database takes every migration too.
    for migration in MIGRATIONS.iter().skip(applied) {
        tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
    Ok(tx.commit()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn databases_of_the_first_schema_are_migrated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("functions.db")).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(
                "DROP TABLE modules;
                 INSERT INTO functions VALUES ('old', 1, 0, 0, 0);
                 INSERT INTO versions VALUES ('old', 1, 'javascript', 'index.js',
                   'export default () => 1', '{}', 'invocation', 0);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(dir.path(), super::super::DEFAULT_LOG_CAP_BYTES).unwrap();
        let old = store.get("old").await.unwrap().unwrap();
        assert_eq!(&*old.modules["index.js"].code, "export default () => 1");
        assert!(old.allow_net.is_empty() && old.bindings.is_empty());
        store
            .deploy(super::super::tests::new("old", "v2"))
            .await
            .unwrap();
        drop(store);
        let store = SqliteStore::open(dir.path(), super::super::DEFAULT_LOG_CAP_BYTES).unwrap();
        assert_eq!(store.get("old").await.unwrap().unwrap().version(), 2);
    }

    #[tokio::test]
    async fn python_functions_stored_before_csharp_come_back_and_newer_schemas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let before_csharp = MIGRATIONS.len() - 1;
        {
            let conn = Connection::open(dir.path().join("functions.db")).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            for migration in &MIGRATIONS[..before_csharp] {
                conn.execute_batch(migration).unwrap();
            }
            conn.pragma_update(None, "user_version", before_csharp)
                .unwrap();
            conn.execute_batch(
                "INSERT INTO functions (name, current_version, created_at, updated_at, call_token)
                   VALUES ('py', 1, 0, 0, 'token');
                 INSERT INTO versions (name, version, language, entry, source, env, isolation,
                                       created_at)
                   VALUES ('py', 1, 'python', 'main.py', '', '{}', 'invocation', 0);
                 INSERT INTO python VALUES ('py', 1, '{\"main.py\":\"x = 1\"}', '[]', x'', x'0102');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(dir.path(), super::super::DEFAULT_LOG_CAP_BYTES).unwrap();
        let code = store
            .get("py")
            .await
            .unwrap()
            .unwrap()
            .runtime_code
            .unwrap();
        assert_eq!(code.files["main.py"], "x = 1");
        assert_eq!(&*code.snapshot, &[1, 2]);
        drop(store);
        let conn = Connection::open(dir.path().join("functions.db")).unwrap();
        conn.pragma_update(None, "user_version", MIGRATIONS.len() + 1)
            .unwrap();
        drop(conn);
        let err = SqliteStore::open(dir.path(), super::super::DEFAULT_LOG_CAP_BYTES)
            .err()
            .expect("a newer schema is refused")
            .to_string();
        assert!(err.contains("newer functions-host"), "{err}");
    }

    #[tokio::test]
    async fn a_corrupt_column_is_an_error_not_a_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), super::super::DEFAULT_LOG_CAP_BYTES).unwrap();
        store
            .deploy(super::super::tests::new("f", "x"))
            .await
            .unwrap();
        for (column, value) in [
            ("env", "{not json"),
            ("isolation", "sometimes"),
            ("language", "cobol"),
            ("bindings", "[]"),
        ] {
            store
                .write(move |conn| {
                    conn.execute(&format!("UPDATE versions SET {column} = ?1"), [value])?;
                    Ok(())
                })
                .await
                .unwrap();
            let err = store.get("f").await.unwrap_err().to_string();
            assert!(err.contains(column), "{column}: {err}");
            store
                .write(|conn| {
                    conn.execute(
                        "UPDATE versions SET env = '{}', isolation = 'invocation', language = 'javascript',
                                            bindings = '{}'",
                        [],
                    )?;
                    Ok(())
                })
                .await
                .unwrap();
        }
        assert!(store.get("f").await.unwrap().is_some());
    }
}
