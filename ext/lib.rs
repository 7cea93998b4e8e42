//! The deno_core extensions that make up a function's JavaScript environment.
//!
//! Each folder is one extension: `fetch/` (deno_fetch's, and the function's network access),
//! `console/` (console output into the function's logs), `rpc/` (calls between functions
//! through bindings), `runtime/` (the global scope and the
//! per-invocation dispatcher), `python/` (Python functions booted on Pyodide) and `dotnet/` (C#
//! functions on the .NET WebAssembly runtime). The web
//! platform underneath (URL, encoding, streams, timers, events, ...) comes from the `deno_web`
//! and `deno_webidl` crates, Web Crypto from `deno_crypto`.
//!
//! [`extensions`] is the one list used both when the base snapshot is built (`snapshots/`) and when
//! an isolate is created from it (`runtime/`): the two must match op for op.

#![warn(missing_docs)]

pub mod console;
pub mod dotnet;
pub mod fetch;
pub mod python;
pub mod rpc;
pub mod runtime;
pub mod shared_module;
pub mod snapshot;

use std::sync::Arc;

use deno_core::Extension;
use deno_core::JsRuntimeForSnapshot;
use deno_core::snapshot::CreateSnapshotOptions;

/// Every extension of a function isolate, in dependency order.
pub fn extensions() -> Vec<Extension> {
    extensions_with(fetch::deno_fetch())
}

/// [`extensions`] as the base snapshot is built with them: `deno_fetch`'s body scripts changed
/// to load what most functions never use on first use (see [`fetch::deno_fetch_for_snapshot`]).
/// Only where the snapshot is built: it reads `deno_fetch`'s files.
pub fn extensions_for_snapshot() -> Vec<Extension> {
    extensions_with(fetch::deno_fetch_for_snapshot())
}

/// [`extensions`], with `deno_fetch` as given.
fn extensions_with(deno_fetch: Extension) -> Vec<Extension> {
    vec![
        deno_webidl::deno_webidl::init(),
        deno_web::deno_web::init(
            Arc::new(deno_web::BlobStore::default()),
            None,
            false,
            deno_web::InMemoryBroadcastChannel::default(),
        ),
        deno_crypto::deno_crypto::init(None),
        deno_fetch,
        fetch::fetch_access(),
        console::console::init(),
        rpc::rpc::init(),
        runtime::host::init(),
        python::python::init(),
        dotnet::dotnet::init(),
    ]
}

/// Work done on the runtime a snapshot is taken of, before it is taken.
pub type SnapshotStep = dyn Fn(&mut JsRuntimeForSnapshot);

/// How a snapshot of a function isolate is built: from scratch, with [`extensions`], the dispatch
/// path warmed up (see [`runtime::warm_up`]), then `then` run on the runtime, if given, before
/// it is snapshotted. `cargo_manifest_dir` is the building crate's, for deno_core's file paths.
pub fn snapshot_options(
    cargo_manifest_dir: &'static str,
    then: Option<Box<SnapshotStep>>,
) -> CreateSnapshotOptions {
    CreateSnapshotOptions {
        cargo_manifest_dir,
        startup_snapshot: None,
        skip_op_registration: false,
        extensions: extensions_for_snapshot(),
        extension_transpiler: None,
        with_runtime_cb: Some(Box::new(move |runtime| {
            runtime::warm_up(runtime);
            if let Some(then) = &then {
                then(runtime);
            }
        })),
    }
}
