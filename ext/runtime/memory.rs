//! Memory a function takes outside V8's accounting, reserved against its memory limit: the
//! bytes of its blob parts (which deno_web copies into Rust) and its `SharedArrayBuffer`s
//! (which no V8 counter sees; charged at their maximum size when made, for good).

use std::sync::Arc;

use deno_core::JsBuffer;
use deno_core::OpDecl;
use deno_core::OpState;
use deno_core::op2;
use deno_web::BlobPart;
use deno_web::BlobStoreTrait;
use uuid::Uuid;

/// The runtime's account of an isolate's memory outside its heap (kept in its `OpState`).
pub trait OffHeapMemory: Send + Sync {
    /// Counts `bytes` more; false past the limit (the isolate is then being stopped).
    fn reserve(&self, bytes: usize) -> bool;
    /// Counts `bytes` fewer.
    fn release(&self, bytes: usize);
}

/// An isolate's [`OffHeapMemory`], as its `OpState` holds it.
#[derive(Clone)]
pub struct OffHeapBudget(pub Arc<dyn OffHeapMemory>);

/// A blob part whose bytes count against the isolate's memory until the part is gone.
struct CountedPart {
    data: Vec<u8>,
    budget: OffHeapBudget,
}

impl std::fmt::Debug for CountedPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedPart")
            .field("len", &self.data.len())
            .finish()
    }
}

impl Drop for CountedPart {
    fn drop(&mut self) {
        self.budget.0.release(self.data.len());
    }
}

#[async_trait::async_trait]
impl BlobPart for CountedPart {
    async fn read<'a>(&'a self) -> &'a [u8] {
        &self.data
    }

    fn size(&self) -> usize {
        self.data.len()
    }
}

/// deno_web's `op_blob_create_part`, counting the part's bytes: past the limit the part is
/// stored empty and the isolate stopped.
#[op2]
fn op_blob_create_part_counted(state: &mut OpState, #[buffer] data: JsBuffer) -> Uuid {
    let part: Arc<dyn BlobPart + Send + Sync> = match state.try_borrow::<OffHeapBudget>() {
        Some(budget) => {
            // A refused reservation takes nothing.
            let data = if budget.0.reserve(data.len()) {
                data.to_vec()
            } else {
                Vec::new()
            };
            Arc::new(CountedPart {
                data,
                budget: budget.clone(),
            })
        }
        // The snapshot's runtime: no function, no limit.
        None => Arc::new(deno_web::InMemoryBlobPart::from(data.to_vec())),
    };
    state.borrow::<Arc<dyn BlobStoreTrait>>().insert_part(part)
}

/// Reserves `bytes` for a `SharedArrayBuffer` about to be made (by the global scope's
/// constructor); false past the limit.
#[op2(fast)]
pub fn op_memory_reserve_shared(state: &mut OpState, bytes: f64) -> bool {
    match state.try_borrow::<OffHeapBudget>() {
        // Not a size (NaN, infinite, past usize): refused.
        Some(budget) => {
            bytes.is_finite()
                && bytes >= 0.0
                && bytes < usize::MAX as f64
                && budget.0.reserve(bytes as usize)
        }
        None => true,
    }
}

/// The extensions' op middleware: blob parts are counted.
pub fn counted(op: OpDecl) -> OpDecl {
    if op.name == "op_blob_create_part" {
        op.with_implementation_from(&op_blob_create_part_counted())
    } else {
        op
    }
}
