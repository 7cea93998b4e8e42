//! The worker threads, and how work reaches them.
//!
//! There are as many workers as cores, whatever the number of invocations: each runs the event
//! loops of all the isolates it owns (see `worker.rs`), so an invocation that waits holds no
//! thread. Work reaches a worker in one of two ways:
//!
//! - through the shared *intake*, a FIFO queue from which each worker takes one task whenever it
//!   has nothing more urgent to run, so the workers share new work by how busy they are;
//! - through its private queue, when it holds a *prepared* isolate for the task's function: a
//!   pre-created isolate of a fresh-isolate function (module already evaluated, used for one
//!   invocation) or an idle warm isolate of an [`crate::Isolation::Function`] function. The
//!   [`Prepared`] table says which worker holds how many; routing to one claims it.
//!
//! Admission is bounded by a host-wide cap on isolates running invocations
//! ([`crate::EngineConfig::max_isolates`]); invocations past it wait in arrival order and are
//! let in as others end, no function (or group of functions) holding more than half of the
//! places (see `share.rs`).

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::thread::JoinHandle;

use tokio::sync::Notify;
use tokio::sync::mpsc;
use tokio::sync::oneshot;

use crate::Request;
use crate::engine::Controls;
use crate::engine::Outcome;
use crate::error::CompileError;
use crate::error::InvokeError;
use crate::function::Function;
use crate::python::MemorySnapshot;
use crate::services::Services;
use crate::share::FairShare;
use crate::share::Holder;
use crate::watchdog::Watchdog;
use crate::worker::Ended;
use crate::worker::Worker;
use crate::worker::WorkerSettings;
use functions_ext::rpc::RpcSession;

/// One invocation on its way to a worker.
pub(crate) struct Job {
    pub function: Function,
    pub request: Request,
    pub reply: oneshot::Sender<Outcome>,
    pub controls: Controls,
    /// Its place under the cap on running isolates, given back when dropped.
    pub admitted: Admitted,
    /// Whether routing claimed one of the receiving worker's prepared isolates for it.
    pub claimed: bool,
    /// The session it serves, when it is a call through a binding.
    pub session: Option<RpcSession>,
    /// When the engine received it.
    pub received: std::time::Instant,
}

/// Work for a worker thread.
pub(crate) enum Task {
    /// Run one invocation.
    Invoke(Box<Job>),
    /// Compile and link a module without running it.
    Check {
        function: Function,
        reply: oneshot::Sender<Result<(), CompileError>>,
    },
    /// Keep a Python interpreter prepared for this function (see `worker.rs`).
    ExpectPython(Function),
    /// Another worker invoked this Python or C# function (fresh isolates, each restoring its
    /// snapshot): keep one of its isolates prepared here too, so that its invocations alternate
    /// between workers instead of waiting for the one that holds its isolates to prepare the
    /// next (see `worker.rs`).
    PrepareRestored(Function),
    /// Boot a Python or C# function and make its memory snapshot.
    Snapshot {
        function: Function,
        reply: oneshot::Sender<Result<MemorySnapshot, InvokeError>>,
    },
}

/// The shared FIFO queue of new work.
#[derive(Default)]
pub(crate) struct Intake {
    queue: Mutex<IntakeQueue>,
    ready: Notify,
}

#[derive(Default)]
struct IntakeQueue {
    tasks: VecDeque<Task>,
    /// The pool is stopping: no more work will come.
    closed: bool,
}

impl Intake {
    fn push(&self, task: Task) {
        lock(&self.queue).tasks.push_back(task);
        self.ready.notify_one();
    }

    /// The next task when there is one, `None` once the pool stops (cancel-safe: a task is
    /// taken only when returned).
    pub async fn pop(&self) -> Option<Task> {
        loop {
            let ready = self.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            {
                let mut queue = lock(&self.queue);
                if let Some(task) = queue.tasks.pop_front() {
                    return Some(task);
                }
                if queue.closed {
                    return None;
                }
            }
            ready.await;
        }
    }

