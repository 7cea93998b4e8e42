//! Asynchronous calls in PostgreSQL, shared by every host: the queue all hosts take calls from.
//!
//! A call is a row from the moment it is accepted until its result is fetched. Hosts claim the
//! pending calls of a function in arrival order: a claim locks the function's row in
//! `call_lanes` with `FOR UPDATE SKIP LOCKED` (a host finding it locked leaves the function to
//! the host claiming it, and tries again later), counts the function's calls claimed or running
//! on every host against its concurrency and each tenant's against its quota, and marks the
//! oldest pending ones (themselves locked with `FOR UPDATE SKIP LOCKED`) with the host's name.
//! A claim lasts while its host's heartbeat renews its row in `nodes`; a host not heard from for
//! [`NODE_LEASE`] is taken for dead by the next host that looks: its claimed calls are pending
//! again, and its running calls fail as `host_restarted`, once.
//!
//! Whenever a function has calls waiting and room to run one (a call ended, or a claim left some
//! for others), every host hears `CallsWaiting`, and ends its wait for a result on `CallEnded`.

use std::collections::HashMap;

use anyhow::anyhow;
use deadpool_postgres::GenericClient;

use super::CLAIM_WINDOW;
use super::CallInput;
use super::CallOutcome;
use super::CallState;
use super::Claim;
use super::Claimed;
use super::Fetched;
use super::MAX_ROTATED_IDS;
use super::NODE_LEASE;
use super::QueueLimits;
use super::Queued;
use super::QueuedCall;
use super::StoreEvent;
use super::StoreResult;
use super::TenantCalls;
use super::choose_claims;
use super::columns::OutcomeColumns;
use super::columns::outcome_columns;
use super::postgres::notify;
use super::sqlite_calls::IN_FLIGHT;
use super::sqlite_calls::UNCLAIMED;
use super::sqlite_calls::arrival_order;
use super::unix_millis;

/// A lease's length, as PostgreSQL reads an interval.
fn lease() -> String {
    format!("{} milliseconds", NODE_LEASE.as_millis())
}

/// Records a new pending call, unless as many wait as may.
pub(super) async fn add(
    client: &mut deadpool_postgres::ClientWrapper,
    call: &QueuedCall,
    input: CallInput,
    limits: QueueLimits,
) -> StoreResult<Queued> {
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO call_lanes (name) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&call.name],
    )
    .await?;
    let counts = tx
        .query_one(
            &format!(
                "SELECT COUNT(*) FILTER (WHERE {UNCLAIMED}), COUNT(*) FILTER (WHERE {IN_FLIGHT})
                 FROM calls WHERE name = $1"
            ),
            &[&call.name],
        )
        .await?;
    let (waiting, in_flight): (i64, i64) = (counts.try_get(0)?, counts.try_get(1)?);
    if waiting as usize >= limits.max_pending {
        return Ok(Queued::Full);
    }
    tx.execute(
        "INSERT INTO calls (id, name, tenant, state, content_type, query, payload, created_at,
                            traceparent)
         VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8)",
        &[
            &call.id,
            &call.name,
            &call.tenant,
            &input.content_type,
            &input.query,
            &input.payload,
            &unix_millis(std::time::SystemTime::now()),
            &input.traceparent,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(
        if waiting == 0 && (in_flight as usize) < limits.concurrency {
            Queued::Next
        } else {
            Queued::Waits
        },
    )
}

