//! One worker thread: the event loops of all the isolates it owns, on one local executor.
//!
//! Each invocation is a task of the thread's `LocalSet`; its isolate is entered only while the
//! task is polled (see `isolate.rs`), so an invocation that waits — on a timer, a fetch, a slow
//! reader of its streamed body, `ctx.waitUntil` — costs memory but no thread. The thread's main
//! loop takes one new task at a time, from its private queue first, then from the shared intake
//! (see `pool.rs`), and yields between tasks so that isolates woken meanwhile run before more
//! work is taken on. When there is no new work at all, it tears down the isolates of finished
//! invocations (off their request path; past a few waiting, and a Python interpreter's at once,
//! right after the response, so that memory does not follow the backlog), then prepares isolates
//! for recently invoked
//! fresh-isolate functions (module loaded and evaluated, ready for one invocation each), so that
//! their next invocations skip isolate creation; their number follows each function's recent
//! rate on this worker. The isolates a worker keeps prepared, pre-created ones and idle warm
//! ones of [`Isolation::Function`] functions, are capped, least recently used first out.

use std::cell::Cell;
use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use functions_ext::console::ConsoleOutput;
use functions_ext::rpc::CallChain;
use functions_ext::rpc::RpcInvocation;
use tokio::sync::Notify;
use tokio::sync::mpsc;
use tokio::sync::oneshot;

use crate::Request;
use crate::ResponseBody;
use crate::engine::AfterResponse;
use crate::engine::Controls;
use crate::engine::Finished;
use crate::engine::Outcome;
use crate::engine::Timing;
use crate::engine::Trace;
use crate::engine::traceparent;
use crate::error::InvokeError;
use crate::function::Function;
use crate::function::Isolation;
use crate::function::MAX_RESPONSE_BYTES;
use crate::isolate;
use crate::isolate::FunctionIsolate;
use crate::isolate::PreparedPython;
use crate::isolate::Runtime;
use crate::isolate::Tail;
use crate::pool::Job;
use crate::pool::Shared;
use crate::pool::Task;
use crate::python::PythonCode;
use crate::watchdog::Budget;
use crate::watchdog::ThreadWatch;
use crate::watchdog::Watchdog;

/// Idle warm isolates one worker keeps at most; the least recently used is dropped past it.
const MAX_WARM_ISOLATES: usize = 64;
/// How long a function's pre-created isolates are kept after its last invocation here.
const PREPARED_IDLE: Duration = Duration::from_secs(60);
/// Pre-created isolates of one function per worker, at most.
const MAX_PREPARED_PER_FUNCTION: usize = 8;
/// Pre-created isolates of one Python or C# function per worker, at most (each holds a
/// runtime's memory, tens of MiB).
const MAX_PREPARED_PER_PYTHON_FUNCTION: usize = 2;
/// Isolates of Python and C# functions, warm or pre-created, one worker keeps at most.
const MAX_PYTHON_ISOLATES: usize = 8;
/// How far ahead the pre-created isolates of a function should cover its recent rate: at 100
/// invocations a second on this worker, two are kept ready.
const PREPARED_HORIZON: Duration = Duration::from_millis(20);
/// Spent isolates a worker may leave to tear down when it has nothing else to do; past this it
/// tears them down at once. Few: under a steady load a worker seldom has nothing else to do,
/// and every spent isolate holds its heap until it is torn down.
const MAX_SPENT: usize = 4;
/// The weight of the newest interval in a function's arrival rate estimate.
const RATE_WEIGHT: f64 = 0.2;

/// The isolates this worker keeps ready for one function.
struct Ready {
    /// The function last invoked here under this name; the isolates below are of the function
    /// value `isolates_of` (see `Function::id`).
    function: Function,
    isolates_of: u64,
    isolates: VecDeque<FunctionIsolate>,
    /// When it was last invoked here (or, for a Python function, anywhere).
    last_used: Instant,
    /// When it was last invoked here (at first: when the entry was made), what its rate here
    /// counts from.
    last_arrival: Instant,
    /// Invocations a second on this worker, recently (fresh-isolate functions only).
    rate: f64,
    /// Pre-creating failed for `function` (its top-level code threw or ran out of time):
    /// invocations report it instead.
    broken: bool,
}

