//! Stops JavaScript that runs past its limits.
//!
//! One watchdog thread per [`crate::Engine`] watches the isolates that are running an invocation.
//! Each watched isolate has a CPU budget, measured on the CPU clock of the worker thread that
//! runs it (so time the thread spends descheduled does not count), and a wall-clock deadline. The
//! first one passed makes the watchdog record why ([`Stop`]) and call V8's `terminate_execution`,
//! which unwinds the running script at its next interrupt check; the worker then reports the
//! [`crate::InvokeError`] for that reason and goes on to its next task.
//!
//! The watchdog sleeps while nothing is watched, and otherwise until the earliest moment a
//! budget could run out: a thread's CPU clock never advances faster than real time, so the
//! remaining CPU budget is also the shortest wall time in which it can be spent.
//!
//! Memory is the other limit: an isolate's heap is capped when it is created, and V8's
//! near-heap-limit callback (see [`Verdict::on_near_heap_limit`]) terminates it instead of
//! letting V8 abort the process; its ArrayBuffers are counted by its own allocator (see
//! `allocator.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;
use std::time::Instant;

use deno_core::v8;

use crate::function::Limits;

/// The longest the watchdog sleeps while watching: a bound on how late it notices a clock that
/// misbehaves (e.g. a CPU clock it could not read).
const MAX_NAP: Duration = Duration::from_millis(100);
/// The shortest it sleeps, so a budget about to run out is not polled in a tight loop.
const MIN_NAP: Duration = Duration::from_millis(1);

/// Why an isolate was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// It spent its CPU time.
    CpuTime,
    /// Its wall-clock time ran out.
    WallClock,
    /// Its heap reached the memory limit.
    Memory,
}

/// The reason an isolate was stopped, if it was: written by the watchdog or the near-heap-limit
/// callback, read by the worker when the invocation ends.
#[derive(Debug, Default)]
pub(crate) struct Verdict(AtomicU8);

impl Verdict {
    /// Records why the isolate is stopped (the first reason stands).
    pub fn set(&self, stop: Stop) {
        let code = match stop {
            Stop::CpuTime => 1,
            Stop::WallClock => 2,
            Stop::Memory => 3,
        };
        // The first reason stands: terminating for memory may take a moment of CPU time.
        let _ = self
            .0
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Why the isolate was stopped, if it was.
    pub fn get(&self) -> Option<Stop> {
        match self.0.load(Ordering::SeqCst) {
            1 => Some(Stop::CpuTime),
            2 => Some(Stop::WallClock),
            3 => Some(Stop::Memory),
            _ => None,
        }
    }

    fn clear(&self) {
        self.0.store(0, Ordering::SeqCst);
    }

    /// V8's near-heap-limit callback for an isolate: terminates it, and raises the limit enough
    /// for the allocation under way to succeed, so V8 unwinds the script instead of aborting
    /// the process. (A single V8 object is at most about 1 GiB.)
    pub fn on_near_heap_limit(
        self: &Arc<Self>,
        isolate: v8::IsolateHandle,
    ) -> impl FnMut(usize, usize) -> usize + 'static {
        let verdict = self.clone();
        move |current, _initial| {
            verdict.set(Stop::Memory);
            isolate.terminate_execution();
            current + 1536 * 1024 * 1024
        }
    }
}

/// The CPU clock of one thread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThreadCpuClock(#[cfg(target_os = "linux")] libc::clockid_t);

impl ThreadCpuClock {
    /// The calling thread's clock.
    pub fn current() -> Self {
        #[cfg(target_os = "linux")]
        {
            let mut clock: libc::clockid_t = 0;
            // SAFETY: `pthread_self` is always a valid thread; `clock` is a valid out pointer.
            let status = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
            assert_eq!(status, 0, "pthread_getcpuclockid failed: {status}");
            Self(clock)
        }
        #[cfg(not(target_os = "linux"))]
        Self()
    }

    /// The CPU time the thread has used; `None` if it cannot be read (then only wall-clock
    /// time is measured).
    fn now(self) -> Option<Duration> {
        #[cfg(target_os = "linux")]
        {
            let mut time = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `time` is a valid out pointer; a clock of a live thread is valid, and the
            // worker that owns it stops being watched before it exits.
            let status = unsafe { libc::clock_gettime(self.0, &mut time) };
            (status == 0).then(|| Duration::new(time.tv_sec as u64, time.tv_nsec as u32))
        }
        #[cfg(not(target_os = "linux"))]
        None
    }
}

