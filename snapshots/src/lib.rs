//! V8 startup snapshots of the host's JavaScript environment, built at compile time.

/// The base snapshot: deno_core plus every extension of `functions-ext` (web platform, console,
/// the global scope and the invocation dispatcher), already evaluated. Create runtimes from it
/// with exactly `functions_ext::extensions()`.
pub static BASE_SNAPSHOT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/base.snap"));