/// Claims the oldest pending calls of a function for a host ([`super::Store::claim_calls`]).
pub(super) async fn claim(
    client: &mut deadpool_postgres::ClientWrapper,
    claim: &Claim,
) -> StoreResult<Claimed> {
    let tx = client.transaction().await?;
    // Only a host with a live lease claims: one taken for dead (its row gone) renews it first.
    let live = tx
        .query_opt(
            "SELECT 1 FROM nodes WHERE id = $1 AND heartbeat_at > now() - $2::TEXT::INTERVAL",
            &[&claim.node, &lease()],
        )
        .await?;
    if live.is_none() {
        return Ok(Claimed {
            contended: true,
            ..Claimed::default()
        });
    }
    let lane = tx
        .query_opt(
            "SELECT 1 FROM call_lanes WHERE name = $1 FOR UPDATE SKIP LOCKED",
            &[&claim.name],
        )
        .await?;
    if lane.is_none() {
        // Another host is claiming this function's calls (or it never had any).
        return Ok(Claimed {
            contended: true,
            ..Claimed::default()
        });
    }
    let in_flight: i64 = tx
        .query_one(
            &format!("SELECT COUNT(*) FROM calls WHERE name = $1 AND {IN_FLIGHT}"),
            &[&claim.name],
        )
        .await?
        .try_get(0)?;
    let room = claim
        .concurrency
        .saturating_sub(in_flight as usize)
        .min(claim.max);
    let mut claimed = Claimed::default();
    if room > 0 {
        let candidates = tx
            .query(
                &format!(
                    "SELECT id, seq, tenant FROM calls WHERE name = $1 AND {UNCLAIMED}
                     ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED"
                ),
                &[&claim.name, &(CLAIM_WINDOW as i64)],
            )
            .await?;
        let order: Vec<(i64, Option<String>)> = candidates
            .iter()
            .map(|row| Ok((row.try_get(1)?, row.try_get(2)?)))
            .collect::<StoreResult<_>>()?;
        let mut involved: Vec<&String> = order.iter().filter_map(|c| c.1.as_ref()).collect();
        involved.sort();
        involved.dedup();
        let mut tenants = HashMap::new();
        for tenant in involved {
            // Claims of one tenant's calls (of any function) take turns, so that its quota
            // and order hold across functions and hosts; taken in name order, so they never
            // wait in a circle.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext('tenant:' || $1))",
                &[tenant],
            )
            .await?;
            let row = tx
                .query_one(
                    &format!(
                        "SELECT COUNT(*) FILTER (WHERE {IN_FLIGHT}),
                                MIN(seq) FILTER (WHERE {UNCLAIMED} AND name != $2)
                         FROM calls WHERE tenant = $1"
                    ),
                    &[tenant, &claim.name],
                )
                .await?;
            let calls = TenantCalls {
                running: row.try_get::<_, i64>(0)? as usize,
                first_elsewhere: row.try_get(1)?,
            };
            tenants.insert(tenant.clone(), calls);
        }
        let chosen = choose_claims(&order, room, &mut tenants, &claim.tenant_quota);
        let ids: Vec<String> = chosen
            .iter()
            .map(|&index| candidates[index].try_get(0))
            .collect::<Result<_, _>>()?;
        tx.execute(
            "UPDATE calls SET node = $2 WHERE id = ANY($1)",
            &[&ids, &claim.node],
        )
        .await?;
        claimed.calls = chosen
            .into_iter()
            .zip(ids)
            .map(|(index, id)| QueuedCall {
                id,
                name: claim.name.clone(),
                tenant: order[index].1.clone(),
            })
            .collect();
    }
    let pending: i64 = tx
        .query_one(
            &format!("SELECT COUNT(*) FROM calls WHERE name = $1 AND {UNCLAIMED}"),
            &[&claim.name],
        )
        .await?
        .try_get(0)?;
    claimed.pending = pending as usize;
    let in_flight = in_flight as usize + claimed.calls.len();
    if claimed.pending > 0 && in_flight < claim.concurrency && claimed.calls.len() == claim.max {
        // Room this host did not take (it took all it may): the others may. (Calls held back
        // by their tenant's quota or order wait for a call to end, which tells everyone.)
        let event = StoreEvent::CallsWaiting {
            name: claim.name.clone(),
        };
        notify(&tx, &event).await?;
    }
    tx.commit().await?;
    Ok(claimed)
}

