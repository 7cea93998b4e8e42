//! The deno_core extensions that make up a function's JavaScript environment.
//!
//! Each folder is one extension: `fetch/` (fetch, Headers, Request, Response), `console/`
//! (console output into the function's logs) and `runtime/` (the global scope and the
//! per-invocation dispatcher). The web platform underneath (URL, encoding, streams, timers,
//! events, ...) comes from the `deno_web` and `deno_webidl` crates, Web Crypto from `deno_crypto`.
//!
//! [`extensions`] is the one list used both when the base snapshot is built (`snapshots/`) and when
//! an isolate is created from it (`runtime/`): the two must match op for op.

pub mod console;
pub mod fetch;
pub mod runtime;

use std::sync::Arc;

use deno_core::Extension;

/// Every extension of a function isolate, in dependency order.
pub fn extensions() -> Vec<Extension> {
    vec![
        deno_webidl::deno_webidl::init(),
        deno_web::deno_web::init(
            Arc::new(deno_web::BlobStore::default()),
            None,
            false,
            deno_web::InMemoryBroadcastChannel::default(),
        ),
        deno_crypto::deno_crypto::init(None),
        fetch::fetch::init(),
        console::console::init(),
        runtime::host::init(),
    ]
}
