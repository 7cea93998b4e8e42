//! Memory outside the V8 heap under the memory limit.
//!
//! The backing stores of `ArrayBuffer`s (typed arrays, `Uint8Array` bodies, ...) live outside the
//! V8 heap, so the heap limit does not cover them. Each isolate therefore gets its own allocator
//! that counts them: an allocation that would take the isolate's buffers past the limit fails,
//! and the isolate is terminated for [`Stop::Memory`], as when its heap reaches the limit.
//!
//! Some memory never passes through that allocator: resizable `ArrayBuffer`s and every
//! `WebAssembly.Memory` (V8 maps their pages itself, and a wasm module grows its memory without
//! asking), and buffers made from Rust (`TextEncoder`'s, a request body's). V8 counts all of them
//! as the isolate's external memory, which [`BufferBudget::check_external`] compares with the
//! limit (collecting the garbage first when it is over, so that only live memory counts): after
//! each slice of the isolate's work, after each garbage collection, and every few milliseconds
//! while a slice runs (an interrupt the watchdog requests). Blob parts (copied
//! into Rust) and `SharedArrayBuffer`s (counted by nobody, charged at their maximum size when
//! made) are reserved here directly ([`OffHeapMemory`]).

use std::ffi::c_void;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use deno_core::v8;

use functions_ext::runtime::OffHeapMemory;

use crate::watchdog::Stop;
use crate::watchdog::Verdict;

/// One isolate's allowance of memory outside its heap.
pub(crate) struct BufferBudget {
    /// Bytes of the buffers made through [`BufferBudget::allocator`].
    used: AtomicUsize,
    /// Bytes of blob parts and shared buffers ([`OffHeapMemory`]).
    reserved: AtomicUsize,
    /// V8's external memory of the isolate when last looked at.
    external: AtomicUsize,
    limit: usize,
    verdict: Arc<Verdict>,
    /// The isolate to terminate when the budget is spent (set once it exists).
    isolate: OnceLock<v8::IsolateHandle>,
}

impl BufferBudget {
    /// An allowance of `limit` bytes; spending it records [`Stop::Memory`] in `verdict`.
    pub fn new(limit: usize, verdict: Arc<Verdict>) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            reserved: AtomicUsize::new(0),
            external: AtomicUsize::new(0),
            limit,
            verdict,
            isolate: OnceLock::new(),
        })
    }

    /// Names the isolate whose buffers this budget counts.
    pub fn watch(&self, isolate: v8::IsolateHandle) {
        let _ = self.isolate.set(isolate);
    }

    /// An allocator for V8 that counts against this budget.
    pub fn allocator(self: &Arc<Self>) -> v8::UniqueRef<v8::Allocator> {
        static VTABLE: v8::RustAllocatorVtable<BufferBudget> = v8::RustAllocatorVtable {
            allocate,
            allocate_uninitialized,
            free,
            drop: drop_budget,
        };
        // SAFETY: the pointer is an `Arc` reference the allocator owns until `drop_budget`.
        unsafe { v8::new_rust_allocator(Arc::into_raw(self.clone()), &VTABLE) }
    }

    /// Takes `len` bytes from the budget, or refuses and stops the isolate.
    fn reserve(&self, len: usize) -> bool {
        let reserved = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(len).filter(|total| *total <= self.limit)
            })
            .is_ok();
        if !reserved {
            self.stop();
        }
        reserved
    }

    /// Records [`Stop::Memory`] and terminates the isolate.
    fn stop(&self) {
        self.verdict.set(Stop::Memory);
        if let Some(isolate) = self.isolate.get() {
            isolate.terminate_execution();
        }
    }

    /// Whether V8's external memory of `isolate` and the reserved bytes fit the limit; if not
    /// (once the garbage is collected, when `may_collect`), stops the isolate. Called on the
    /// isolate's thread, with it entered.
    pub fn check_external(&self, isolate: &mut v8::Isolate, may_collect: bool) -> bool {
        if self.fits(isolate) {
            return true;
        }
        if may_collect && self.verdict.get().is_none() {
            isolate.low_memory_notification();
            if self.fits(isolate) {
                return true;
            }
        }
        self.stop();
        false
    }

    /// Whether V8's external memory of `isolate` (remembered) and the reserved bytes fit the
    /// limit.
    fn fits(&self, isolate: &mut v8::Isolate) -> bool {
        let external = isolate.adjust_amount_of_external_allocated_memory(0);
        let external = usize::try_from(external).unwrap_or(0);
        self.external.store(external, Ordering::SeqCst);
        external.saturating_add(self.reserved.load(Ordering::SeqCst)) <= self.limit
    }

    /// [`BufferBudget::request_check`] of the isolate whose budget this is.
    fn request_check_of_own_isolate(&self) {
        if let Some(isolate) = self.isolate.get() {
            isolate.request_interrupt(check_interrupt, self as *const Self as *mut c_void);
        }
    }

    /// Asks V8 to run [`BufferBudget::check_external`] on `isolate`'s thread as soon as it can
    /// (from another thread; the budget must outlive the isolate, as the allocator's does).
    pub fn request_check(self: &Arc<Self>, isolate: &v8::IsolateHandle) {
        isolate.request_interrupt(check_interrupt, Arc::as_ptr(self) as *mut c_void);
    }

    /// Checks the budget after each garbage collection of `isolate` (whose allocator holds the
    /// budget, so it outlives the callback).
    pub fn check_after_collections(self: &Arc<Self>, isolate: &mut v8::Isolate) {
        unsafe extern "C" fn check(
            mut isolate: v8::UnsafeRawIsolatePtr,
            _: v8::GCType,
            _: v8::GCCallbackFlags,
            budget: *mut c_void,
        ) {
            // SAFETY: as in `request_check`.
            let (isolate, budget) = unsafe {
                (
                    v8::Isolate::ref_from_raw_isolate_ptr_mut(&mut isolate),
                    &*(budget as *const BufferBudget),
                )
            };
            // Buffers the collection found dead may still be counted (V8 frees them
            // concurrently): past the limit, look again at the next interrupt, collecting first;
            // far past it (memory a WebAssembly loop grows, which may not get to an interrupt
            // soon), stop now.
            if !budget.fits(isolate) {
                if budget.external.load(Ordering::SeqCst) > 2 * budget.limit {
                    budget.stop();
                } else {
                    budget.request_check_of_own_isolate();
                }
            }
        }
        isolate.add_gc_epilogue_callback(
            check,
            Arc::as_ptr(self) as *mut c_void,
            v8::GCType::kGCTypeAll,
        );
    }
}

