//! Deployments, logs and asynchronous calls in embedded SQLite (WAL): versions survive restarts,
//! a redeploy swaps the current version in one transaction, each function's logs are capped,
//! oldest out first, and queued calls and unfetched results outlive the process (see `calls.rs`).

mod calls;

pub use calls::CallInput;
pub use calls::CallResult;
pub use calls::DEFAULT_RESULT_CAP_BYTES;
pub use calls::Fetched;
pub use calls::QueuedCall;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use anyhow::Context;
use functions_runtime::Module;
use functions_runtime::ModuleKind;
use rusqlite::Connection;
use rusqlite::OptionalExtension;
use rusqlite::params;

use crate::deploy::FunctionLimits;

/// Default cap on one function's stored logs.
pub const DEFAULT_LOG_CAP_BYTES: u64 = 50 * 1024 * 1024;

/// Bytes a stored log line counts for besides its message (id, timestamp, level).
const LOG_LINE_OVERHEAD: u64 = 32;

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
];

/// A WebAssembly function's code as stored: the binary as deployed, and the engine's compiled
/// artifact of it (loaded at startup instead of compiling again).
#[derive(Clone, Debug)]
pub struct StoredWasm {
    pub binary: Arc<[u8]>,
    pub artifact: Arc<[u8]>,
}

/// What a deploy stores; the store assigns the version.
#[derive(Clone, Debug)]
pub struct NewDeployment {
    pub name: String,
    pub language: String,
    pub entry: String,
    /// Compiled modules by path, each with its source as deployed.
    pub modules: BTreeMap<String, Module>,
    pub env: BTreeMap<String, String>,
    pub isolation: String,
    pub allow_net: Vec<String>,
    /// A WebAssembly function's code (it has no `modules` then).
    pub wasm: Option<StoredWasm>,
    /// How a WebAssembly guest's stdout becomes the response: `command` or `wagi`.
    pub executor: String,
    /// Limits set at deploy (unset ones are the defaults).
    pub limits: FunctionLimits,
    /// Whether `/fn/{name}` answers without an API key when the server has keys.
    pub public: bool,
}

/// One stored version of a function.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub name: String,
    pub version: u64,
    pub language: String,
    pub entry: String,
    pub modules: BTreeMap<String, Module>,
    pub env: BTreeMap<String, String>,
    pub isolation: String,
    pub allow_net: Vec<String>,
    /// A WebAssembly function's code (it has no `modules` then).
    pub wasm: Option<StoredWasm>,
    /// How a WebAssembly guest's stdout becomes the response: `command` or `wagi`.
    pub executor: String,
    /// Limits set at deploy (unset ones are the defaults).
    pub limits: FunctionLimits,
    /// Whether `/fn/{name}` answers without an API key when the server has keys.
    pub public: bool,
    /// The secret of the function's key-less address `/call/{name}/{token}` (kept across
    /// versions, replaced by [`Store::rotate_call_token`]).
    pub call_token: String,
    /// When this version was deployed (Unix milliseconds).
    pub deployed_at: i64,
    /// When the function was first deployed (Unix milliseconds).
    pub created_at: i64,
}

/// One stored log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLog {
    pub id: i64,
    /// Unix milliseconds.
    pub timestamp: i64,
    pub level: String,
    pub message: String,
}

/// A log line to append.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub timestamp: SystemTime,
    pub level: &'static str,
    pub message: String,
}

impl LogEntry {
    /// A line written now by the host itself (e.g. an uncaught exception).
    pub fn now(level: &'static str, message: String) -> Self {
        Self {
            timestamp: SystemTime::now(),
            level,
            message,
        }
    }
}

/// The server's persistent state.
pub struct Store {
    conn: Mutex<Connection>,
    log_cap_bytes: u64,
}

