//! Asynchronous calls in SQLite: a call is a row from the moment it is accepted until its result
//! is fetched. Its state moves `pending` → `running` → `finished` or `failed`, each step committed
//! before the next begins, so a restart knows which calls still have to run (pending ones) and
//! which were cut short (running ones). Unfetched results count against their function's result
//! cache; the oldest are rotated out past it and their ids remembered, to answer "gone".

use rusqlite::Connection;
use rusqlite::OptionalExtension;
use rusqlite::params;

use std::collections::HashMap;

use super::CLAIM_WINDOW;
use super::CallInput;
use super::CallOutcome;
use super::CallState;
use super::Claim;
use super::Claimed;
use super::Fetched;
use super::MAX_ROTATED_IDS;
use super::QueueLimits;
use super::Queued;
use super::QueuedCall;
use super::StoreResult;
use super::TenantCalls;
use super::choose_claims;
use super::columns::OutcomeColumns;
use super::columns::outcome_columns;
use super::unix_millis;

/// Where a call claimed or running is, in SQL: a pending call with a host is claimed.
pub(super) const IN_FLIGHT: &str =
    "((state = 'pending' AND node IS NOT NULL) OR state = 'running')";

/// Where a call nobody has claimed is, in SQL.
pub(super) const UNCLAIMED: &str = "(state = 'pending' AND node IS NULL)";

/// Records a new pending call, unless as many wait as may.
pub(super) fn add(
    conn: &mut Connection,
    call: &QueuedCall,
    input: &CallInput,
    limits: QueueLimits,
) -> StoreResult<Queued> {
    let tx = conn.transaction()?;
    let (waiting, in_flight): (usize, usize) = tx.query_row(
        &format!(
            "SELECT COUNT(*) FILTER (WHERE {UNCLAIMED}), COUNT(*) FILTER (WHERE {IN_FLIGHT})
             FROM calls WHERE name = ?1"
        ),
        [&call.name],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    if waiting >= limits.max_pending {
        return Ok(Queued::Full);
    }
    tx.execute(
        "INSERT INTO calls (id, name, tenant, state, content_type, query, payload, created_at,
                            traceparent)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?8)",
        params![
            call.id,
            call.name,
            call.tenant,
            input.content_type,
            input.query,
            input.payload,
            unix_millis(std::time::SystemTime::now()),
            input.traceparent,
        ],
    )?;
    tx.commit()?;
    Ok(if waiting == 0 && in_flight < limits.concurrency {
        Queued::Next
    } else {
        Queued::Waits
    })
}