    /// Tells the workers to stop once the queued work is done.
    fn close(&self) {
        lock(&self.queue).closed = true;
        self.ready.notify_waiters();
    }

    /// Drops whatever is still queued (after the workers stopped).
    fn clear(&self) {
        let tasks = std::mem::take(&mut lock(&self.queue).tasks);
        drop(tasks);
    }
}

/// Which worker holds how many prepared isolates of which function.
#[derive(Default)]
pub(crate) struct Prepared {
    by_function: Mutex<HashMap<String, PreparedCounts>>,
}

struct PreparedCounts {
    /// The function value (see `Function::id`) whose isolates these are.
    function: u64,
    /// Unclaimed prepared isolates, by worker.
    per_worker: Vec<usize>,
}

impl Prepared {
    /// Claims a prepared isolate of `function` (this very value: not another of the same name,
    /// or of the same version), returning the worker that holds it.
    fn claim(&self, function: &Function) -> Option<usize> {
        let mut table = lock(&self.by_function);
        let counts = counts_of(&mut table, function)?;
        let (worker, count) = counts
            .per_worker
            .iter_mut()
            .enumerate()
            .max_by_key(|(_, count)| **count)?;
        if *count == 0 {
            return None;
        }
        *count -= 1;
        Some(worker)
    }

    /// Claims one of `worker`'s own prepared isolates of `function`, if the table shows one
    /// unclaimed there (the worker then takes it itself).
    pub fn claim_at(&self, function: &Function, worker: usize) -> bool {
        let mut table = lock(&self.by_function);
        match counts_of(&mut table, function) {
            Some(counts) if counts.per_worker[worker] > 0 => {
                counts.per_worker[worker] -= 1;
                true
            }
            _ => false,
        }
    }

    /// Records that `worker` holds one more unclaimed prepared isolate of `function`. Another
    /// function of the same name (a new version) replaces the entry: the isolates of the one
    /// before are never claimed again.
    pub fn add(&self, function: &Function, worker: usize, workers: usize) {
        let mut table = lock(&self.by_function);
        let counts = table
            .entry(function.name().to_owned())
            .or_insert_with(|| PreparedCounts {
                function: function.id(),
                per_worker: vec![0; workers],
            });
        if counts.function != function.id() {
            counts.function = function.id();
            counts.per_worker.fill(0);
        }
        counts.per_worker[worker] += 1;
    }

    /// Takes up to `count` of `worker`'s unclaimed isolates of `name` (of the function value
    /// `function`) off the table, to drop them; returns how many it took.
    pub fn remove(&self, name: &str, function: u64, worker: usize, count: usize) -> usize {
        let mut table = lock(&self.by_function);
        let Some(counts) = table.get_mut(name) else {
            return 0;
        };
        if counts.function != function {
            return 0;
        }
        let taken = counts.per_worker[worker].min(count);
        counts.per_worker[worker] -= taken;
        if counts.per_worker.iter().all(|count| *count == 0) {
            table.remove(name);
        }
        taken
    }

    /// Unclaimed prepared isolates of `function` (this very value), per worker.
    pub fn per_worker(&self, function: &Function, workers: usize) -> Vec<usize> {
        let mut table = lock(&self.by_function);
        counts_of(&mut table, function)
            .map_or_else(|| vec![0; workers], |counts| counts.per_worker.clone())
    }

    /// The function value (see `Function::id`) whose isolates are claimable for `name`, if any.
    pub fn function(&self, name: &str) -> Option<u64> {
        lock(&self.by_function)
            .get(name)
            .map(|counts| counts.function)
    }
}

/// The counts of `function`'s own isolates (this very value, see `Function::id`), if any.
fn counts_of<'a>(
    table: &'a mut HashMap<String, PreparedCounts>,
    function: &Function,
) -> Option<&'a mut PreparedCounts> {
    table
        .get_mut(function.name())
        .filter(|counts| counts.function == function.id())
}

