//! ArrayBuffer memory under the memory limit.
//!
//! The backing stores of `ArrayBuffer`s (typed arrays, `Uint8Array` bodies, ...) live outside the
//! V8 heap, so the heap limit does not cover them. Each isolate therefore gets its own allocator
//! that counts them: an allocation that would take the isolate's buffers past the limit fails,
//! and the isolate is terminated for [`Stop::Memory`], as when its heap reaches the limit.

use std::ffi::c_void;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use deno_core::v8;

use crate::watchdog::Stop;
use crate::watchdog::Verdict;

/// One isolate's ArrayBuffer allowance.
pub(crate) struct BufferBudget {
    used: AtomicUsize,
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
            self.verdict.set(Stop::Memory);
            if let Some(isolate) = self.isolate.get() {
                isolate.terminate_execution();
            }
        }
        reserved
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