/// The interrupt [`BufferBudget::request_check`] requests: `budget` is the isolate's.
unsafe extern "C" fn check_interrupt(mut isolate: v8::UnsafeRawIsolatePtr, budget: *mut c_void) {
    // SAFETY: V8 runs interrupts on the isolate's thread with it entered; `budget` is kept
    // alive by the isolate's allocator.
    let (isolate, budget) = unsafe {
        (
            v8::Isolate::ref_from_raw_isolate_ptr_mut(&mut isolate),
            &*(budget as *const BufferBudget),
        )
    };
    budget.check_external(isolate, true);
}

impl OffHeapMemory for BufferBudget {
    fn reserve(&self, bytes: usize) -> bool {
        let external = self.external.load(Ordering::SeqCst);
        let fits = self
            .reserved
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |reserved| {
                reserved
                    .checked_add(bytes)
                    .filter(|total| total.saturating_add(external) <= self.limit)
            })
            .is_ok();
        if !fits {
            self.stop();
        }
        fits
    }

    fn release(&self, bytes: usize) {
        self.reserved.fetch_sub(bytes, Ordering::SeqCst);
    }
}

unsafe extern "C" fn allocate(budget: &BufferBudget, len: usize) -> *mut c_void {
    if !budget.reserve(len) {
        return std::ptr::null_mut();
    }
    // SAFETY: plain zeroed allocation; at least one byte so the pointer is unique.
    let data = unsafe { libc::calloc(len.max(1), 1) };
    if data.is_null() {
        budget.used.fetch_sub(len, Ordering::SeqCst);
    }
    data
}

unsafe extern "C" fn allocate_uninitialized(budget: &BufferBudget, len: usize) -> *mut c_void {
    if !budget.reserve(len) {
        return std::ptr::null_mut();
    }
    // SAFETY: plain allocation; at least one byte so the pointer is unique.
    let data = unsafe { libc::malloc(len.max(1)) };
    if data.is_null() {
        budget.used.fetch_sub(len, Ordering::SeqCst);
    }
    data
}

unsafe extern "C" fn free(budget: &BufferBudget, data: *mut c_void, len: usize) {
    // SAFETY: `data` came from `allocate` or `allocate_uninitialized`.
    unsafe { libc::free(data) };
    budget.used.fetch_sub(len, Ordering::SeqCst);
}

unsafe extern "C" fn drop_budget(budget: *const BufferBudget) {
    // SAFETY: the reference `BufferBudget::allocator` gave the allocator.
    drop(unsafe { Arc::from_raw(budget) });
}
