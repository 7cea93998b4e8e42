//! Stops JavaScript that runs past its limits.
//!
//! A worker thread runs the event loops of many isolates, entering one at a time: each entry is a
//! *slice*. One watchdog thread per [`crate::Engine`] watches the slice each worker is running.
//! An isolate's CPU time is the sum of its slices, measured on the worker thread's CPU clock (so
//! time the thread spends descheduled does not count, and neither does the time other isolates
//! on the same thread run). A slice begins with what is left of the isolate's CPU budget
//! ([`Budget`]); the watchdog stops the isolate when the slice has used it up, or when the
//! invocation's wall-clock deadline passes while it runs, by recording why ([`Stop`]) and calling
//! V8's `terminate_execution`, which unwinds the running script at its next interrupt check. The
//! worker then reports the [`crate::InvokeError`] for that reason, and goes on with its other
//! isolates meanwhile: they wait at most one slice. A deadline that passes while an isolate
//! waits (on a timer, a fetch) is the worker's to notice; no JavaScript is running then.
//!
//! The watchdog sleeps while no slice runs, and otherwise until the earliest moment a slice could
//! run out: a thread's CPU clock never advances faster than real time, so the remaining CPU budget
//! is also the shortest wall time in which it can be spent. A slice that starts with less time
//! left than the watchdog's planned nap wakes it.
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

use crate::allocator::BufferBudget;
use crate::function::Limits;

/// The longest the watchdog sleeps while a slice runs: a bound on how late it notices a clock
/// that misbehaves (e.g. a CPU clock it could not read).
const MAX_NAP: Duration = Duration::from_millis(100);
/// The shortest it sleeps, so a budget about to run out is not polled in a tight loop.
const MIN_NAP: Duration = Duration::from_millis(1);
/// How often a running isolate's memory outside its heap is checked (see `allocator.rs`).
const MEMORY_LOOK: Duration = Duration::from_millis(5);

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

/// The reason an isolate was stopped, if it was: written by the watchdog, the worker or the
/// near-heap-limit callback, read by the worker when the invocation ends.
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
    pub fn now(self) -> Option<Duration> {
        #[cfg(target_os = "linux")]
        {
            let mut time = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `time` is a valid out pointer; a clock of a live thread is valid, and the
            // worker that owns it leaves the watchdog before it exits.
            let status = unsafe { libc::clock_gettime(self.0, &mut time) };
            (status == 0).then(|| Duration::new(time.tv_sec as u64, time.tv_nsec as u32))
        }
        #[cfg(not(target_os = "linux"))]
        None
    }
}

/// What one phase of an invocation (a fresh isolate's top-level code, or the invocation itself)
/// may still use: CPU time left and the wall-clock deadline. Slices draw on it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    /// CPU time not yet spent.
    pub cpu_left: Duration,
    /// The CPU time the budget started with (what a [`Stop::CpuTime`] reports).
    pub cpu_time: Duration,
    /// When the wall-clock time runs out.
    pub deadline: Instant,
}

impl Budget {
    /// A full budget of `limits`, its wall clock starting now.
    pub fn new(limits: &Limits) -> Self {
        Self {
            cpu_left: limits.cpu_time,
            cpu_time: limits.cpu_time,
            deadline: Instant::now() + limits.wall_clock,
        }
    }

    /// Draws `used` CPU time from the budget; when that spends it, records [`Stop::CpuTime`] in
    /// `verdict` and returns true.
    pub fn charge(&mut self, used: Duration, verdict: &Verdict) -> bool {
        match self.cpu_left.checked_sub(used) {
            Some(left) if !left.is_zero() => {
                self.cpu_left = left;
                false
            }
            _ => {
                self.cpu_left = Duration::ZERO;
                verdict.set(Stop::CpuTime);
                true
            }
        }
    }

    /// Starts the budget again, as for a new invocation of `limits` (CPU time and wall clock
    /// from now), its deadline no later than `not_after`.
    pub fn renew(&mut self, limits: &Limits, not_after: Option<Instant>) {
        let fresh = Self::new(limits);
        self.cpu_left = fresh.cpu_left;
        self.cpu_time = fresh.cpu_time;
        self.deadline = not_after.map_or(fresh.deadline, |d| d.min(fresh.deadline));
    }

    /// A full CPU budget of `limits` that keeps `self`'s deadline: restarting the CPU budget
    /// (at the handler's start, after the module's top-level code) never extends the wall clock.
    pub fn renewed(self, limits: &Limits) -> Self {
        Self {
            cpu_left: limits.cpu_time,
            cpu_time: limits.cpu_time,
            deadline: self.deadline,
        }
    }
}

