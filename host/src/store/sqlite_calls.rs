//! Asynchronous calls in SQLite: a call is a row from the moment it is accepted until its result
//! is fetched. Its state moves `pending` → `running` → `finished` or `failed`, each step committed
//! before the next begins, so a restart knows which calls still have to run (pending ones) and
//! which were cut short (running ones). Unfetched results count against their function's result
//! cache; the oldest are rotated out past it and their ids remembered, to answer "gone".

use rusqlite::Connection;
use rusqlite::OptionalExtension;
use rusqlite::params;

use super::CallInput;
use super::CallOutcome;
use super::CallState;
use super::Fetched;
use super::MAX_ROTATED_IDS;
use super::QueuedCall;
use super::StoreResult;
use super::columns::OutcomeColumns;
use super::columns::outcome_columns;
use super::unix_millis;

/// Records a new pending call.
pub(super) fn add(conn: &mut Connection, call: &QueuedCall, input: &CallInput) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO calls (id, name, tenant, state, content_type, query, payload, created_at)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7)",
        params![
            call.id,
            call.name,
            call.tenant,
            input.content_type,
            input.query,
            input.payload,
            unix_millis(std::time::SystemTime::now())
        ],
    )?;
    Ok(())
}

/// The input of a pending call; `None` if it is not pending.
pub(super) fn input(conn: &mut Connection, id: &str) -> StoreResult<Option<CallInput>> {
    Ok(conn
        .query_row(
            "SELECT content_type, query, payload FROM calls WHERE id = ?1 AND state = 'pending'",
            [id],
            |row| {
                Ok(CallInput {
                    content_type: row.get(0)?,
                    query: row.get(1)?,
                    payload: row.get(2)?,
                })
            },
        )
        .optional()?)
}

/// Marks a pending call running; false if it is not pending.
pub(super) fn start(conn: &mut Connection, id: &str) -> StoreResult<bool> {
    // The payload is not needed again: a call that was running is never run again.
    let changed = conn.execute(
        "UPDATE calls SET state = 'running', payload = x'' WHERE id = ?1 AND state = 'pending'",
        [id],
    )?;
    Ok(changed == 1)
}

/// Stores how a call ended and rotates its function's oldest results out past `cap` bytes.
pub(super) fn finish(
    conn: &mut Connection,
    id: &str,
    outcome: &CallOutcome,
    cap: u64,
) -> StoreResult<Vec<String>> {
    let (columns, bytes) = outcome_columns(outcome)?;
    let tx = conn.transaction()?;
    let name: Option<String> = tx
        .query_row(
            "UPDATE calls SET state = ?2, status = ?3, headers = ?4, body = ?5, error = ?6,
                              result_bytes = ?7
             WHERE id = ?1 AND state IN ('pending', 'running') RETURNING name",
            params![
                id,
                columns.state,
                columns.status,
                columns.headers,
                columns.body,
                columns.error,
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
            {
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
            }
            let now = unix_millis(std::time::SystemTime::now());
            for id in &rotated {
                tx.execute("DELETE FROM calls WHERE id = ?1", [id])?;
                tx.execute(
                    "INSERT OR REPLACE INTO rotated_calls (id, name, rotated_at) VALUES (?1, ?2, ?3)",
                    params![id, name, now],
                )?;
            }
            tx.execute(
                "DELETE FROM rotated_calls
                 WHERE rowid <= (SELECT MAX(rowid) FROM rotated_calls) - ?1",
                [MAX_ROTATED_IDS as i64],
            )?;
        }
    }
    tx.commit()?;
    Ok(rotated)
}

/// Takes a finished call's outcome (removing it), or says why there is none.
pub(super) fn fetch(conn: &mut Connection, id: &str, tenant: Option<&str>) -> StoreResult<Fetched> {
    type Row = (
        String,
        Option<u16>,
        Option<String>,
        Option<Vec<u8>>,
        Option<String>,
    );
    let done: Option<Row> = conn
        .query_row(
            "DELETE FROM calls WHERE id = ?1 AND state IN ('finished', 'failed')
               AND (?2 IS NULL OR tenant = ?2)
             RETURNING state, status, headers, body, error",
            params![id, tenant],
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            },
        )
        .optional()?;
    if let Some((state, status, headers, body, error)) = done {
        let outcome = match (state.as_str(), error) {
            // A call that failed before version 5 of the tables stored an HTTP error body.
            ("failed", None) => CallOutcome::Failed(legacy_failure(status, body.as_deref())),
            (_, error) => OutcomeColumns {
                state,
                status,
                headers,
                body,
                error,
            }
            .parse(id)?,
        };
        return Ok(Fetched::Done(outcome));
    }
    let state: Option<String> = conn
        .query_row(
            "SELECT state FROM calls WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)",
            params![id, tenant],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(state) = state {
        let state = CallState::parse(&state)
            .ok_or_else(|| anyhow::anyhow!("call {id} is in an unknown state {state:?}"))?;
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

/// The error of a call that failed before errors were stored as such: its JSON error body
/// (`{"error": {"code", "message", ...}}`) read back.
fn legacy_failure(status: Option<u16>, body: Option<&[u8]>) -> crate::Error {
    let error = body
        .and_then(|body| serde_json::from_slice::<serde_json::Value>(body).ok())
        .map(|value| value["error"].clone())
        .unwrap_or_default();
    let kind = serde_json::from_value(error["code"].clone()).unwrap_or(crate::ErrorKind::Internal);
    let message = error["message"].as_str().map_or_else(
        || format!("the call failed (status {})", status.unwrap_or(500)),
        str::to_owned,
    );
    crate::Error::new(kind, message)
}

/// Calls in `state`, in arrival order.
pub(super) fn in_state(conn: &mut Connection, state: CallState) -> StoreResult<Vec<QueuedCall>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, name, tenant FROM calls WHERE state = ?1 ORDER BY seq")?;
    let rows = stmt.query_map([state.as_str()], |row| {
        Ok(QueuedCall {
            id: row.get(0)?,
            name: row.get(1)?,
            tenant: row.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