/// Claims the oldest pending calls of a function for a host ([`super::Store::claim_calls`]).
pub(super) fn claim(conn: &mut Connection, claim: &Claim) -> StoreResult<Claimed> {
    let tx = conn.transaction()?;
    let in_flight: usize = tx.query_row(
        &format!("SELECT COUNT(*) FROM calls WHERE name = ?1 AND {IN_FLIGHT}"),
        [&claim.name],
        |row| row.get(0),
    )?;
    let room = claim.concurrency.saturating_sub(in_flight).min(claim.max);
    let mut claimed = Claimed::default();
    if room > 0 {
        let candidates: Vec<(String, i64, Option<String>)> = tx
            .prepare_cached(&format!(
                "SELECT id, seq, tenant FROM calls WHERE name = ?1 AND {UNCLAIMED}
                 ORDER BY seq LIMIT ?2"
            ))?
            .query_map(params![claim.name, CLAIM_WINDOW], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        let order: Vec<(i64, Option<String>)> =
            candidates.iter().map(|c| (c.1, c.2.clone())).collect();
        let mut tenants = HashMap::new();
        for tenant in order.iter().filter_map(|c| c.1.as_ref()) {
            if !tenants.contains_key(tenant) {
                let calls = tx.query_row(
                    &format!(
                        "SELECT COUNT(*) FILTER (WHERE {IN_FLIGHT}),
                                MIN(seq) FILTER (WHERE {UNCLAIMED} AND name != ?2)
                         FROM calls WHERE tenant = ?1"
                    ),
                    params![tenant, claim.name],
                    |row| {
                        Ok(TenantCalls {
                            running: row.get(0)?,
                            first_elsewhere: row.get(1)?,
                        })
                    },
                )?;
                tenants.insert(tenant.clone(), calls);
            }
        }
        for index in choose_claims(&order, room, &mut tenants, &claim.tenant_quota) {
            let (id, _, tenant) = candidates[index].clone();
            tx.execute(
                "UPDATE calls SET node = ?2 WHERE id = ?1",
                params![id, claim.node],
            )?;
            let name = claim.name.clone();
            claimed.calls.push(QueuedCall { id, name, tenant });
        }
    }
    claimed.pending = tx.query_row(
        &format!("SELECT COUNT(*) FROM calls WHERE name = ?1 AND {UNCLAIMED}"),
        [&claim.name],
        |row| row.get(0),
    )?;
    tx.commit()?;
    Ok(claimed)
}

/// The input of a pending call; `None` if it is not pending.
pub(super) fn input(conn: &mut Connection, id: &str) -> StoreResult<Option<CallInput>> {
    Ok(conn
        .query_row(
            "SELECT content_type, query, payload, traceparent FROM calls
             WHERE id = ?1 AND state = 'pending'",
            [id],
            |row| {
                Ok(CallInput {
                    content_type: row.get(0)?,
                    query: row.get(1)?,
                    payload: row.get(2)?,
                    traceparent: row.get(3)?,
                })
            },
        )
        .optional()?)
}

/// Marks a call `node` claimed running; false if it is not `node`'s.
pub(super) fn start(conn: &mut Connection, id: &str, node: &str) -> StoreResult<bool> {
    // The payload is not needed again: a call that was running is never run again.
    let changed = conn.execute(
        "UPDATE calls SET state = 'running', payload = x''
         WHERE id = ?1 AND state IN ('pending', 'running') AND node = ?2",
        [id, node],
    )?;
    Ok(changed == 1)
}

/// Takes over the calls of every host but `node` (one host at a time uses a data directory:
/// any other was this directory's host before): claimed ones are pending again, running ones
/// become `node`'s and are returned. `node`'s own claims not in `holding` are pending again.
pub(super) fn reap(
    conn: &mut Connection,
    node: &str,
    holding: &[String],
) -> StoreResult<Vec<QueuedCall>> {
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE calls SET node = NULL
         WHERE state = 'pending' AND node IS NOT NULL AND node != ?1",
        [node],
    )?;
    let holding = serde_json::to_string(holding)?;
    tx.execute(
        "UPDATE calls SET node = NULL
         WHERE state = 'pending' AND node = ?1 AND id NOT IN (SELECT value FROM json_each(?2))",
        [node, &holding],
    )?;
    let adopted = tx
        .prepare(
            "UPDATE calls SET node = ?1
             WHERE state = 'running' AND (node IS NULL OR node != ?1)
             RETURNING seq, id, name, tenant",
        )?
        .query_map([node], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                QueuedCall {
                    id: row.get(1)?,
                    name: row.get(2)?,
                    tenant: row.get(3)?,
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit()?;
    Ok(arrival_order(adopted))
}

/// Calls in arrival order, from (seq, call) pairs.
pub(super) fn arrival_order(mut calls: Vec<(i64, QueuedCall)>) -> Vec<QueuedCall> {
    calls.sort_by_key(|(seq, _)| *seq);
    calls.into_iter().map(|(_, call)| call).collect()
}

/// Stores how a call ended and rotates its function's oldest results out past `cap` bytes.
pub(super) fn finish(
    conn: &mut Connection,
    id: &str,
    node: &str,
    outcome: &CallOutcome,
    cap: u64,
) -> StoreResult<Vec<String>> {
    let (columns, bytes) = outcome_columns(outcome)?;
    let tx = conn.transaction()?;
    let name: Option<String> = tx
        .query_row(
            "UPDATE calls SET state = ?2, status = ?3, headers = ?4, body = ?5, error = ?6,
                              result_bytes = ?7
             WHERE id = ?1 AND state IN ('pending', 'running') AND node = ?8 RETURNING name",
            params![
                id,
                columns.state,
                columns.status,
                columns.headers,
                columns.body,
                columns.error,
                bytes,
                node
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
