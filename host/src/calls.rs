//! Asynchronous calls: [`crate::Host::call`] stores one and answers its id at once;
//! [`crate::Host::result`] answers its outcome once it is done (and forgets it).
//!
//! Calls wait in the store, not in a host: each host's [`Dispatcher`] claims the pending calls
//! of a function in arrival order when it has room for them ([`crate::Store::claim_calls`]),
//! within the function's `concurrency` and each API key's quota of calls at once, both counted
//! in the store (so on a shared store they hold for all hosts together). A claimed call takes
//! its place in its function's lane on the host, which synchronous invocations share, and
//! starts in claim order. Each step is logged in the function's logs: `CALL`, `PENDING` (when
//! it has to wait), `RUNNING`, then `FINISHED` or `FAILED`.
//!
//! A host renews its claims with a heartbeat. When a host stops (on one host: when the host
//! that opens the store again finds calls of its predecessor; on a shared store: when another
//! host finds its lease expired), its claimed calls become pending again and run once on a
//! host that lives, and its running calls fail as `host_restarted` (they may have had effects,
//! so they are not run again).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::Weak;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use crate::Error;
use crate::ErrorKind;
use crate::Inner;
use crate::lanes::Permit;
use crate::metrics::Via;
use crate::store::CallInput;
use crate::store::CallOutcome;
use crate::store::Claim;
use crate::store::LogEntry;
use crate::store::QueueLimits;
use crate::store::Queued;
use crate::store::QueuedCall;
use crate::store::StoreEvent;
use crate::store::TenantQuota;

/// How much of a call's input or output its log lines quote.
const LOG_PREFIX_CHARS: usize = 80;