impl Ready {
    fn new(function: &Function) -> Self {
        Self {
            function: function.clone(),
            isolates_of: function.id(),
            isolates: VecDeque::new(),
            last_used: Instant::now(),
            last_arrival: Instant::now(),
            rate: 0.0,
            broken: false,
        }
    }

    /// The entry of `function` in `ready` (made if it has none), for this very function value.
    fn of<'a>(ready: &'a mut HashMap<String, Ready>, function: &Function) -> &'a mut Ready {
        let entry = ready
            .entry(function.name().to_owned())
            .or_insert_with(|| Ready::new(function));
        if entry.function.id() != function.id() {
            entry.function = function.clone();
            entry.broken = false;
        }
        entry
    }

    /// How many pre-created isolates to keep, at most `max` (0 for warm functions, which are
    /// not pre-created).
    fn target(&self, max: usize) -> usize {
        if self.function.isolation() != Isolation::Invocation || self.broken {
            return 0;
        }
        let most = if self.function.holds_runtime() {
            MAX_PREPARED_PER_PYTHON_FUNCTION
        } else {
            MAX_PREPARED_PER_FUNCTION
        };
        let wanted = (self.rate * PREPARED_HORIZON.as_secs_f64()).ceil() as usize;
        wanted.clamp(1, most).min(max)
    }

    fn is_warm(&self) -> bool {
        self.function.isolation() == Isolation::Function
    }
}

/// The interpreter a worker keeps prepared for Python functions.
#[derive(Clone)]
struct PythonWanted {
    build: Arc<functions_ext::python::PyodideBuild>,
    memory_bytes: u64,
}

/// How a worker is set up.
pub(crate) struct WorkerSettings {
    pub index: usize,
    pub snapshot: Option<&'static [u8]>,
    /// Pre-created isolates the worker keeps at most.
    pub max_prepared: usize,
    /// Keep a Python interpreter prepared (see [`PreparedPython`]).
    pub prepare_python: bool,
    /// See [`crate::EngineConfig::panic_on_function`].
    pub panic_on_function: Option<Arc<str>>,
}

/// Why [`Worker::run`] returned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The pool stopped.
    Stopped,
    /// A task panicked: the worker stopped taking work, let the rest finish, and must be
    /// replaced.
    Failed,
}

pub(crate) struct Worker {
    index: usize,
    snapshot: Option<&'static [u8]>,
    shared: Arc<Shared>,
    thread: Rc<ThreadWatch>,
    ready: RefCell<HashMap<String, Ready>>,
    /// Pre-created isolates this worker keeps at most.
    max_prepared: usize,
    /// Invocations and checks under way.
    in_flight: Cell<usize>,
    /// Notified when `in_flight` drops to 0.
    drained: Notify,
    /// Notified when a function may want more pre-created isolates.
    refill: Notify,
    /// Isolates whose invocations are over, torn down when the worker has nothing else to do
    /// (tearing one down takes about as long as running a small invocation).
    spent: RefCell<Vec<FunctionIsolate>>,
    /// Whether to keep a Python interpreter prepared for the Python functions invoked here.
    prepare_python: bool,
    /// The interpreter prepared for the next cold start of a Python function, if any.
    python_spare: RefCell<Option<PreparedPython>>,
    /// What the Python function expected here last (restored from a snapshot) runs on: the
    /// build and memory limit of the interpreter to keep prepared. Kept while the worker runs
    /// (an interpreter is kept ready as long as Python functions may come).
    python_wanted: RefCell<Option<PythonWanted>>,
    /// An interpreter is being prepared.
    python_preparing: Cell<bool>,
    /// Notified when the interpreter being prepared is ready (or failed).
    python_ready: Notify,
    /// Invocations waiting for it.
    python_waiting: Cell<usize>,
    /// What starts the callees of the calls its isolates make through bindings (made once the
    /// embedder has set its services).
    connector: RefCell<Option<Rc<dyn functions_ext::rpc::Connector>>>,
    /// Set (and notified) when a task panicked.
    failed: Cell<bool>,
    failure: Notify,
    panic_on_function: Option<Arc<str>>,
}