/// What the workers and the submitting side share.
pub(crate) struct Shared {
    pub intake: Intake,
    pub prepared: Prepared,
    private: Vec<mpsc::UnboundedSender<Task>>,
    /// The cap on isolates running invocations, and the invocations waiting for a place.
    admission: Mutex<FairShare<Box<Job>>>,
    pub workers: usize,
    /// Python interpreters the workers hold prepared (see `worker.rs`).
    pub python_interpreters: std::sync::atomic::AtomicUsize,
    /// What starts the functions that bindings reach (the embedder's).
    pub services: std::sync::OnceLock<Arc<dyn Services>>,
}

impl Shared {
    /// Sends an admitted invocation to a worker holding a prepared isolate for it, or to the
    /// intake.
    fn route(&self, job: Box<Job>) {
        match self.prepared.claim(&job.function) {
            Some(worker) => self.send_claimed(job, worker),
            None => self.intake.push(Task::Invoke(job)),
        }
    }

    /// Sends `job` to `worker`, whose prepared isolate routing claimed for it.
    fn send_claimed(&self, mut job: Box<Job>, worker: usize) {
        job.claimed = true;
        if let Err(mpsc::error::SendError(task)) = self.private[worker].send(Task::Invoke(job)) {
            // The worker is gone: the job's reply is dropped with it, which reports the
            // engine stopped.
            drop(task);
        }
    }

    /// Where a call through a binding made on worker `here` runs: a worker holding a prepared
    /// isolate of its function (the job is sent there), or `here` (the job is returned, claimed
    /// if `here` holds one).
    pub fn route_from(&self, mut job: Box<Job>, here: usize) -> Option<Box<Job>> {
        if self.prepared.claim_at(&job.function, here) {
            job.claimed = true;
            return Some(job);
        }
        match self.prepared.claim(&job.function) {
            Some(worker) => {
                self.send_claimed(job, worker);
                None
            }
            None => Some(job),
        }
    }

    /// Tells the workers other than `here` that hold no prepared isolate of `function` (a
    /// Python or C# function restoring its snapshot) that it was invoked.
    pub fn restored_invoked(&self, function: &Function, here: usize) {
        let prepared = self.prepared.per_worker(function, self.workers);
        for (worker, private) in self.private.iter().enumerate() {
            if worker != here && prepared[worker] == 0 {
                let _ = private.send(Task::PrepareRestored(function.clone()));
            }
        }
    }

    /// Gives back `holder`'s place under the cap: the longest-waiting invocation that may takes
    /// it.
    fn release(self: &Arc<Self>, holder: &Holder) {
        let next = lock(&self.admission).leave(holder);
        if let Some((holder, mut job)) = next {
            job.admitted = Admitted(Some((self.clone(), holder)));
            self.route(job);
        }
    }
}

/// A place under the cap on running isolates, given back when dropped.
pub(crate) struct Admitted(pub(crate) Option<(Arc<Shared>, Holder)>);

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some((shared, holder)) = self.0.take() {
            shared.release(&holder);
        }
    }
}

pub(crate) struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Stops isolates past their limits; dropped after the workers.
    _watchdog: Arc<Watchdog>,
}

/// How the workers are set up.
pub(crate) struct PoolConfig {
    pub workers: usize,
    pub snapshot: Option<&'static [u8]>,
    pub max_isolates: usize,
    pub prepared_per_worker: usize,
    pub prepare_python: bool,
    /// See [`crate::EngineConfig::panic_on_function`].
    pub panic_on_function: Option<Arc<str>>,
}