/// Gives back a call `node` claimed and has not started.
pub(super) async fn release(
    client: &mut deadpool_postgres::ClientWrapper,
    id: &str,
    node: &str,
) -> StoreResult<()> {
    let tx = client.transaction().await?;
    let released = tx
        .query_opt(
            "UPDATE calls SET node = NULL WHERE id = $1 AND state = 'pending' AND node = $2
             RETURNING name",
            &[&id, &node],
        )
        .await?;
    if let Some(row) = released {
        let event = StoreEvent::CallsWaiting {
            name: row.try_get(0)?,
        };
        notify(&tx, &event).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The input of a pending call; `None` if it is not pending.
pub(super) async fn input(client: &impl GenericClient, id: &str) -> StoreResult<Option<CallInput>> {
    let row = client
        .query_opt(
            "SELECT content_type, query, payload, traceparent FROM calls
             WHERE id = $1 AND state = 'pending'",
            &[&id],
        )
        .await?;
    row.map(|row| {
        Ok(CallInput {
            content_type: row.try_get(0)?,
            query: row.try_get(1)?,
            payload: row.try_get(2)?,
            traceparent: row.try_get(3)?,
        })
    })
    .transpose()
}

/// Marks a call `node` claimed running; false if it is not `node`'s.
pub(super) async fn start(client: &impl GenericClient, id: &str, node: &str) -> StoreResult<bool> {
    // The payload is not needed again: a call that was running is never run again.
    let changed = client
        .execute(
            "UPDATE calls SET state = 'running', payload = ''::BYTEA
             WHERE id = $1 AND state IN ('pending', 'running') AND node = $2",
            &[&id, &node],
        )
        .await?;
    Ok(changed == 1)
}

/// Stores how a call ended and rotates its function's oldest results out past `cap` bytes.
pub(super) async fn finish(
    client: &mut deadpool_postgres::ClientWrapper,
    id: &str,
    node: &str,
    outcome: &CallOutcome,
    cap: u64,
) -> StoreResult<Vec<String>> {
    let (columns, bytes) = outcome_columns(outcome)?;
    let tx = client.transaction().await?;
    let name: Option<String> = tx
        .query_opt(
            "UPDATE calls SET state = $2, status = $3, headers = $4, body = $5, error = $6,
                              result_bytes = $7
             WHERE id = $1 AND state IN ('pending', 'running') AND node = $8 RETURNING name",
            &[
                &id,
                &columns.state,
                &columns.status.map(i32::from),
                &columns.headers,
                &columns.body,
                &columns.error,
                &(bytes as i64),
                &node,
            ],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    let mut rotated = Vec::new();
    if let Some(name) = &name {
        // One host at a time rotates a function's results.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('results:' || $1))",
            &[name],
        )
        .await?;
        let total: i64 = tx
            .query_one(
                "SELECT COALESCE(SUM(result_bytes), 0)::BIGINT FROM calls
                 WHERE name = $1 AND state IN ('finished', 'failed')",
                &[name],
            )
            .await?
            .try_get(0)?;
        if total as u64 > cap {
            let mut excess = total as u64 - cap;
            for row in tx
                .query(
                    "SELECT id, result_bytes FROM calls
                     WHERE name = $1 AND state IN ('finished', 'failed') ORDER BY seq",
                    &[name],
                )
                .await?
            {
                if excess == 0 {
                    break;
                }
                rotated.push(row.try_get::<_, String>(0)?);
                excess = excess.saturating_sub(row.try_get::<_, i64>(1)? as u64);
            }
            let now = unix_millis(std::time::SystemTime::now());
            tx.execute("DELETE FROM calls WHERE id = ANY($1)", &[&rotated])
                .await?;
            tx.execute(
                "INSERT INTO rotated_calls (id, name, rotated_at)
                 SELECT id, $2, $3 FROM UNNEST($1::TEXT[]) AS id ON CONFLICT (id) DO NOTHING",
                &[&rotated, name, &now],
            )
            .await?;
            tx.execute(
                "DELETE FROM rotated_calls WHERE seq <= (SELECT MAX(seq) FROM rotated_calls) - $1",
                &[&(MAX_ROTATED_IDS as i64)],
            )
            .await?;
        }
        let waiting = tx
            .query_opt(
                &format!("SELECT 1 FROM calls WHERE name = $1 AND {UNCLAIMED} LIMIT 1"),
                &[name],
            )
            .await?;
        if waiting.is_some() {
            let event = StoreEvent::CallsWaiting { name: name.clone() };
            notify(&tx, &event).await?;
        }
    }
    notify(&tx, &StoreEvent::CallEnded { id: id.to_owned() }).await?;
    tx.commit().await?;
    Ok(rotated)
}

/// Takes a finished call's outcome (removing it), or says why there is none.
pub(super) async fn fetch(
    client: &impl GenericClient,
    id: &str,
    tenant: Option<&str>,
) -> StoreResult<Fetched> {
    let done = client
        .query_opt(
            "DELETE FROM calls WHERE id = $1 AND state IN ('finished', 'failed')
               AND ($2::TEXT IS NULL OR tenant = $2)
             RETURNING state, status, headers, body, error",
            &[&id, &tenant],
        )
        .await?;
    if let Some(row) = done {
        let columns = OutcomeColumns {
            state: row.try_get(0)?,
            status: row
                .try_get::<_, Option<i32>>(1)?
                .map(|status| status as u16),
            headers: row.try_get(2)?,
            body: row.try_get(3)?,
            error: row.try_get(4)?,
        };
        return Ok(Fetched::Done(columns.parse(id)?));
    }
    let state = client
        .query_opt(
            "SELECT state FROM calls WHERE id = $1 AND ($2::TEXT IS NULL OR tenant = $2)",
            &[&id, &tenant],
        )
        .await?;
    if let Some(row) = state {
        let state: String = row.try_get(0)?;
        let state = CallState::parse(&state)
            .ok_or_else(|| anyhow!("call {id} is in an unknown state {state:?}"))?;
        return Ok(Fetched::NotYet(state));
    }
    let rotated = client
        .query_opt("SELECT 1 FROM rotated_calls WHERE id = $1", &[&id])
        .await?;
    Ok(if rotated.is_some() {
        Fetched::RotatedOut
    } else {
        Fetched::Unknown
    })
}

/// The functions with calls nobody has claimed, with how many.
pub(super) async fn pending(client: &impl GenericClient) -> StoreResult<Vec<(String, usize)>> {
    let rows = client
        .query(
            &format!(
                "SELECT name, COUNT(*) FROM calls WHERE {UNCLAIMED} GROUP BY name ORDER BY name"
            ),
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get::<_, i64>(1)? as usize)))
        .collect()
}

