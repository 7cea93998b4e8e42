//! A store that keeps everything in the process's memory, gone when it ends: for
//! `functions-host run`, tests, and embedders that persist nothing. It keeps the same rules as
//! the SQLite store (versions, capped logs, calls that run once, results fetched once and
//! rotated out past the cap).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;

use tokio::sync::broadcast;

use super::CALL_TOKEN_BYTES;
use super::CLAIM_WINDOW;
use super::CallInput;
use super::CallOutcome;
use super::CallState;
use super::Claim;
use super::Claimed;
use super::Deployment;
use super::DeploymentSummary;
use super::EVENT_BUFFER;
use super::Fetched;
use super::LOG_LINE_OVERHEAD;
use super::LogLines;
use super::MAX_ROTATED_IDS;
use super::NewDeployment;
use super::OwnedByAnother;
use super::QueueLimits;
use super::Queued;
use super::QueuedCall;
use super::Store;
use super::StoreEvent;
use super::StoreResult;
use super::StoredLog;
use super::TenantCalls;
use super::choose_claims;
use super::random_hex;
use super::unix_millis;

/// Deployments, logs and calls in memory.
pub struct MemoryStore {
    state: Mutex<State>,
    events: broadcast::Sender<StoreEvent>,
    log_cap_bytes: u64,
}

#[derive(Default)]
struct State {
    functions: BTreeMap<String, Function>,
    /// The id of the last log line appended.
    next_log_id: i64,
    /// Calls by arrival order.
    calls: BTreeMap<u64, Call>,
    call_seq: HashMap<String, u64>,
    next_seq: u64,
    /// Ids of results rotated out, oldest first.
    rotated: VecDeque<String>,
}

struct Function {
    current: Deployment,
    created_at: i64,
    logs: VecDeque<StoredLog>,
    log_bytes: u64,
}

impl Call {
    /// Whether it waits for a host to claim it.
    fn is_unclaimed(&self) -> bool {
        self.state == CallState::Pending && self.node.is_none()
    }

    /// Whether a host claimed or runs it.
    fn in_flight(&self) -> bool {
        (self.state == CallState::Pending && self.node.is_some())
            || self.state == CallState::Running
    }
}

/// Whether `function` is `owner`'s (any owner's when `owner` is `None`).
fn is_owned_by(function: &Function, owner: Option<&str>) -> bool {
    owner.is_none_or(|owner| function.current.summary.owner.as_deref() == Some(owner))
}

struct Call {
    call: QueuedCall,
    state: CallState,
    /// The host that claimed it (while pending) or runs it.
    node: Option<String>,
    input: CallInput,
    outcome: Option<CallOutcome>,
    result_bytes: u64,
}