/// How often a host renews its lease, takes over from hosts that died, and looks for calls
/// it heard nothing of.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Takes calls from the store for this host and starts them in order.
pub(crate) struct Dispatcher {
    /// This host's name among the hosts on the store (random, new at each start).
    node: String,
    /// Each API key's quota of calls at once.
    tenant_quota: TenantQuota,
    /// Wakes the dispatching task.
    wake: tokio::sync::Notify,
    /// Functions that may have calls to claim, and whether this host just added one (then it
    /// claims even without room of its own, so that the others hear of room it leaves).
    wanted: Mutex<BTreeMap<String, bool>>,
    /// The calls this host holds (claimed, waiting for their turn or running): id to function.
    holding: Mutex<HashMap<String, String>>,
    /// Unclaimed calls per function, as last seen (synchronous invocations count them as
    /// waiting too).
    pending: Mutex<HashMap<String, usize>>,
    /// Hosts with a live lease on the store, this one included.
    live_nodes: AtomicUsize,
    /// Per function: (the number the next claimed call gets, the number of the next call to
    /// start). Claimed calls take their places in number order, and start (are marked running
    /// and logged) in it too, though their tasks may wake in another.
    turns: Mutex<HashMap<String, (u64, u64)>>,
    /// Notified whenever a numbered call has started.
    started: tokio::sync::Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Dispatcher {
    /// A dispatcher for a new host, which API keys `quotas` (tenant id to quota) limit.
    pub fn new(quotas: HashMap<String, usize>) -> Self {
        Self {
            node: format!("node-{}", crate::store::random_hex(8)),
            tenant_quota: Arc::new(move |tenant: &str| {
                quotas
                    .get(tenant)
                    .copied()
                    .unwrap_or(crate::tenants::DEFAULT_TENANT_CONCURRENCY)
            }),
            wake: tokio::sync::Notify::new(),
            wanted: Mutex::default(),
            holding: Mutex::default(),
            pending: Mutex::default(),
            live_nodes: AtomicUsize::new(1),
            turns: Mutex::default(),
            started: tokio::sync::Notify::new(),
        }
    }

    /// This host's name on the store.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Hosts with a live lease on the store, as of the last heartbeat.
    pub fn live_nodes(&self) -> usize {
        self.live_nodes.load(Ordering::Relaxed).max(1)
    }

    /// This host's share of a limit of `limit` for all hosts together (at least one): what
    /// each host allows of the synchronous invocations it serves itself.
    pub fn share(&self, limit: usize) -> usize {
        let nodes = self.live_nodes.load(Ordering::Relaxed).max(1);
        limit.div_ceil(nodes).max(1)
    }

    /// Unclaimed calls of `name`, as last seen.
    pub fn pending(&self, name: &str) -> usize {
        lock(&self.pending).get(name).copied().unwrap_or(0)
    }

    /// Calls of `name` this host holds: claimed, waiting for their turn or running.
    pub fn claimed(&self, name: &str) -> usize {
        lock(&self.holding).values().filter(|n| *n == name).count()
    }

    /// Asks for `name`'s calls to be claimed; `added` when this host just added one.
    fn want(&self, name: &str, added: bool) {
        *lock(&self.wanted).entry(name.to_owned()).or_default() |= added;
        self.wake.notify_one();
    }

    /// Numbers a call of `name` that takes its place in line now.
    fn number(&self, name: &str) -> u64 {
        let mut turns = lock(&self.turns);
        let (next, _) = turns.entry(name.to_owned()).or_default();
        *next += 1;
        *next - 1
    }

    /// Waits until call `number` of `name` is the next to start.
    async fn await_turn(&self, name: &str, number: u64) {
        loop {
            let started = self.started.notified();
            tokio::pin!(started);
            started.as_mut().enable();
            if lock(&self.turns)
                .get(name)
                .is_some_and(|(_, turn)| *turn == number)
            {
                return;
            }
            started.await;
        }
    }

    /// Lets the call after the one that just started start.
    fn pass_turn(&self, name: &str) {
        if let Some((_, turn)) = lock(&self.turns).get_mut(name) {
            *turn += 1;
        }
        self.started.notify_waiters();
    }

    /// Call `id` of `name` this host held is done (or given back): room for another.
    fn release(&self, name: &str, id: &str) {
        lock(&self.holding).remove(id);
        self.want(name, false);
    }
}

/// Stores a new call of `name` (which must be deployed); its id. The call runs on whichever
/// host claims it first.
pub(crate) async fn create(
    inner: &Arc<Inner>,
    name: &str,
    input: CallInput,
    tenant: Option<crate::Tenant>,
) -> Result<String, Error> {
    let Some(deployed) = inner.registry.get(name) else {
        return Err(Error::function_not_found(name));
    };
    if input.payload.len() > crate::MAX_PAYLOAD_BYTES {
        return Err(Error::payload_too_large(crate::MAX_PAYLOAD_BYTES));
    }
    let call = QueuedCall {
        id: crate::store::random_hex(16),
        name: name.to_owned(),
        tenant: tenant.as_ref().map(|t| t.id.clone()),
    };
    let line = format!("CALL {} {}", call.id, quote(&input.payload));
    let limits = QueueLimits {
        concurrency: deployed.concurrency,
        max_pending: inner.max_queued,
    };
    let queued = inner
        .store
        .add_call(&call, input, limits)
        .await
        .map_err(Error::store)?;
    let owner = deployed.owner.as_deref();
    match queued {
        Queued::Full => return Err(Error::queue_full(name, inner.max_queued)),
        Queued::Next => log(inner, name, owner, "info", line).await,
        Queued::Waits => {
            log(inner, name, owner, "info", line).await;
            let line = format!("PENDING {}", call.id);
            log(inner, name, owner, "info", line).await;
        }
    }
    inner.metrics.call(name, "queued");
    // Only now is it claimed: its CALL line comes before any other.
    inner.dispatcher.want(name, true);
    Ok(call.id)
}

/// Whether the key that made `call` may use its function, now owned by `owner`: the function
/// may have been deleted and deployed again by another key since the call was queued, and a
/// call never reaches another key's function.
fn may_still_use(inner: &Inner, call: &QueuedCall, owner: Option<&str>) -> bool {
    call.tenant.as_deref().is_none_or(|id| {
        inner
            .api_keys
            .tenant(id)
            .map_or(owner == Some(id), |tenant| tenant.may_use(owner))
    })
}

/// Whose function a line about `call` goes to: its function's owner while the call's key may
/// use that function, else the key's own (so that the line reaches no other key's function).
fn log_owner(inner: &Inner, call: &QueuedCall) -> Option<Arc<str>> {
    let deployed = inner.registry.get(&call.name);
    match deployed.filter(|d| may_still_use(inner, call, d.owner.as_deref())) {
        Some(deployed) => deployed.owner,
        None => call.tenant.as_deref().map(Into::into),
    }
}

/// Starts the host's heartbeat and dispatching tasks (they end with the host), after taking
/// over the calls of the host's predecessors on the store.
pub(crate) async fn start(inner: &Arc<Inner>) -> Result<(), Error> {
    heartbeat(inner).await.map_err(Error::store)?;
    take_over(inner).await.map_err(Error::store)?;
    let host = Arc::downgrade(inner);
    tokio::spawn(heartbeats(host.clone()));
    tokio::spawn(dispatch(host, inner.store.events()));
    Ok(())
}

/// Renews this host's lease, learning how many hosts live (whose shares of the limits follow).
async fn heartbeat(inner: &Inner) -> anyhow::Result<()> {
    let dispatcher = &inner.dispatcher;
    let live = inner.store.heartbeat(&dispatcher.node).await?;
    dispatcher.live_nodes.store(live, Ordering::Relaxed);
    inner.api_keys.set_hosts(live);
    Ok(())
}

/// The heartbeat task: a task of its own, so that nothing else this host does delays it past
/// its lease.
async fn heartbeats(host: Weak<Inner>) {
    let mut every = tokio::time::interval(HEARTBEAT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(inner) = host.upgrade() else { return };
        if let Err(err) = heartbeat(&inner).await {
            eprintln!("functions-host: renewing this host's lease on its calls: {err:#}");
        }
    }
}

/// Takes over the calls of hosts that died (failing their running calls, each in a task of its
/// own) and gives back claims of this host's that it does not hold.
async fn take_over(inner: &Arc<Inner>) -> anyhow::Result<()> {
    let dispatcher = &inner.dispatcher;
    let holding: Vec<String> = lock(&dispatcher.holding).keys().cloned().collect();
    for call in inner.store.reap_calls(&dispatcher.node, &holding).await? {
        let inner = inner.clone();
        tokio::spawn(async move {
            let err = Error::new(
                ErrorKind::HostRestarted,
                "host restarted: the call was running when its host stopped, and may have had \
                 effects, so it was not run again",
            );
            let owner = log_owner(&inner, &call);
            finish(&inner, &call, owner.as_deref(), CallOutcome::Failed(err)).await;
        });
    }
    Ok(())
}

/// The dispatching task: claims calls whenever this host may have room for them and there
/// may be some (woken by this host, by the store's events, and every [`HEARTBEAT_EVERY`]).
async fn dispatch(host: Weak<Inner>, mut events: tokio::sync::broadcast::Receiver<StoreEvent>) {
    let mut look_around = tokio::time::interval(HEARTBEAT_EVERY);
    look_around.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(inner) = host.upgrade() else { return };
        let mut look_everywhere = false;
        tokio::select! {
            () = inner.dispatcher.wake.notified() => {}
            _ = look_around.tick() => look_everywhere = true,
            event = events.recv() => match event {
                Ok(StoreEvent::CallsWaiting { name }) => inner.dispatcher.want(&name, false),
                Ok(StoreEvent::Missed) | Err(RecvError::Lagged(_)) => look_everywhere = true,
                Ok(_) => continue,
                Err(RecvError::Closed) => return,
            },
        }
        if look_everywhere {
            if let Err(err) = take_over(&inner).await {
                eprintln!("functions-host: taking over the calls of hosts gone: {err:#}");
            }
            match inner.store.pending_calls().await {
                Ok(pending) => {
                    *lock(&inner.dispatcher.pending) = pending.iter().cloned().collect();
                    for (name, _) in pending {
                        inner.dispatcher.want(&name, false);
                    }
                }
                Err(err) => eprintln!("functions-host: looking for calls: {err:#}"),
            }
        }
        if inner.is_draining() {
            continue;
        }
        claim_wanted(&inner).await;
    }
}