/// Renews `node`'s lease; how many hosts hold a live one.
pub(super) async fn heartbeat(client: &impl GenericClient, node: &str) -> StoreResult<usize> {
    client
        .execute(
            "INSERT INTO nodes (id, heartbeat_at) VALUES ($1, now())
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
            &[&node],
        )
        .await?;
    let live: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM nodes WHERE heartbeat_at > now() - $1::TEXT::INTERVAL",
            &[&lease()],
        )
        .await?
        .try_get(0)?;
    Ok(live.max(1) as usize)
}

/// Takes over from the hosts whose lease ran out (and from any whose row is gone): their
/// claimed calls are pending again, their running calls become `node`'s (returned, in arrival
/// order). `node`'s own claims not in `holding` are pending again.
pub(super) async fn reap(
    client: &mut deadpool_postgres::ClientWrapper,
    node: &str,
    holding: &[String],
) -> StoreResult<Vec<QueuedCall>> {
    let tx = client.transaction().await?;
    let lost: Vec<String> = tx
        .query(
            "UPDATE calls SET node = NULL
             WHERE state = 'pending' AND node = $1 AND NOT (id = ANY($2))
             RETURNING name",
            &[&node, &holding],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    // Each dead host is taken over once: by the host that deletes its row.
    let mut dead: Vec<String> = tx
        .query(
            "DELETE FROM nodes WHERE id IN (
               SELECT id FROM nodes WHERE heartbeat_at <= now() - $1::TEXT::INTERVAL AND id != $2
               FOR UPDATE SKIP LOCKED)
             RETURNING id",
            &[&lease(), &node],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    // Hosts with calls but no row: taken over before, then claimed once more before they died.
    for row in tx
        .query(
            "SELECT DISTINCT node FROM calls
             WHERE state IN ('pending', 'running') AND node IS NOT NULL AND node != $1
               AND node NOT IN (SELECT id FROM nodes)",
            &[&node],
        )
        .await?
    {
        dead.push(row.try_get(0)?);
    }
    let mut waiting = lost;
    if dead.is_empty() {
        waiting.sort();
        waiting.dedup();
        for name in waiting {
            notify(&tx, &StoreEvent::CallsWaiting { name }).await?;
        }
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let released = tx
        .query(
            "UPDATE calls SET node = NULL WHERE state = 'pending' AND node = ANY($1)
             RETURNING name",
            &[&dead],
        )
        .await?;
    for row in released {
        waiting.push(row.try_get(0)?);
    }
    waiting.sort();
    waiting.dedup();
    for name in waiting {
        notify(&tx, &StoreEvent::CallsWaiting { name }).await?;
    }
    let adopted = tx
        .query(
            "UPDATE calls SET node = $2 WHERE state = 'running' AND node = ANY($1)
             RETURNING seq, id, name, tenant",
            &[&dead, &node],
        )
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<_, i64>(0)?,
                QueuedCall {
                    id: row.try_get(1)?,
                    name: row.try_get(2)?,
                    tenant: row.try_get(3)?,
                },
            ))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    tx.commit().await?;
    Ok(arrival_order(adopted))
}