impl Worker {
    /// The worker thread's body: serves tasks until the pool stops (or one of them panics),
    /// then lets the invocations under way finish.
    pub fn run(
        settings: &WorkerSettings,
        shared: &Arc<Shared>,
        watchdog: &Watchdog,
        private: &mut mpsc::UnboundedReceiver<Task>,
    ) -> Ended {
        let (index, snapshot) = (settings.index, settings.snapshot);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a worker's tokio runtime");
        let local = tokio::task::LocalSet::new();
        let worker = Rc::new(Self {
            index,
            snapshot,
            shared: shared.clone(),
            thread: Rc::new(watchdog.thread()),
            ready: RefCell::default(),
            max_prepared: settings.max_prepared,
            in_flight: Cell::new(0),
            drained: Notify::new(),
            refill: Notify::new(),
            spent: RefCell::default(),
            prepare_python: settings.prepare_python,
            python_spare: RefCell::default(),
            python_wanted: RefCell::default(),
            python_preparing: Cell::new(false),
            python_ready: Notify::new(),
            python_waiting: Cell::new(0),
            connector: RefCell::default(),
            failed: Cell::new(false),
            failure: Notify::new(),
            panic_on_function: settings.panic_on_function.clone(),
        });
        local.block_on(&runtime, async {
            // V8 shares its read-only heap (and starts its compiler threads) once for all the
            // isolates alive in the process, and tears them down when the last one goes: the
            // first worker keeps one idle isolate (the anchor) so that never happens between
            // invocations.
            let anchor = snapshot
                .filter(|_| index == 0)
                .map(|snapshot| Runtime::new(Some(snapshot), None, None).0);
            worker.serve(private).await;
            while worker.in_flight.get() > 0 {
                worker.drained.notified().await;
            }
            worker.ready.borrow_mut().clear();
            worker.spent.borrow_mut().clear();
            drop(worker.set_python_spare(None));
            drop(anchor);
        });
        if worker.failed.get() {
            Ended::Failed
        } else {
            Ended::Stopped
        }
    }