/// Whether this host should leave `name`'s calls alone for now: it has not loaded the function
/// (deployed on another host a moment ago), which the store has. Calls of a function the store
/// does not have either are claimed, to fail as not found.
async fn not_loaded_yet(inner: &Inner, name: &str) -> bool {
    if inner.registry.get(name).is_some() || !inner.store.shared() {
        return false;
    }
    match inner.store.list().await {
        Ok(functions) => functions.iter().any(|f| f.name == name),
        // Tried again at the next look.
        Err(_) => true,
    }
}

/// Claims what this host has room for of each wanted function's calls, and starts them.
async fn claim_wanted(inner: &Arc<Inner>) {
    let dispatcher = &inner.dispatcher;
    let wanted: Vec<(String, bool)> = std::mem::take(&mut *lock(&dispatcher.wanted))
        .into_iter()
        .collect();
    for (name, added) in wanted {
        if not_loaded_yet(inner, &name).await {
            // Wanted again once this host serves it (every look around finds its calls).
            continue;
        }
        let concurrency = inner
            .registry
            .get(&name)
            .map_or(1, |deployed| deployed.concurrency);
        let held = (lock(&dispatcher.holding).values())
            .filter(|function| **function == name)
            .count();
        let room = dispatcher.share(concurrency).saturating_sub(held);
        if room == 0 && !added {
            // Woken again when one of its calls here ends.
            continue;
        }
        let claim = Claim {
            node: dispatcher.node.clone(),
            name: name.clone(),
            concurrency,
            max: room,
            tenant_quota: dispatcher.tenant_quota.clone(),
        };
        let claimed = match inner.store.claim_calls(claim).await {
            Ok(claimed) => claimed,
            Err(err) => {
                eprintln!("functions-host: claiming calls of {name}: {err:#}");
                continue;
            }
        };
        lock(&dispatcher.pending).insert(name.clone(), claimed.pending);
        if claimed.contended {
            // Another host is claiming them: its claim tells the others of room it leaves.
            continue;
        }
        if claimed.pending > 0 {
            // Tried again at the next wake: what held them back (room, a tenant's quota or an
            // older call of its tenant) may be gone by then.
            lock(&dispatcher.wanted).entry(name.clone()).or_default();
        }
        lock(&dispatcher.holding)
            .extend((claimed.calls.iter()).map(|call| (call.id.clone(), call.name.clone())));
        for call in claimed.calls {
            schedule(inner, call, concurrency);
        }
    }
}