/// Unix milliseconds of `time`.
pub fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) `dir/functions.db`.
    pub fn open(dir: &Path, log_cap_bytes: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
        let path = dir.join("functions.db");
        let conn =
            Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        // Functions deployed before call tokens existed get theirs.
        let untokened: Vec<String> = conn
            .prepare("SELECT name FROM functions WHERE call_token IS NULL")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        for name in untokened {
            conn.execute(
                "UPDATE functions SET call_token = ?2 WHERE name = ?1",
                params![name, random_hex(CALL_TOKEN_BYTES)],
            )?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
            log_cap_bytes,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores a new version and makes it current, atomically.
    pub fn deploy(&self, new: NewDeployment) -> anyhow::Result<Deployment> {
        let now = unix_millis(SystemTime::now());
        let env = serde_json::to_string(&new.env)?;
        let allow_net = serde_json::to_string(&new.allow_net)?;
        let limits = serde_json::to_string(&new.limits)?;
        let entry_source = new
            .modules
            .get(&new.entry)
            .map_or("", |module| &*module.source);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let version: u64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE name = ?1",
            [&new.name],
            |row| row.get(0),
        )?;
        tx.execute(
      "INSERT INTO versions (name, version, language, entry, source, env, isolation, allow_net, executor, created_at, limits, public)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
      params![new.name, version, new.language, new.entry, entry_source, env, new.isolation, allow_net, new.executor, now, limits, new.public],
    )?;
        if let Some(wasm) = &new.wasm {
            tx.execute(
                "INSERT INTO wasm (name, version, binary, artifact) VALUES (?1, ?2, ?3, ?4)",
                params![new.name, version, &*wasm.binary, &*wasm.artifact],
            )?;
        }
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO modules (name, version, path, kind, code, source_map, source)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (path, module) in &new.modules {
                let kind = match module.kind {
                    ModuleKind::JavaScript => "javascript",
                    ModuleKind::Json => "json",
                };
                // Most modules run as written: their source is their code, stored once.
                let source = (module.source != module.code).then_some(&*module.source);
                insert.execute(params![
                    new.name,
                    version,
                    path,
                    kind,
                    &*module.code,
                    module.source_map.as_deref(),
                    source
                ])?;
            }
        }
        tx.execute(
      "INSERT INTO functions (name, current_version, created_at, updated_at, call_token) VALUES (?1, ?2, ?3, ?3, ?4)
       ON CONFLICT (name) DO UPDATE SET current_version = excluded.current_version, updated_at = excluded.updated_at",
      params![new.name, version, now, random_hex(CALL_TOKEN_BYTES)],
    )?;
        let (created_at, call_token): (i64, String) = tx.query_row(
            "SELECT created_at, call_token FROM functions WHERE name = ?1",
            [&new.name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        tx.commit()?;
        Ok(Deployment {
            name: new.name,
            version,
            language: new.language,
            entry: new.entry,
            modules: new.modules,
            env: new.env,
            isolation: new.isolation,
            allow_net: new.allow_net,
            wasm: new.wasm,
            executor: new.executor,
            limits: new.limits,
            public: new.public,
            call_token,
            deployed_at: now,
            created_at,
        })
    }

    /// The current version of every function, by name.
    pub fn current_deployments(&self) -> anyhow::Result<Vec<Deployment>> {
        self.query_current(None)
    }

    /// The current version of `name`.
    pub fn get(&self, name: &str) -> anyhow::Result<Option<Deployment>> {
        Ok(self.query_current(Some(name))?.pop())
    }

    fn query_current(&self, name: Option<&str>) -> anyhow::Result<Vec<Deployment>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
      "SELECT v.name, v.version, v.language, v.entry, v.source, v.env, v.isolation, v.allow_net,
              v.created_at, f.created_at, v.executor, w.binary, w.artifact, v.limits, v.public,
              f.call_token
       FROM functions f JOIN versions v ON v.name = f.name AND v.version = f.current_version
       LEFT JOIN wasm w ON w.name = v.name AND w.version = v.version
       WHERE ?1 IS NULL OR f.name = ?1 ORDER BY f.name",
    )?;
        let rows = stmt.query_map([name], |row| {
            let env: String = row.get(5)?;
            let allow_net: String = row.get(7)?;
            let entry: String = row.get(3)?;
            let source: String = row.get(4)?;
            let binary: Option<Vec<u8>> = row.get(11)?;
            let artifact: Option<Vec<u8>> = row.get(12)?;
            let limits: String = row.get(13)?;
            let wasm = binary.zip(artifact).map(|(binary, artifact)| StoredWasm {
                binary: binary.into(),
                artifact: artifact.into(),
            });
            Ok(Deployment {
                name: row.get(0)?,
                version: row.get(1)?,
                language: row.get(2)?,
                // Filled in below; a version stored before modules were is its entry alone.
                modules: if wasm.is_some() {
                    BTreeMap::new()
                } else {
                    BTreeMap::from([(entry.clone(), Module::javascript(source))])
                },
                wasm,
                executor: row.get(10)?,
                entry,
                env: serde_json::from_str(&env).unwrap_or_default(),
                isolation: row.get(6)?,
                allow_net: serde_json::from_str(&allow_net).unwrap_or_default(),
                limits: serde_json::from_str(&limits).unwrap_or_default(),
                public: row.get(14)?,
                call_token: row.get(15)?,
                deployed_at: row.get(8)?,
                created_at: row.get(9)?,
            })
        })?;
        let mut deployments = rows.collect::<Result<Vec<_>, _>>()?;
        for deployment in &mut deployments {
            let modules = query_modules(&conn, &deployment.name, deployment.version)?;
            if !modules.is_empty() {
                deployment.modules = modules;
            }
        }
        Ok(deployments)
    }

    /// Deletes a function with all its versions and logs; false when there was none.
    pub fn delete(&self, name: &str) -> anyhow::Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let deleted = tx.execute("DELETE FROM functions WHERE name = ?1", [name])? > 0;
        tx.execute("DELETE FROM versions WHERE name = ?1", [name])?;
        tx.execute("DELETE FROM modules WHERE name = ?1", [name])?;
        tx.execute("DELETE FROM wasm WHERE name = ?1", [name])?;
        tx.execute("DELETE FROM logs WHERE name = ?1", [name])?;
        tx.commit()?;
        Ok(deleted)
    }

    /// Gives function `name` a new call token (the old address stops working); `None` when
    /// there is no such function.
    pub fn rotate_call_token(&self, name: &str) -> anyhow::Result<Option<String>> {
        let token = random_hex(CALL_TOKEN_BYTES);
        let changed = self.conn().execute(
            "UPDATE functions SET call_token = ?2 WHERE name = ?1",
            params![name, token],
        )?;
        Ok((changed > 0).then_some(token))
    }

    /// Appends log lines to `name`'s logs, then drops the oldest lines past the cap.
    pub fn append_logs(&self, name: &str, entries: &[LogEntry]) -> anyhow::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut added = 0u64;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO logs (name, timestamp, level, message) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for entry in entries {
                insert.execute(params![
                    name,
                    unix_millis(entry.timestamp),
                    entry.level,
                    entry.message
                ])?;
                added += entry.message.len() as u64 + LOG_LINE_OVERHEAD;
            }
        }
        let total: Option<u64> = tx
      .query_row(
        "UPDATE functions SET log_bytes = log_bytes + ?2 WHERE name = ?1 RETURNING log_bytes",
        params![name, added],
        |row| row.get(0),
      )
      .optional()?;
        if let Some(total) = total.filter(|total| *total > self.log_cap_bytes) {
            let excess = total - self.log_cap_bytes;
            let (cutoff, freed) = {
                let mut oldest =
          tx.prepare_cached("SELECT id, length(CAST(message AS BLOB)) FROM logs WHERE name = ?1 ORDER BY id")?;
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
        tx.commit()?;
        Ok(())
    }

    /// Up to `limit` log lines of `name` with ids above `after`, oldest first.
    pub fn logs(&self, name: &str, after: i64, limit: u32) -> anyhow::Result<Vec<StoredLog>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
      "SELECT id, timestamp, level, message FROM logs WHERE name = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
        let rows = stmt.query_map(params![name, after, limit], |row| {
            Ok(StoredLog {
                id: row.get(0)?,
                timestamp: row.get(1)?,
                level: row.get(2)?,
                message: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Bytes of randomness in a call token.
const CALL_TOKEN_BYTES: usize = 24;

/// `bytes` random bytes from the operating system, in hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Brings tables created by an older functions-host up to date.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let applied: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    // SCHEMA creates tables in their first shape, so a new database takes every migration too.
    for migration in MIGRATIONS.iter().skip(applied) {
        conn.execute_batch(migration)?;
    }
    conn.pragma_update(None, "user_version", MIGRATIONS.len())
}

/// The stored modules of one version, by path.
fn query_modules(
    conn: &Connection,
    name: &str,
    version: u64,
) -> rusqlite::Result<BTreeMap<String, Module>> {
    let mut stmt = conn.prepare_cached(
        "SELECT path, kind, code, source_map, source FROM modules WHERE name = ?1 AND version = ?2",
    )?;
    let rows = stmt.query_map(params![name, version], |row| {
        let kind: String = row.get(1)?;
        let code: String = row.get(2)?;
        let source_map: Option<String> = row.get(3)?;
        let source: Option<String> = row.get(4)?;
        let code: std::sync::Arc<str> = code.into();
        let module = Module {
            kind: if kind == "json" {
                ModuleKind::Json
            } else {
                ModuleKind::JavaScript
            },
            source: source.map_or_else(|| code.clone(), Into::into),
            code,
            source_map: source_map.map(Into::into),
        };
        Ok((row.get::<_, String>(0)?, module))
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(name: &str, source: &str) -> NewDeployment {
        NewDeployment {
            name: name.into(),
            language: "javascript".into(),
            entry: "index.js".into(),
            modules: BTreeMap::from([("index.js".into(), Module::javascript(source))]),
            env: BTreeMap::from([("K".into(), "V".into())]),
            isolation: "invocation".into(),
            wasm: None,
            executor: "command".into(),
            allow_net: vec!["example.com".into()],
            limits: FunctionLimits::default(),
            public: true,
        }
    }

    fn line(message: &str) -> LogEntry {
        LogEntry {
            timestamp: SystemTime::now(),
            level: "info",
            message: message.into(),
        }
    }

    #[test]
    fn versions_survive_reopening_and_redeploys_replace_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), DEFAULT_LOG_CAP_BYTES).unwrap();
            assert_eq!(store.deploy(new("a", "v1")).unwrap().version, 1);
            assert_eq!(store.deploy(new("a", "v2")).unwrap().version, 2);
            store.deploy(new("b", "b1")).unwrap();
        }
        let store = Store::open(dir.path(), DEFAULT_LOG_CAP_BYTES).unwrap();
        let current = store.current_deployments().unwrap();
        let summary: Vec<_> = current
            .iter()
            .map(|d| (d.name.as_str(), d.version, &*d.modules["index.js"].source))
            .collect();
        assert_eq!(summary, vec![("a", 2, "v2"), ("b", 1, "b1")]);
        assert_eq!(current[0].env.get("K").map(String::as_str), Some("V"));
        assert_eq!(current[0].allow_net, ["example.com"]);
        assert!(store.delete("a").unwrap());
        assert!(!store.delete("a").unwrap());
        assert!(store.get("a").unwrap().is_none());
        assert_eq!(store.deploy(new("a", "again")).unwrap().version, 1);
    }

    #[test]
    fn compiled_modules_come_back_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let files = BTreeMap::from([
            ("main.ts".to_owned(), "import d from './d.json' with { type: 'json' };\nexport default (): number => d.n;".to_owned()),
            ("d.json".to_owned(), r#"{"n": 1}"#.to_owned()),
        ]);
        let modules = functions_runtime::compile_files("ts", "main.ts", &files).unwrap();
        let deployment = NewDeployment {
            entry: "main.ts".into(),
            modules: modules.clone(),
            ..new("ts", "")
        };
        Store::open(dir.path(), DEFAULT_LOG_CAP_BYTES)
            .unwrap()
            .deploy(deployment)
            .unwrap();
        let store = Store::open(dir.path(), DEFAULT_LOG_CAP_BYTES).unwrap();
        assert_eq!(store.get("ts").unwrap().unwrap().modules, modules);
    }

    #[test]
    fn databases_of_the_first_schema_are_migrated() {
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
        let store = Store::open(dir.path(), DEFAULT_LOG_CAP_BYTES).unwrap();
        let old = store.get("old").unwrap().unwrap();
        assert_eq!(&*old.modules["index.js"].code, "export default () => 1");
        assert!(old.allow_net.is_empty());
        store.deploy(new("old", "v2")).unwrap();
        drop(store);
        let store = Store::open(dir.path(), DEFAULT_LOG_CAP_BYTES).unwrap();
        assert_eq!(store.get("old").unwrap().unwrap().version, 2);
    }

    #[test]
    fn logs_are_capped_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 10 * (100 + LOG_LINE_OVERHEAD);
        let store = Store::open(dir.path(), cap).unwrap();
        store.deploy(new("a", "x")).unwrap();
        for i in 0..25 {
            let message = format!("{i:03}{}", "x".repeat(97));
            store.append_logs("a", &[line(&message)]).unwrap();
        }
        let logs = store.logs("a", 0, 1000).unwrap();
        assert_eq!(logs.len(), 10);
        assert!(logs[0].message.starts_with("015"), "{}", logs[0].message);
        assert!(logs[9].message.starts_with("024"));
        let after = store.logs("a", logs[4].id, 1000).unwrap();
        assert_eq!(after.len(), 5);
    }
}
