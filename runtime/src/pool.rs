//! Worker threads, each owning the isolates it creates.
//!
//! Invocations of fresh-isolate functions go to one shared queue that every idle worker pulls
//! from, so a worker busy with a long invocation never holds up another function. Invocations of
//! [`Isolation::Function`] functions go to the private queue of the one worker that keeps the
//! function's warm isolate, so they run in order against the same module state.
//!
//! V8 shares its read-only heap (and starts its compiler threads) once for all the isolates alive
//! in a process, but tears them down whenever the last isolate goes away — which, with one
//! short-lived isolate per invocation, would be every invocation. The first worker therefore keeps
//! one idle isolate from the snapshot for as long as the pool runs (the *anchor*), so that every
//! new isolate attaches to the existing read-only heap instead of deserializing its own.
//!
//! rusty_v8 enters an isolate when it is created and exits it when dropped, and requires that in
//! LIFO order per thread. Warm isolates outlive the fresh ones created around them, so they are
//! exited right after each use and entered again before the next one (and before being dropped).

use std::collections::HashMap;
use std::hash::Hash;
use std::hash::Hasher;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;
use crossbeam_channel::Sender;
use functions_ext::console::ConsoleOutput;
use tokio::sync::oneshot;

use crate::Request;
use crate::ResponseBody;
use crate::engine::AfterResponse;
use crate::engine::Finished;
use crate::engine::Outcome;
use crate::error::CompileError;
use crate::error::InvokeError;
use crate::function::Function;
use crate::function::Isolation;
use crate::function::MAX_RESPONSE_BYTES;
use crate::isolate;
use crate::isolate::FunctionIsolate;
use crate::watchdog::Watchdog;

/// Warm isolates one worker keeps at most; the least recently used is dropped past it.
const MAX_WARM_ISOLATES: usize = 64;

/// Work for a worker thread.
pub(crate) enum Task {
    /// Run one invocation.
    Invoke {
        function: Function,
        request: Request,
        reply: oneshot::Sender<Outcome>,
    },
    /// Compile and link a module without running it.
    Check {
        function: Function,
        reply: oneshot::Sender<Result<(), CompileError>>,
    },
}

pub(crate) struct Pool {
    shared: Option<Sender<Task>>,
    pinned: Vec<Sender<Task>>,
    threads: Vec<JoinHandle<()>>,
    /// Stops isolates past their limits; dropped after the workers.
    _watchdog: Arc<Watchdog>,
}

impl Pool {
    pub fn new(workers: usize, snapshot: Option<&'static [u8]>) -> Self {
        let workers = workers.max(1);
        let watchdog = Arc::new(Watchdog::start());
        let (shared, shared_rx) = crossbeam_channel::unbounded();
        let mut pinned = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        for index in 0..workers {
            let (tx, rx) = crossbeam_channel::unbounded();
            pinned.push(tx);
            let shared_rx = shared_rx.clone();
            let watchdog = watchdog.clone();
            let thread = std::thread::Builder::new()
                .name(format!("functions-worker-{index}"))
                .spawn(move || Worker::new(snapshot, watchdog).run(index == 0, shared_rx, rx))
                .expect("spawning a worker thread");
            threads.push(thread);
        }
        Self {
            shared: Some(shared),
            pinned,
            threads,
            _watchdog: watchdog,
        }
    }

    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// Queues a task; fails when the workers are gone.
    pub fn submit(&self, task: Task) -> Result<(), InvokeError> {
        let queue = match &task {
            Task::Invoke { function, .. } if function.isolation() == Isolation::Function => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                function.name().hash(&mut hasher);
                &self.pinned[(hasher.finish() % self.pinned.len() as u64) as usize]
            }
            _ => self.shared.as_ref().expect("pool is running"),
        };
        queue.send(task).map_err(|_| InvokeError::EngineStopped)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared = None;
        self.pinned.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A warm isolate and its version, exited while idle.
struct WarmIsolate {
    version: u64,
    last_used: u64,
    isolate: FunctionIsolate,
}

impl Drop for WarmIsolate {
    fn drop(&mut self) {
        // SAFETY: idle warm isolates are exited; dropping requires being the current isolate.
        unsafe { self.isolate.enter() }
    }
}

struct Worker {
    snapshot: Option<&'static [u8]>,
    watchdog: Arc<Watchdog>,
    warm: HashMap<String, WarmIsolate>,
    uses: u64,
}

impl Worker {
    fn new(snapshot: Option<&'static [u8]>, watchdog: Arc<Watchdog>) -> Self {
        Self {
            snapshot,
            watchdog,
            warm: HashMap::new(),
            uses: 0,
        }
    }