/// The slice a worker is running, as the watchdog sees it.
struct Running {
    isolate: v8::IsolateHandle,
    clock: ThreadCpuClock,
    verdict: Arc<Verdict>,
    /// The isolate's memory outside its heap, to check while the slice runs.
    memory: Option<Arc<BufferBudget>>,
    /// The thread's CPU clock when the slice began.
    cpu_start: Option<Duration>,
    cpu_left: Duration,
    deadline: Instant,
}

impl Running {
    /// Terminates the isolate if it is past a limit; otherwise how long until it could be.
    fn check(&self, now: Instant) -> Option<Duration> {
        let cpu_left = match (self.cpu_start, self.clock.now()) {
            (Some(start), Some(used)) => {
                let used = used.saturating_sub(start);
                if used >= self.cpu_left {
                    self.stop(Stop::CpuTime);
                    return None;
                }
                self.cpu_left - used
            }
            _ => MAX_NAP,
        };
        if now >= self.deadline {
            self.stop(Stop::WallClock);
            return None;
        }
        let next = cpu_left.min(self.deadline - now);
        Some(match &self.memory {
            Some(memory) => {
                memory.request_check(&self.isolate);
                next.min(MEMORY_LOOK)
            }
            None => next,
        })
    }

    fn stop(&self, stop: Stop) {
        self.verdict.set(stop);
        self.isolate.terminate_execution();
    }
}

#[derive(Default)]
struct State {
    /// The slice each worker thread runs, by thread.
    running: HashMap<u64, Running>,
    next_thread: u64,
    /// When the watchdog will look next, if it is napping with slices to watch.
    next_look: Option<Instant>,
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

    /// The calling thread's (a worker's) handle, with which it reports the slices it runs.
    pub fn thread(&self) -> ThreadWatch {
        let mut state = self.shared.lock();
        state.next_thread += 1;
        ThreadWatch {
            shared: self.shared.clone(),
            id: state.next_thread,
            clock: ThreadCpuClock::current(),
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

/// One worker thread's registration with the [`Watchdog`].
pub(crate) struct ThreadWatch {
    shared: Arc<Shared>,
    id: u64,
    clock: ThreadCpuClock,
}

impl ThreadWatch {
    /// Runs `slice` (which enters `isolate` and runs its JavaScript) under the watchdog's watch
    /// with what is left of `budget`, and charges the CPU time it took to the budget. A slice
    /// that used more than was left records [`Stop::CpuTime`] in `verdict` even if it ended
    /// before the watchdog noticed, so the invocation fails exactly at its limit.
    pub fn slice<T>(
        &self,
        isolate: &v8::IsolateHandle,
        verdict: &Arc<Verdict>,
        memory: Option<&Arc<BufferBudget>>,
        budget: &mut Budget,
        slice: impl FnOnce() -> T,
    ) -> T {
        let cpu_start = self.clock.now();
        {
            let mut state = self.shared.lock();
            let earliest_stop = (Instant::now() + budget.cpu_left).min(budget.deadline);
            let wake = state.next_look.is_none_or(|look| earliest_stop < look);
            state.running.insert(
                self.id,
                Running {
                    isolate: isolate.clone(),
                    clock: self.clock,
                    verdict: verdict.clone(),
                    memory: memory.cloned(),
                    cpu_start,
                    cpu_left: budget.cpu_left,
                    deadline: budget.deadline,
                },
            );
            if wake {
                self.shared.changed.notify_all();
            }
        }
        let result = slice();
        self.shared.lock().running.remove(&self.id);
        if let (Some(start), Some(end)) = (cpu_start, self.clock.now()) {
            budget.charge(end.saturating_sub(start), verdict);
        }
        result
    }
}

impl Drop for ThreadWatch {
    fn drop(&mut self) {
        self.shared.lock().running.remove(&self.id);
    }
}

/// The watchdog thread's loop.
fn watch(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if state.stopping {
            return;
        }
        if state.running.is_empty() {
            state.next_look = None;
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
            continue;
        }
        let now = Instant::now();
        let nap = state
            .running
            .values()
            .filter_map(|running| running.check(now))
            .min()
            .unwrap_or(MAX_NAP)
            .clamp(MIN_NAP, MAX_NAP);
        state.next_look = Some(now + nap);
        state = shared
            .changed
            .wait_timeout(state, nap)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}