/// Puts a call this host claimed in its function's lane and runs it at its turn. Called in
/// claim order: places are taken synchronously.
fn schedule(inner: &Arc<Inner>, call: QueuedCall, concurrency: usize) {
    let metrics = inner.metrics.clone();
    let name = call.name.clone();
    let ticket = inner
        .lanes
        .enqueue(&call.name, inner.dispatcher.share(concurrency))
        .on_turn(move |waited| metrics.waited(&name, Via::Call, waited));
    let number = inner.dispatcher.number(&call.name);
    let inner = inner.clone();
    tokio::spawn(async move {
        let permit = ticket.await;
        inner.dispatcher.await_turn(&call.name, number).await;
        match run(&inner, &call, permit).await {
            Ran::Done => inner.dispatcher.release(&call.name, &call.id),
            // Its place was given back while the store could not be reached: it queues again.
            Ran::Later => schedule(&inner, call, concurrency),
        }
    });
}

/// How [`run`] left a call.
#[derive(Debug, PartialEq, Eq)]
enum Ran {
    /// Ran (here or elsewhere), or was given back to the store.
    Done,
    /// Not started: the store could not be reached at its turn (it answers again now).
    Later,
}

/// Runs a claimed call whose turn it is, stores its outcome. The call is marked running (and
/// logged so) only when its function is about to run it: until then it is pending, and a host
/// that stops gives it back. Its place in the lane is held while it runs, not while the store
/// is unreachable: synchronous invocations go on meanwhile.
async fn run(inner: &Arc<Inner>, call: &QueuedCall, permit: Permit) -> Ran {
    let dispatcher = &inner.dispatcher;
    let pass_turn = || dispatcher.pass_turn(&call.name);
    if inner.is_draining() {
        // The host is shutting down: the call is pending again, for another host (or this
        // one's next start) to run.
        pass_turn();
        persist(&format!("giving back call {}", call.id), || {
            inner.store.release_call(&call.id, &dispatcher.node)
        })
        .await;
        return Ran::Done;
    }
    let reading = format!("reading call {}", call.id);
    let input = match inner.store.call_input(&call.id).await {
        Ok(input) => input,
        Err(_) => {
            // Its place goes to the next in line until the store answers.
            pass_turn();
            drop(permit);
            persist(&reading, || inner.store.call_input(&call.id)).await;
            return Ran::Later;
        }
    };
    let Some(input) = input else {
        // Not pending any more: it ran already.
        pass_turn();
        return Ran::Done;
    };
    let deployed = inner.registry.get(&call.name);
    let Some(deployed) = deployed.filter(|d| may_still_use(inner, call, d.owner.as_deref())) else {
        pass_turn();
        let outcome = CallOutcome::Failed(Error::function_not_found(&call.name));
        // Logged (if anywhere) only to a function of the key that made the call.
        finish(inner, call, call.tenant.as_deref(), outcome).await;
        return Ran::Done;
    };
    let request = inner.call_request(&call.name, &call.id, input);
    let (gate, starting) = functions_runtime::start_gate();
    let cancel = functions_runtime::Cancel::new();
    let controls = functions_runtime::Controls {
        start: Some(gate),
        cancel: Some(cancel.clone()),
        ..functions_runtime::Controls::default()
    };
    // Whether it runs here, and (when it does not) the gate kept shut until it is cancelled.
    let start = async {
        let Some(go) = starting.ready().await else {
            // It ended before it could start (its module failed to load).
            pass_turn();
            return (true, None);
        };
        let started = persist(&format!("starting call {}", call.id), || {
            inner.store.start_call(&call.id, &dispatcher.node)
        })
        .await;
        if !started {
            pass_turn();
            // Taken over by another host (this one was thought dead): it runs there.
            cancel.cancel("the call was taken over by another host");
            return (false, Some(go));
        }
        // With hosts sharing the store, which one runs it.
        let line = match inner.store.shared() {
            true => format!("RUNNING {} on {}", call.id, dispatcher.node),
            false => format!("RUNNING {}", call.id),
        };
        let entries = vec![LogEntry::from_host("info", line)];
        let logged = (inner.logs).queue(&call.name, deployed.owner.as_deref(), entries);
        // Only once the line is queued, so that the next call's `RUNNING` line comes after it.
        pass_turn();
        logged.await;
        go.go();
        (true, None)
    };
    // The call holds its place while it runs.
    let execute = async {
        match inner
            .execute(&deployed, request, controls, (), Via::Call)
            .await
        {
            Ok(response) => crate::invoke::collect(response).await,
            Err(err) => Err(err),
        }
    };
    let ((ran_here, _shut), outcome) = tokio::join!(start, execute);
    // Storing the outcome waits for the store, not for the function.
    drop(permit);
    if ran_here {
        let outcome = match outcome {
            Ok(result) => CallOutcome::Finished(result),
            Err(err) => CallOutcome::Failed(err),
        };
        finish(inner, call, deployed.owner.as_deref(), outcome).await;
    }
    Ran::Done
}