    /// Serves tasks until the pool is dropped; `anchor` makes this worker keep the anchor isolate.
    fn run(mut self, anchor: bool, shared: Receiver<Task>, pinned: Receiver<Task>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a worker's tokio runtime");
        // Created first and dropped last, so it stays below every other isolate of this thread.
        let anchor = match self.snapshot {
            Some(snapshot) if anchor => {
                let _context = runtime.enter();
                Some(isolate::new_runtime(Some(snapshot), None, None))
            }
            _ => None,
        };
        loop {
            let task = crossbeam_channel::select_biased! {
              recv(pinned) -> task => task,
              recv(shared) -> task => task,
            };
            let Ok(task) = task else { break };
            match task {
                Task::Invoke {
                    function,
                    request,
                    reply,
                } => {
                    let spent = runtime.block_on(self.invoke(&function, request, reply));
                    // Torn down after the caller has its answer, not before.
                    drop(spent);
                }
                Task::Check { function, reply } => {
                    let _ = reply.send(runtime.block_on(isolate::check(&function, self.snapshot)));
                }
            }
        }
        runtime.block_on(async { self.warm.clear() });
        drop(anchor);
    }

    /// Runs one invocation, replying as soon as the handler has responded; returns the fresh
    /// isolate it used, if any, for the caller to drop once everything is delivered.
    async fn invoke(
        &mut self,
        function: &Function,
        mut request: Request,
        reply: oneshot::Sender<Outcome>,
    ) -> Option<FunctionIsolate> {
        request.env = function.settings().env.clone();
        match function.isolation() {
            Isolation::Invocation => {
                match FunctionIsolate::load(function, self.snapshot, &self.watchdog).await {
                    Ok(mut isolate) => {
                        run(&mut isolate, request, reply).await;
                        Some(isolate)
                    }
                    Err(err) => {
                        let _ = reply.send(Outcome::new(Err(err), ConsoleOutput::default()));
                        None
                    }
                }
            }
            Isolation::Function => {
                self.invoke_warm(function, request, reply).await;
                None
            }
        }
    }

    async fn invoke_warm(
        &mut self,
        function: &Function,
        request: Request,
        reply: oneshot::Sender<Outcome>,
    ) {
        self.uses += 1;
        let name = function.name();
        let stale = self
            .warm
            .get(name)
            .is_some_and(|warm| warm.version != function.version());
        if stale {
            self.warm.remove(name);
        }
        if !self.warm.contains_key(name) {
            self.evict_if_full();
            match FunctionIsolate::load(function, self.snapshot, &self.watchdog).await {
                Ok(mut isolate) => {
                    // SAFETY: just created, so entered and current; idle warm isolates stay exited.
                    unsafe { isolate.exit() };
                    let warm = WarmIsolate {
                        version: function.version(),
                        last_used: 0,
                        isolate,
                    };
                    self.warm.insert(name.to_owned(), warm);
                }
                Err(err) => {
                    let _ = reply.send(Outcome::new(Err(err), ConsoleOutput::default()));
                    return;
                }
            }
        }
        let warm = self.warm.get_mut(name).expect("inserted above");
        warm.last_used = self.uses;
        // SAFETY: paired with the exit below; nothing else is entered on this thread meanwhile.
        unsafe { warm.isolate.enter() };
        let failed = run(&mut warm.isolate, request, reply).await;
        // SAFETY: entered above.
        unsafe { warm.isolate.exit() };
        if failed {
            // A failed invocation may have left the module half-updated; start over next time.
            self.warm.remove(name);
        }
    }

    fn evict_if_full(&mut self) {
        if self.warm.len() < MAX_WARM_ISOLATES {
            return;
        }
        let oldest = self
            .warm
            .iter()
            .min_by_key(|(_, warm)| warm.last_used)
            .map(|(name, _)| name.clone());
        if let Some(name) = oldest {
            self.warm.remove(&name);
        }
    }
}

/// Runs one invocation in `isolate`: replies with the [`Outcome`] once the handler has responded,
/// then runs what remains after the response (a streamed body, `ctx.waitUntil`) and reports it
/// through the outcome's [`crate::AfterResponse`]. True when the function threw or was stopped
/// at a limit (then the isolate must not be used again).
async fn run(
    isolate: &mut FunctionIsolate,
    request: Request,
    reply: oneshot::Sender<Outcome>,
) -> bool {
    let failed = respond(isolate, request, reply).await;
    isolate.end_invocation().is_some() || failed
}

/// [`run`] until the invocation is done; true when the function threw.
async fn respond(
    isolate: &mut FunctionIsolate,
    request: Request,
    reply: oneshot::Sender<Outcome>,
) -> bool {
    let result = isolate
        .invoke(request)
        .await
        .and_then(|(response, tail)| match &response.body {
            ResponseBody::Full(body) if body.len() > MAX_RESPONSE_BYTES => {
                Err(InvokeError::OutputTooLarge {
                    limit: MAX_RESPONSE_BYTES,
                })
            }
            _ => Ok((response, tail)),
        });
    match result {
        Err(err) => {
            let threw = matches!(err, InvokeError::Threw { .. });
            let _ = reply.send(Outcome::new(Err(err), isolate.take_console_output()));
            threw
        }
        Ok((response, None)) => {
            let _ = reply.send(Outcome::new(Ok(response), isolate.take_console_output()));
            false
        }
        Ok((response, Some(tail))) => {
            let (done, after_response) = AfterResponse::channel();
            let mut outcome = Outcome::new(Ok(response), isolate.take_console_output());
            outcome.after_response = Some(after_response);
            let _ = reply.send(outcome);
            let error = isolate.finish(tail).await.err();
            let threw = error.is_some();
            let _ = done.send(Finished::new(error, isolate.take_console_output()));
            threw
        }
    }
}
