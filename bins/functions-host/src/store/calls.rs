//! Asynchronous calls, durably: a call is a row from the moment it is accepted until its result
//! is fetched. Its state moves `pending` → `running` → `finished` or `failed`, each step committed
//! before the next begins, so a restart knows which calls still have to run (pending ones) and
//! which were cut short (running ones). Unfetched results count against their function's result
//! cache; the oldest are rotated out past it and their ids remembered, to answer 410.

use rusqlite::OptionalExtension;
use rusqlite::params;

use super::Store;
use super::unix_millis;

/// Default cap on one function's unfetched results.
pub const DEFAULT_RESULT_CAP_BYTES: u64 = 50 * 1024 * 1024;

/// Ids of rotated-out results remembered (the oldest are forgotten past it, then 404).
const MAX_ROTATED_IDS: i64 = 100_000;

/// A call waiting to run, as the queue needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedCall {
    pub id: String,
    pub name: String,
    /// The API key (tenant) that made it, if the server has keys.
    pub tenant: Option<String>,
}

/// A call's input.
#[derive(Clone, Debug)]
pub struct CallInput {
    pub content_type: Option<String>,
    pub payload: Vec<u8>,
}

/// How a call ended: what a synchronous invocation would have answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallResult {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What fetching a call found.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Done: its result, now removed; `failed` when it ended in an error.
    Done { result: CallResult, failed: bool },
    /// Still `pending` or `running`.
    NotYet(String),
    /// Its result was rotated out of the function's result cache before it was fetched.
    RotatedOut,
    /// No such call (or its result was fetched already).
    Unknown,
}