/// Runs `step`, a change to the store that a call's life depends on, until the store takes it
/// (it may be unreachable for a while: a lost step would lose the call). The first failure is
/// reported; each later try waits a little longer, up to a second.
async fn persist<T, F: Future<Output = anyhow::Result<T>>>(
    what: &str,
    mut step: impl FnMut() -> F,
) -> T {
    let mut delay = Duration::from_millis(50);
    let mut reported = false;
    loop {
        match step().await {
            Ok(value) => {
                if reported {
                    eprintln!("functions-host: {what}: done after all");
                }
                return value;
            }
            Err(err) => {
                if !reported {
                    eprintln!("functions-host: {what}: {err:#} (trying again)");
                    reported = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Logs how a call ended (to its function while it is still `owner`'s), stores its outcome, and
/// so wakes whoever waits for it.
async fn finish(inner: &Inner, call: &QueuedCall, owner: Option<&str>, outcome: CallOutcome) {
    let event = match &outcome {
        CallOutcome::Failed(_) => "failed",
        CallOutcome::Finished(_) => "finished",
    };
    inner.metrics.call(&call.name, event);
    let (level, line) = match &outcome {
        CallOutcome::Failed(err) => ("error", format!("FAILED {} {}", call.id, err.message())),
        CallOutcome::Finished(result) => (
            "info",
            format!(
                "FINISHED {} {} {}",
                call.id,
                result.status,
                quote(&result.body)
            ),
        ),
    };
    log(inner, &call.name, owner, level, line).await;
    let node = inner.dispatcher.node();
    persist(&format!("storing the result of call {}", call.id), || {
        (inner.store).finish_call(&call.id, node, &outcome, inner.result_cap_bytes)
    })
    .await;
}

/// Appends one lifecycle line to `name`'s logs, while it is `owner`'s.
async fn log(inner: &Inner, name: &str, owner: Option<&str>, level: &'static str, line: String) {
    inner
        .logs
        .write(name, owner, vec![LogEntry::from_host(level, line)])
        .await;
}

/// The start of `bytes` as text, for a log line.
fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let mut quoted: String = text
        .chars()
        .take(LOG_PREFIX_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(LOG_PREFIX_CHARS).is_some() {
        quoted.push('…');
    }
    quoted
}