    /// Takes tasks one at a time until the intake closes; pre-creates isolates when idle.
    async fn serve(self: &Rc<Self>, private: &mut mpsc::UnboundedReceiver<Task>) {
        let mut maintenance = tokio::time::interval(Duration::from_secs(1));
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                Some(task) = private.recv() => self.start(task),
                task = self.shared.intake.pop() => match task {
                    Some(task) => self.start(task),
                    None => return,
                },
                _ = maintenance.tick() => self.trim(),
                Some(spent) = async { self.spent.borrow_mut().pop() } => drop(spent),
                () = self.refill.notified() => self.prepare_one().await,
                () = self.failure.notified() => return,
            }
            // Isolates woken meanwhile run before more work is taken on.
            tokio::task::yield_now().await;
        }
    }

    fn start(self: &Rc<Self>, task: Task) {
        self.in_flight.set(self.in_flight.get() + 1);
        let worker = self.clone();
        tokio::task::spawn_local(async move {
            let run = async {
                match task {
                    Task::Invoke(job) => worker.clone().invoke(job).await,
                    Task::Check { function, reply } => {
                        let checked =
                            isolate::check(&function, worker.snapshot, worker.thread.clone());
                        let _ = reply.send(checked.await);
                    }
                    Task::ExpectPython(function) => {
                        worker.expect_python(&function);
                    }
                    Task::PrepareRestored(function) => worker.keep_prepared(&function),
                    Task::Snapshot { function, reply } => {
                        let made = isolate::make_snapshot(
                            &function,
                            worker.snapshot,
                            worker.thread.clone(),
                        );
                        let _ = reply.send(made.await);
                    }
                }
            };
            // A panic here is a bug in the host: the task's reply is dropped (its caller learns
            // the worker failed), and the worker is replaced once its other tasks are done, as
            // its state can no longer be trusted.
            if futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run))
                .await
                .is_err()
            {
                worker.failed.set(true);
                worker.failure.notify_one();
            }
            worker.in_flight.set(worker.in_flight.get() - 1);
            if worker.in_flight.get() == 0 {
                worker.drained.notify_waiters();
            }
        });
    }

    /// Runs one invocation: on a prepared isolate when routing claimed one here, otherwise on
    /// one created now; replies as soon as the handler has responded, then runs what remains
    /// (a streamed body, `ctx.waitUntil`) and reports it through the outcome's
    /// [`AfterResponse`].
    async fn invoke(self: Rc<Self>, job: Box<Job>) {
        let Job {
            function,
            mut request,
            mut reply,
            controls,
            admitted,
            claimed,
            session,
            received,
        } = *job;
        if self.panic_on_function.as_deref() == Some(function.name()) {
            panic!(
                "a worker failure injected for tests, invoking {}",
                function.name()
            );
        }
        request.env = function.settings().env.clone();
        self.arrived(&function);
        if function.restores_snapshot()
            && self.prepare_python
            && function.isolation() == Isolation::Invocation
        {
            self.shared.restored_invoked(&function, self.index);
        }
        let Controls {
            cancel,
            start,
            chain,
        } = controls;
        let chain = match (&session, chain) {
            (Some(session), _) => session.hop().chain.clone(),
            (None, Some(chain)) => chain,
            (None, None) => CallChain::root(function.name(), traceparent(&request)),
        };
        let trace = Some(Trace::of(&chain));
        // A failure of an invocation serving a session is its caller's too.
        let aborter = session.as_ref().map(|session| session.aborter());
        let fail = |err: &InvokeError| {
            if let Some(aborter) = &aborter {
                aborter.abort(format!("{} failed: {err}", function.name()));
            }
        };
        let limits = &function.settings().limits;
        // A job that routing could not claim an isolate for may find one here anyway: one
        // freed (or prepared) while the job was on its way.
        let claimed = claimed || self.shared.prepared.claim_at(&function, self.index);
        let prepared = claimed.then(|| self.take(&function)).flatten();
        let ready = prepared.is_some();
        let (mut isolate, budget) = match prepared {
            Some(isolate) => (isolate, Budget::new(limits)),
            None => {
                let budget = Budget::new(limits);
                let load = async {
                    match self.python_spare_or_wait(&function).await {
                        Some(spare) => FunctionIsolate::load_into(spare, &function, budget).await,
                        None => {
                            FunctionIsolate::load(
                                &function,
                                self.snapshot,
                                self.thread.clone(),
                                budget,
                            )
                            .await
                        }
                    }
                };
                let loaded = tokio::select! {
                    loaded = load => loaded,
                    reason = cancelled(&cancel, &mut reply) => Err(reason),
                };
                match loaded {
                    Ok(isolate) => (isolate, budget.renewed(limits)),
                    Err(err) => {
                        fail(&err);
                        let _ = reply.send(Outcome::new(Err(err), ConsoleOutput::default()));
                        return;
                    }
                }
            }
        };
        if let Some(gate) = start {
            let opened = tokio::select! {
                () = gate.open() => None,
                reason = cancelled(&cancel, &mut reply) => Some(reason),
            };
            if let Some(err) = opened {
                let _ = reply.send(Outcome::new(Err(err), isolate.take_console_output()));
                return;
            }
        }
        // Calls it makes run within its deadline, and so does it within its caller's.
        let mut budget = budget;
        let not_after = chain.deadline();
        isolate.set_not_after(not_after);
        let chain = chain.within(budget.deadline);
        budget.deadline = chain.deadline().unwrap_or(budget.deadline);
        let rpc = RpcInvocation {
            function: function.name().into(),
            chain,
            bindings: function
                .settings()
                .bindings
                .iter()
                .map(|(name, target)| (name.as_str().into(), target.as_str().into()))
                .collect(),
            owner: function.settings().share_group.clone(),
            wall_clock: function.settings().limits.wall_clock,
            not_after,
            session,
            connector: self.connector(),
        };
        let started = std::time::Instant::now();
        let result = tokio::select! {
            result = respond(&mut isolate, request, rpc, budget) => result,
            reason = cancelled(&cancel, &mut reply) => Err(reason),
        };
        let timing = Some(Timing::since(received, started, ready));
        let failed = match result {
            Err(err) => {
                fail(&err);
                let mut outcome = Outcome::new(Err(err), isolate.take_console_output());
                outcome.timing = timing;
                outcome.trace = trace;
                let _ = reply.send(outcome);
                true
            }
            Ok((response, None)) => {
                let mut outcome = Outcome::new(Ok(response), isolate.take_console_output());
                outcome.timing = timing;
                outcome.trace = trace;
                let _ = reply.send(outcome);
                false
            }
            Ok((response, Some(tail))) => {
                let (done, after_response) = AfterResponse::channel();
                let mut outcome = Outcome::new(Ok(response), isolate.take_console_output());
                outcome.after_response = Some(after_response);
                outcome.timing = timing;
                outcome.trace = trace;
                let _ = reply.send(outcome);
                let error = finish(&mut isolate, tail).await;
                let failed = error.is_some();
                let _ = done.send(Finished::new(error, isolate.take_console_output()));
                failed
            }
        };
        // The sessions it opened close: the functions it called end their invocations.
        isolate.end_rpc();
        let reusable =
            function.isolation() == Isolation::Function && !failed && isolate.stopped().is_none();
        if reusable {
            self.put_back(&function, isolate);
        } else if self.spent.borrow().len() < MAX_SPENT && !function.holds_runtime() {
            // Torn down after the caller has its answer, once nothing else waits (but a Python
            // or .NET runtime's memory, tens of MiB, is given back at once).
            self.spent.borrow_mut().push(isolate);
            // Wakes the main loop, which tears spent isolates down before preparing more.
            self.refill.notify_one();
        } else {
            drop(isolate);
        }
        drop(admitted);
    }

    /// The connector of this worker's isolates, if the embedder has set its services.
    fn connector(self: &Rc<Self>) -> Option<Rc<dyn functions_ext::rpc::Connector>> {
        let mut connector = self.connector.borrow_mut();
        if connector.is_none() {
            let services = self.shared.services.get()?.clone();
            *connector = Some(crate::services::connector(self, services));
        }
        connector.clone()
    }

    /// Serves `session` (a call through a binding from one of this worker's isolates) with an
    /// invocation of `function`: here, unless another worker holds a prepared isolate of it
    /// and this one does not. It is not admitted under the cap on running isolates: its root
    /// holds a place (see `Pool::invoke`).
    pub fn serve_here(
        self: &Rc<Self>,
        function: Function,
        session: functions_ext::rpc::RpcSession,
        reply: oneshot::Sender<Outcome>,
    ) {
        let job = Box::new(Job {
            function,
            request: Request::default(),
            reply,
            controls: Controls::default(),
            admitted: crate::pool::Admitted(None),
            claimed: false,
            session: Some(session),
            received: std::time::Instant::now(),
        });
        if let Some(job) = self.shared.route_from(job, self.index) {
            self.start(Task::Invoke(job));
        }
    }

    /// Notes an invocation of `function` arriving here: its rate, and whether it wants more
    /// pre-created isolates.
    fn arrived(&self, function: &Function) {
        let mut ready = self.ready.borrow_mut();
        let entry = Ready::of(&mut ready, function);
        let now = Instant::now();
        let interval = now
            .duration_since(entry.last_arrival)
            .as_secs_f64()
            .max(1e-4);
        entry.rate = entry.rate * (1.0 - RATE_WEIGHT) + RATE_WEIGHT / interval;
        entry.last_arrival = now;
        entry.last_used = now;
        if entry.isolates.len() < entry.target(self.max_prepared) {
            self.refill.notify_one();
        }
    }

    /// Keeps isolates of `function`, invoked on another worker, prepared here as if it had been
    /// invoked here (without counting it in its rate here). For Python functions: preparing
    /// the next interpreter takes a worker's thread for a few hundred milliseconds.
    fn keep_prepared(&self, function: &Function) {
        let mut ready = self.ready.borrow_mut();
        let entry = Ready::of(&mut ready, function);
        entry.last_used = Instant::now();
        if entry.isolates.len() < entry.target(self.max_prepared) {
            self.refill.notify_one();
        }
    }

    /// A prepared isolate of `function`, if this worker holds one: the one put back last, whose
    /// heap and compiled code are likeliest still in the core's caches.
    fn take(&self, function: &Function) -> Option<FunctionIsolate> {
        let mut ready = self.ready.borrow_mut();
        let entry = ready.get_mut(function.name())?;
        if entry.isolates_of != function.id() {
            return None;
        }
        entry.isolates.pop_back()
    }

    /// Keeps `isolate` (of `function`) ready for a later invocation, and says so to routing.
    fn put_back(&self, function: &Function, isolate: FunctionIsolate) {
        {
            let mut ready = self.ready.borrow_mut();
            let entry = ready
                .entry(function.name().to_owned())
                .or_insert_with(|| Ready::new(function));
            if entry.isolates_of != function.id() {
                // Isolates of another function (version) are never claimed again.
                entry.isolates.clear();
                entry.isolates_of = function.id();
            }
            entry.isolates.push_back(isolate);
        }
        self.shared
            .prepared
            .add(function, self.index, self.shared.workers);
        self.evict_over_cap();
    }

    /// Notes that Python functions like `function` (restored from a snapshot) run here: the
    /// worker keeps an interpreter prepared for its build and memory limit.
    fn expect_python(&self, function: &Function) -> bool {
        let Some(python) = function.python_code() else {
            return false;
        };
        if !self.prepare_python || python.snapshot.is_none() {
            return false;
        }
        *self.python_wanted.borrow_mut() = Some(PythonWanted {
            build: python.build.clone(),
            memory_bytes: function.settings().limits.memory_bytes,
        });
        self.refill.notify_one();
        true
    }

    /// The prepared interpreter, taken for `function` if it is a Python function it fits (its
    /// place is filled again when the worker is idle).
    fn python_spare_for(&self, function: &Function) -> Option<PreparedPython> {
        if !self.expect_python(function) {
            return None;
        }
        let fits = self
            .python_spare
            .borrow()
            .as_ref()
            .is_some_and(|spare| spare.fits(function));
        if fits {
            self.set_python_spare(None)
        } else {
            None
        }
    }

    /// [`Worker::python_spare_for`], waiting for the interpreter being prepared, if one is
    /// and `function` can use it: it will be ready sooner than `function` could start one of
    /// its own, and no work is done twice.
    async fn python_spare_or_wait(&self, function: &Function) -> Option<PreparedPython> {
        let ready = self.python_ready.notified();
        if let Some(spare) = self.python_spare_for(function) {
            return Some(spare);
        }
        let awaited = self.python_preparing.get()
            && self.python_wanted.borrow().as_ref().is_some_and(|wanted| {
                PythonCode::runs_on(function, &wanted.build, wanted.memory_bytes)
            });
        if !awaited {
            return None;
        }
        /// Counts a waiting invocation until dropped (also when it is cancelled meanwhile).
        struct Waiting<'a>(&'a Cell<usize>);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.set(self.0.get() - 1);
            }
        }
        self.python_waiting.set(self.python_waiting.get() + 1);
        let waiting = Waiting(&self.python_waiting);
        ready.await;
        drop(waiting);
        self.python_spare_for(function)
    }

    /// Puts `spare` in the worker's place for a prepared interpreter (counted in
    /// [`Shared::python_interpreters`]); what was there.
    fn set_python_spare(&self, spare: Option<PreparedPython>) -> Option<PreparedPython> {
        use std::sync::atomic::Ordering::Relaxed;
        let counter = &self.shared.python_interpreters;
        if spare.is_some() {
            counter.fetch_add(1, Relaxed);
        }
        let old = std::mem::replace(&mut *self.python_spare.borrow_mut(), spare);
        if old.is_some() {
            counter.fetch_sub(1, Relaxed);
        }
        old
    }

    /// Starts preparing a Python interpreter for the build (and memory limit) of the Python
    /// functions expected here, if none is prepared or being prepared: as a task of its own,
    /// so that the worker takes on invocations meanwhile.
    fn prepare_python_spare(self: &Rc<Self>) {
        if self.python_spare.borrow().is_some() || self.python_preparing.get() {
            return;
        }
        let Some(wanted) = self.python_wanted.borrow().clone() else {
            return;
        };
        self.python_preparing.set(true);
        let worker = self.clone();
        tokio::task::spawn_local(async move {
            let prepared = PreparedPython::prepare(
                wanted.build.clone(),
                wanted.memory_bytes,
                worker.snapshot,
                worker.thread.clone(),
            )
            .await;
            worker.python_preparing.set(false);
            match prepared {
                Ok(spare) => {
                    drop(worker.set_python_spare(Some(spare)));
                    // Functions waiting for it can be prepared now.
                    worker.refill.notify_one();
                }
                // Not tried again until a Python function is expected here again.
                Err(_) => *worker.python_wanted.borrow_mut() = None,
            }
            // Invocations waiting for it take it (the first), or start their own.
            worker.python_ready.notify_waiters();
        });
    }

    /// Pre-creates one isolate for the function that lacks the most, if any does; a Python
    /// function's only in a prepared interpreter (one is started for it otherwise).
    async fn prepare_one(self: &Rc<Self>) {
        self.prepare_python_spare();
        let function = {
            let ready = self.ready.borrow();
            ready
                .values()
                .filter(|entry| {
                    let current = entry.isolates_of == entry.function.id();
                    let have = if current { entry.isolates.len() } else { 0 };
                    have < entry.target(self.max_prepared)
                })
                .max_by_key(|entry| entry.last_used)
                .map(|entry| entry.function.clone())
        };
        let Some(function) = function else {
            return;
        };
        let budget = Budget::new(&function.settings().limits);
        let loaded = if function.python_code().is_some() {
            // Invocations waiting for the interpreter come first.
            let spare = if self.python_waiting.get() == 0 {
                self.python_spare_for(&function)
            } else {
                None
            };
            let Some(spare) = spare else {
                // The interpreter being prepared asks for another look once it is ready.
                return;
            };
            FunctionIsolate::load_into(spare, &function, budget).await
        } else {
            FunctionIsolate::load(&function, self.snapshot, self.thread.clone(), budget).await
        };
        match loaded {
            Ok(isolate) => self.put_back(&function, isolate),
            Err(_) => {
                // Its invocations will report why, each on an isolate of its own.
                if let Some(entry) = self.ready.borrow_mut().get_mut(function.name()) {
                    entry.broken = true;
                }
            }
        }
        // More may be wanted: look again once other work had its turn.
        self.refill.notify_one();
    }

    /// Drops the isolates of functions not invoked here for a while, and isolates that can no
    /// longer be claimed (of a version since replaced).
    fn trim(&self) {
        let now = Instant::now();
        let mut dropped = Vec::new();
        {
            let mut ready = self.ready.borrow_mut();
            ready.retain(|name, entry| {
                let idle = now.duration_since(entry.last_used) > PREPARED_IDLE;
                let claimable = self.shared.prepared.function(name) == Some(entry.isolates_of);
                if idle || !claimable {
                    let unclaimed = self.shared.prepared.remove(
                        name,
                        entry.isolates_of,
                        self.index,
                        entry.isolates.len(),
                    );
                    let keep = if claimable {
                        entry.isolates.len() - unclaimed
                    } else {
                        0
                    };
                    let unwanted = entry.isolates.len() - keep;
                    // The least recently put back (see `take`).
                    dropped.extend(entry.isolates.drain(..unwanted));
                }
                !(idle && entry.isolates.is_empty())
            });
        }
        drop(dropped);
    }

    /// Drops least recently used prepared isolates past the caps: [`MAX_WARM_ISOLATES`] for
    /// warm ones, the configured one for pre-created ones, and [`MAX_PYTHON_ISOLATES`] for
    /// Python and C# functions' of either kind.
    fn evict_over_cap(&self) {
        self.evict(MAX_WARM_ISOLATES, |entry| entry.is_warm());
        self.evict(self.max_prepared, |entry| !entry.is_warm());
        self.evict(MAX_PYTHON_ISOLATES, |entry| entry.function.holds_runtime());
    }

    /// Drops least recently used prepared isolates of the entries `counted` picks, past `cap`.
    fn evict(&self, cap: usize, counted: impl Fn(&Ready) -> bool) {
        let mut dropped = Vec::new();
        {
            let mut ready = self.ready.borrow_mut();
            let mut total: usize = ready
                .values()
                .filter(|entry| counted(entry))
                .map(|entry| entry.isolates.len())
                .sum();
            while total > cap {
                let Some((name, entry)) = ready
                    .iter_mut()
                    .filter(|(_, entry)| counted(entry) && !entry.isolates.is_empty())
                    .min_by_key(|(_, entry)| entry.last_used)
                else {
                    break;
                };
                let taken = self
                    .shared
                    .prepared
                    .remove(name, entry.isolates_of, self.index, 1);
                if taken == 0 {
                    // All claimed by invocations on their way here.
                    break;
                }
                // The least recently put back (see `take`).
                dropped.extend(entry.isolates.pop_front());
                total -= 1;
            }
        }
        drop(dropped);
    }
}