impl Store {
    /// Records a new pending call.
    pub fn add_call(&self, call: &QueuedCall, input: &CallInput) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT INTO calls (id, name, tenant, state, content_type, payload, created_at)
             VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6)",
            params![
                call.id,
                call.name,
                call.tenant,
                input.content_type,
                input.payload,
                unix_millis(std::time::SystemTime::now())
            ],
        )?;
        Ok(())
    }

    /// The input of a pending call; `None` if it is not pending (it ran already).
    pub fn call_input(&self, id: &str) -> anyhow::Result<Option<CallInput>> {
        let input = self
            .conn()
            .query_row(
                "SELECT content_type, payload FROM calls WHERE id = ?1 AND state = 'pending'",
                [id],
                |row| {
                    Ok(CallInput {
                        content_type: row.get(0)?,
                        payload: row.get(1)?,
                    })
                },
            )
            .optional()?;
        Ok(input)
    }

    /// Marks a pending call running, as its function is about to run it; false if it is not
    /// pending (so a call never runs twice).
    pub fn start_call(&self, id: &str) -> anyhow::Result<bool> {
        // The payload is not needed again: a call that was running is never run again.
        let changed = self.conn().execute(
            "UPDATE calls SET state = 'running', payload = x'' WHERE id = ?1 AND state = 'pending'",
            [id],
        )?;
        Ok(changed == 1)
    }

    /// Stores the result of a running call (or of a pending one that failed before it could
    /// start), then rotates the oldest unfetched results of its function out past `cap` bytes.
    /// Returns the ids rotated out.
    pub fn finish_call(
        &self,
        id: &str,
        result: &CallResult,
        failed: bool,
        cap: u64,
    ) -> anyhow::Result<Vec<String>> {
        let headers = serde_json::to_string(&result.headers)?;
        let bytes = (result.body.len() + headers.len()) as u64;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let name: Option<String> = tx
            .query_row(
                "UPDATE calls SET state = ?2, status = ?3, headers = ?4, body = ?5, result_bytes = ?6
                 WHERE id = ?1 AND state IN ('pending', 'running') RETURNING name",
                params![
                    id,
                    if failed { "failed" } else { "finished" },
                    result.status,
                    headers,
                    result.body,
                    bytes
                ],
                |row| row.get(0),
            )
            .optional()?;
        let mut rotated = Vec::new();
        if let Some(name) = name {
            let total: u64 = tx.query_row(
                "SELECT COALESCE(SUM(result_bytes), 0) FROM calls
                 WHERE name = ?1 AND state IN ('finished', 'failed')",
                [&name],
                |row| row.get(0),
            )?;
            if total > cap {
                let mut excess = total - cap;
                let mut oldest = tx.prepare(
                    "SELECT id, result_bytes FROM calls
                     WHERE name = ?1 AND state IN ('finished', 'failed') ORDER BY seq",
                )?;
                let mut rows = oldest.query([&name])?;
                while excess > 0 {
                    let Some(row) = rows.next()? else { break };
                    let bytes: u64 = row.get(1)?;
                    rotated.push(row.get::<_, String>(0)?);
                    excess = excess.saturating_sub(bytes);
                }
                drop(rows);
                drop(oldest);
                let now = unix_millis(std::time::SystemTime::now());
                for id in &rotated {
                    tx.execute("DELETE FROM calls WHERE id = ?1", [id])?;
                    tx.execute(
                        "INSERT OR REPLACE INTO rotated_calls (id, name, rotated_at) VALUES (?1, ?2, ?3)",
                        params![id, name, now],
                    )?;
                }
                tx.execute(
                    "DELETE FROM rotated_calls WHERE rowid <= (SELECT MAX(rowid) FROM rotated_calls) - ?1",
                    [MAX_ROTATED_IDS],
                )?;
            }
        }
        tx.commit()?;
        Ok(rotated)
    }

    /// Takes a finished call's result (removing it), or says why there is none.
    pub fn fetch_call(&self, id: &str) -> anyhow::Result<Fetched> {
        let conn = self.conn();
        let done = conn
            .query_row(
                "DELETE FROM calls WHERE id = ?1 AND state IN ('finished', 'failed')
                 RETURNING state, status, headers, body",
                [id],
                |row| {
                    let state: String = row.get(0)?;
                    let headers: String = row.get(2)?;
                    Ok(Fetched::Done {
                        failed: state == "failed",
                        result: CallResult {
                            status: row.get(1)?,
                            headers: serde_json::from_str(&headers).unwrap_or_default(),
                            body: row.get(3)?,
                        },
                    })
                },
            )
            .optional()?;
        if let Some(done) = done {
            return Ok(done);
        }
        let state: Option<String> = conn
            .query_row("SELECT state FROM calls WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()?;
        if let Some(state) = state {
            return Ok(Fetched::NotYet(state));
        }
        let rotated = conn
            .query_row(
                "SELECT 1 FROM rotated_calls WHERE id = ?1",
                [id],
                |_| Ok(()),
            )
            .optional()?;
        Ok(if rotated.is_some() {
            Fetched::RotatedOut
        } else {
            Fetched::Unknown
        })
    }

    /// Calls still pending, in arrival order.
    pub fn pending_calls(&self) -> anyhow::Result<Vec<QueuedCall>> {
        self.calls_in_state("pending")
    }

    /// Calls that were running (when the host stopped), in arrival order.
    pub fn running_calls(&self) -> anyhow::Result<Vec<QueuedCall>> {
        self.calls_in_state("running")
    }

    fn calls_in_state(&self, state: &str) -> anyhow::Result<Vec<QueuedCall>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, name, tenant FROM calls WHERE state = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([state], |row| {
            Ok(QueuedCall {
                id: row.get(0)?,
                name: row.get(1)?,
                tenant: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DEFAULT_LOG_CAP_BYTES;

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
            payload: payload.as_bytes().to_vec(),
        }
    }

    fn result(body: &str) -> CallResult {
        CallResult {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_call_runs_once_and_its_result_is_fetched_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_LOG_CAP_BYTES).unwrap();
        store.add_call(&call("a"), &input("1")).unwrap();
        store.add_call(&call("b"), &input("2")).unwrap();
        assert_eq!(store.pending_calls().unwrap(), vec![call("a"), call("b")]);
        assert_eq!(
            store.fetch_call("a").unwrap(),
            Fetched::NotYet("pending".into())
        );
        assert_eq!(store.call_input("a").unwrap().unwrap().payload, b"1");
        assert!(store.start_call("a").unwrap());
        assert!(!store.start_call("a").unwrap(), "started twice");
        assert!(
            store.call_input("a").unwrap().is_none(),
            "its input is gone"
        );
        assert_eq!(store.running_calls().unwrap(), vec![call("a")]);
        store
            .finish_call("a", &result("one"), false, DEFAULT_RESULT_CAP_BYTES)
            .unwrap();
        assert_eq!(
            store.fetch_call("a").unwrap(),
            Fetched::Done {
                result: result("one"),
                failed: false
            }
        );
        assert_eq!(store.fetch_call("a").unwrap(), Fetched::Unknown);
        assert_eq!(store.pending_calls().unwrap(), vec![call("b")]);
    }

    #[test]
    fn the_oldest_unfetched_results_are_rotated_out_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_LOG_CAP_BYTES).unwrap();
        let body = "x".repeat(1000);
        for i in 0..5 {
            let id = format!("c{i}");
            store.add_call(&call(&id), &input("")).unwrap();
            assert!(store.start_call(&id).unwrap());
            let rotated = store.finish_call(&id, &result(&body), false, 3500).unwrap();
            if i == 3 {
                assert_eq!(rotated, ["c0"]);
            }
        }
        assert_eq!(store.fetch_call("c0").unwrap(), Fetched::RotatedOut);
        assert_eq!(store.fetch_call("c1").unwrap(), Fetched::RotatedOut);
        assert!(matches!(
            store.fetch_call("c4").unwrap(),
            Fetched::Done { .. }
        ));
    }
}