/// One watched isolate.
struct Watched {
    isolate: v8::IsolateHandle,
    clock: ThreadCpuClock,
    verdict: Arc<Verdict>,
    /// The thread's CPU clock when the budget started.
    cpu_start: Option<Duration>,
    cpu_time: Duration,
    deadline: Instant,
}

impl Watched {
    /// Terminates the isolate if it is past a limit; otherwise how long until it could be.
    fn check(&self, now: Instant) -> Option<Duration> {
        let cpu_left = match (self.cpu_start, self.clock.now()) {
            (Some(start), Some(used)) => {
                let used = used.saturating_sub(start);
                if used >= self.cpu_time {
                    self.stop(Stop::CpuTime);
                    return None;
                }
                self.cpu_time - used
            }
            _ => MAX_NAP,
        };
        if now >= self.deadline {
            self.stop(Stop::WallClock);
            return None;
        }
        Some(cpu_left.min(self.deadline - now))
    }

    fn stop(&self, stop: Stop) {
        self.verdict.set(stop);
        self.isolate.terminate_execution();
    }
}

#[derive(Default)]
struct State {
    watched: HashMap<u64, Watched>,
    next_id: u64,
    stopping: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The watchdog thread (stopped when dropped).
pub(crate) struct Watchdog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts the watchdog thread.
    pub fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("functions-watchdog".into())
                .spawn(move || watch(&shared))
                .expect("spawning the watchdog thread")
        };
        Self {
            shared,
            thread: Some(thread),
        }
    }

    /// A handle with which the calling thread (a worker) puts `isolate` under watch while it
    /// runs an invocation; `verdict` receives the reason it is stopped.
    pub fn watch(&self, isolate: v8::IsolateHandle, verdict: Arc<Verdict>) -> Watch {
        let mut state = self.shared.lock();
        state.next_id += 1;
        Watch {
            shared: self.shared.clone(),
            id: state.next_id,
            isolate,
            clock: ThreadCpuClock::current(),
            verdict,
            deadline: None,
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One isolate's registration with the [`Watchdog`]: [`Watch::start`] puts it under watch with
/// fresh budgets, [`Watch::stop`] (or dropping) takes it off.
pub(crate) struct Watch {
    shared: Arc<Shared>,
    id: u64,
    isolate: v8::IsolateHandle,
    clock: ThreadCpuClock,
    verdict: Arc<Verdict>,
    deadline: Option<Instant>,
}

impl Watch {
    /// Starts the CPU budget from now; the wall-clock deadline starts from the first `start`
    /// after a [`Watch::stop`], so restarting the CPU budget (e.g. at the handler's start, after
    /// the module's top-level code) never extends the invocation's wall-clock time.
    pub fn start(&mut self, limits: &Limits) {
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + limits.wall_clock);
        let watched = Watched {
            isolate: self.isolate.clone(),
            clock: self.clock,
            verdict: self.verdict.clone(),
            cpu_start: self.clock.now(),
            cpu_time: limits.cpu_time,
            deadline,
        };
        self.shared.lock().watched.insert(self.id, watched);
        self.shared.changed.notify_all();
    }

    /// When the invocation's wall-clock time runs out (`None` while not watched).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Takes the isolate off watch; returns why it was stopped, if it was, and clears that for
    /// the next invocation.
    pub fn stop(&mut self) -> Option<Stop> {
        self.shared.lock().watched.remove(&self.id);
        self.deadline = None;
        let stop = self.verdict.get();
        self.verdict.clear();
        stop
    }

    /// Why the isolate was stopped during this invocation, if it was.
    pub fn verdict(&self) -> Option<Stop> {
        self.verdict.get()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.shared.lock().watched.remove(&self.id);
    }
}

/// The watchdog thread's loop.
fn watch(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if state.stopping {
            return;
        }
        if state.watched.is_empty() {
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
            continue;
        }
        let now = Instant::now();
        let nap = state
            .watched
            .values()
            .filter_map(|watched| watched.check(now))
            .min()
            .unwrap_or(MAX_NAP)
            .clamp(MIN_NAP, MAX_NAP);
        state = shared
            .changed
            .wait_timeout(state, nap)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}