/// Resolves when the invocation should stop: its caller cancelled it, or went away (dropped its
/// outcome's receiver).
async fn cancelled(
    cancel: &Option<crate::engine::Cancel>,
    reply: &mut oneshot::Sender<Outcome>,
) -> InvokeError {
    let reason = match cancel {
        Some(cancel) => tokio::select! {
            reason = cancel.cancelled() => reason,
            () = reply.closed() => "the caller went away".to_owned(),
        },
        None => {
            reply.closed().await;
            "the caller went away".to_owned()
        }
    };
    InvokeError::Cancelled { reason }
}

/// Runs the invocation in `isolate` until the handler has responded; a whole body over the
/// response limit is an error.
async fn respond(
    isolate: &mut FunctionIsolate,
    request: Request,
    rpc: RpcInvocation,
    budget: Budget,
) -> Result<(crate::Response, Option<Tail>), InvokeError> {
    let (response, tail) = isolate.invoke(request, rpc, budget).await?;
    match &response.body {
        ResponseBody::Full(body) if body.len() > MAX_RESPONSE_BYTES => {
            Err(InvokeError::OutputTooLarge {
                limit: MAX_RESPONSE_BYTES,
            })
        }
        _ => Ok((response, tail)),
    }
}

/// Runs what remains after the response; the error it ended with, if any.
async fn finish(isolate: &mut FunctionIsolate, tail: Tail) -> Option<InvokeError> {
    isolate.finish(tail).await.err()
}