impl MemoryStore {
    /// An empty store whose functions' logs are capped at `log_cap_bytes` each.
    pub fn new(log_cap_bytes: u64) -> Self {
        Self {
            state: Mutex::default(),
            events: broadcast::channel(EVENT_BUFFER).0,
            log_cap_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn announce(&self, event: StoreEvent) {
        let _ = self.events.send(event);
    }
}

/// The bytes a result takes in its function's result cache.
fn outcome_bytes(outcome: &CallOutcome) -> u64 {
    match outcome {
        CallOutcome::Finished(result) => {
            let headers: usize = result
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 6)
                .sum();
            (result.body.len() + headers + 2) as u64
        }
        CallOutcome::Failed(err) => super::stored_failure(err).len() as u64,
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn deploy(&self, new: NewDeployment) -> StoreResult<Deployment> {
        let now = unix_millis(std::time::SystemTime::now());
        let mut state = self.lock();
        let previous = state.functions.get(&new.name);
        if let (Some(previous), Some(claim)) = (previous, &new.owner)
            && previous.current.summary.owner.as_ref() != Some(claim)
        {
            return Err(OwnedByAnother(new.name).into());
        }
        let owner = previous.map_or_else(|| new.owner.clone(), |f| f.current.summary.owner.clone());
        let version = previous.map_or(1, |f| f.current.version() + 1);
        let created_at = previous.map_or(now, |f| f.created_at);
        let call_token = previous.map_or_else(
            || random_hex(CALL_TOKEN_BYTES),
            |f| f.current.summary.call_token.clone(),
        );
        let name = new.name.clone();
        let deployment = new.stored(version, call_token, owner, (now, created_at));
        let (logs, log_bytes) = state
            .functions
            .remove(&name)
            .map_or_else(Default::default, |f| (f.logs, f.log_bytes));
        state.functions.insert(
            name.clone(),
            Function {
                current: deployment.clone(),
                created_at,
                logs,
                log_bytes,
            },
        );
        drop(state);
        self.announce(StoreEvent::Deployed { name, version });
        Ok(deployment)
    }

    async fn current_deployments(&self) -> StoreResult<Vec<Deployment>> {
        Ok(self
            .lock()
            .functions
            .values()
            .map(|f| f.current.clone())
            .collect())
    }

    async fn list(&self) -> StoreResult<Vec<DeploymentSummary>> {
        Ok(self
            .lock()
            .functions
            .values()
            .map(|f| f.current.summary.clone())
            .collect())
    }

    async fn get(&self, name: &str) -> StoreResult<Option<Deployment>> {
        Ok(self.lock().functions.get(name).map(|f| f.current.clone()))
    }

    async fn delete(&self, name: &str, owner: Option<&str>) -> StoreResult<bool> {
        let deleted = {
            let mut state = self.lock();
            let owned = state
                .functions
                .get(name)
                .is_some_and(|f| is_owned_by(f, owner));
            owned && state.functions.remove(name).is_some()
        };
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
        let mut state = self.lock();
        let current = state
            .functions
            .get_mut(name)
            .map(|function| &mut function.current)
            .filter(|current| current.summary.version == version);
        match current.and_then(|current| current.runtime_code.as_mut()) {
            Some(code) => {
                code.snapshot = snapshot;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn rotate_call_token(
        &self,
        name: &str,
        owner: Option<&str>,
    ) -> StoreResult<Option<String>> {
        let token = random_hex(CALL_TOKEN_BYTES);
        let rotated = match self.lock().functions.get_mut(name) {
            Some(function) if is_owned_by(function, owner) => {
                function.current.summary.call_token = token.clone();
                true
            }
            _ => false,
        };
        if !rotated {
            return Ok(None);
        }
        self.announce(StoreEvent::TokenRotated {
            name: name.to_owned(),
        });
        Ok(Some(token))
    }

    async fn append_logs(&self, batch: Vec<LogLines>) -> StoreResult<()> {
        let mut logged = Vec::new();
        {
            let mut state = self.lock();
            for LogLines {
                name,
                owner,
                entries,
            } in batch
            {
                if entries.is_empty() {
                    continue;
                }
                let mut next_id = state.next_log_id;
                // Lines of a function that is not (or no longer) deployed, or no longer their
                // owner's, have nowhere to go.
                let Some(function) = state
                    .functions
                    .get_mut(&name)
                    .filter(|f| f.current.summary.owner == owner)
                else {
                    continue;
                };
                for entry in entries {
                    next_id += 1;
                    function.log_bytes += entry.message.len() as u64 + LOG_LINE_OVERHEAD;
                    function.logs.push_back(StoredLog {
                        id: next_id,
                        timestamp: unix_millis(entry.timestamp),
                        level: entry.level.to_owned(),
                        source: entry.source,
                        message: entry.message,
                    });
                }
                while function.log_bytes > self.log_cap_bytes {
                    let Some(oldest) = function.logs.pop_front() else {
                        break;
                    };
                    function.log_bytes -= oldest.message.len() as u64 + LOG_LINE_OVERHEAD;
                }
                state.next_log_id = next_id;
                logged.push(name);
            }
        }
        for name in logged {
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
        let state = self.lock();
        let function = state.functions.get(name).filter(|f| is_owned_by(f, owner));
        Ok(function.map_or_else(Vec::new, |f| {
            f.logs
                .iter()
                .filter(|line| line.id > after)
                .take(limit as usize)
                .cloned()
                .collect()
        }))
    }

    async fn add_call(
        &self,
        call: &QueuedCall,
        input: CallInput,
        limits: QueueLimits,
    ) -> StoreResult<Queued> {
        let mut state = self.lock();
        if state.call_seq.contains_key(&call.id) {
            anyhow::bail!("call {} exists already", call.id);
        }
        let of_function = || state.calls.values().filter(|c| c.call.name == call.name);
        let waiting = of_function()
            .filter(|c| c.state == CallState::Pending && c.node.is_none())
            .count();
        if waiting >= limits.max_pending {
            return Ok(Queued::Full);
        }
        let in_flight = of_function().filter(|c| c.in_flight()).count();
        let queued = if waiting == 0 && in_flight < limits.concurrency {
            Queued::Next
        } else {
            Queued::Waits
        };
        let seq = state.next_seq;
        state.next_seq += 1;
        state.call_seq.insert(call.id.clone(), seq);
        state.calls.insert(
            seq,
            Call {
                call: call.clone(),
                state: CallState::Pending,
                node: None,
                input,
                outcome: None,
                result_bytes: 0,
            },
        );
        Ok(queued)
    }

    async fn claim_calls(&self, claim: Claim) -> StoreResult<Claimed> {
        let mut state = self.lock();
        let of_function = || state.calls.values().filter(|c| c.call.name == claim.name);
        let in_flight = of_function().filter(|c| c.in_flight()).count();
        let room = claim.concurrency.saturating_sub(in_flight).min(claim.max);
        let candidates: Vec<u64> = state
            .calls
            .iter()
            .filter(|(_, c)| c.call.name == claim.name && c.is_unclaimed())
            .map(|(seq, _)| *seq)
            .take(CLAIM_WINDOW)
            .collect();
        let order: Vec<(i64, Option<String>)> = candidates
            .iter()
            .map(|seq| (*seq as i64, state.calls[seq].call.tenant.clone()))
            .collect();
        let mut tenants: HashMap<String, TenantCalls> = HashMap::new();
        for (seq, call) in &state.calls {
            let Some(tenant) = &call.call.tenant else {
                continue;
            };
            let calls = tenants.entry(tenant.clone()).or_default();
            if call.in_flight() {
                calls.running += 1;
            } else if call.is_unclaimed() && call.call.name != claim.name {
                let seq = *seq as i64;
                calls.first_elsewhere = Some(calls.first_elsewhere.map_or(seq, |s| s.min(seq)));
            }
        }
        let chosen = choose_claims(&order, room, &mut tenants, &claim.tenant_quota);
        let mut claimed = Claimed::default();
        for index in chosen {
            let call = state.calls.get_mut(&candidates[index]).expect("listed");
            call.node = Some(claim.node.clone());
            claimed.calls.push(call.call.clone());
        }
        claimed.pending = state
            .calls
            .values()
            .filter(|c| c.call.name == claim.name && c.is_unclaimed())
            .count();
        Ok(claimed)
    }

    async fn release_call(&self, id: &str, node: &str) -> StoreResult<()> {
        let mut state = self.lock();
        if let Some(seq) = state.call_seq.get(id).copied()
            && let Some(call) = state.calls.get_mut(&seq)
            && call.state == CallState::Pending
            && call.node.as_deref() == Some(node)
        {
            call.node = None;
        }
        Ok(())
    }

    async fn call_input(&self, id: &str) -> StoreResult<Option<CallInput>> {
        let state = self.lock();
        Ok(state
            .call_seq
            .get(id)
            .and_then(|seq| state.calls.get(seq))
            .filter(|call| call.state == CallState::Pending)
            .map(|call| call.input.clone()))
    }

    async fn start_call(&self, id: &str, node: &str) -> StoreResult<bool> {
        let mut state = self.lock();
        let Some(seq) = state.call_seq.get(id).copied() else {
            return Ok(false);
        };
        let Some(call) = state.calls.get_mut(&seq).filter(|call| {
            matches!(call.state, CallState::Pending | CallState::Running)
                && call.node.as_deref() == Some(node)
        }) else {
            return Ok(false);
        };
        call.state = CallState::Running;
        call.input.payload = Vec::new();
        Ok(true)
    }

    async fn finish_call(
        &self,
        id: &str,
        node: &str,
        outcome: &CallOutcome,
        cap: u64,
    ) -> StoreResult<Vec<String>> {
        let mut rotated = Vec::new();
        {
            let mut state = self.lock();
            let Some(seq) = state.call_seq.get(id).copied() else {
                return Ok(rotated);
            };
            let Some(call) = state.calls.get_mut(&seq).filter(|call| {
                matches!(call.state, CallState::Pending | CallState::Running)
                    && call.node.as_deref() == Some(node)
            }) else {
                return Ok(rotated);
            };
            call.state = match outcome {
                CallOutcome::Finished(_) => CallState::Finished,
                CallOutcome::Failed(_) => CallState::Failed,
            };
            call.result_bytes = outcome_bytes(outcome);
            call.outcome = Some(outcome.clone());
            let name = call.call.name.clone();
            let done = |call: &Call| {
                call.call.name == name
                    && matches!(call.state, CallState::Finished | CallState::Failed)
            };
            let total: u64 = state
                .calls
                .values()
                .filter(|call| done(call))
                .map(|call| call.result_bytes)
                .sum();
            let mut excess = total.saturating_sub(cap);
            let oldest: Vec<u64> = state
                .calls
                .iter()
                .filter(|(_, call)| done(call))
                .map(|(seq, _)| *seq)
                .collect();
            for seq in oldest {
                if excess == 0 {
                    break;
                }
                let call = state.calls.remove(&seq).expect("listed above");
                state.call_seq.remove(&call.call.id);
                excess = excess.saturating_sub(call.result_bytes);
                rotated.push(call.call.id);
            }
            for id in &rotated {
                state.rotated.push_back(id.clone());
            }
            while state.rotated.len() > MAX_ROTATED_IDS {
                state.rotated.pop_front();
            }
        }
        self.announce(StoreEvent::CallEnded { id: id.to_owned() });
        Ok(rotated)
    }

    async fn fetch_call(&self, id: &str, tenant: Option<&str>) -> StoreResult<Fetched> {
        let mut state = self.lock();
        let seq =
            state.call_seq.get(id).copied().filter(|seq| {
                tenant.is_none() || state.calls[seq].call.tenant.as_deref() == tenant
            });
        if let Some(seq) = seq {
            let call = &state.calls[&seq];
            if call.outcome.is_none() {
                return Ok(Fetched::NotYet(call.state));
            }
            state.call_seq.remove(id);
            let call = state.calls.remove(&seq).expect("indexed");
            return Ok(Fetched::Done(call.outcome.expect("checked above")));
        }
        Ok(if state.rotated.iter().any(|rotated| rotated == id) {
            Fetched::RotatedOut
        } else {
            Fetched::Unknown
        })
    }

    async fn pending_calls(&self) -> StoreResult<Vec<(String, usize)>> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for call in self
            .lock()
            .calls
            .values()
            .filter(|call| call.is_unclaimed())
        {
            *counts.entry(call.call.name.clone()).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }

    async fn heartbeat(&self, _node: &str) -> StoreResult<usize> {
        // Only the host that made it uses a store in memory.
        Ok(1)
    }

    async fn reap_calls(&self, node: &str, holding: &[String]) -> StoreResult<Vec<QueuedCall>> {
        // Only one host uses a store in memory: any other is gone.
        let mut adopted = Vec::new();
        for call in self.lock().calls.values_mut() {
            let Some(host) = call.node.as_deref() else {
                continue;
            };
            if host == node {
                if call.state == CallState::Pending && !holding.contains(&call.call.id) {
                    call.node = None;
                }
                continue;
            }
            match call.state {
                CallState::Pending => call.node = None,
                CallState::Running => {
                    call.node = Some(node.to_owned());
                    adopted.push(call.call.clone());
                }
                CallState::Finished | CallState::Failed => {}
            }
        }
        Ok(adopted)
    }

    fn events(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }
}