impl Pool {
    pub fn new(config: PoolConfig) -> Self {
        let workers = config.workers.max(1);
        let watchdog = Arc::new(Watchdog::start());
        let mut private = Vec::with_capacity(workers);
        let mut receivers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (sender, receiver) = mpsc::unbounded_channel();
            private.push(sender);
            receivers.push(receiver);
        }
        let shared = Arc::new(Shared {
            intake: Intake::default(),
            prepared: Prepared::default(),
            private,
            admission: Mutex::new(FairShare::new(config.max_isolates.max(1))),
            workers,
            python_interpreters: Default::default(),
            services: std::sync::OnceLock::new(),
        });
        let threads = receivers
            .into_iter()
            .enumerate()
            .map(|(index, receiver)| {
                let shared = shared.clone();
                let watchdog = watchdog.clone();
                let settings = WorkerSettings {
                    index,
                    snapshot: config.snapshot,
                    max_prepared: config.prepared_per_worker,
                    prepare_python: config.prepare_python,
                    panic_on_function: config.panic_on_function.clone(),
                };
                std::thread::Builder::new()
                    .name(format!("functions-worker-{index}"))
                    .spawn(move || {
                        let mut receiver = receiver;
                        // A worker that failed is replaced by a fresh one on the same thread and
                        // queue; the others never noticed.
                        while Worker::run(&settings, &shared, &watchdog, &mut receiver)
                            == Ended::Failed
                        {
                            eprintln!("functions-host: worker {index} failed and was replaced");
                        }
                    })
                    .expect("spawning a worker thread")
            })
            .collect();
        Self {
            shared,
            threads,
            _watchdog: watchdog,
        }
    }

    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// Queues an invocation: to a worker now if it is under the cap on running isolates,
    /// otherwise once a place frees up, in arrival order. A call from another function (through
    /// a binding: `session`, or a fetch with a chain) goes at once: its root holds a place, and
    /// a caller waiting for a callee that waits for a place could hold them all. A session of a
    /// client outside (capnweb) is admitted like any invocation from outside.
    pub fn invoke(
        &self,
        function: Function,
        request: Request,
        controls: Controls,
        session: Option<RpcSession>,
        reply: oneshot::Sender<Outcome>,
    ) {
        let nested =
            session.as_ref().is_some_and(RpcSession::is_nested) || controls.chain.is_some();
        let job = Box::new(Job {
            function,
            request,
            reply,
            controls,
            admitted: Admitted(None),
            claimed: false,
            session,
            received: std::time::Instant::now(),
        });
        if nested {
            self.shared.route(job);
            return;
        }
        let holder = job.function.holder();
        let admitted = lock(&self.shared.admission).enter(holder.clone(), job);
        if let Some(mut job) = admitted {
            job.admitted = Admitted(Some((self.shared.clone(), holder)));
            self.shared.route(job);
        }
    }

    /// Queues a check (compile and link).
    pub fn check(&self, function: Function, reply: oneshot::Sender<Result<(), CompileError>>) {
        self.shared.intake.push(Task::Check { function, reply });
    }

    /// Sets what starts the functions bindings reach (once; later calls are ignored).
    pub fn set_services(&self, services: Arc<dyn Services>) {
        let _ = self.shared.services.set(services);
    }

    /// Unclaimed prepared isolates of `function`, per worker.
    pub fn prepared(&self, function: &Function) -> Vec<usize> {
        (self.shared.prepared).per_worker(function, self.shared.workers)
    }

    /// Python interpreters the workers hold prepared, waiting for a function.
    pub fn python_interpreters(&self) -> usize {
        self.shared
            .python_interpreters
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tells every worker to keep an interpreter prepared for `function`.
    pub fn expect_python(&self, function: &Function) {
        for worker in &self.shared.private {
            let _ = worker.send(Task::ExpectPython(function.clone()));
        }
    }

    /// Queues the making of a Python or C# function's snapshot.
    pub fn snapshot(
        &self,
        function: Function,
        reply: oneshot::Sender<Result<MemorySnapshot, InvokeError>>,
    ) {
        self.shared.intake.push(Task::Snapshot { function, reply });
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Waiting invocations are told the engine stopped (their replies are dropped).
        lock(&self.shared.admission).forget(|_| true);
        self.shared.intake.close();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.shared.intake.clear();
        lock(&self.shared.admission).forget(|_| true);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
